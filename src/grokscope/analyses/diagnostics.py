"""Every grokking diagnostic of a run on one step axis, and the step at which each one moves.

The rule for "moves" (docs/diagnostics.md) was fixed before any table was read:
- memorisation ends at t_mem, the first evaluation with train accuracy ≥ 98 % on every task;
- a diagnostic series x(t) with an expected direction d (+1 rises, −1 falls, 0 either way) is read from the
  first snapshot at or after t_mem: x_ref = x(that snapshot), its excursion E = max_{t ≥ t_mem} d·(x(t) − x_ref)
  (|x(t) − x_ref| for d = 0);
- it moves at the first t ≥ t_mem with d·(x(t) − x_ref) ≥ HALF · E, provided E ≥ MIN_REL · |x_ref| (and > 0);
  otherwise it does not move (None);
- the defect keeps its own detector (P2's threshold onset on the inline defect series, `geometry.onset`).
The lead of a diagnostic is grok step − move step (positive: it moved first).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from grokscope.geometry.onset import onset_threshold
from grokscope.geometry.pca import expanding_pc1
from grokscope.store import DEFECT_TABLE, HESSIAN_TABLE, LLC_TABLE, PROGRESS_TABLE, RunDir

HALF = 0.5
MIN_REL = 0.2
MEMORISED = 0.98
# name -> expected direction after memorisation (Nanda et al.; P1/P2; the LLC literature)
DIRECTIONS = {"pc1": 0, "lambda_min": -1, "weight_norm": -1, "excluded_loss": 1, "restricted_loss": -1,
              "gini": 1, "llc": -1}


def move_step(steps: np.ndarray, x: np.ndarray, direction: int, start: int | None,
              half: float = HALF, min_rel: float = MIN_REL) -> int | None:
    """The step at which x moves by the module's rule (None: no move, no data after `start`, or start None)."""
    steps, x = np.asarray(steps), np.asarray(x, dtype=float)
    keep = np.isfinite(x) & (steps >= (start if start is not None else np.inf))
    steps, x = steps[keep], x[keep]
    if len(x) < 2:
        return None
    dev = x - x[0]
    dev = np.abs(dev) if direction == 0 else direction * dev
    excursion = float(dev.max())
    if excursion <= 0 or excursion < min_rel * abs(x[0]):
        return None
    return int(steps[np.flatnonzero(dev >= half * excursion)[0]])


def memorised_step(metrics: pd.DataFrame, acc: float = MEMORISED) -> int | None:
    """First evaluation step with train accuracy ≥ acc on every task (None if never)."""
    train = metrics[metrics["split"] == "train"].pivot_table(index="step", columns="task", values="acc")
    hit = train.index[(train >= acc).all(axis=1)]
    return int(hit[0]) if len(hit) else None


def diagnostic_series(run: RunDir, task: str | None = None) -> dict[str, pd.DataFrame]:
    """{name: DataFrame(step, value)} of every diagnostic the run has stored (progress measures for `task`,
    default the first task; the end-of-run key set's restricted and excluded losses)."""
    out: dict[str, pd.DataFrame] = {}
    m = run.metrics()
    for split in ("train", "test"):
        s = m[(m["split"] == split)].groupby("step")["acc"].min().reset_index(name="value")
        out[f"{split}_acc"] = s
    out["weight_norm"] = m.groupby("step")["weight_norm"].first().reset_index(name="value")
    if run.has_table(DEFECT_TABLE):
        d = run.table(DEFECT_TABLE).sort_values("step")
        out["defect"] = d[["step", "defect"]].rename(columns={"defect": "value"})
    steps, attn = run.attention_trajectory() if run.has_trajectory() else (None, {})
    if attn and len(steps) >= 3:
        curves = [expanding_pc1(v)[1] for v in attn.values()]
        idx = expanding_pc1(next(iter(attn.values())))[0]
        out["pc1"] = pd.DataFrame({"step": steps.numpy()[idx], "value": np.mean(curves, axis=0)})
    if run.has_table(HESSIAN_TABLE):
        h = run.table(HESSIAN_TABLE)
        h = h[h["loss"] == "total"].sort_values("step")
        out["lambda_min"] = h[["step", "lambda_min"]].rename(columns={"lambda_min": "value"})
    if run.has_table(PROGRESS_TABLE):
        p = run.table(PROGRESS_TABLE)
        p = p[p["task"] == (task or p["task"].iloc[0])].sort_values("step")
        for name, col in (("excluded_loss", "excluded_loss_final"), ("restricted_loss", "restricted_loss_final"),
                          ("gini", "gini")):
            out[name] = p[["step", col]].rename(columns={col: "value"})
    if run.has_table(LLC_TABLE):
        out["llc"] = run.table(LLC_TABLE).sort_values("step")[["step", "llc"]].rename(columns={"llc": "value"})
    return out


def run_moves(run: RunDir, task: str | None = None) -> dict[str, Any]:
    """Grok step, memorisation step and each diagnostic's move step and lead for one run: for `task` (its grok
    step and its progress measures) when given, else the first task to grok (and the first task's measures)."""
    series = diagnostic_series(run, task)
    grok = run.grok_steps()
    g90_all = (run.summary().get("grok_step_90") or {}) if run.has_summary() else {}
    if task is not None:
        grok, g90_all = {task: grok.get(task)}, {task: g90_all.get(task)}
    first = min((g for g in grok.values() if g is not None), default=None)
    t_mem = memorised_step(run.metrics())
    moves: dict[str, int | None] = {}
    if "defect" in series:
        d = series["defect"]
        moves["defect"] = onset_threshold(d["step"].to_numpy(), d["value"].to_numpy())
    for name, direction in DIRECTIONS.items():
        if name in series:
            s = series[name]
            moves[name] = move_step(s["step"].to_numpy(), s["value"].to_numpy(), direction, t_mem)
    leads = {k: (first - v if first is not None and v is not None else None) for k, v in moves.items()}
    g90 = [g for g in g90_all.values() if g is not None]
    return {"run": run.config().name, "grok": first, "grok90": min(g90) if g90 else None, "memorised": t_mem,
            "moves": moves, "leads": leads}
