"""A multi-signal early warning of grokking: causal signals per measurement, a score, a warning with evidence.

Each measurement (a defect measurement of the monitor, or a stored run's replayed one) brings the commutator
defect D, the weight norm ‖θ‖ and the latest logged train accuracy (and, for the validation variant, the test
loss). `signals(...)` turns the series into per-measurement signals that use only the measurements up to each
one (causal by construction: every signal is an expanding or trailing statistic); `score(...)` combines them;
`MultiSignalDetector` runs this online and fires once, when the score first reaches the threshold.

The signals, each with a reason to transfer across tasks and models:
- `memorised`: train accuracy ≥ `acc_gate` (grokking is generalisation *after* fitting the training set);
- `norm_drop`: 1 − ‖θ_t‖ / max ‖θ‖ since the run first memorised (P3: after memorisation, learning is norm
  minimisation on the zero-loss manifold; without a norm decline, no grokking);
- `defect_rise`: log10 of D over its early baseline (P2's onset signal, necessary but not sufficient);
- `test_drop` (validation variant only): 1 − test loss / its maximum since memorisation.
The default (`DEFAULT_DETECTOR`, test-free) scores the gated norm decline alone: on the calibration runs the defect
rise was anti-predictive (docs/early-warning.md), so it carries no weight; `VALIDATION_DETECTOR` adds test_drop.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Protocol

import numpy as np

from grokscope.errors import ConfigError
from grokscope.monitor.warning import WarningEvent

SIGNALS = ("memorised", "norm_drop", "defect_rise", "test_drop")
INPUTS = ("defect", "weight_norm", "train_acc", "test_loss")


class Detector(Protocol):
    """What the monitor calls after each defect measurement (`MultiSignalDetector`, or P2's `OnsetDetector`)."""

    def observe(self, step: int, defect: float, weight_norm: float | None = None, train_acc: float | None = None,
                test_loss: float | None = None) -> WarningEvent | None: ...


@dataclass(frozen=True)
class DetectorConfig:
    """Weights and thresholds of the multi-signal detector (chosen on the calibration part of the corpus only)."""

    acc_gate: float = 0.99  # train accuracy at which a run counts as having memorised its training set
    norm_weight: float = 1.0  # weight of norm_drop in the score
    defect_weight: float = 0.0  # weight of defect_rise (log10 D / baseline) in the score
    test_weight: float = 0.0  # weight of test_drop: > 0 only in the validation variant
    bias: float = 0.0  # a constant in the sum (1 with every weight 0: the memorisation gate alone, an ablation)
    gate: bool = True  # score 0 until the run has memorised (needs logged train accuracy)
    n_base: int = 3  # measurements in the defect baseline
    base_floor: float = 0.1  # the defect baseline is at least this
    threshold: float = 0.327646  # the operating point: warn when the score first reaches it (calibrated: see below)
    ratio_lo: float = 1.1  # the predicted grokking window starts at ratio_lo × the warning step (calibration: min)
    ratio_mid: float = 1.275  # the predicted grok step: ratio_mid × the warning step (calibration: median)
    ratio_hi: float = 2.0  # the predicted window ends at ratio_hi × the warning step (calibration: max)
    name: str = "multi"  # the detector's name on its warning and in the report ("multi-val": the validation variant)

    def __post_init__(self) -> None:
        if not 0 < self.acc_gate <= 1:
            raise ConfigError(f"detector acc_gate={self.acc_gate!r} must lie in (0, 1]")
        if self.n_base < 1:
            raise ConfigError(f"detector n_base={self.n_base!r} must be >= 1")
        if not 0 < self.ratio_lo <= self.ratio_mid <= self.ratio_hi:
            raise ConfigError("detector window ratios must satisfy 0 < ratio_lo <= ratio_mid <= ratio_hi")

    @property
    def uses_test(self) -> bool:
        """Whether the score reads held-out data (the validation variant)."""
        return self.test_weight != 0


def _running_max_since(x: np.ndarray, start: np.ndarray) -> np.ndarray:
    """Per index i: max of x[j] for j ≤ i with start[j] true (NaN before the first start; NaNs skipped)."""
    out = np.full(len(x), np.nan)
    best = -np.inf
    on = False
    for i, (v, s) in enumerate(zip(x, start)):
        on = on or bool(s)
        if on and np.isfinite(v):
            best = max(best, float(v))
        out[i] = best if on and np.isfinite(best) else np.nan
    return out


def signals(defect, weight_norm, train_acc, test_loss=None, cfg: DetectorConfig = DetectorConfig()
            ) -> dict[str, np.ndarray]:
    """Per-measurement causal signals (module doc) from series in step order; missing values are NaN. Entry i
    depends only on entries 0..i of the inputs."""
    D = np.asarray(defect, dtype=float)
    n = len(D)
    N = np.asarray(weight_norm, dtype=float) if weight_norm is not None else np.full(n, np.nan)
    acc = np.asarray(train_acc, dtype=float) if train_acc is not None else np.full(n, np.nan)
    tl = np.asarray(test_loss, dtype=float) if test_loss is not None else np.full(n, np.nan)
    if not (len(N) == len(acc) == len(tl) == n):
        raise ValueError("defect, weight_norm, train_acc and test_loss must have one entry per measurement")
    mem = np.where(np.isnan(acc), np.nan, (acc >= cfg.acc_gate).astype(float))
    ever = np.maximum.accumulate(np.nan_to_num(mem, nan=0.0)) > 0 if n else np.zeros(0, dtype=bool)
    since = ever if cfg.gate else np.ones(n, dtype=bool)
    with np.errstate(divide="ignore", invalid="ignore"):
        norm_drop = 1.0 - N / _running_max_since(N, since)
        test_drop = 1.0 - tl / _running_max_since(tl, since)
        base = np.array([max(float(np.nanmedian(D[:min(i + 1, cfg.n_base)])), cfg.base_floor)
                         if np.isfinite(D[:min(i + 1, cfg.n_base)]).any() else np.nan for i in range(n)])
        rise = np.log10(np.maximum(D, 0.0) / base)
    rise = np.where(np.arange(n) >= cfg.n_base - 1, rise, 0.0)  # no rise before the baseline is complete
    return {"memorised": mem, "norm_drop": norm_drop, "defect_rise": np.where(np.isfinite(rise), rise, np.nan),
            "test_drop": test_drop}


def score(sig: Mapping[str, np.ndarray], cfg: DetectorConfig = DetectorConfig()) -> np.ndarray:
    """The detector's score per measurement: bias + a weighted sum of norm_drop, defect_rise and test_drop
    (missing signals count 0), times the memorisation gate (0 before the run has memorised, when `cfg.gate`)."""
    def part(name: str) -> np.ndarray:
        return np.nan_to_num(np.asarray(sig[name], dtype=float), nan=0.0)

    s = (cfg.bias + cfg.norm_weight * part("norm_drop") + cfg.defect_weight * part("defect_rise")
         + cfg.test_weight * part("test_drop"))
    if cfg.gate:
        s = s * part("memorised")
    return s


def score_series(series: Mapping[str, Any], cfg: DetectorConfig = DetectorConfig()) -> np.ndarray:
    """`score(signals(...))` of a dict of input series (keys of INPUTS; absent ones are missing)."""
    return score(signals(series["defect"], series.get("weight_norm"), series.get("train_acc"),
                         series.get("test_loss") if cfg.uses_test else None, cfg), cfg)


@dataclass
class MultiSignalDetector:
    """Online: `observe(step, defect=..., weight_norm=..., train_acc=..., test_loss=...)` per measurement returns
    the `WarningEvent` the first time the score reaches the threshold, else None; `scores` keeps every score."""

    cfg: DetectorConfig = field(default_factory=DetectorConfig)
    steps: list[int] = field(default_factory=list)
    inputs: dict[str, list[float]] = field(default_factory=lambda: {k: [] for k in INPUTS})
    scores: list[float] = field(default_factory=list)
    fired: WarningEvent | None = None

    def observe(self, step: int, defect: float, weight_norm: float | None = None, train_acc: float | None = None,
                test_loss: float | None = None, **other: Any) -> WarningEvent | None:
        """Add one measurement, score the series so far, and fire once at the threshold (`other` inputs the monitor
        passes, e.g. train_loss and the optimiser's clock, are not read)."""
        if self.steps and step <= self.steps[-1]:
            raise ValueError(f"measurement at step {step} after step {self.steps[-1]}: steps must increase")
        self.steps.append(int(step))
        for k, v in zip(INPUTS, (defect, weight_norm, train_acc, test_loss)):
            self.inputs[k].append(math.nan if v is None else float(v))
        sig = signals(**{k: np.asarray(v) for k, v in self.inputs.items()}, cfg=self.cfg) if self.cfg.uses_test \
            else signals(self.inputs["defect"], self.inputs["weight_norm"], self.inputs["train_acc"], None, self.cfg)
        s = float(score(sig, self.cfg)[-1])
        self.scores.append(s)
        if self.fired is not None or not s >= self.cfg.threshold:
            return None
        c = self.cfg
        last = {k: float(v[-1]) for k, v in sig.items()}
        D = np.asarray(self.inputs["defect"])
        base = max(float(np.nanmedian(D[:c.n_base])), c.base_floor) if np.isfinite(D[:c.n_base]).any() else math.nan
        self.fired = WarningEvent(
            step=int(step), onset=int(step), detector=c.name, defect=float(defect), baseline=base,
            ratio=float(defect) / base if base and math.isfinite(base) else math.nan,
            predicted_grok=c.ratio_mid * step, window_lo=c.ratio_lo * step, window_hi=c.ratio_hi * step,
            evidence={"score": round(s, 4), "threshold": c.threshold,
                      "signals": {k: (None if math.isnan(v) else round(v, 4)) for k, v in last.items()},
                      "weight_norm": self.inputs["weight_norm"][-1], "train_acc": self.inputs["train_acc"][-1],
                      "n_measurements": len(self.steps), "config": asdict(c)})
        return self.fired


def variant(cfg: DetectorConfig, **changes: Any) -> DetectorConfig:
    """A copy of `cfg` with some fields changed (ablations, the validation variant)."""
    return replace(cfg, **changes)


# The default operating point and the validation variant, chosen on the calibration part of the corpus only
# (`python studies/early_warning.py calibrate`, docs/early-warning.md): the threshold maximising hit rate −
# false-alarm rate over the calibration runs at defects every 200 steps (the midpoint between the two run scores
# that bound the optimum), the window [min, median, max] of t_grok / t_warn over the calibration runs then warned
# in time (6 runs test-free, 8 with the test loss). Signals and weights were fixed before any evaluation run was
# scored (commit ff11229: thresholds 0.3265 / 0.5432 at 6000-step budgets); the values here are the same rule
# applied again after the never-grokking runs' budgets were extended to 3x the slowest grok step.
DEFAULT_DETECTOR = DetectorConfig()  # norm_weight 1, defect_weight 0, threshold 0.327646, window 1.1–2.0 × step
VALIDATION_DETECTOR = variant(DEFAULT_DETECTOR, test_weight=1.0, threshold=0.564974, ratio_lo=1.105, ratio_mid=1.75,
                              ratio_hi=2.167, name="multi-val")
MULTI_DETECTORS = {"multi": DEFAULT_DETECTOR, "multi-val": VALIDATION_DETECTOR}
