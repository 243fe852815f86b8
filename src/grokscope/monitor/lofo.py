"""Leave-one-family-out evaluation of the default early warning: for every family of runs, fit the constants on all
the other families (`fit_constants`) and score on it, so every number is out of family.

A `LofoRun` is one stored run's detector inputs per defect measurement (`series`: step, defect, weight_norm,
train_acc, train_loss, test_loss, clock_rate, clock_kind), its family, and its outcome (grok step or None). The
detectors' scores are causal per measurement, so a run's whole score trace is one vectorised call (what the online
detectors compute measurement by measurement; `AutoDetector` replays to the same trace, tested). Run-level scoring
as `monitor.evaluate`: a grokking run's score is its largest before its grok step, a never-grokking run's its
largest over its budget; a run that generalised at once (grok step < `IMMEDIATE` × its memorisation step) has no
delay to warn of and is left out of the grokking runs (reported apart).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from grokscope.monitor.clock import tau as clock_tau
from grokscope.monitor.defaults import WarnConstants
from grokscope.monitor.detector import DEFAULT_DETECTOR, score_series
from grokscope.monitor.evaluate import auroc, roc_curve, run_level_score
from grokscope.monitor.forecast import Forecast, fit_forecast
from grokscope.monitor.transfer import (
    FEATURES,
    TransferConfig,
    abstain_reason,
    features,
    memorised,
    transfer_score,
    transfer_signals,
)

IMMEDIATE = 3
DETECTORS = ("multi-val", "transfer", "multi")  # the validation default, the test-free default, the old default
FALSE_ALARM_CAP = 0.10
LOSS_GATE_QUANTILE = 0.9  # of the train loss at which calibration runs first reach train accuracy 0.99 (by it, 9 in
# 10 have memorised: a lower one keeps the gate shut on runs that fit their training set at a higher loss)


@dataclass
class LofoRun:
    """One run: family (the LOFO unit), name, grok step (None: never within its budget), and its series."""

    family: str
    name: str
    grok: int | None
    series: dict[str, Any]
    group: str = ""
    mem_step: int | None = None  # the memorisation step when known from elsewhere (a run with its accuracy hidden)

    @property
    def t_mem(self) -> int | None:
        """First measurement with train accuracy >= 0.99 (`mem_step` where given)."""
        if self.mem_step is not None:
            return self.mem_step
        m = memorised(self.series["train_acc"], self.series.get("train_loss", np.full(len(self.series["step"]),
                                                                                      np.nan)), 0.99, -math.inf)
        hit = np.flatnonzero(np.nan_to_num(m) > 0)
        return int(self.series["step"][hit[0]]) if len(hit) else None

    @property
    def immediate(self) -> bool:
        t = self.t_mem
        return self.grok is not None and t is not None and self.grok < IMMEDIATE * t


# ---- score traces ----------------------------------------------------------------------------------------------
def _gate_acc(series: dict[str, Any], loss_gate: float) -> np.ndarray:
    """Train accuracy where logged, else 1/0 from the train loss against the gate (as `AutoDetector` feeds it)."""
    acc = np.asarray(series["train_acc"], dtype=float)
    loss = np.asarray(series.get("train_loss", np.full(len(acc), np.nan)), dtype=float)
    return np.where(np.isfinite(acc), acc, np.where(np.isfinite(loss), (loss <= loss_gate).astype(float), np.nan))


def traces(run: LofoRun, k: WarnConstants) -> dict[str, np.ndarray]:
    """Per measurement: each detector's score (NaN where it abstains or has no input) and τ (transfer's clock)."""
    s = run.series
    n = len(s["step"])
    test = np.asarray(s.get("test_loss", np.full(n, np.nan)), dtype=float)
    seen_test = np.maximum.accumulate(np.isfinite(test)) if n else np.zeros(0, dtype=bool)
    val = score_series({**s, "train_acc": _gate_acc(s, k.transfer.loss_gate)}, k.validation)
    sig = transfer_signals(s, k.transfer)
    free = transfer_score(sig, k.transfer)
    acc, loss = np.asarray(s["train_acc"], dtype=float), np.asarray(s.get("train_loss", np.full(n, np.nan)), float)
    has = np.maximum.accumulate(np.isfinite(acc) | np.isfinite(loss)) if n else np.zeros(0, dtype=bool)
    kinds = list(s.get("clock_kind", ["unknown"] * n))
    abst = np.array([abstain_reason(kinds[i], bool(has[i])) is not None for i in range(n)], dtype=bool)
    return {"multi-val": np.where(seen_test, val, np.nan), "transfer": np.where(abst, np.nan, free),
            "multi": score_series(s, DEFAULT_DETECTOR), "tau": sig["tau"], "abstains": abst}


def _threshold(name: str, k: WarnConstants) -> float:
    return {"multi-val": k.validation.threshold, "transfer": k.transfer.threshold,
            "multi": DEFAULT_DETECTOR.threshold}[name]


def _forecast(name: str, k: WarnConstants) -> Forecast:
    return k.forecast_validation if name == "multi-val" else k.forecast_transfer


def tau_at(run: LofoRun, step: int, loss_gate: float = -math.inf) -> float | None:
    """Clock units from the run's memorisation to `step` (None without memorisation or a usable clock)."""
    s = run.series
    t0 = run.t_mem
    rates = np.asarray(s.get("clock_rate", np.full(len(s["step"]), np.nan)), dtype=float)
    if t0 is None or not len(rates) or not (np.isfinite(rates).any() and np.nanmax(rates) > 0):
        return None
    st = np.asarray(s["step"])
    keep = st < step
    t = clock_tau(np.r_[st[keep], step], np.r_[rates[keep], rates[keep][-1] if keep.any() else rates[0]], t0)[-1]
    return float(t) if math.isfinite(t) else None


