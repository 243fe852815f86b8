"""The rule that says when a diagnostic moves (grokscope.diagnostics), on series whose answer is known."""

from __future__ import annotations

import numpy as np
import pandas as pd

from grokscope.diagnostics import memorised_step, move_step

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
