"""A run that diverges (lr 10) in a batch with normal runs is flagged in the table and the summary, and the
other runs finish as they would alone."""

from __future__ import annotations

import json

import torch
import yaml

from grokscope.cli import main
from grokscope.config import preset
from grokscope.store import RunDir
from grokscope.training import train

from cli_args import tiny_args
from equivalence import assert_same_run

TINY = tiny_args(steps=200, eval_every=50, defect_every=50)


def test_diverging_run_is_flagged_and_the_others_are_unchanged(tmp_path, capsys):
    batch, alone = tmp_path / "batch", tmp_path / "alone"
    assert main(["run", *TINY, "--lr", "0.005,10", "--out", str(batch)]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "add-p11-trunk-wd1-lr10-s42: DIVERGED at step 50" in text
    assert "│ diverged" in text  # the table's grok-step cell of the lr-10 run
    assert "the run diverged at step 50" in text  # the geometry lines say why nothing is measured
    bad = RunDir(batch / "add-p11-trunk-wd1-lr10-s42").summary()
    assert bad["diverged"] and bad["steps_trained"] == 50 and bad["finished"]

    assert main(["run", *TINY, "--lr", "0.005", "--json", "--out", str(alone)]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert not row["diverged"] and row["geometry"]["pc1_mean"] is not None
    assert not RunDir(batch / "add-p11-trunk-wd1-lr0.005-s42").summary()["diverged"]


def test_the_other_runs_of_a_diverging_batch_equal_themselves_alone():
    # float64: a batch and a run alone use other GEMM shapes, equal to rounding on any processor (tests/equivalence.py)
    cfgs = [preset("quick", data=dict(p=11), model=dict(d_model=32, n_heads=2), steps=200, eval_every=50,
                   defect_every=50, optim=dict(lr=lr)) for lr in (0.005, 10.0)]
    together = train(cfgs, dtype=torch.float64)
    assert together[1].summary["diverged"] and not together[0].summary["diverged"]
    assert_same_run(together[0], train(cfgs[:1], dtype=torch.float64)[0])


def test_sweep_table_flags_the_diverged_run(tmp_path, capsys):
    spec = {"name": "dv", "device": "cpu", "out": str(tmp_path / "store"),
            "base": {"preset": "quick", "steps": 100, "eval_every": 50, "attn_every": 50, "checkpoint_every": 50,
                     "defect_every": 0, "data": {"p": 11}, "model": {"d_model": 32, "n_heads": 2}},
            "grid": {"lr": [0.005, 10]}}
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    assert main(["sweep", str(path)]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "trained, diverged" in text and "1 diverged" in text
    assert main(["sweep", str(path), "--json"]) == 0
    rows = {r["lr"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows[10.0]["diverged"] is True and rows[0.005]["diverged"] is False
