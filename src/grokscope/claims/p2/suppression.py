"""P2's causal test: suppressing the gradient transverse to the execution subspace."""

from __future__ import annotations

import numpy as np

from grokscope.claims.cache import ScanNeed, stored_scan
from grokscope.claims.context import ClaimContext, describe_spec, sweep_table
from grokscope.claims.p2.sweeps import single_spec
from grokscope.claims.rows import fmt
from grokscope.claims.rows import make_row as _row
from grokscope.claims.verdicts import INCONCLUSIVE, ClaimRow, combine, verdict_count
from grokscope.config import RunConfig
from grokscope.experiments.intervention_scan import ScanConfig
from grokscope.store import RunDir


def _is_add(cfg: RunConfig) -> bool:
    return cfg.data.tasks == ("add",)


def scans(scale: str) -> tuple[ScanNeed, ScanNeed]:
    """The suppression scans on a grokked add run of the single sweep: the execution basis at s = 1 and a
    random rank-16 basis at s = 0.5, from step 500 (200 at the quick scale)."""
    start = 200 if scale == "quick" else 500
    return (ScanNeed("suppression exec s=1", "single", _is_add,
                     ScanConfig(kind="suppression", values=(1.0,), start=start)),
            ScanNeed("suppression random s=0.5", "single", _is_add,
                     ScanConfig(kind="suppression", values=(0.5,), start=start, basis="random", k=16)))


def claim_suppression(ctx: ClaimContext) -> ClaimRow:
    """Suppressing gradient motion off the execution subspace (s = 1) stops grokking; a random rank-16 basis
    at intermediate s does not."""
    spec = ctx.spec("single", single_spec)
    t = sweep_table(ctx, spec)
    base = t[(t.tasks == "add") & t["grok_step.add"].notna()]
    if base.empty:
        return _row(
            ctx,
            "suppression s = 1 → no grokking",
            "s = 1: no run groks; random basis: no effect",
            "no grokked add base run",
            INCONCLUSIVE,
            "",
            spec,
            {},
        )
    run = RunDir(base.path.iloc[0])
    exec_scan, random_scan = (need.scan for need in scans(ctx.scale))
    start = exec_scan.start
    ex, where = stored_scan(ctx, run, exec_scan)
    rnd, _ = stored_scan(ctx, run, random_scan)
    v1 = verdict_count(int((~ex.grokked.astype(bool)).sum()), len(ex))
    delay = rnd.delay_pct.astype(float)
    ok_rnd = bool(rnd.grokked.astype(bool).all() and np.all(np.abs(delay) <= 25))
    v2 = verdict_count(int(ok_rnd), 1)
    return _row(
        ctx,
        "suppression s = 1 → no grokking; random basis no effect",
        "s = 1: no run groks; random rank-16 at intermediate s: no effect",
        f"exec basis s=1: {'grokked' if ex.grokked.any() else 'no grok'}; random rank-16 s=0.5: "
        f"{'grokked' if rnd.grokked.all() else 'no grok'}, delay {fmt(float(delay.mean()))}%",
        combine([v1, v2]),
        "s = 1 run does not grok; random run groks within ±25% of the base step",
        describe_spec(spec) + f"; scans of {run.path.name} from step {start}",
        {},
        note=f"scans stored in {where}",
    )
