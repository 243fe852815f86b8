"""How well the early warning works on stored runs: replay each run's inline defect series through the online
detector (exactly what it would have done live) and compare with the run's grok step.

`warning_table(runs)` gives one row per run; `warning_summary(table)` the headline numbers: the fraction of
grokking runs warned before they grok, the median lead (grok step − warning step), how often the predicted
window held the grok step, and false alarms on runs that never grok. `fit_lead_model(runs)` fits the lead
relation (grok step vs threshold-onset lead) on other runs.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from grokscope.errors import StoreError
from grokscope.geometry.onset import defect_timing
from grokscope.monitor.choice import replay_auto
from grokscope.monitor.clock import clock_of_config
from grokscope.monitor.detector import (
    DEFAULT_DETECTOR,
    INPUTS,
    MULTI_DETECTORS,
    DetectorConfig,
    MultiSignalDetector,
)
from grokscope.monitor.warning import DEFAULT_LEAD, P2_ALPHA, LeadModel, WarningEvent, replay
from grokscope.store import DEFECT_TABLE, DETECTOR_TABLE, METRICS_TABLE, RunDir

AUTO_MODES = ("auto", "transfer")


def _grok(run: RunDir) -> int | None:
    """The run's first grok step over its tasks (None: no task grokked)."""
    g = [v for v in run.grok_steps().values() if v is not None]
    return min(g) if g else None


def _series(run: RunDir, every: int | None = None) -> tuple[np.ndarray, np.ndarray] | None:
    """The run's inline defect series in step order; `every`: only the measurements at multiples of `every`
    steps (what a monitor with `defect_every=every` would have measured)."""
    if not run.has_table(DEFECT_TABLE):
        return None
    d = run.table(DEFECT_TABLE).sort_values("step")
    if every:
        d = d[d["step"] % every == 0]
    return (d["step"].to_numpy(), d["defect"].to_numpy(dtype=float)) if len(d) else None


def warning_table(runs: list[RunDir], detector: str = "auto", lead_model: LeadModel = DEFAULT_LEAD,
                  every: int | None = None, **options: Any) -> pd.DataFrame:
    """One row per run with an inline defect series: config, grok step, warning step, onset, lead, window
    (`detector`: "auto" (the monitor's default: `monitor.choice`), "transfer" (its test-free detector), "multi"
    (issue 24's multi-signal detector), "multi-val" (its variant reading the test loss), or P2's "threshold" / P1's
    "envelope" onset rule; `every`: replay only the measurements at multiples of `every`
    steps)."""
    rows = []
    for run in runs:
        s = _series(run, every)
        if s is None or not run.has_summary():
            continue
        cfg, summ = run.config(), run.summary()
        grok = _grok(run)
        if detector in AUTO_MODES:
            ev = replay_auto(auto_series(run, every), detector)[1]
        elif detector in MULTI_DETECTORS:
            ev = replay_multi(run_series(run, every), MULTI_DETECTORS[detector])[1]
        else:
            ev = replay(*s, detector=detector, lead_model=lead_model, **options)
        warned = ev.step if ev is not None else None
        row = {"run": cfg.name, "tasks": ",".join(cfg.data.tasks), "model": cfg.model.kind, "wd": cfg.optim.wd,
               "lr": cfg.optim.lr, "seed": cfg.seed, "steps_trained": summ.get("steps_trained"),
               "finished": bool(summ.get("finished")),
               "grok_step": grok, "warning_step": warned, "onset": ev.onset if ev else None,
               "lead": (grok - warned) if grok is not None and warned is not None else None,
               "predicted": ev.predicted_grok if ev else None, "window_lo": ev.window_lo if ev else None,
               "window_hi": ev.window_hi if ev else None,
               "peak_ratio": defect_timing(*s, {})["defect_peak_ratio"]}
        row["warned_before"] = grok is not None and warned is not None and warned < grok
        row["in_window"] = (grok is not None and ev is not None and ev.window_lo is not None
                            and ev.window_lo <= grok <= (ev.window_hi if ev.window_hi is not None else np.inf))
        rows.append(row)
    return pd.DataFrame(rows)


def warning_summary(table: pd.DataFrame) -> dict[str, Any]:
    """Headline numbers of a `warning_table` over its finished runs (a run still training has no outcome yet;
    a finished run without a grok step never grokked within its budget)."""
    if table.empty:
        return {"n_runs": 0}
    n_unfinished = int((~table["finished"]).sum())
    table = table[table["finished"]]
    grokked = table[table["grok_step"].notna()]
    never = table[table["grok_step"].isna()]
    before = grokked[grokked["warned_before"]]
    leads = before["lead"].astype(float)
    pred = grokked[grokked["predicted"].notna()]
    return {
        "n_runs": len(table), "n_grokking": len(grokked), "n_warned_before": len(before),
        "fraction_warned_before": len(before) / len(grokked) if len(grokked) else None,
        "n_warned_late": int((grokked["warning_step"].notna() & ~grokked["warned_before"]).sum()),
        "median_lead": float(leads.median()) if len(leads) else None,
        "median_lead_fraction": float((leads / before["grok_step"].astype(float)).median()) if len(leads) else None,
        "fraction_in_window": float(grokked["in_window"].mean()) if len(grokked) else None,
        "median_predicted_over_actual": (float((pred["predicted"].astype(float) / pred["grok_step"].astype(float))
                                               .median()) if len(pred) else None),
        "n_window_open_ended": int((grokked["warning_step"].notna() & grokked["window_hi"].isna()).sum()),
        "n_never_grok": len(never), "false_alarms": int(never["warning_step"].notna().sum()),
        "n_unfinished": n_unfinished,
    }


