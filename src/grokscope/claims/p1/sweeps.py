"""P1's runs: the paper's grok steps, the dual, wd-0, wider-seed and tri-task sweep specs per scale."""

from __future__ import annotations

from typing import Any

import pandas as pd

from grokscope.analyses.phase import phase_runs
from grokscope.claims.context import ClaimContext, sweep_table

# docs/papers.md §5: dual-task grok step, mean of 3 seeds (add, mul) per wd; wd 0 never groks.
PAPER_GROK = {
    1.0: (13_300, 13_100),
    0.5: (16_300, 16_200),
    0.3: (28_500, 28_300),
    0.2: (45_200, 45_100),
    0.1: (98_000, 98_800),
}


PAPER_S42_WD1 = (14_100, 14_000)  # seed 42, wd 1: add, mul (P1; issue 10)


# What the cpu scale leaves to the paper scale, so that it fits ~2 h on 2 idle cores (issue 10): its grid is
# ≈ 300k run-steps if runs grok near the paper's steps (dual 3 wd × 3 seeds ≈ 175k, seven more seeds ≈ 95k,
# tri ≈ 30k), ≈ 1.8 h at the ~46 run-steps/s of R = 8 on 2 threads (benchmarks/README.md).
CPU_WD0_COST = ("a wd-0 run to 100k steps (100k run-steps, ≈ 0.6 h on 2 idle cores beyond the cpu scale's ≈ 2 h); "
                "add it with --specs (role dual0, e.g. grid wd [0], seeds [42], steps 100000)")


WIDE_SEEDS = (0, 1, 2, 3, 4, 5, 7)  # with 42, 137, 2024: ten seeds at wd 1 (cpu scale)


def _quick_base(tasks: str, steps: int = 4000) -> dict[str, Any]:
    return {
        "preset": "quick",
        "data": {"tasks": tasks, "p": 31, "train_frac": 0.8},  # 0.7 left add short of the grok rule at 6k steps
        "steps": steps,
        "checkpoint_every": 500,
        "defect_every": 100,
    }


def dual_spec(scale: str) -> dict[str, Any]:
    """The dual-task (add+mul) weight-decay sweep of this scale (a sweep spec mapping). At the cpu scale
    wd 0 is its own sweep (`dual0_spec`, one seed) and the wider seed set another (`seeds_spec`)."""
    if scale == "paper":
        return {
            "name": "p1-dual-wd",
            "base": {"preset": "p1-dual", "defect_every": 200},
            "grid": {
                "wd": [0, 0.1, 0.2, 0.3, 0.5, 1],
                "seeds": [42, 137, 2024],
                "steps": {0: 100000, 0.1: 250000, 0.2: 120000, 0.3: 80000, 0.5: 50000, 1: 30000},
            },
            "analyses": ["summary", "defect", "hessian", "fragility"],
        }
    if scale == "cpu":
        return {
            "name": "p1-cpu-dual-wd",
            "base": {"preset": "p1-dual", "defect_every": 0},
            "grid": {"wd": [1, 0.5, 0.3], "seeds": [42, 137, 2024],
                     "steps": {0.3: 80000, 0.5: 50000, 1: 30000}},
            "analyses": ["summary", "defect", "fragility"],  # Hessian: seed 42 only, in claim_lambda_min
        }
    return {
        "name": "p1-quick-dual",
        "base": _quick_base("add+mul"),
        "grid": {
            "wd": [0, 0.5, 1],
            "seeds": [42, 137],
            "steps": {0: 8000, 0.5: 8000, 1: 6000},  # wd 0 gets the longest wd > 0 budget
        },
        "analyses": ["summary", "defect", "hessian", "fragility"],
    }


def dual0_spec(scale: str) -> dict[str, Any] | None:
    """A separate wd-0 sweep (role `dual0`, e.g. from `--specs`). No scale has one by default: the quick and
    paper sweeps hold wd 0, and the cpu scale leaves P1's 100k-step wd-0 run to the paper scale (100k
    run-steps, ~0.6 h on 2 idle cores, do not fit beside the rest in its two hours)."""
    return None


def seeds_spec(scale: str) -> dict[str, Any] | None:
    """cpu scale: seven more seeds at wd 1 (ten with the main sweep's three), grok steps only."""
    if scale != "cpu":
        return None
    return {"name": "p1-cpu-dual-seeds", "base": {"preset": "p1-dual", "defect_every": 0},
            "grid": {"wd": [1], "seeds": list(WIDE_SEEDS), "steps": 30000}}


def tri_spec(scale: str) -> dict[str, Any]:
    """The tri-task (add+mul+sq) sweep: wd 1 only (order of grokking and PC1%)."""
    if scale == "paper":
        return {
            "name": "p1-tri-wd1",
            "base": {"preset": "p1-tri", "defect_every": 200},
            "grid": {"wd": [1], "seeds": [42, 137, 2024], "steps": 50000},
            "analyses": ["summary"],
        }
    if scale == "cpu":
        return {
            "name": "p1-cpu-tri-wd1",
            "base": {"preset": "p1-tri", "defect_every": 0},
            "grid": {"wd": [1], "seeds": [42, 137, 2024], "steps": 50000},
            "analyses": ["summary"],
        }
    return {
        "name": "p1-quick-tri",
        "base": _quick_base("add+mul+sq", 5000),
        "grid": {"wd": [1], "seeds": [42, 137]},
        "analyses": ["summary"],
    }


def _optional(ctx: ClaimContext, role: str, default: Any) -> pd.DataFrame | None:
    """The table of an optional sweep role (None when this scale has none)."""
    spec = ctx.optional_spec(role, default)
    return sweep_table(ctx, spec) if spec else None


def _dual(ctx: ClaimContext, with_wd0: bool = False) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The dual sweep's table (with the cpu scale's separate wd-0 run when `with_wd0`) and its spec."""
    spec = ctx.spec("dual", dual_spec)
    table = sweep_table(ctx, spec)
    if with_wd0:
        zero = _optional(ctx, "dual0", dual0_spec)
        if zero is not None:
            table = pd.concat([table, zero], ignore_index=True)
    return table, spec


def _runs(table: pd.DataFrame) -> pd.DataFrame:
    """phase_runs of exactly the sweep's runs."""
    return phase_runs(list(table["path"]))