# ---- run rows ----------------------------------------------------------------------------------------------------
def run_row(run: LofoRun, name: str, k: WarnConstants, tr: dict[str, np.ndarray] | None = None) -> dict[str, Any]:
    """One run under one detector: its run-level score (over the threshold: 1 = the operating point), warning step,
    outcome, lead, and the forecast at the warning."""
    tr = tr if tr is not None else traces(run, k)
    steps, sc = np.asarray(run.series["step"]), tr[name]
    thr = _threshold(name, k)
    fire = np.flatnonzero(np.isfinite(sc) & (sc >= thr))
    warned = int(steps[fire[0]]) if len(fire) else None
    g = run.grok
    rs = run_level_score(steps, sc, g)
    row = {"family": run.family, "group": run.group, "run": run.name, "detector": name, "grok_step": g,
           "t_mem": run.t_mem, "immediate": run.immediate, "run_score": rs,
           "norm_score": rs / thr if thr > 0 and math.isfinite(rs) else (-math.inf if not math.isfinite(rs) else rs),
           "warning_step": warned, "abstained": bool(np.all(tr["abstains"])) if name == "transfer" else False,
           "warned_before": g is not None and warned is not None and warned < g,
           "false_alarm": g is None and warned is not None}
    row["lead_fraction"] = (g - warned) / g if row["warned_before"] else None
    if warned is not None and name != "multi":
        i = int(fire[0])
        tau = tr["tau"][i]
        rate = float(run.series["clock_rate"][i]) if "clock_rate" in run.series else math.nan
        usable = run.series.get("clock_kind", ["unknown"] * len(steps))[i] in ("decoupled", "l2-sgd")
        f = _forecast(name, k).predict(warned, float(tau) if math.isfinite(tau) else None, rate if usable else None)
        row.update(predicted=f["predicted"], lo=f["lo"], hi=f["hi"], forecast_by=f["how"].split(":")[0],
                   tau_warn=float(tau) if math.isfinite(tau) else None, rate=rate if usable else None)
        if row["warned_before"]:
            row["forecast_error"] = abs(math.log(f["predicted"] / g))
            row["covered"] = f["lo"] <= g <= f["hi"]
    return row


def positives(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in rows if r["grok_step"] is not None and not r["immediate"]]


def negatives(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in rows if r["grok_step"] is None]


