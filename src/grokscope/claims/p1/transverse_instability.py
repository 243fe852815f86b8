"""P1's geometry: PC1% of the attention trajectories, integrability ρ, defect onset, λ_min."""

from __future__ import annotations

from typing import Any

import numpy as np

from grokscope.analyses import missing_analyses, run_analysis
from grokscope.analyses.phase import phase_table
from grokscope.claims.context import ClaimContext, sweep_table
from grokscope.claims.p1.sweeps import _dual, _runs, dual_spec, tri_spec
from grokscope.claims.rows import fmt, rho_row
from grokscope.claims.rows import make_row as _row
from grokscope.claims.verdicts import INCONCLUSIVE, ClaimRow, combine, verdict_count, verdict_range, verdict_value
from grokscope.store import RunDir

PAPER_LAMBDA_MIN = {1.0: (-63.0, 12.0), 0.5: (-36.0, 6.0), 0.1: (-17.0, 8.0), 0.0: (-50.0, 16.0)}
PAPER_SEEDS = 3  # the paper's λ_min mean ± sd is over three seeds
# Fresh 512-example samples per run at the cpu scale (wd 1: every seed; wd 0.5: seed 42): the depth's draw-to-draw sd
# (~41 at wd 1) is 3x the paper's seed sd, so one draw per run cannot score the row (docs/notes/p1-lambda-min.md).
CPU_HESSIAN_DRAWS = 6


# ---- geometry ------------------------------------------------------------------------------------------


def _pc1(ctx: ClaimContext, spec: dict[str, Any], lo: float, hi: float, label: str) -> ClaimRow:
    table = sweep_table(ctx, spec)
    sel = table[table.wd == 1.0] if "summary.pc1_mean" in table else table.iloc[0:0]
    v = sel["summary.pc1_mean"].astype(float).to_numpy() if len(sel) else np.array([])
    v = v[np.isfinite(v)]
    mean = float(v.mean()) if len(v) else None
    return _row(
        ctx,
        f"PC1% of attention trajectories ({label}, wd 1)",
        f"{lo:g}–{hi:g}%",
        f"{fmt(mean)}% (mean of {len(v)} runs; per run {', '.join(f'{x:.1f}' for x in v)})",
        verdict_range(mean, lo, hi, 10.0),
        f"inside {lo:g}–{hi:g}%; partly within ±10 points",
        spec,
        {"pc1_mean": v.tolist()},
    )


def claim_pc1_dual(ctx: ClaimContext) -> ClaimRow:
    """PC1% of attention-weight trajectories, dual task: 55–77%."""
    return _pc1(ctx, ctx.spec("dual", dual_spec), 55, 77, "dual")


def claim_pc1_tri(ctx: ClaimContext) -> ClaimRow:
    """PC1% of attention-weight trajectories, tri task: 49–65%."""
    return _pc1(ctx, ctx.spec("tri", tri_spec), 49, 65, "tri")


def claim_rho(ctx: ClaimContext) -> ClaimRow:
    """Integrability ρ ≈ 1.000 for wd > 0 (defect orthogonal to the execution basis), against its null."""
    table, spec = _dual(ctx)
    return rho_row(ctx, table[table.wd > 0], spec, "integrability ρ ≈ 1 for wd > 0")


def claim_defect_precedes(ctx: ClaimContext) -> ClaimRow:
    """Defect onset precedes grokking in every dual-task condition (P1 Table 5: post-hoc envelope detector)."""
    table, spec = _dual(ctx)
    col = "defect.lead_envelope"
    t = table[(table.wd > 0) & table["defect.grok_first"].notna()] if "defect.grok_first" in table else \
        table.iloc[0:0]
    leads = t[col].astype(float).tolist() if col in t else []
    n = len(leads)
    pos = sum(1 for x in leads if np.isfinite(x) and x > 0)
    missing = sum(1 for x in leads if not np.isfinite(x))
    per = "; ".join(f"wd {r.wd:g} s{r.seed}: {fmt(x)}" for r, x in zip(t.itertuples(), leads, strict=True))
    return _row(
        ctx,
        "defect onset precedes grokking (dual)",
        "every condition (P1: 42/42 = 15 dual + 27 tri, Table 5 leads)",
        f"{pos}/{n} grokked runs with lead > 0 ({missing} without a detected onset); {per}",
        verdict_count(pos, n),
        "every grokked wd > 0 run: first task's grok step − envelope onset > 0; partly ≥ half",
        spec,
        {"leads": leads},
        note="onset: defect_wd_replot.py's envelope (K = 9 defects at ≤ 120 stored snapshots, centred "
        "rolling max w 5 of log10 D, baseline median of the first max(3, 25 %), 5×); lead to the first "
        "task's 98 %×3 grok step",
    )


