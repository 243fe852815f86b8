"""The rule that says when a diagnostic moves (grokscope.analyses.diagnostics), on series whose answer is known."""

from __future__ import annotations

import numpy as np
import pandas as pd

from grokscope.analyses.diagnostics import memorised_step, move_step, run_moves
from grokscope.store import PROGRESS_TABLE, SUMMARY, RunDir, write_json

from conftest import tiny_config

STEPS = np.arange(0, 1000, 100)


def test_moves_at_half_its_excursion_after_memorisation():
    x = np.array([9, 1, 1, 1, 2, 3, 5, 5, 5, 5], dtype=float)  # falls while memorising, then rises
    assert move_step(STEPS, x, +1, start=100) == 500  # excursion 4 from x_ref 1: half is reached at 3 (step 500)
    assert move_step(STEPS, x, +1, start=None) is None
    assert move_step(STEPS, x, -1, start=100) is None  # it never falls below x_ref after memorisation
    assert move_step(STEPS, -x, -1, start=100) == 500  # a fall is a rise turned over
    assert move_step(STEPS, x, 0, start=100) == 500


def test_small_or_absent_excursions_do_not_move():
    flat = np.full(10, 4.0) + np.linspace(0, 0.5, 10)  # 12 % of x_ref: below MIN_REL
    assert move_step(STEPS, flat, +1, start=0) is None
    assert move_step(STEPS, flat, +1, start=0, min_rel=0.1) is not None
    assert move_step(STEPS, np.full(10, np.nan), +1, start=0) is None


def test_memorised_step_needs_every_task():
    m = pd.DataFrame({"step": [0, 0, 100, 100, 200, 200], "task": ["a", "b"] * 3, "split": "train",
                      "acc": [0.1, 0.1, 0.99, 0.5, 0.99, 0.985]})
    assert memorised_step(m) == 200
    assert memorised_step(m, acc=0.99) is None


def test_run_moves_reads_one_task_against_its_own_grok_step(tmp_path):
    """A multi-task run: `run_moves(run, task)` takes that task's grok step and progress measures; without a
    task, the first task to grok and the first task's measures."""
    run = RunDir(tmp_path / "r")
    run.path.mkdir()
    run.write_config(tiny_config(data=dict(tasks=("add", "mul"))))
    steps = np.arange(0, 1000, 100)
    rows = [{"step": s, "task": t, "split": "train", "loss": 0.0, "acc": 0.1 if s < 200 else 1.0, "weight_norm": 1.0}
            for s in steps for t in ("add", "mul")]
    run.write_table("metrics", pd.DataFrame(rows))
    write_json(run.file(SUMMARY), {"grok_step": {"add": 900, "mul": 700}, "grok_step_90": {"add": 800, "mul": 600}})
    gini = {"add": [0.0, 0.0, 1, 1, 1, 1, 1, 3, 5, 5], "mul": [0.0, 0.0, 1, 1, 1, 3, 5, 5, 5, 5]}
    progress = [{"step": s, "task": t, "gini": gini[t][i], "excluded_loss_final": 1.0, "restricted_loss_final": 1.0}
                for t in ("add", "mul") for i, s in enumerate(steps)]
    run.write_table(PROGRESS_TABLE, pd.DataFrame(progress))
    add, mul, either = run_moves(run, "add"), run_moves(run, "mul"), run_moves(run)
    assert (add["grok"], add["grok90"], add["moves"]["gini"], add["leads"]["gini"]) == (900, 800, 700, 200)
    assert (mul["grok"], mul["grok90"], mul["moves"]["gini"], mul["leads"]["gini"]) == (700, 600, 500, 200)
    assert (either["grok"], either["grok90"], either["moves"]["gini"]) == (700, 600, 700)  # add's Gini, mul's grok
