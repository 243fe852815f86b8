"""P2's runs: the paper's numbers, the single-task, non-grokking and learning-rate sweep specs per scale."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from grokscope.claims.context import ClaimContext, sweep_table
from grokscope.claims.rows import grok_value

GROKKING = ("add", "sub", "mul", "sq")
NEVER = ("sq_ab", "cube_ab")
PAPER_LEAD_ALPHA = (1.27, 0.03)
PAPER_LEAD_1E3 = (600, 1600, 1117)  # lead range and mean at lr 1e-3 (12 runs)
# P2 v2 §4.6: mean lead / t_grok per lr over the runs in the fit (α depends on which lrs enter, so these
# are the per-lr numbers a cut sweep can be read against; docs/notes/p2-lead-power-law.md)
PAPER_LEAD_FRACTION = {3e-5: 0.95, 1e-4: 0.92, 3e-4: 0.88, 1e-3: 0.43, 3e-3: 0.24}
PAPER_EXEC_RANDOM = (1.8, 2.9)  # weight-SVD basis (k 3 per matrix, K 24) over a random one
ALPHA_TOL, ALPHA_PARTLY = 0.15, 0.30  # |Δα|, fixed in advance
P2_DEFECT = {"defect_every": 100, "defect_draws": 5}  # grok_generalization_dynamics.py COMM_EVERY, COMM_K


def single_spec(scale: str) -> dict[str, Any]:
    """Single-task runs at wd 1, including operations P2 reports never grok."""
    if scale == "paper":
        return {
            "name": "p2-single",
            "base": {"preset": "p2-single", **P2_DEFECT},
            "grid": {
                "tasks": ["add", "sub", "mul", "sq", "sq_ab", "cube_ab"],
                "wd": 1,
                "seeds": [42, 137, 2024],
                "steps": 30000,
            },
            "analyses": ["summary"],
        }
    if scale == "cpu":
        return {
            "name": "p2-cpu-single",
            "base": {"preset": "p2-single", **P2_DEFECT},
            "grid": {"tasks": list(GROKKING), "wd": 1, "seeds": [42, 137, 2024], "steps": 30000},
            "analyses": ["summary"],
        }
    return {
        "name": "p2-quick-single",
        "base": {"preset": "quick", "checkpoint_every": 500, "defect_every": 100, "defect_draws": 5},
        "grid": {"tasks": ["add", "mul", "sq_ab"], "wd": 1, "seeds": [42, 137], "steps": 3000},
        "analyses": ["summary"],
    }


def nongrok_spec(scale: str) -> dict[str, Any] | None:
    """cpu scale: the non-grokking ops, capped at 10k steps (the other scales hold them in `single`)."""
    if scale != "cpu":
        return None
    return {"name": "p2-cpu-nongrok", "base": {"preset": "p2-single", **P2_DEFECT},
            "grid": {"tasks": list(NEVER), "wd": 1, "seeds": [42, 137, 2024], "steps": 10000},
            "analyses": ["summary"]}


def lr_spec(scale: str) -> dict[str, Any]:
    """The learning-rate sweep at wd 1 behind the lead power law."""
    if scale == "paper":
        return {
            "name": "p2-lr",
            "base": {"preset": "p2-single", **P2_DEFECT},
            "grid": {
                "tasks": list(GROKKING),
                "wd": 1,
                "lr": [3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2],
                "seeds": [42, 137, 2024],
                "steps_by": "lr",
                "steps": {3e-5: 300000, 1e-4: 150000, 3e-4: 60000, 1e-3: 30000, 3e-3: 30000, 1e-2: 30000},
            },
            "analyses": ["summary"],
        }
    if scale == "cpu":
        return {
            "name": "p2-cpu-lr",
            "base": {"preset": "p2-single", **P2_DEFECT},
            # three seeds (the lr-1e-3 points come from the single sweep's three); lr 1e-4 is its own sweep
            # (`lr_slow_spec`), lr 3e-5 on seed 42 too (`lr_slowest_spec`)
            "grid": {"tasks": list(GROKKING), "wd": 1, "lr": [3e-4, 3e-3, 1e-2], "seeds": [42, 137, 2024],
                     "steps_by": "lr", "steps": {3e-4: 60000, 3e-3: 30000, 1e-2: 30000}},
            "analyses": ["summary"],
        }
    return {
        "name": "p2-quick-lr",
        "base": {"preset": "quick", "checkpoint_every": 500, "defect_every": 100, "defect_draws": 5},
        "grid": {
            "tasks": ["add", "mul"],
            "wd": 1,
            "lr": [2e-3, 5e-3, 1e-2],
            "seeds": [42, 137],
            "steps_by": "lr",
            "steps": {2e-3: 6000, 5e-3: 3000, 1e-2: 3000},
        },
        "analyses": ["summary"],
    }


def lr_slow_spec(scale: str) -> dict[str, Any] | None:
    """cpu scale: lr 1e-4 for the four grokking ops on the paper's three seeds at its 150k-step budget (runs stop
    once grokked: 24k–40k steps, ≈ 400k run-steps in all). The paper scale holds lr 1e-4 in `lr`; lr 3e-5 (300k
    steps) stays with it."""
    return _slow_lr_spec(scale, "p2-cpu-lr-slow", 1e-4, [42, 137, 2024], 150000)


def lr_slowest_spec(scale: str) -> dict[str, Any] | None:
    """cpu scale: P2's slowest lr, 3e-5, for the four grokking ops on seed 42 at the paper's 300k-step budget (runs
    stop once grokked: 120k–147k steps each, 531k run-steps in all); its other seeds stay with the paper scale."""
    return _slow_lr_spec(scale, "p2-cpu-lr-3e-5", 3e-5, [42], 300000)


def _slow_lr_spec(scale: str, name: str, lr: float, seeds: list[int], steps: int) -> dict[str, Any] | None:
    """A cpu-scale sweep of one slow lr: the four grokking ops at wd 1 on `seeds` (None at the other scales)."""
    if scale != "cpu":
        return None
    return {"name": name, "base": {"preset": "p2-single", **P2_DEFECT},
            "grid": {"tasks": list(GROKKING), "wd": 1, "lr": [lr], "seeds": seeds, "steps": steps},
            "analyses": ["summary"]}


def _all_single(ctx: ClaimContext) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The single-task table with the cpu scale's non-grokking runs added."""
    spec = ctx.spec("single", single_spec)
    t = sweep_table(ctx, spec)
    ng = ctx.optional_spec("nongrok", nongrok_spec)
    if ng is not None:
        t = pd.concat([t, sweep_table(ctx, ng)], ignore_index=True)
    return t, spec


