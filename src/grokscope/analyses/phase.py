"""Weight-decay phase structure (P1 §3): how grok step, curvature depth, k* and defect lead move with wd.

`phase_runs` reads one row per stored run (grok step per task, λ_min, k*, defect lead per task), from the
run's summary.json and the analyses a sweep stored in analyses.json (`summary`, `hessian`, `fragility`);
nothing is recomputed. `phase_table` aggregates them per weight decay and labels each wd's regime;
`phase_fit` fits t_grok ∝ wd^−α over the wd > 0 rows.

Regimes (our definitions; P1 names a fast regime, a slow regime and the no-decay failure):
- `no grokking`: no run at this wd groks every task within its budget (P1: wd 0 never groks);
- `partial`: some seeds grok every task, some do not;
- `fast`: every seed groks, and the mean grok step is within `FAST_FACTOR` (2×) of the fastest wd's;
- `slow`: every seed groks, more than 2× slower than the fastest wd (P1: wd ≤ 0.3).
The run's grok step is the last of its tasks' grok steps (the step at which the whole run has grokked).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from os import PathLike
from typing import Any

import numpy as np
import pandas as pd

from grokscope.formatting import num
from grokscope.geometry.onset import PowerLawFit, fit_power_law
from grokscope.store import FRAGILITY, RunDir, find_runs, read_json

__all__ = ["FAST_FACTOR", "phase_runs", "phase_table", "phase_fit", "regime", "no_decay_failure"]

FAST_FACTOR = 2.0


def _f(x: Any) -> float:
    """A table cell: the number, NaN where it is missing (see `formatting.num`)."""
    v = num(x)
    return math.nan if v is None else v


def _run_row(run: RunDir) -> dict[str, Any] | None:
    """One run's phase quantities (None for a run without summary.json)."""
    if not run.has_summary():
        return None
    cfg, s = run.config(), run.summary()
    an = run.analyses()
    grok = s.get("grok_step") or {}
    tasks = list(cfg.data.tasks)
    row: dict[str, Any] = {
        "name": cfg.name,
        "tasks": "+".join(tasks),
        "wd": cfg.optim.wd,
        "lr": cfg.optim.lr,
        "seed": cfg.seed,
        "steps": cfg.steps,
        "steps_trained": s.get("steps_trained"),
    }
    steps = [grok.get(t) for t in tasks]
    row["grokked"] = all(g is not None for g in steps)
    row["grok_step"] = float(max(steps)) if row["grokked"] else float("nan")
    for t in tasks:
        row[f"grok_step.{t}"] = _f(grok.get(t))
    summ = an.get("summary") or {}
    for t in tasks:
        row[f"lead.{t}"] = _f((summ.get("lead") or {}).get(t))
        row[f"lead_fraction.{t}"] = _f((summ.get("lead_fraction") or {}).get(t))
    row["onset"] = _f(summ.get("onset"))
    row["defect_peak_ratio"] = _f(summ.get("defect_peak_ratio"))
    row["rho"] = _f(summ.get("rho"))
    row["pc1_mean"] = _f(summ.get("pc1_mean"))
    hess = an.get("hessian") or {}
    row["lambda_min"] = _f(hess.get("depth"))
    frag = an.get("fragility") or {}
    if not frag and run.file(FRAGILITY).exists():
        frag = read_json(run.file(FRAGILITY))
    row["k_star"] = _f(frag.get("k_star"))
    return row


def phase_runs(store_paths: Iterable[str | PathLike]) -> pd.DataFrame:
    """One row per stored run below `store_paths`: wd, seed, grok step (per task and the run's last),
    λ_min (hessian analysis), k* (fragility analysis), lead and lead fraction per task, onset, PC1%, ρ."""
    rows = [r for r in (_run_row(run) for run in find_runs(store_paths)) if r is not None]
    return pd.DataFrame(rows)


def regime(grok_steps: np.ndarray, fastest: float | None, factor: float = FAST_FACTOR) -> str:
    """Label one wd from its runs' grok steps (NaN = did not grok) and the fastest wd's mean grok step."""
    g = np.asarray(grok_steps, dtype=float)
    ok = np.isfinite(g)
    if not ok.any():
        return "no grokking"
    if not ok.all():
        return "partial"
    if fastest is None or not math.isfinite(fastest):
        return "fast"
    return "fast" if g.mean() <= factor * fastest else "slow"


