"""P2's defect onset and lead: onset before grokking, concurrent at high lr, peak ratio, lead power law."""

from __future__ import annotations

import numpy as np
import pandas as pd

from grokscope.claims.context import ClaimContext, describe_spec
from grokscope.claims.p2.sweeps import (
    ALPHA_PARTLY,
    ALPHA_TOL,
    GROKKING,
    NEVER,
    PAPER_LEAD_1E3,
    PAPER_LEAD_ALPHA,
    PAPER_LEAD_FRACTION,
    _all_single,
    _lr_points,
    lr_spec,
    single_spec,
)
from grokscope.claims.rows import fmt, grok_value
from grokscope.claims.rows import make_row as _row
from grokscope.claims.verdicts import (
    INCONCLUSIVE,
    NOT_REPRODUCED,
    PARTLY,
    ClaimRow,
    combine,
    verdict_bool,
    verdict_count,
    verdict_range,
    verdict_value,
)
from grokscope.geometry.onset import fit_power_law


def claim_defect_precedes(ctx: ClaimContext) -> ClaimRow:
    """Defect onset precedes the first ≥ 90 % evaluation in all 12 runs at lr 1e-3 (lead 600–1600, mean 1117)."""
    pts = _lr_points(ctx)
    at = pts[np.isclose(pts.lr, 1e-3)] if len(pts) else pts
    leads = at.lead.to_numpy(dtype=float) if len(at) else np.array([])
    pos = int(np.sum(np.isfinite(leads) & (leads > 0)))
    missing = int(np.sum(~np.isfinite(leads)))
    ok = leads[np.isfinite(leads)]
    lo, hi, mean_p = PAPER_LEAD_1E3
    mean = float(ok.mean()) if len(ok) else None
    v = combine([verdict_count(pos, len(leads)), verdict_range(mean, lo, hi, (hi - lo) / 2)])
    return _row(
        ctx,
        "defect onset precedes grokking (lr 1e-3)",
        f"12/12 runs (4 ops × 3 seeds), lead {lo}–{hi}, mean {mean_p}",
        f"{pos}/{len(leads)} runs with lead > 0 ({missing} without an onset); mean lead {fmt(mean)}, range "
        f"{fmt(float(ok.min()) if len(ok) else None)}–{fmt(float(ok.max()) if len(ok) else None)}",
        v,
        f"every run lead > 0 and the mean lead in [{lo}, {hi}] (partly within ±{(hi - lo) // 2})",
        describe_spec(ctx.spec("single", single_spec)),
        {"leads": at.to_dict("records")},
        note="t_grok = first eval ≥ 90 %; onset = first D > 10 × max(median of the first 3, 0.1) and D > 20 "
        "from the third measurement (K = 5 inline defects every 100 steps)",
    )


def claim_onset_concurrent(ctx: ClaimContext) -> ClaimRow:
    """At lr ≥ 3e-3 the onset is concurrent with grokking: the lead shrinks with lr (most predictive at low lr)."""
    pts = _lr_points(ctx)
    by = {lr: g.lead.dropna().to_numpy() for lr, g in pts.groupby("lr")} if len(pts) else {}
    med = {lr: float(np.median(v)) for lr, v in by.items() if len(v)}
    low = [m for lr, m in med.items() if lr <= 1e-3 + 1e-12]
    high = [m for lr, m in med.items() if lr >= 3e-3 - 1e-12]
    ok = None if not (low and high) else max(high) < min(low)
    return _row(
        ctx,
        "onset concurrent at lr ≥ 3e-3 (lead shrinks with lr)",
        "lr 1e-4: ~33k lead; 1e-3: ~1.4k; 1e-2: concurrent",
        "; ".join(f"lr {lr:g}: median lead {fmt(m)} ({len(by[lr])} runs)" for lr, m in sorted(med.items())),
        verdict_bool(ok),
        "every lr ≥ 3e-3 has a smaller median lead than every lr ≤ 1e-3",
        describe_spec(ctx.spec("lr", lr_spec)),
        {"median_lead": {str(k): v for k, v in med.items()}},
    )


def _ratio_verdict(m: float | None, lo: float, hi: float) -> str:
    """A ratio inside [lo, hi] → reproduced; inside [lo/2, 2·hi] → partly (ratios compare on a log scale)."""
    if m is None or not np.isfinite(m) or m <= 0:
        return INCONCLUSIVE
    return verdict_range(float(np.log10(m)), np.log10(lo), np.log10(hi), float(np.log10(2.0)))


