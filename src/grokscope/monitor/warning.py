"""Early warning of grokking: the papers' defect-onset detectors run online, and the lead relation.

`OnsetDetector.update(step, D)` feeds one inline defect measurement. After each one it applies a detector
of `geometry.onset` to the series *so far* (P2's `threshold`: D > 10 × the median of the first 3 and D > 20;
P1's `envelope`: rolling max of log10 D above 5 × the median of the first 25 % of the series so far), so
it uses only data up to now. The first time the detector finds an onset it fires once: a `WarningEvent`
with the step it fired at, the onset, the evidence, and a predicted grokking window from the lead relation
Δt = t_grok − t_onset = 10^b · t_grok^α (P2's power law), solved for t_grok, with b ± z residual SDs.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from grokscope.errors import ConfigError
from grokscope.geometry.onset import fit_power_law, onset_envelope, onset_threshold

P2_ALPHA = 1.27  # P2: lead ∝ t_grok^1.27 across an lr sweep
DETECTORS: dict[str, Callable[..., int | None]] = {"threshold": onset_threshold, "envelope": onset_envelope}


@dataclass(frozen=True)
class LeadModel:
    """lead = 10^intercept · t_grok^alpha, with the residual SD of log10 lead (fitted on `source`)."""

    alpha: float
    intercept: float
    resid_sd: float
    n: int
    source: str = ""

    @classmethod
    def fit(cls, t_grok, leads, alpha: float | None = None, source: str = "") -> LeadModel:
        """Least squares in log–log over points with positive lead: slope and intercept
        (`geometry.onset.fit_power_law`), or with `alpha` fixed (e.g. P2's 1.27) the intercept alone."""
        x, y = np.asarray(t_grok, dtype=float), np.asarray(leads, dtype=float)
        ok = np.isfinite(x) & np.isfinite(y) & (x > 0) & (y > 0)
        lx, ly = np.log10(x[ok]), np.log10(y[ok])
        if alpha is None:
            f = fit_power_law(x, y)
            a, b, dof = f.alpha, f.intercept, len(lx) - 2
        else:
            if len(lx) < 2:
                raise ValueError(f"fitting the lead intercept needs at least 2 positive points, got {len(lx)}")
            a, b, dof = float(alpha), float((ly - alpha * lx).mean()), len(lx) - 1
        resid = ly - (b + a * lx)
        return cls(a, b, float(np.sqrt((resid**2).sum() / max(1, dof))), len(lx), source)

    def grok_step(self, onset: float, shift: float = 0.0) -> float | None:
        """t_grok solving t − 10^(intercept+shift) t^α = onset on the branch through t = onset (None: the
        relation admits no grok step this late for this onset)."""
        c, a = 10.0 ** (self.intercept + shift), self.alpha

        def h(t: float) -> float:
            return t - c * t**a

        lo = float(onset)
        if a > 1:
            hi = (1.0 / (c * a)) ** (1.0 / (a - 1))
            if hi <= lo or h(hi) < onset:
                return None
        else:
            hi = 2 * lo
            for _ in range(200):
                if h(hi) >= onset:
                    break
                hi *= 2
            else:
                return None
        for _ in range(200):
            mid = 0.5 * (lo + hi)
            lo, hi = (mid, hi) if h(mid) < onset else (lo, mid)
        return 0.5 * (lo + hi)

    def window(self, onset: float, z: float = 2.0) -> tuple[float | None, float | None, float | None]:
        """(predicted t_grok, earliest, latest) for an onset: the fit, and intercept ∓ z residual SDs."""
        return (self.grok_step(onset), self.grok_step(onset, -z * self.resid_sd),
                self.grok_step(onset, z * self.resid_sd))


# P2's α = 1.27 with the intercept fitted on grokscope's quick preset (p 31, add, wd 1, seeds 42/137, lr 2e-3, 5e-3
# and 1e-2, 3000-step budget: all 6 runs' threshold onsets came before grokking), inline defects every 100 steps
# with K = 3, 1 thread, by `geometry.onset.defect_timing` as it stands since the P2 detector follows the authors'
# script (from the third measurement on, baseline floored at 0.1). Refit: `grokscope runs warnings STORE
# --calibrate CALIB_STORE` (docs/early-warning.md). With this intercept the relation has no root for onsets
# later than ≈ 5.5k steps (its largest grok step is ≈ 25.9k), so a warning there comes without a predicted step.
DEFAULT_LEAD = LeadModel(alpha=P2_ALPHA, intercept=-1.2953, resid_sd=0.1963, n=6,
                         source="quick preset, add, wd 1, seeds 42/137, lr 2e-3/5e-3/1e-2")


@dataclass
class WarningEvent:
    """The detector fired at `step`: the onset it found, the defect evidence and the predicted grok window."""

    step: int
    onset: int
    detector: str
    defect: float
    baseline: float
    ratio: float
    predicted_grok: float | None
    window_lo: float | None
    window_hi: float | None
    evidence: dict[str, Any] = field(default_factory=dict)

    def message(self) -> str:
        def fmt(v: float | None) -> str:
            return "?" if v is None else f"{v:.0f}"

        if "score" in self.evidence:  # the multi-signal detector (`monitor.detector`)
            sig = ", ".join(f"{k} {v:.3g}" for k, v in self.evidence.get("signals", {}).items() if v is not None)
            return (f"grokscope early warning at step {self.step}: score {self.evidence['score']:.3g} >= "
                    f"{self.evidence['threshold']:.3g} ({self.detector} detector; {sig}; D = {self.defect:.3g}). "
                    f"Predicted grokking around step {fmt(self.predicted_grok)} "
                    f"(window {fmt(self.window_lo)}–{fmt(self.window_hi)}).")
        return (f"grokscope early warning at step {self.step}: commutator defect onset at step {self.onset} "
                f"({self.detector} detector; D = {self.defect:.3g}, {self.ratio:.1f}x the baseline "
                f"{self.baseline:.3g}). "
                f"Predicted grokking around step {fmt(self.predicted_grok)} "
                f"(window {fmt(self.window_lo)}–{fmt(self.window_hi)}).")

    def to_row(self) -> dict[str, Any]:
        row = asdict(self)
        row["evidence"] = str(row.pop("evidence"))
        return {k: (float("nan") if v is None else v) for k, v in row.items()}


class OnsetDetector:
    """Online, causal defect-onset detection that fires once (see the module doc).

    Args:
        detector: the onset rule on the defect series so far, one of `DETECTORS` (default `threshold`).
        lead_model: the fitted lead of grokking over the onset that turns the onset into a predicted window.
        z: the window's half-width in residual standard deviations of the lead model.
        **options: passed to the onset rule.
    """

    def __init__(self, detector: str = "threshold", lead_model: LeadModel = DEFAULT_LEAD, z: float = 2.0,
                 **options: Any) -> None:
        if detector not in DETECTORS:
            raise ConfigError(f"unknown onset detector {detector!r}; choose from {', '.join(DETECTORS)}")
        self.detector, self.lead_model, self.z, self.options = detector, lead_model, z, options
        self.steps: list[int] = []
        self.defects: list[float] = []
        self.fired: WarningEvent | None = None

    def observe(self, step: int, defect: float, **signals: float | None) -> WarningEvent | None:
        """`update` with the multi-signal detector's call signature (the other signals are not used)."""
        return self.update(step, defect)

    def update(self, step: int, defect: float) -> WarningEvent | None:
        """Add one measurement; the event the first time an onset is found in the series so far, else None."""
        self.steps.append(int(step))
        self.defects.append(float(defect))
        if self.fired is not None:
            return None
        onset = DETECTORS[self.detector](np.array(self.steps), np.array(self.defects), **self.options)
        if onset is None:
            return None
        D = np.asarray(self.defects)
        base = float(np.nanmedian(D[:3]))
        pred, lo, hi = self.lead_model.window(onset, self.z)
        self.fired = WarningEvent(
            step=int(step), onset=int(onset), detector=self.detector, defect=float(defect), baseline=base,
            ratio=float(defect / base) if base > 0 else math.inf, predicted_grok=pred, window_lo=lo, window_hi=hi,
            evidence={"n_measurements": len(D), "recent_defects": [round(float(d), 4) for d in D[-5:]],
                      "options": self.options, "lead_model": asdict(self.lead_model)})
        return self.fired


def replay(steps, defects, detector: str = "threshold", **kw: Any) -> WarningEvent | None:
    """Feed a stored defect series to an `OnsetDetector` in step order, as it would have run live."""
    det = OnsetDetector(detector, **kw)
    order = np.argsort(np.asarray(steps), kind="stable")
    for i in order:
        ev = det.update(int(np.asarray(steps)[i]), float(np.asarray(defects)[i]))
        if ev is not None:
            return ev
    return None
