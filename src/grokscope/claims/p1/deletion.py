"""P1's orthogonal deletion: the scans of deletion fractions (dual and tri-task) and their verdicts."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from grokscope.claims.cache import ScanNeed, stored_scan
from grokscope.claims.context import ClaimContext, sweep_table
from grokscope.claims.p1.sweeps import _dual, tri_spec
from grokscope.claims.rows import fmt
from grokscope.claims.rows import make_row as _row
from grokscope.claims.verdicts import INCONCLUSIVE, ClaimRow, verdict_count
from grokscope.config import RunConfig
from grokscope.experiments.intervention_scan import ScanConfig
from grokscope.store import RunDir

# P1's deletion result (ortho_fine_scan.py, dual wd 1 seed 42, 50k budget): these fractions stop grokking;
# 50 % groks again (+163 %, 36.9k), smaller fractions grok with a delay.
DELETION_FAIL = (0.1, 0.15, 0.25)
DELETION_RECOVER = 0.5
DELETION_BUDGET = 50_000
# The tri-task scan (the same script's tri-task half: seed 42, wd 1, 60k budget, fractions 1–25 %) plus 50 %,
# the fraction at which P1 reports the dual model recovering and the tri-task model not.
TRI_DELETION_VALUES = (0.01, 0.02, 0.03, 0.05, 0.07, 0.1, 0.15, 0.25, 0.5)
TRI_DELETION_BUDGET = 60_000


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


def tri_deletion_verdict(grokked: dict[float, bool]) -> str:
    """P1's tri-task result: every f ≥ 10 % stops grokking (50 % included: no recovery, unlike the dual
    model); f < 10 % groks (later). Each scanned fraction is one case."""
    ok = [(not g) if f >= min(DELETION_FAIL) - 1e-12 else bool(g) for f, g in grokked.items()]
    return verdict_count(sum(ok), len(ok))


def deletion_scan(scale: str) -> Any:
    """The scan of this scale: P1's fractions and 50k budget (ortho_fine_scan.py), from the authors' step
    500 (the trainer's 0-based step 499), at the paper and cpu scales; the quick scale keeps its base budget."""
    if scale in ("paper", "cpu"):
        return ScanConfig(kind="deletion", values=(0.01, 0.02, 0.03, 0.05, 0.07, 0.1, 0.15, 0.25, 0.5),
                          steps=DELETION_BUDGET, start=499)
    return ScanConfig(kind="deletion", values=(0.1, 0.25, 0.5), start=200)


def tri_deletion_scan(scale: str) -> ScanConfig | None:
    """The tri-task scan at the paper and cpu scales (60k budget, from step 499 as the dual scan); the quick
    scale has none (its tri runs do not all grok every task)."""
    if scale in ("paper", "cpu"):
        return ScanConfig(kind="deletion", values=TRI_DELETION_VALUES, steps=TRI_DELETION_BUDGET, start=499)
    return None


def _wd1(cfg: RunConfig) -> bool:
    """The runs P1's deletion scans start from: weight decay 1."""
    return cfg.optim.wd == 1.0


def _dual_need(scale: str) -> ScanNeed:
    """The deletion scan on a grokked wd-1 run of the dual sweep (every scale)."""
    return ScanNeed("deletion", "dual", _wd1, deletion_scan(scale))


def _tri_need(scale: str) -> ScanNeed | None:
    """The tri-task scan on a grokked run of the tri sweep (None: not at this scale)."""
    tri = tri_deletion_scan(scale)
    return None if tri is None else ScanNeed("deletion_tri", "tri", _wd1, tri)


def scans(scale: str) -> tuple[ScanNeed, ...]:
    """The scans P1's claims train at this scale: the dual deletion scan, and at the paper and cpu scales the
    tri-task one."""
    return tuple(n for n in (_dual_need(scale), _tri_need(scale)) if n is not None)


def _scan_row(ctx: ClaimContext, table: pd.DataFrame, spec: dict[str, Any], need: ScanNeed, claim: str,
              paper: str, verdict: Callable[[dict[float, bool]], str], rule: str) -> ClaimRow:
    """A deletion row: the stored scan of the sweep's grokked wd-1 run (seed 42 first, as the authors'
    scans), each fraction's grok step (its last task's) and delay, scored by `verdict`."""
    base = table[(table.wd == 1.0)]
    base = base[
        base[[c for c in base.columns if c.startswith("grok_step.") and c.count(".") == 1]]
        .notna()
        .all(axis=1)
    ]
    if base.empty:
        return _row(ctx, claim, paper, "no grokked wd-1 base run", INCONCLUSIVE, "", spec, {})
    base = base.sort_values("seed", key=lambda s: s != 42)
    run = RunDir(base.path.iloc[0])
    df, out = stored_scan(ctx, run, need.scan)
    per = df.groupby("value").grokked.all()
    step = df.groupby("value").grok_step.max()  # the last task's grok step (every task grokked)
    delay = df.groupby("value").delay_pct.max()
    return _row(
        ctx,
        claim,
        paper,
        "; ".join(f"f {v:g}: " + (f"grokked at {fmt(float(step[v]))} ({delay[v]:+.0f} %)" if g else "no grok")
                  for v, g in per.items())
        + f" (base {run.path.name}, budget {need.scan.steps or 'base run'})",
        verdict({float(v): bool(g) for v, g in per.items()}),
        rule,
        spec,
        {"rows": df.to_dict("records")},
        note=f"scan stored in {out}",
    )


def claim_deletion(ctx: ClaimContext) -> ClaimRow:
    """Orthogonal gradient deletion (top-20 trajectory PCs): 10–25 % stops grokking, 50 % recovers (wd 1)."""
    table, spec = _dual(ctx)
    return _scan_row(
        ctx, table, spec, _dual_need(ctx.scale),
        "orthogonal deletion: 10–25 % → no grokking, 50 % recovers",
        "f ∈ {10, 15, 25} % → no grokking within 50k; f = 50 % groks (+163 %, 36.9k); f < 10 % groks "
        "later (wd 1, seed 42)",
        deletion_verdict,
        "every scanned f as the paper found it (10–25 %: no grok; 50 % and < 10 %: grok); partly ≥ half",
    )


def claim_deletion_tri(ctx: ClaimContext) -> ClaimRow:
    """Orthogonal deletion on the tri-task model: ≥ 10 % stops grokking and, unlike the dual model, 50 % does
    not recover (wd 1)."""
    claim = "tri-task deletion: ≥ 10 % → no grokking, no recovery at 50 %"
    paper = "f ≥ 10 % → no grokking within 60k (the tri-task model does not recover); f < 10 % groks (wd 1, seed 42)"
    need = _tri_need(ctx.scale)
    spec = ctx.spec("tri", tri_spec)
    if need is None:
        return _row(ctx, claim, paper, f"not scanned at the {ctx.scale} scale (its tri runs do not all grok)",
                    INCONCLUSIVE, "", spec, {})
    return _scan_row(ctx, sweep_table(ctx, spec), spec, need, claim, paper, tri_deletion_verdict,
                     "every scanned f as the paper states it (≥ 10 %, 50 % included: no grok; < 10 %: grok); "
                     "partly ≥ half")