def depth_sampling_test(depths: list[float], paper_mean: float, paper_sd: float, paper_n: int = PAPER_SEEDS
                        ) -> dict[str, float]:
    """Is the paper's mean depth distinguishable from ours? Our fresh-sample depths (every draw of every seed: each
    is one realisation of what the paper's method reports for one run) against the paper's mean of `paper_n` seeds:
    z = (ours − paper) / √(sd²/n + paper_sd²/paper_n). |z| ≤ 2: indistinguishable at ~95 %."""
    d = np.asarray(depths, dtype=float)
    d = d[np.isfinite(d)]
    if len(d) < 2:
        raise ValueError(f"need at least 2 fresh-sample depths, got {len(d)}")
    se = float(np.sqrt(d.var(ddof=1) / len(d) + paper_sd ** 2 / paper_n))
    mean = float(d.mean())
    return {"mean": mean, "sd": float(d.std(ddof=1)), "n": int(len(d)), "se": se, "z": (mean - paper_mean) / se}


def _fresh_depths(table: Any, wd: float) -> list[float]:
    """Every stored fresh-sample depth (`analyze --hessian-draws`) of the runs at `wd`."""
    out: list[float] = []
    for path in table[table.wd == wd].path:
        res = RunDir(path).analyses().get("hessian") or {}
        out += list((res.get("depth_draws") or {}).get("depths", []))
    return out


def claim_lambda_min(ctx: ClaimContext) -> ClaimRow:
    """Curvature depth λ_min (dual, total loss) per wd: −63 ± 12 at wd 1 … −50 ± 16 at wd 0. At the cpu scale the
    paper's method is repeated under fresh 512-example samples (the scripts draw one per call), and the row is
    scored on that random quantity: the paper's mean against ours within 2 standard errors."""
    table, spec = _dual(ctx, with_wd0=True)
    if ctx.scale == "cpu":  # Lanczos at ≤ 30 checkpoints costs ~15 CPU-min per run and draw
        for r in table.itertuples():
            draws = CPU_HESSIAN_DRAWS if (r.wd == 1.0 or (r.wd == 0.5 and r.seed == 42)) else 0
            if r.seed != 42 and not draws:
                continue
            run = RunDir(r.path)
            stored = run.analyses().get("hessian") or {}
            if missing_analyses(run, ["hessian"]) or (draws and "depth_draws" not in stored):
                run_analysis(run, "hessian", ctx.device, draws=draws)
        fixed = table[table.seed == 42]
    else:
        fixed = table
    pt = phase_table(_runs(fixed))
    parts, vs, tests = [], [], {}
    for r in pt.itertuples():
        if r.wd not in PAPER_LAMBDA_MIN:
            parts.append(f"wd {r.wd:g}: {fmt(r.lambda_min)} (no paper value)")
            continue
        mu, sd = PAPER_LAMBDA_MIN[r.wd]
        depths = _fresh_depths(table, r.wd) if ctx.scale == "cpu" else []
        if len(depths) >= 2:
            t = depth_sampling_test(depths, mu, sd)
            tests[r.wd] = t
            vs.append(verdict_value(t["mean"], mu, 2 * t["se"]))
            parts.append(f"wd {r.wd:g}: {fmt(t['mean'])} ± {fmt(t['sd'])} over {t['n']} fresh samples (z {t['z']:.2f}; "
                         f"seed 42's fixed sample {fmt(r.lambda_min)}; paper {mu:g} ± {sd:g})")
        else:
            vs.append(verdict_value(r.lambda_min if np.isfinite(r.lambda_min) else None, mu, sd))
            parts.append(f"wd {r.wd:g}: {fmt(r.lambda_min)} (paper {mu:g} ± {sd:g})")
    return _row(
        ctx,
        "curvature depth λ_min per wd",
        "; ".join(f"wd {k:g}: {m:g} ± {s:g}" for k, (m, s) in PAPER_LAMBDA_MIN.items()),
        "; ".join(parts),
        combine(vs) if vs else INCONCLUSIVE,
        "per wd with a paper value: with fresh-sample depths, |ours − paper| ≤ 2 SE (√(sd²/n + sd_paper²/3)) → "
        "reproduced, 4 SE → partly; else within 1 seed-sd → reproduced, 2 sd → partly; combined",
        spec,
        {"per_wd": pt[["wd", "lambda_min", "lambda_min_sd"]].to_dict("records"),
         "fresh_samples": {str(k): v for k, v in tests.items()}},
    )