def phase_table(
    store_paths: Iterable[str | PathLike] | pd.DataFrame, factor: float = FAST_FACTOR
) -> pd.DataFrame:
    """Per weight decay (ascending): runs, runs grokked, mean ± sd grok step (per task and the run's last),
    λ_min mean ± sd, k* mean, lead mean per task, lead fraction mean, and the regime label.
    Accepts store paths or a `phase_runs` table."""
    runs = store_paths if isinstance(store_paths, pd.DataFrame) else phase_runs(store_paths)
    if runs.empty:
        return pd.DataFrame(columns=["wd", "n_runs", "n_grokked", "grok_step", "grok_step_sd", "regime"])
    task_cols = sorted(c for c in runs.columns if c.startswith("grok_step."))
    lead_cols = sorted(c for c in runs.columns if c.startswith("lead."))
    frac_cols = sorted(c for c in runs.columns if c.startswith("lead_fraction."))
    rows = []
    for wd, g in runs.groupby("wd", sort=True):
        gs = g["grok_step"].to_numpy(dtype=float)
        row: dict[str, Any] = {
            "wd": float(wd),
            "n_runs": int(len(g)),
            "n_grokked": int(np.isfinite(gs).sum()),
            "budget": int(g["steps"].max()),
        }
        row["grok_step"] = float(np.nanmean(gs)) if np.isfinite(gs).any() else float("nan")
        row["grok_step_sd"] = float(np.nanstd(gs, ddof=1)) if np.isfinite(gs).sum() > 1 else float("nan")
        for c in task_cols:
            v = g[c].to_numpy(dtype=float)
            row[c] = float(np.nanmean(v)) if np.isfinite(v).any() else float("nan")
        for c in ["lambda_min", "k_star", "defect_peak_ratio", *lead_cols, *frac_cols]:
            v = g[c].to_numpy(dtype=float) if c in g else np.array([np.nan])
            row[c] = float(np.nanmean(v)) if np.isfinite(v).any() else float("nan")
        lm = g["lambda_min"].to_numpy(dtype=float) if "lambda_min" in g else np.array([np.nan])
        row["lambda_min_sd"] = float(np.nanstd(lm, ddof=1)) if np.isfinite(lm).sum() > 1 else float("nan")
        row["_gs"] = gs
        rows.append(row)
    means = [r["grok_step"] for r in rows if r["n_grokked"] == r["n_runs"] and r["wd"] > 0]
    fastest = min(means) if means else None
    for r in rows:
        r["regime"] = regime(r.pop("_gs"), fastest, factor)
    return pd.DataFrame(rows)


def phase_fit(df: pd.DataFrame, y: str = "grok_step") -> PowerLawFit:
    """Fit t_grok ∝ wd^−α over the rows with wd > 0 and a finite grok step (a `phase_table` or a
    `phase_runs` table); returns the PowerLawFit with `alpha` = α > 0 for a grok step that falls with
    wd (the log–log slope is −α) and its standard error. ValueError with fewer than 3 points."""
    sel = df[(df["wd"] > 0) & np.isfinite(df[y].to_numpy(dtype=float))]
    fit = fit_power_law(sel["wd"].to_numpy(dtype=float), sel[y].to_numpy(dtype=float))
    return PowerLawFit(alpha=-fit.alpha, alpha_se=fit.alpha_se, intercept=fit.intercept, r2=fit.r2, n=fit.n)


def no_decay_failure(table: pd.DataFrame) -> bool | None:
    """P1's no-decay failure: wd 0 groks in no run while some wd > 0 groks. None (cannot tell) when wd 0
    or wd > 0 is missing from the table, or no wd > 0 run grokked within its budget either."""
    zero = table[table["wd"] == 0]
    pos = table[table["wd"] > 0]
    if zero.empty or pos.empty or int(pos["n_grokked"].sum()) == 0:
        return None
    return bool((zero["n_grokked"] == 0).all() and (pos["n_grokked"] > 0).any())