def fit_lead_model(runs: list[RunDir], alpha: float | None = P2_ALPHA, source: str = "") -> LeadModel:
    """The lead relation lead = 10^b t_grok^α fitted on runs' onsets and leads (`geometry.onset.defect_timing`:
    threshold detector, positive leads only): with P2's α = 1.27 fixed by default (b alone is fitted), or α
    too when `alpha` is None."""
    x, y = [], []
    for run in runs:
        s = _series(run)
        grok = _grok(run) if run.has_summary() else None
        if s is None or grok is None:
            continue
        lead = defect_timing(*s, {"grok": grok})["lead"]["grok"]
        if lead is not None and lead > 0:
            x.append(grok)
            y.append(lead)
    need = 3 if alpha is None else 2
    if len(x) < need:
        raise StoreError(f"calibration needs >= {need} grokking runs with an onset before grokking, found {len(x)}")
    return LeadModel.fit(x, y, alpha=alpha, source=source or f"{len(x)} runs")


# ---- the multi-signal detector on stored runs, and run-level ROC ------------------------------------------------
def run_series(run: RunDir, every: int | None = None) -> dict[str, np.ndarray] | None:
    """A run's detector inputs per inline defect measurement, in step order: `step`, `defect`, and the latest
    metrics logged at or before that step, `weight_norm`, `train_acc`, `train_loss` and `test_loss` (the first
    task's; NaN before anything was logged), as the monitor passes them live. `every`: only the measurements at
    multiples of `every` steps."""
    s = _series(run, every)
    if s is None:
        return None
    steps, D = s
    out = {"step": steps, "defect": D}
    m = run.table(METRICS_TABLE) if run.has_table(METRICS_TABLE) else None
    task = run.config().data.tasks[0] if run.config().data.tasks else None
    for key, split, col in (("weight_norm", "train", "weight_norm"), ("train_acc", "train", "acc"),
                            ("train_loss", "train", "loss"), ("test_loss", "test", "loss")):
        if m is None or col not in m:
            out[key] = np.full(len(steps), np.nan)
            continue
        rows = m[(m["split"] == split) & ((m["task"] == task) if task is not None else True)]
        by_step = rows.groupby("step")[col].first().sort_index()
        out[key] = by_step.reindex(steps, method="ffill").to_numpy(dtype=float)  # the latest logged (as live)
    return out


def auto_series(run: RunDir, every: int | None = None) -> dict[str, Any] | None:
    """The default detector's inputs per measurement: a monitored run's own record of them (`detector_inputs`: what
    the live detector saw, the optimiser's clock included), else `run_series` with the clock of the run's config.
    `every`: only the measurements at multiples of `every` steps."""
    if run.has_table(DETECTOR_TABLE):
        d = run.table(DETECTOR_TABLE).sort_values("step")
        if every:
            d = d[d["step"] % every == 0]
        out: dict[str, Any] = {k: d[k].to_numpy() for k in d.columns if k != "clock_kind"}
        if "clock_kind" in d:
            out["clock_kind"] = [None if not isinstance(v, str) else v for v in d["clock_kind"]]
        return out
    s = run_series(run, every)
    if s is None:
        return None
    c = clock_of_config(run.config().optim)
    return {**s, "clock_rate": np.full(len(s["step"]), c.rate), "clock_kind": [c.kind] * len(s["step"])}


def replay_multi(series: dict[str, np.ndarray], cfg: DetectorConfig | None = None
                 ) -> tuple[np.ndarray, WarningEvent | None]:
    """Feed a run's series (`run_series`) to a `MultiSignalDetector` measurement by measurement, as it would
    have run live: (the score at every measurement, the warning or None)."""
    det = MultiSignalDetector(cfg if cfg is not None else DEFAULT_DETECTOR)
    event = None
    for i, step in enumerate(series["step"]):
        ev = det.observe(int(step), **{k: float(series[k][i]) for k in INPUTS if k in series})
        event = event or ev
    return np.asarray(det.scores), event


def run_level_score(steps, scores, grok_step: int | None) -> float:
    """The run's ROC score: the largest score strictly before its grok step (a grokking run: a warning must come
    first), or over the whole run (a run that never grokked: any warning is a false alarm); -inf if none."""
    steps, scores = np.asarray(steps), np.asarray(scores, dtype=float)
    keep = steps < grok_step if grok_step is not None else np.ones(len(steps), dtype=bool)
    vals = scores[keep & np.isfinite(scores)]
    return float(vals.max()) if len(vals) else -math.inf


def auroc(pos, neg) -> float:
    """Area under the ROC curve: P(score of a random positive > a random negative), ties counting one half
    (the Mann-Whitney U statistic over n_pos · n_neg); NaN without both classes."""
    pos, neg = np.asarray(pos, dtype=float), np.asarray(neg, dtype=float)
    if not len(pos) or not len(neg):
        return math.nan
    gt = (pos[:, None] > neg[None, :]).sum()
    eq = (pos[:, None] == neg[None, :]).sum()
    return float((gt + 0.5 * eq) / (len(pos) * len(neg)))


def roc_curve(pos, neg) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(false-alarm rate, hit rate, threshold) of the rule "score >= threshold", for every distinct score from
    +inf down (starting at (0, 0))."""
    pos, neg = np.asarray(pos, dtype=float), np.asarray(neg, dtype=float)
    thr = np.concatenate([[math.inf], np.unique(np.concatenate([pos, neg]))[::-1]])
    tpr = np.array([(pos >= t).mean() if len(pos) else math.nan for t in thr])
    fpr = np.array([(neg >= t).mean() if len(neg) else math.nan for t in thr])
    return fpr, tpr, thr