def claim_defect_ratio(ctx: ClaimContext) -> ClaimRow:
    """Grokking ops reach 500–2000× their baseline defect; non-grokking ops only 30–50×."""
    t, spec = _all_single(ctx)
    col = "summary.defect_peak_ratio"
    if col not in t:
        return _row(
            ctx,
            "defect peak / baseline",
            "grokking 500–2000×, non-grokking 30–50×",
            "no defect table",
            INCONCLUSIVE,
            "",
            spec,
            {},
        )
    g = t.loc[t.tasks.isin(GROKKING), col].astype(float).to_numpy()
    n = t.loc[t.tasks.isin(NEVER), col].astype(float).to_numpy()
    gm = float(np.nanmedian(g)) if np.isfinite(g).any() else None
    nm = float(np.nanmedian(n)) if np.isfinite(n).any() else None
    v1 = _ratio_verdict(gm, 500, 2000)
    v2 = _ratio_verdict(nm, 30, 50)
    sep = gm is not None and nm is not None and gm > 3 * nm
    verdict = combine([v1, v2])
    if verdict == NOT_REPRODUCED and sep:
        verdict = PARTLY
    return _row(
        ctx,
        "defect peak / baseline, grokking vs non-grokking ops",
        "grokking 500–2000×, non-grokking 30–50×",
        f"grokking median {fmt(gm)}× ({len(g)} runs), non-grokking median {fmt(nm)}× ({len(n)} runs)",
        verdict,
        "each range; partly within a factor 2 of it (log scale); both outside but grokking > 3× "
        "non-grokking → partly",
        spec,
        {"grokking": g.tolist(), "non_grokking": n.tolist()},
    )


def claim_never_grok(ctx: ClaimContext) -> ClaimRow:
    """a²+ab+b² and a³+ab never grok."""
    t, spec = _all_single(ctx)
    sel = t[t.tasks.isin(NEVER)]
    if sel.empty:
        return _row(
            ctx, "sq_ab / cube_ab never grok", "never grok", "not in the sweep", INCONCLUSIVE, "", spec, {}
        )
    grokked = [grok_value(sel.loc[i, f"grok_step.{sel.loc[i, 'tasks']}"]) is not None for i in sel.index]
    acc = [float(sel.loc[i, f"test_acc.{sel.loc[i, 'tasks']}"]) for i in sel.index]
    k = sum(not x for x in grokked)
    return _row(
        ctx,
        "sq_ab / cube_ab never grok",
        "never grok (within 30k steps)",
        f"{k}/{len(grokked)} runs did not grok ({', '.join(sorted(set(sel.tasks)))}); final test acc "
        f"{', '.join(f'{a:.2f}' for a in acc)}",
        verdict_count(k, len(grokked)),
        "no run of these ops groks within budget; partly ≥ half",
        spec,
        {"grokked": grokked, "acc": acc},
    )


def lead_fractions(pts: pd.DataFrame) -> dict[float, float]:
    """Mean lead / t_grok per lr over the points given (P2 v2 §4.6's per-lr "predictive window")."""
    if not len(pts):
        return {}
    return {float(lr): float((g.lead / g.t_grok).mean()) for lr, g in pts.groupby("lr")}


def _fractions_text(frac: dict[float, float]) -> str:
    paper = PAPER_LEAD_FRACTION
    return ", ".join(f"{lr:g} {f:.2f}" + (f" (paper {paper[lr]:.2f})" if lr in paper else "")
                     for lr, f in frac.items())


# the lrs of P2's sweep a scale leaves to the paper scale
_PAPER_ONLY_LRS = {"cpu": "lr 3e-5 on seeds 137 and 2024 (300k steps)", "quick": "lr 3e-5 and 1e-4 (150k–300k steps)"}


def claim_lead_power_law(ctx: ClaimContext) -> ClaimRow:
    """Lead time Δt ∝ t_grok^α across the lr sweep, α = 1.27 ± 0.03 (R² 0.97, n = 43)."""
    spec = ctx.spec("lr", lr_spec)
    pts = _lr_points(ctx)
    pts = pts[np.isfinite(pts.lead) & (pts.lead > 0)] if len(pts) else pts
    a, se = PAPER_LEAD_ALPHA
    frac = lead_fractions(pts)
    try:
        fit = fit_power_law(pts.t_grok, pts.lead)
    except ValueError as e:
        return _row(ctx, "lead ∝ t_grok^α", f"α = {a} ± {se} (R² 0.97, n 43)", f"no fit: {e}",
                    INCONCLUSIVE, "", spec, {"points": pts.to_dict("records")})
    return _row(
        ctx,
        "lead ∝ t_grok^α (lr sweep)",
        f"α = {a} ± {se} (R² 0.97, n 43)",
        f"α = {fit.alpha:.2f} ± {fit.alpha_se:.2f} (R² {fit.r2:.2f}, n {fit.n}; lr "
        f"{', '.join(f'{x:g}' for x in sorted(set(pts.lr)))}); lead fraction {_fractions_text(frac)}",
        verdict_value(fit.alpha, a, ALPHA_TOL, ALPHA_PARTLY / ALPHA_TOL),
        f"|Δα| ≤ {ALPHA_TOL} (fixed in advance); partly ≤ {ALPHA_PARTLY}",
        spec,
        {"points": pts.to_dict("records"), "alpha": fit.alpha, "alpha_se": fit.alpha_se, "r2": fit.r2,
         "lead_fraction": frac},
        note="" if ctx.scale == "paper" else f"paper-only: {_PAPER_ONLY_LRS[ctx.scale]}; α depends on which lrs "
        "enter",
    )
