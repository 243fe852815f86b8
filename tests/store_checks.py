"""A monitored store read back by every CLI verb a user would try: shared by the integration tests."""

from __future__ import annotations

from pathlib import Path

from grokscope.cli import main as cli
from grokscope.store import RunDir


def assert_cli_reads(store: Path, run: RunDir, capsys) -> None:
    """`runs list/show`, `analyze`, `runs warnings` and `report` all succeed on the store holding `run`."""
    assert cli(["runs", "list", str(store), "--json"]) == 0
    assert cli(["runs", "show", str(run.path)]) == 0
    assert cli(["analyze", str(run.path), "--json"]) == 0
    assert '"source": "inline (Monitor)"' in capsys.readouterr().out
    assert cli(["runs", "warnings", str(run.path)]) == 0
    assert cli(["report", str(store)]) == 0
    html = (store / "report" / "index.html").read_text()
    assert "defect.png" in html and "Per-layer commutator" in html
