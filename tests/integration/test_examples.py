"""The examples run at a tiny size and leave a store that `grokscope report` renders."""

from __future__ import annotations

import subprocess
import sys

import pytest

from grokscope.cli import main as cli
from grokscope.store import RunDir

from conftest import ROOT


@pytest.mark.parametrize("script, args, task", [
    ("p1_transformer.py", ["--p", "11", "--steps", "60", "--d-model", "16", "--eval-every", "20"], "add"),
    ("sparse_parity.py", ["--steps", "60", "--n-train", "200", "--width", "32", "--eval-every", "20"], "parity"),
])
@pytest.mark.slow
def test_example_runs_and_report_renders(tmp_path, script, args, task):
    out = tmp_path / "store" / "run"
    res = subprocess.run([sys.executable, str(ROOT / "examples" / script), *args, "--out", str(out)],
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "monitor overhead" in res.stdout
    run = RunDir(out)
    assert run.config().model.kind == "external" and run.config().data.tasks == (task,)
    assert len(run.table("defect")) >= 1 and (run.metrics().task == task).all()
    assert cli(["report", str(tmp_path / "store")]) == 0
    html = (tmp_path / "store" / "report" / "index.html").read_text()
    assert "accuracy.png" in html and "defect.png" in html
