"""The test-free early warning that transfers across model families: signals on the optimiser's clock.

Time is measured from memorisation in clock units τ = Σ r_t Δt (`monitor.clock`: r = ηλ for decoupled decay), the
norm relative to its peak since memorisation. Per measurement (causal: each entry uses the series up to it):
- `memorised`: train accuracy ≥ `acc_gate`, or where no train accuracy is logged (the HF Trainer's default) the
  train loss ≤ `loss_gate` (calibrated: the train loss at which calibration runs first reach the accuracy gate);
- `tau`: clock units since the run first memorised;
- `norm_ratio`: ‖θ‖ / its maximum since memorisation; `shrink`: −ln(norm_ratio)/τ, the realised decline as a
  fraction of pure decay;
- `norm_newmin`: −ln(min ‖θ‖ so far / min ‖θ‖ up to `window` clock units ago): the norm still making new lows;
- `loss_drop`: log10(min train loss up to `window` clock units ago / min train loss so far): the fit still
  improving, one clock unit on. After the decay transient a run that groks keeps improving its training loss (the
  generalising circuit cleans up), one stuck at a memorising equilibrium with decay (too little data, a task it
  cannot learn) does not.
Scores (`TransferConfig.score`): "loss-drop" (`loss_drop`, gated), "clock" (τ/τ*, gated on memorised and a norm still
making new lows), "clock-loss" (`loss_drop` × min(1, τ/τ*), gated), "logistic" (a logistic model on FEATURES, fitted
by `monitor.lofo`). It abstains (NaN score, a stated reason) where it
cannot judge: no train metric, no decay, or a decay without a calibrated clock (L2 inside Adam).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from grokscope.errors import ConfigError
from grokscope.monitor.clock import tau as clock_tau

SCORES = ("loss-drop", "clock", "clock-loss", "logistic")
FEATURES = ("loss_drop", "norm_newmin", "clock", "norm_decline")  # the logistic score's inputs (`features`)
INPUTS = ("weight_norm", "train_acc", "train_loss", "clock_rate", "clock_kind")
ABSTAIN = {
    "metric": "no train accuracy or train loss logged: it cannot tell when the training set is memorised",
    "none": "no weight decay: without decay (and no other regulariser it knows) there is no clock to time grokking on",
    "l2-adaptive": "weight decay as an L2 term inside an adaptive optimiser: its rate depends on the optimiser's "
                   "second moments, so there is no calibrated clock",
    "unknown": "the optimiser is unknown (pass optimizer= to the Monitor) or mixes decay kinds: no clock",
}


@dataclass(frozen=True)
class TransferConfig:
    """The test-free detector's constants (fitted on the corpus: docs/early-warning.md, `monitor.lofo`)."""

    score: str = "loss-drop"
    threshold: float = 0.5
    tau_star: float = 5.0  # median clock units from memorisation to grokking (the "clock" scores)
    window: float = 1.0  # clock units over which the signals' recent change is measured
    burn_in: float = 1.0  # clock units after memorisation before any score: the decay's transient (norm ~ e^-τ)
    coef: tuple[float, ...] = ()  # the "logistic" score: intercept, then one weight per FEATURES entry (fitted)
    acc_gate: float = 0.99
    loss_gate: float = 0.1  # train loss that counts as memorised when no train accuracy is logged
    name: str = "transfer"

    def __post_init__(self) -> None:
        if self.score not in SCORES:
            raise ConfigError(f"transfer detector score={self.score!r}; choose from {', '.join(SCORES)}")
        if not self.window > 0:
            raise ConfigError(f"transfer detector window={self.window!r} must be > 0")


def memorised(train_acc, train_loss, acc_gate: float, loss_gate: float) -> np.ndarray:
    """1/0 per measurement from the train accuracy where logged, else from the train loss; NaN where neither is."""
    acc, loss = np.asarray(train_acc, dtype=float), np.asarray(train_loss, dtype=float)
    out = np.where(np.isfinite(loss), (loss <= loss_gate).astype(float), np.nan)
    return np.where(np.isfinite(acc), (acc >= acc_gate).astype(float), out)


def _min_upto(x: np.ndarray, on: np.ndarray) -> np.ndarray:
    """Running min of x over entries with `on` (NaN before the first such finite entry)."""
    out, best = np.full(len(x), np.nan), math.inf
    for i, (v, o) in enumerate(zip(x, on)):
        if o and math.isfinite(v):
            best = min(best, float(v))
        out[i] = best if math.isfinite(best) else np.nan
    return out


