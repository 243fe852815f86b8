"""P1's orthogonal deletion: the scan of deletion fractions and its verdict."""

from __future__ import annotations

from typing import Any

import numpy as np

from grokscope.claims.cache import ScanNeed, stored_scan
from grokscope.claims.context import ClaimContext
from grokscope.claims.p1.sweeps import _dual
from grokscope.claims.rows import fmt
from grokscope.claims.rows import make_row as _row
from grokscope.claims.verdicts import INCONCLUSIVE, ClaimRow, verdict_count
from grokscope.experiments.intervention_scan import ScanConfig
from grokscope.store import RunDir

# P1's deletion result (ortho_fine_scan.py, dual wd 1 seed 42, 50k budget): these fractions stop grokking;
# 50 % groks again (+163 %, 36.9k), smaller fractions grok with a delay.
DELETION_FAIL = (0.1, 0.15, 0.25)
DELETION_RECOVER = 0.5
DELETION_BUDGET = 50_000


def deletion_verdict(grokked: dict[float, bool]) -> str:
    """P1's deletion result as its scan found it: f ∈ {10, 15, 25} % never grok; f = 50 % groks again
    (the dual model's partial recovery); f < 10 % grok (later). Each scanned fraction is one case."""
    ok = []
    for f, g in grokked.items():
        if any(np.isclose(f, x) for x in DELETION_FAIL):
            ok.append(not g)
        elif np.isclose(f, DELETION_RECOVER) or f < min(DELETION_FAIL):
            ok.append(bool(g))
    return verdict_count(sum(ok), len(ok))


def deletion_scan(scale: str) -> Any:
    """The scan of this scale: P1's fractions and 50k budget (ortho_fine_scan.py), from the authors' step
    500 (the trainer's 0-based step 499), at the paper and cpu scales; the quick scale keeps its base budget."""
    if scale in ("paper", "cpu"):
        return ScanConfig(kind="deletion", values=(0.01, 0.02, 0.03, 0.05, 0.07, 0.1, 0.15, 0.25, 0.5),
                          steps=DELETION_BUDGET, start=499)
    return ScanConfig(kind="deletion", values=(0.1, 0.25, 0.5), start=200)


def scans(scale: str) -> tuple[ScanNeed, ...]:
    """The scans P1's claims train at this scale: the deletion scan on a grokked wd-1 run of the dual sweep."""
    scan = deletion_scan(scale)
    return () if scan is None else (ScanNeed("deletion", "dual", lambda c: c.optim.wd == 1.0, scan),)


def claim_deletion(ctx: ClaimContext) -> ClaimRow:
    """Orthogonal gradient deletion (top-20 trajectory PCs): 10–25 % stops grokking, 50 % recovers (wd 1)."""
    table, spec = _dual(ctx)
    base = table[(table.wd == 1.0)]
    base = base[
        base[[c for c in base.columns if c.startswith("grok_step.") and c.count(".") == 1]]
        .notna()
        .all(axis=1)
    ]
    if base.empty:
        return _row(ctx, "orthogonal deletion: 10–25 % → no grokking, 50 % recovers",
                    "f 10–25 % → no grokking; 50 % groks (+163 %)", "no grokked wd-1 base run",
                    INCONCLUSIVE, "", spec, {})
    base = base.sort_values("seed", key=lambda s: s != 42)  # seed 42, as the authors' scan
    run = RunDir(base.path.iloc[0])
    scan = scans(ctx.scale)[0].scan
    df, out = stored_scan(ctx, run, scan)
    per = df.groupby("value").grokked.all()
    step = df.groupby("value").grok_step.max()  # the last task's grok step (both tasks grokked)
    delay = df.groupby("value").delay_pct.max()
    return _row(
        ctx,
        "orthogonal deletion: 10–25 % → no grokking, 50 % recovers",
        "f ∈ {10, 15, 25} % → no grokking within 50k; f = 50 % groks (+163 %, 36.9k); f < 10 % groks "
        "later (wd 1, seed 42)",
        "; ".join(f"f {v:g}: " + (f"grokked at {fmt(float(step[v]))} ({delay[v]:+.0f} %)" if g else "no grok")
                  for v, g in per.items())
        + f" (base {run.path.name}, budget {scan.steps or 'base run'})",
        deletion_verdict({float(v): bool(g) for v, g in per.items()}),
        "every scanned f as the paper found it (10–25 %: no grok; 50 % and < 10 %: grok); partly ≥ half",
        spec,
        {"rows": df.to_dict("records")},
        note=f"scan stored in {out}",
    )
