"""P1's reconstruction threshold k* and the fragility of the final model (PC1 alone, SVD, pruning, scaling)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from grokscope.claims.context import ClaimContext
from grokscope.claims.p1.sweeps import _dual
from grokscope.claims.rows import finite_values, fmt
from grokscope.claims.rows import make_row as _row
from grokscope.claims.verdicts import ClaimRow, verdict_range
from grokscope.store import FRAGILITY_TABLE, RECONSTRUCTION_TABLE, RunDir

# The compression scripts (postgrok_compression.py:93–121, snapshot_decomposition.py:227–246) load only
# multitask_s{seed}.pt, i.e. train_multitask.py:48's default WEIGHT_DECAY = 1.0: SVD / pruning / scaling are
# scored on the wd-1 runs (docs/notes/p1-fragility.md). pca_threshold_scan.py:35–41 (PC1 alone, k*) covers
# every wd and so does its claim.
FRAGILITY_WD = 1.0


def claim_k_star(ctx: ClaimContext) -> ClaimRow:
    """Reconstruction threshold k* = 4–10 trajectory PCs (dual mean 5.0–8.3)."""
    table, spec = _dual(ctx)
    col = "fragility.k_star"
    n_run = int((table.wd > 0).sum()) if col in table else 0
    v, mean = finite_values(table[table.wd > 0], col)
    return _row(
        ctx,
        "reconstruction threshold k*",
        "k* 4–10 (dual mean 5.0–8.3)",
        f"mean k* = {fmt(mean)} ({len(v)}/{n_run} runs reach 90% within 20 PCs; {v.tolist()})",
        verdict_range(mean, 4, 10, 2),
        "mean in [4, 10]; partly within ±2",
        spec,
        {"k_star": v.tolist()},
    )


def _chance_verdict(acc: float | None, p: int) -> str:
    """Near chance (≤ 3/p) → reproduced; lost generalisation (< 0.5) → partly; else not reproduced."""
    return verdict_range(acc, 0.0, 3.0 / p, 0.5 - 3.0 / p)


def _final_runs(table: pd.DataFrame, wd: float | None = None, exclude: bool = False) -> list[RunDir]:
    """Grokked wd > 0 runs of a sweep table (the fragility analyses are of a just-grokked model); when `wd` is
    given, only the runs at that weight decay (or, with `exclude`, only the others)."""
    cols = [c for c in table.columns if c.startswith("grok_step.") and c.count(".") == 1]
    ok = table[cols].notna().all(axis=1) & (table.wd > 0)
    if wd is not None:
        at = np.isclose(table.wd.astype(float), wd)
        ok &= ~at if exclude else at
    return [RunDir(p) for p in table.loc[ok, "path"]]


def claim_pc1_alone(ctx: ClaimContext) -> ClaimRow:
    """Reconstructing with PC1 alone (89–97% of the variance) gives chance accuracy."""
    table, spec = _dual(ctx)
    accs, cums, p = [], [], int(table.p.iloc[0])
    for run in _final_runs(table):
        if run.has_table(RECONSTRUCTION_TABLE):
            rec = run.table(RECONSTRUCTION_TABLE)
            k1 = rec[rec.k == 1]
            accs.append(float(k1.test_acc.mean()))
            cums.append(float(k1.cumulative.iloc[0]))
    mean = float(np.mean(accs)) if accs else None
    return _row(
        ctx,
        "PC1 alone gives chance accuracy",
        "chance test acc with PC1 (89–97% of variance)",
        f"test acc {fmt(mean)} at k = 1 (chance {1 / p:.3f}); PC1 variance "
        f"{', '.join(f'{c:.0%}' for c in cums)}",
        _chance_verdict(mean, p),
        f"acc ≤ 3/p = {3 / p:.3f} → reproduced; < 0.5 → partly",
        spec,
        {"acc": accs, "cumulative": cums},
    )


def fragility_accs(runs: list[RunDir], kind: str, values: tuple[float, ...]) -> list[float]:
    """Test accuracy (mean over tasks) of each run × value of one fragility edit, from the stored tables."""
    accs = []
    for run in runs:
        if not run.has_table(FRAGILITY_TABLE):
            continue
        fr = run.table(FRAGILITY_TABLE)
        for v in values:
            sel = fr[(fr.kind == kind) & np.isclose(fr.value, v)]
            if len(sel):
                accs.append(float(sel.test_acc.mean()))
    return accs


def _fragility(ctx: ClaimContext, kind: str, values: tuple[float, ...], claim: str, paper: str) -> ClaimRow:
    """Scored on the wd-1 runs only, the scripts' scope (FRAGILITY_WD); the other wd's mean is shown."""
    table, spec = _dual(ctx)
    p = int(table.p.iloc[0])
    accs = fragility_accs(_final_runs(table, FRAGILITY_WD), kind, values)
    rest = fragility_accs(_final_runs(table, FRAGILITY_WD, exclude=True), kind, values)
    mean = float(np.mean(accs)) if accs else None
    rest_mean = float(np.mean(rest)) if rest else None
    return _row(
        ctx,
        claim,
        paper,
        f"test acc {fmt(mean)} at wd {FRAGILITY_WD:g}, the scripts' runs (mean over {len(accs)} run×value; "
        f"chance {1 / p:.3f}); other wd > 0: {fmt(rest_mean)} over {len(rest)}",
        _chance_verdict(mean, p),
        f"acc ≤ 3/p = {3 / p:.3f} → reproduced; < 0.5 → partly",
        spec,
        {"acc": accs, "acc_other_wd": rest},
    )


def claim_svd_half(ctx: ClaimContext) -> ClaimRow:
    """SVD truncation of every ΔW to half its rank → chance."""
    table, _ = _dual(ctx)
    d = int(RunDir(table.path.iloc[0]).config().model.d_model)  # the sweep's model width
    return _fragility(ctx, "svd", (d // 2,), f"SVD rank {d // 2} of {d} → chance", "rank 64 of 128 → chance")


def claim_prune_half(ctx: ClaimContext) -> ClaimRow:
    """Keeping the top 50% of |Δθ| → chance."""
    return _fragility(ctx, "prune", (0.5,), "prune Δθ to top 50% → chance", "top 50% → chance")


def claim_scale(ctx: ClaimContext) -> ClaimRow:
    """θ₀ + s·Δθ with s = 0.95 or 1.05 → chance."""
    return _fragility(
        ctx, "scale", (0.95, 1.05), "scale Δθ by 0.95 / 1.05 → chance", "s = 0.95 / 1.05 → chance"
    )
