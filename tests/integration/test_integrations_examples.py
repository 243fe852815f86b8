"""The Lightning and HF Trainer examples run at a tiny size and leave a store `grokscope report` renders."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from grokscope.cli import main as cli
from grokscope.store import RunDir

from cli_args import tiny_args
from conftest import ROOT

TINY = tiny_args(steps=60, d_model=16, eval_every=20, heads=None)  # the examples take no --heads


@pytest.mark.slow
@pytest.mark.parametrize("script, library", [("lightning_modular_addition.py", "lightning"),
                                             ("hf_trainer_gpt2.py", "transformers")])
def test_example_runs_and_report_renders(tmp_path, script, library):
    pytest.importorskip(library)
    out = tmp_path / "store" / "run"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    res = subprocess.run([sys.executable, str(ROOT / "examples" / script), *TINY, "--out", str(out)],
                         capture_output=True, text=True, timeout=600, env=env)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "monitor overhead" in res.stdout
    run = RunDir(out)
    assert run.config().model.kind == "external" and run.config().data.tasks == ("add",)
    assert list(run.table("defect").step) == [0] and run.summary()["steps_trained"] == 60
    m = run.metrics()
    test = m[m.split == "test"]
    assert sorted(test.step.unique()) == [20, 40, 60] and test.acc.between(0, 1).all()
    assert cli(["report", str(tmp_path / "store")]) == 0
    html = (tmp_path / "store" / "report" / "index.html").read_text()
    assert "accuracy.png" in html and "defect.png" in html