def _lr_points(ctx: ClaimContext) -> pd.DataFrame:
    """(lr, task, seed, t_grok90, lead90) of every grokked run of the single, lr and (cpu scale) lr-1e-4 and
    lr-3e-5 sweeps (a (lr, task, seed) counts once)."""
    rows = []
    seen = set()
    slow = [s for s in (ctx.optional_spec("lr_slow", lr_slow_spec), ctx.optional_spec("lr_slowest", lr_slowest_spec))
            if s]
    for spec in (ctx.spec("single", single_spec), ctx.spec("lr", lr_spec), *slow):
        t = sweep_table(ctx, spec)
        for r in t.to_dict("records"):
            task = r["tasks"]
            g = grok_value(r.get(f"grok_step_90.{task}"))
            d = r.get(f"summary.lead_90.{task}")
            key = (float(r["lr"]), task, int(r["seed"]))
            if g is None or key in seen or task not in GROKKING:
                continue
            seen.add(key)
            rows.append({"lr": key[0], "task": task, "seed": key[2], "t_grok": float(g),
                         "lead": float(d) if d is not None and np.isfinite(float(d)) else float("nan")})
    return pd.DataFrame(rows, columns=["lr", "task", "seed", "t_grok", "lead"])


def _grokking_rows(table: pd.DataFrame) -> pd.DataFrame:
    return table[table.tasks.isin(GROKKING)]
