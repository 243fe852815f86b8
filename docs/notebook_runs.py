"""mkdocs hook: the notebooks the site executes (mkdocs-jupyter runs each in its own folder) write their runs to a
temporary folder named by GROKSCOPE_NOTEBOOK_RUNS, not into the source tree the site is built from."""

from __future__ import annotations

import os
import shutil
import tempfile
from typing import Any

_made: list[str] = []


def on_startup(command: str, dirty: bool) -> None:
    """Point the notebooks' runs at a fresh temporary folder (unless the caller named one)."""
    if "GROKSCOPE_NOTEBOOK_RUNS" not in os.environ:
        _made.append(tempfile.mkdtemp(prefix="grokscope-notebooks-"))
        os.environ["GROKSCOPE_NOTEBOOK_RUNS"] = _made[-1]


def on_shutdown(**_: Any) -> None:
    """Remove the temporary folder this hook made."""
    for path in _made:
        shutil.rmtree(path, ignore_errors=True)
        os.environ.pop("GROKSCOPE_NOTEBOOK_RUNS", None)
    _made.clear()
