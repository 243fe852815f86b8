"""Building claim rows: `make_row` (a measurement, its verdict and the sweep behind it), the row of a claim a
scale does not run, the row of ρ ≈ 1 with its random-basis null, and the small readers of sweep tables they use."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from grokscope.claims.context import ClaimContext, describe_spec
from grokscope.claims.verdicts import (
    INCONCLUSIVE,
    NOT_REPRODUCED,
    NOT_RUN,
    REPRODUCED,
    ClaimRow,
    combine,
    verdict_value,
)

PAPER_ONLY = "paper-only"


def fmt(x: Any, digits: int = 3) -> str:
    """A short human form of a number (None/NaN → '—')."""
    if x is None:
        return "—"
    if isinstance(x, bool):
        return str(x)
    if isinstance(x, int):
        return str(x)
    if isinstance(x, float):
        if not math.isfinite(x):
            return "—"
        return f"{x:.0f}" if abs(x) >= 10**digits else f"{x:.{digits}g}"
    return str(x)


def task_cols(table: pd.DataFrame, prefix: str) -> list[str]:
    """Columns `prefix.<task>` of a sweep table."""
    return [c for c in table.columns if c.startswith(prefix + ".") and c.count(".") == 1]


def grok_value(v: Any) -> int | None:
    """A grok step from a sweep table cell (None/NaN → None)."""
    if v is None:
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return int(f) if math.isfinite(f) else None


def paper_only_row(ctx: ClaimContext, claim: str, paper: str, needs: str) -> ClaimRow:
    """The row of a claim this scale does not run: it needs `needs` (more than the scale's budget)."""
    return ClaimRow(claim=claim, paper=paper, measured="—", verdict=NOT_RUN, tolerance="", config="",
                    scale=ctx.scale, note=f"{PAPER_ONLY}: needs {needs}")


def make_row(
    ctx: ClaimContext,
    claim: str,
    paper: str,
    measured: str,
    verdict: str,
    tolerance: str,
    spec: dict[str, Any] | str,
    values: dict[str, Any],
    note: str = "",
) -> ClaimRow:
    """A result row; `spec` is the sweep spec that produced it (described) or a config string."""
    config = describe_spec(spec) if isinstance(spec, dict) else spec
    return ClaimRow(claim=claim, paper=paper, measured=measured, verdict=verdict, tolerance=tolerance,
                    config=config, scale=ctx.scale, note=note, values=values)


def finite_values(table: pd.DataFrame, col: str) -> tuple[np.ndarray, float | None]:
    """The finite values of a column (empty when the column is absent) and their mean (None when empty)."""
    v = table[col].astype(float).to_numpy() if col in table else np.array([])
    v = v[np.isfinite(v)]
    return v, (float(v.mean()) if len(v) else None)


RHO_TOL = 5e-4  # ρ rounds to the paper's 1.000


def rho_row(ctx: ClaimContext, t: pd.DataFrame, spec: Any, claim: str) -> ClaimRow:
    """ρ ≈ 1 judged with its random-basis null: a random δ has ρ ≈ 1 − K/(2P) too, so the verdict needs
    ρ to read 1.000 (≥ 1 − 5e-4) *and* the basis to catch no more than 10× a random basis's share of δ
    (exec/random projection ratio < 10): a δ lying in the basis fails both."""
    v, mean = finite_values(t, "summary.rho")
    vr, mean_r = finite_values(t, "summary.rho_random")
    vq, ratio = finite_values(t, "summary.proj_ratio")
    ok_rho = verdict_value(mean, 1.0, RHO_TOL, 10.0)
    ok_null = INCONCLUSIVE if ratio is None else (REPRODUCED if ratio < 10 else NOT_REPRODUCED)
    return make_row(
        ctx,
        claim,
        "ρ ≈ 1.000",
        f"ρ = {fmt(mean, 5)} (mean of {len(v)} runs, min {fmt(float(v.min()) if len(v) else None, 5)}); "
        f"random bases of equal rank ρ = {fmt(mean_r, 5)}; exec/random projection ratio {fmt(ratio)}",
        combine([ok_rho, ok_null]),
        f"ρ ≥ 1 − {RHO_TOL:g} (reads 1.000) and exec/random ratio < 10; partly ρ ≥ 0.995",
        spec,
        {"rho": v.tolist(), "rho_random": vr.tolist(), "proj_ratio": vq.tolist()},
    )
