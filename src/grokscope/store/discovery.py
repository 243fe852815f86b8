"""Finding the runs of a store: run directories at or below given paths, their metrics and summaries as tables."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd

from grokscope.errors import StoreError
from grokscope.store.run_dir import CONFIG, METRICS_TABLE, SCAN_STATE, SUMMARY, RunDir


def _dirs_with_config(root: Path) -> list[str]:
    """Directories at or below `root` holding a run config, following symlinked folders (runs grouped by
    links into a folder are found) and visiting each real directory once (no loops through cyclic links)."""
    seen: set[str] = set()
    out: list[str] = []
    for d, subdirs, files in os.walk(root, followlinks=True):
        real = os.path.realpath(d)
        if real in seen:
            subdirs[:] = []
            continue
        seen.add(real)
        if SCAN_STATE in files and d != os.fspath(root):
            subdirs[:] = []  # an intervention scan's runs belong to its scan (name its folder to list them)
            continue
        if CONFIG in files:
            out.append(d)
    return out


def find_runs(paths: Iterable[str | os.PathLike]) -> list[RunDir]:
    """Run directories at or (recursively) below the given paths, sorted by path."""
    found: list[RunDir] = []
    for p in paths:
        p = Path(p)
        if (p / CONFIG).exists():
            found.append(RunDir(p))
        elif p.is_dir():
            found.extend(RunDir(Path(d)) for d in _dirs_with_config(p))
        else:
            raise StoreError(f"{p} is not a run directory or a folder of runs")
    return sorted({r.path: r for r in found}.values(), key=lambda r: str(r.path))


def load_metrics(paths: Iterable[str | os.PathLike]) -> pd.DataFrame:
    """All runs' metrics below `paths` as one long DataFrame (column `run` names each run)."""
    frames = [r.metrics() for r in find_runs(paths) if r.has_table(METRICS_TABLE)]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def load_summaries(paths: Iterable[str | os.PathLike]) -> list[dict[str, Any]]:
    """Per-run summaries (config, grok steps, final accuracies) of runs below `paths`."""
    return [r.summary() for r in find_runs(paths) if r.file(SUMMARY).exists()]
