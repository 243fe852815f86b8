"""Grokking methods side by side: per method and task, grok step, speed-up over the baseline, defect onset
and lead, PC1%, ρ and λ_min, from stored runs.

`run_rows` turns one run into plain rows (one per task) from its summary and the stored analyses (the
geometry comes from the analyses registry, never recomputed here); `comparison_table` aggregates rows
over seeds. A run's method label is its `MethodConfig.label`, with `@wd<wd>` when the compared runs use
more than one weight decay (weight decay is itself one of the methods compared).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from grokscope.config import RunConfig
from grokscope.store import RunDir

COLUMNS = ("method", "task", "runs", "grokked", "grok_step", "grok_step_sd", "speedup", "speedup_n", "onset",
           "lead", "lead_fraction", "pc1", "rho", "lambda_min")


def method_label(cfg: RunConfig, with_wd: bool) -> str:
    """`grokfast-ema`, or `grokfast-ema@wd1` when runs of several weight decays are compared."""
    return cfg.method.label + (f"@wd{cfg.optim.wd:g}" if with_wd else "")


def run_rows(run: RunDir, label: str, geometry: dict[str, Any], curvature: dict[str, Any] | None
             ) -> list[dict[str, Any]]:
    """One row per task of a run: grok step (None: not within its budget), steps trained, and the geometry
    summary (`summary` analysis: pc1_mean, rho, onset, lead per task) and λ_min (`hessian` analysis)."""
    cfg, summary = run.config(), run.summary()
    lead, frac = geometry.get("lead") or {}, geometry.get("lead_fraction") or {}
    lam = (curvature or {}).get("depth")
    return [{"run": cfg.name, "method": label, "seed": cfg.seed, "wd": cfg.optim.wd, "task": t,
             "grok_step": summary["grok_step"].get(t), "steps_trained": summary.get("steps_trained"),
             "finished": bool(summary.get("finished")), "onset": geometry.get("onset"), "lead": lead.get(t),
             "lead_fraction": frac.get(t), "pc1": geometry.get("pc1_mean"), "rho": geometry.get("rho"),
             "lambda_min": lam} for t in cfg.data.tasks]


def _mean(s: pd.Series) -> float | None:
    v = pd.to_numeric(s, errors="coerce").dropna()
    return float(v.mean()) if len(v) else None


def comparison_table(rows: pd.DataFrame, baseline: str) -> pd.DataFrame:
    """Per (method, task): runs, runs grokked, mean ± sd grok step over the grokked runs, speed-up = mean over
    seeds of baseline grok step / method grok step (seeds where both grokked; `speedup_n` of them), and
    means of onset, lead, lead fraction, PC1%, ρ and λ_min over the runs that have them."""
    if rows.empty:
        return pd.DataFrame(columns=COLUMNS)
    base = rows[rows["method"] == baseline].set_index(["task", "seed"])["grok_step"]
    out = []
    for (method, task), g in rows.groupby(["method", "task"], sort=False):
        steps = pd.to_numeric(g["grok_step"], errors="coerce").dropna()
        ratios = []
        for seed, step in zip(g["seed"], g["grok_step"], strict=True):
            b = base.get((task, seed))
            if step is not None and not pd.isna(step) and b is not None and not pd.isna(b) and step > 0:
                ratios.append(float(b) / float(step))
        out.append({"method": method, "task": task, "runs": len(g), "grokked": len(steps),
                    "grok_step": float(steps.mean()) if len(steps) else None,
                    "grok_step_sd": float(steps.std(ddof=1)) if len(steps) > 1 else None,
                    "speedup": float(np.mean(ratios)) if ratios else None, "speedup_n": len(ratios),
                    "onset": _mean(g["onset"]), "lead": _mean(g["lead"]), "lead_fraction": _mean(g["lead_fraction"]),
                    "pc1": _mean(g["pc1"]), "rho": _mean(g["rho"]), "lambda_min": _mean(g["lambda_min"])})
    return pd.DataFrame(out, columns=COLUMNS)


def default_baseline(labels: Sequence[str], cfgs: Sequence[RunConfig]) -> str | None:
    """The baseline method's label (the largest weight decay among baseline runs when wd varies)."""
    base = [(c.optim.wd, lab) for c, lab in zip(cfgs, labels, strict=True) if c.method.name == "baseline"]
    return max(base)[1] if base else None


def _missing(v: Any) -> bool:
    return v is None or (isinstance(v, float) and not np.isfinite(v))


def markdown(table: pd.DataFrame, baseline: str) -> str:
    """The comparison as a Markdown table (— for undefined values)."""

    def f(v: Any, digits: int = 0) -> str:
        if _missing(v):
            return "—"
        return f"{v:.{digits}f}" if isinstance(v, float) else str(v)

    head = ("| method | task | grokked | grok step (mean ± sd) | speed-up vs " + baseline +
            " | defect onset | lead | lead fraction | PC1% | ρ | λ_min |")
    lines = [head, "|" + "---|" * 11]
    for r in table.to_dict("records"):
        grok = f(r["grok_step"]) + (f" ± {f(r['grok_step_sd'])}" if not _missing(r["grok_step_sd"]) else "")
        speed = f"{f(r['speedup'], 2)}× (n {r['speedup_n']})" if not _missing(r["speedup"]) else "—"
        lines.append(f"| {r['method']} | {r['task']} | {r['grokked']}/{r['runs']} | {grok} | {speed} | "
                     f"{f(r['onset'])} | {f(r['lead'])} | {f(r['lead_fraction'], 2)} | {f(r['pc1'], 1)} | "
                     f"{f(r['rho'], 3)} | {f(r['lambda_min'], 2)} |")
    return "\n".join(lines)
