"""Runs of any length end in a result: 1 step, shorter than an eval interval, longer than the snapshot budget;
analyses of a run too short for them say what is missing and carry on (exit 0)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from grokscope.cli import main
from grokscope.store import RunDir

from cli_args import tiny_args

TINY = tiny_args(defect_every=0)


def _one_run(store: Path) -> Path:
    (run,) = [p for p in store.iterdir() if p.is_dir()]
    return run


@pytest.fixture(scope="module")
def one_step(tmp_path_factory) -> Path:
    store = tmp_path_factory.mktemp("short") / "store"
    assert main(["run", *TINY, "--steps", "1", "--json", "--out", str(store)]) == 0
    return _one_run(store)


def test_one_step_run_prints_its_summary_and_what_is_missing(tmp_path, capsys):
    store = tmp_path / "store"
    assert main(["run", "--preset", "quick", *TINY, "--steps", "1", "--out", str(store)]) == 0
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    assert "not measured: PC1% and ρ need attention matrices at 2+ steps" in " ".join(out.split())
    s = RunDir(_one_run(store)).summary()
    assert s["steps_trained"] == 1 and s["finished"]


def test_run_shorter_than_an_eval_interval(tmp_path, capsys):
    store = tmp_path / "store"
    assert main(["run", *TINY, "--steps", "30", "--eval-every", "50", "--json", "--out", str(store)]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["steps_trained"] == 30
    assert row["geometry"]["pc1_mean"] is None and row["geometry"]["missing"]
    m = RunDir(_one_run(store)).metrics()
    assert sorted(set(m.step)) == [0, 30]  # evaluated at the start and at the end of the budget


def test_run_longer_than_the_snapshot_budget(tmp_path, capsys):
    store = tmp_path / "store"
    # lr 1e-5 never groks here, so the run uses its whole budget: 121 evaluations, at most 100 snapshots kept
    assert main(["run", *TINY, "--steps", "1210", "--eval-every", "10", "--lr", "1e-5", "--json",
                 "--out", str(store)]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["steps_trained"] == 1210 and row["geometry"]["pc1_mean"] is not None
    run = RunDir(_one_run(store))
    steps, _ = run.snapshots()
    assert 2 <= len(steps) <= 100 and int(steps[0]) == 0 and int(steps[-1]) == 1210
    assert len(set(run.metrics().step)) == 122


@pytest.mark.parametrize("argv,expect", [
    (["analyze", "RUN", "--what", "pca,defect"], "skipped, PCA needs the trajectories at 2+ steps"),
    (["fragility", "RUN", "--k", "3"], "k*"),
    (["report", "STORE", "--out", "OUT"], "wrote"),
    (["runs", "show", "RUN"], "steps trained 1"),
    (["runs", "show", "RUN"], "grok step —, grok step (90%) —"),  # not None
    (["intervene", "RUN", "--fractions", "0.1", "--steps", "2", "--out", "OUT"], "deletion scan"),
])
def test_analyses_of_a_one_step_run_carry_on(one_step, tmp_path, capsys, argv, expect):
    run = tmp_path / "store" / one_step.name
    shutil.copytree(one_step, run)
    argv = [str(run) if a == "RUN" else str(run.parent) if a == "STORE" else str(tmp_path / "out") if a == "OUT"
            else a for a in argv]
    assert main(argv) == 0
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    assert expect in " ".join(out.split()), out