# ---- fitting -----------------------------------------------------------------------------------------------------
def youden_threshold(pos: Iterable[float], neg: Iterable[float], fallback: float) -> float:
    """The threshold maximising hit rate − false-alarm rate over the midpoints between distinct positive run scores
    (the middle of several optima), as issue 24's calibration; `fallback` without both classes."""
    pos, neg = np.asarray(list(pos), dtype=float), np.asarray(list(neg), dtype=float)
    if not len(pos) or not len(neg):
        return fallback
    vals = np.unique(np.concatenate([pos, neg]))
    vals = vals[np.isfinite(vals)]
    cands = (vals[1:] + vals[:-1]) / 2
    cands = cands[cands > 0]
    if not len(cands):
        return fallback
    j = np.array([(pos >= t).mean() - (neg >= t).mean() for t in cands])
    best = cands[np.flatnonzero(j == j.max())]
    return float(best[len(best) // 2])


def loss_gate_of(runs: list[LofoRun], fallback: float) -> float:
    """The train loss at which runs first reach train accuracy 0.99 (its LOSS_GATE_QUANTILE over the runs logging
    both)."""
    vals = []
    for r in runs:
        acc, loss = np.asarray(r.series["train_acc"], float), np.asarray(r.series.get("train_loss", []), float)
        hit = np.flatnonzero(acc >= 0.99) if len(loss) == len(acc) else []
        if len(hit) and math.isfinite(loss[hit[0]]):
            vals.append(float(loss[hit[0]]))
    return float(np.quantile(vals, LOSS_GATE_QUANTILE)) if vals else fallback


def fit_logistic(runs: list[LofoRun], cfg: TransferConfig, ridge: float = 1e-2) -> tuple[float, ...]:
    """The logistic transfer score's coefficients: measurements after the burn-in (and before grokking) of grokking
    runs against those of never-grokking runs, every run weighing the same; Newton's method with a small ridge."""
    X, y, w = [], [], []
    for r in runs:
        if r.immediate or abstain_reason(r.series.get("clock_kind", ["unknown"])[-1], True) is not None:
            continue
        sig = transfer_signals(r.series, cfg)
        st = np.asarray(r.series["step"])
        keep = (np.nan_to_num(sig["tau"], nan=-1.0) >= cfg.burn_in) & (np.nan_to_num(sig["memorised"]) > 0)
        if r.grok is not None:
            keep &= st < r.grok
        if not keep.any():
            continue
        X.append(features(sig, cfg)[keep])
        y.append(np.full(int(keep.sum()), 1.0 if r.grok is not None else 0.0))
        w.append(np.full(int(keep.sum()), 1.0 / keep.sum()))
    if not X or len({float(v[0]) for v in y}) < 2:
        return (0.0,) * (len(FEATURES) + 1)
    A = np.c_[np.ones(sum(len(x) for x in X)), np.vstack(X)]
    yy, ww = np.concatenate(y), np.concatenate(w)
    b = np.zeros(A.shape[1])
    pen = ridge * np.diag(np.r_[0.0, np.ones(A.shape[1] - 1)])
    for _ in range(50):
        p = 1.0 / (1.0 + np.exp(-np.clip(A @ b, -30, 30)))
        g = A.T @ (ww * (yy - p)) - pen @ b
        H = (A * (ww * p * (1 - p))[:, None]).T @ A + pen
        step = np.linalg.solve(H, g)
        b += step
        if np.abs(step).max() < 1e-9:
            break
    return tuple(float(v) for v in b)


def fit_constants(runs: list[LofoRun], base: WarnConstants | None = None, source: str = "") -> WarnConstants:
    """Every constant of the default warning from `runs` alone: the loss gate, τ* (median clock units from
    memorisation to grokking over the delayed grokking runs with a clock), each detector's threshold (`youden_threshold`
    on run-level scores) and its forecast (spreads of its in-time warnings on these runs)."""
    base = base or WarnConstants()
    gate = loss_gate_of(runs, base.transfer.loss_gate)
    taus = [t for r in runs if r.grok is not None and not r.immediate
            for t in [tau_at(r, r.grok)] if t is not None and t > 0]
    tau_star = float(np.median(taus)) if taus else base.transfer.tau_star
    k = replace(base, transfer=replace(base.transfer, loss_gate=gate, tau_star=tau_star,
                                       threshold=math.inf), validation=replace(base.validation, threshold=math.inf))
    if k.transfer.score == "logistic":
        k = replace(k, transfer=replace(k.transfer, coef=fit_logistic(runs, k.transfer)))
    trs = [traces(r, k) for r in runs]
    fitted: dict[str, float] = {}
    for name in ("multi-val", "transfer"):
        rows = [run_row(r, name, k, t) for r, t in zip(runs, trs)]
        fitted[name] = youden_threshold([x["run_score"] for x in positives(rows)],
                                        [x["run_score"] for x in negatives(rows)],
                                        base.validation.threshold if name == "multi-val" else base.transfer.threshold)
    k = replace(k, validation=replace(k.validation, threshold=fitted["multi-val"]),
                transfer=replace(k.transfer, threshold=fitted["transfer"]))
    forecasts = {}
    for name in ("multi-val", "transfer"):
        clock, ratio = [], []
        for r, t in zip(runs, trs):
            row = run_row(r, name, replace(k, forecast_validation=Forecast(tau_star), forecast_transfer=Forecast(
                tau_star)), t)
            if not row["warned_before"] or row["immediate"]:
                continue
            if row.get("rate"):
                clock.append((row["warning_step"], row["tau_warn"], row["rate"], row["grok_step"]))
            else:
                ratio.append((row["warning_step"], row["grok_step"]))
        forecasts[name] = fit_forecast(tau_star, clock, ratio, _forecast(name, base))
    return replace(k, forecast_validation=forecasts["multi-val"], forecast_transfer=forecasts["transfer"],
                   source=source or f"{len(runs)} runs")


# ---- scoring -----------------------------------------------------------------------------------------------------
def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """AUROC (of score / threshold), hit rate and false alarms at the operating point, hit rate at false alarms <=
    10 % (the ROC), median lead / t_grok, forecast error (median |log t̂/t_grok|) and interval coverage."""
    pos, neg = positives(rows), negatives(rows)
    ps, ns = [r["norm_score"] for r in pos], [r["norm_score"] for r in neg]
    hit_at = None
    if pos and neg:
        fpr, tpr, _ = roc_curve(ps, ns)
        ok = fpr <= FALSE_ALARM_CAP + 1e-12
        hit_at = float(tpr[ok].max()) if ok.any() else 0.0
    warned = [r for r in pos if r["warned_before"]]
    errs = [r["forecast_error"] for r in warned if r.get("forecast_error") is not None]
    cov = [bool(r["covered"]) for r in warned if "covered" in r]
    return {"runs": len(rows), "n_grok": len(pos), "never": len(neg), "immediate": sum(r["immediate"] for r in rows),
            "abstained": sum(r["abstained"] for r in rows),
            "auroc": auroc(ps, ns), "hit": len(warned), "hit_rate": len(warned) / len(pos) if pos else None,
            "false_alarms": sum(r["false_alarm"] for r in neg),
            "false_alarm_rate": sum(r["false_alarm"] for r in neg) / len(neg) if neg else None,
            "hit_at_fa10": hit_at,
            "median_lead_fraction": float(np.median([r["lead_fraction"] for r in warned])) if warned else None,
            "forecast_error": float(np.median(errs)) if errs else None,
            "coverage": float(np.mean(cov)) if cov else None, "n_forecast": len(cov)}


def hidden(run: LofoRun, keys: tuple[str, ...]) -> LofoRun:
    """The run as if `keys` (e.g. train_acc: the HF Trainer's default logs) had never been logged; its outcome and
    memorisation step stay those of the full record."""
    n = len(run.series["step"])
    series = {**run.series, **{k: np.full(n, np.nan) for k in keys}}
    return LofoRun(run.family, run.name, run.grok, series, run.group, run.t_mem)


def lofo(runs: list[LofoRun], base: WarnConstants | None = None, hide: tuple[str, ...] = ()) -> dict[str, Any]:
    """For every family: constants fitted on the other families, rows of its runs under each detector (DETECTORS);
    per family and overall summaries, and the fitted constants per fold. `hide`: inputs the held-out runs are scored
    without (the calibration runs keep them), e.g. ("train_acc",) for a run that logs only its train loss."""
    families = list(dict.fromkeys(r.family for r in runs))
    rows: list[dict[str, Any]] = []
    folds: dict[str, Any] = {}
    for fam in families:
        k = fit_constants([r for r in runs if r.family != fam], base, source=f"all but {fam}")
        folds[fam] = k.to_dict()
        for r in (hidden(r, hide) if hide else r for r in runs if r.family == fam):
            tr = traces(r, k)
            rows.extend(run_row(r, name, k, tr) for name in DETECTORS)
    out: dict[str, Any] = {"families": families, "rows": rows, "folds": folds, "summary": [], "per_family": []}
    for name in DETECTORS:
        sel = [r for r in rows if r["detector"] == name]
        out["summary"].append({"detector": name, **summarise(sel)})
        for fam in families:
            out["per_family"].append({"detector": name, "family": fam,
                                      **summarise([r for r in sel if r["family"] == fam])})
    return out


def _from_dict(d: dict[str, Any]) -> WarnConstants:
    """WarnConstants from its `to_dict()` (a fold's constants as stored in the results)."""
    from grokscope.monitor.detector import DetectorConfig

    t = {**d["transfer"], "coef": tuple(d["transfer"].get("coef", ()))}
    return WarnConstants(DetectorConfig(**d["validation"]), TransferConfig(**t),
                         Forecast(**d["forecast_validation"]), Forecast(**d["forecast_transfer"]), d.get("source", ""))