def transfer_signals(series: dict[str, Any], cfg: TransferConfig = TransferConfig()) -> dict[str, np.ndarray]:
    """Per-measurement signals (module doc) of a series dict: `step` and the keys of INPUTS (absent: missing)."""
    steps = np.asarray(series["step"], dtype=float)
    n = len(steps)

    def get(k: str) -> np.ndarray:
        v = series.get(k)
        return np.full(n, np.nan) if v is None else np.asarray(v, dtype=float)

    N, loss, rates = get("weight_norm"), get("train_loss"), get("clock_rate")
    mem = memorised(get("train_acc"), loss, cfg.acc_gate, cfg.loss_gate)
    ever = np.maximum.accumulate(np.nan_to_num(mem) > 0) if n else np.zeros(0, dtype=bool)
    first = int(steps[np.argmax(ever)]) if ever.any() else None
    tau = clock_tau(steps, rates, first)
    with np.errstate(divide="ignore", invalid="ignore"):
        peak = np.fmax.accumulate(np.where(ever & np.isfinite(N), N, -np.inf)) if n else np.zeros(0)
        ratio = np.where(ever & (peak > 0), N / peak, np.nan)
        shrink = np.where(tau > 0, -np.log(ratio) / tau, np.nan)
        nmin, lmin = _min_upto(N, ever), _min_upto(loss, ever)
        newmin, drop = np.full(n, np.nan), np.full(n, np.nan)
        for i in range(n):
            if not ever[i] or not math.isfinite(tau[i]):
                continue
            old = np.flatnonzero(ever[: i + 1] & (tau[: i + 1] <= tau[i] - cfg.window))
            j = old[-1] if len(old) else None
            newmin[i] = -np.log(nmin[i] / nmin[j]) if j is not None else 0.0
            drop[i] = np.log10(lmin[j] / lmin[i]) if j is not None else 0.0
    return {"memorised": mem, "tau": tau, "norm_ratio": ratio, "shrink": shrink,
            "norm_newmin": np.where(np.isfinite(newmin), newmin, np.nan),
            "loss_drop": np.where(np.isfinite(drop), drop, np.nan)}


def features(sig: dict[str, np.ndarray], cfg: TransferConfig) -> np.ndarray:
    """[n, len(FEATURES)]: loss_drop, norm_newmin, min(τ/τ*, 2) and −ln(norm_ratio) (missing: 0)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        cols = [sig["loss_drop"], sig["norm_newmin"], np.minimum(sig["tau"] / cfg.tau_star, 2.0),
                -np.log(sig["norm_ratio"])]
    return np.nan_to_num(np.stack(cols, axis=1), nan=0.0, posinf=0.0, neginf=0.0)


def transfer_score(sig: dict[str, np.ndarray], cfg: TransferConfig = TransferConfig()) -> np.ndarray:
    """The score per measurement (0 before memorisation and while not memorised; NaN where a signal is missing)."""
    mem = np.nan_to_num(sig["memorised"])
    tau = sig["tau"]
    if cfg.score == "loss-drop":
        s = sig["loss_drop"]
    elif cfg.score == "clock":
        s = (tau / cfg.tau_star) * (np.nan_to_num(sig["norm_newmin"]) > 0)
    elif cfg.score == "clock-loss":
        s = sig["loss_drop"] * np.minimum(1.0, tau / cfg.tau_star)
    else:
        if len(cfg.coef) != len(FEATURES) + 1:
            raise ConfigError(f"the logistic transfer score needs {len(FEATURES) + 1} coefficients, got {cfg.coef!r}")
        with np.errstate(over="ignore"):
            s = 1.0 / (1.0 + np.exp(-(cfg.coef[0] + features(sig, cfg) @ np.asarray(cfg.coef[1:]))))
    return np.where(np.isfinite(tau) & (tau >= cfg.burn_in), np.nan_to_num(s) * mem, 0.0)


def abstain_reason(clock_kind: str | None, has_train_metric: bool) -> str | None:
    """Why the detector cannot judge now (ABSTAIN), or None."""
    if not has_train_metric:
        return ABSTAIN["metric"]
    kind = clock_kind or "unknown"
    return None if kind in ("decoupled", "l2-sgd") else ABSTAIN.get(kind, ABSTAIN["unknown"])


@dataclass
class TransferDetector:
    """Online: `observe(step, weight_norm=, train_acc=, train_loss=, clock_rate=, clock_kind=)` per measurement;
    `scores` (NaN while abstaining), `abstain` (the latest reason, or None), `signals()` of the series so far."""

    cfg: TransferConfig = field(default_factory=TransferConfig)
    steps: list[int] = field(default_factory=list)
    inputs: dict[str, list[Any]] = field(default_factory=lambda: {k: [] for k in INPUTS})
    scores: list[float] = field(default_factory=list)
    abstain: str | None = None

    def observe(self, step: int, **inputs: Any) -> float:
        """Add one measurement; its score (NaN while abstaining)."""
        self.steps.append(int(step))
        for k in INPUTS:
            v = inputs.get(k)
            self.inputs[k].append(v if k == "clock_kind" else (math.nan if v is None else float(v)))
        has_metric = any(math.isfinite(v) for k in ("train_acc", "train_loss") for v in self.inputs[k])
        self.abstain = abstain_reason(self.inputs["clock_kind"][-1], has_metric)
        s = math.nan if self.abstain else float(transfer_score(self.signals(), self.cfg)[-1])
        self.scores.append(s)
        return s

    def signals(self) -> dict[str, np.ndarray]:
        series = {"step": self.steps, **{k: v for k, v in self.inputs.items() if k != "clock_kind"}}
        return transfer_signals(series, self.cfg)

    def state(self) -> dict[str, float | None]:
        """What the forecast needs now: τ since memorisation and the clock rate (None where unknown)."""
        if not self.steps:
            return {"tau": None, "rate": None}
        t = float(self.signals()["tau"][-1])
        r = self.inputs["clock_rate"][-1]
        return {"tau": t if math.isfinite(t) else None, "rate": r if math.isfinite(r) and r > 0 else None}

    def describe(self) -> dict[str, Any]:
        return {"config": asdict(self.cfg), "abstain": self.abstain}
