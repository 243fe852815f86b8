"""The forecast that comes with every warning: a predicted grok step and an interval, fitted on calibration runs.

Where the optimiser has a decay clock (`monitor.clock`), the norm-delay law: grokking comes τ* clock units after
memorisation, so from a warning at step t with τ_t units elapsed and the current rate r the raw forecast is
t̂ = t + max(τ* − τ_t, 0)/r. Its point estimate and interval are t̂ · exp(q) for q_mid the median and [q_lo, q_hi] the
range of log(t_grok / t̂) over the calibration runs the detector warned in time (`QUANTILES`). Without a clock (no
decay): a ratio of the warning step, [r_lo, r_mid, r_hi] × t, the same statistics of t_grok / t_warn over those runs.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

# the range and the median: with n calibration warnings (about 10 per fold), the range of their residuals holds a new
# exchangeable run's with probability (n − 1)/(n + 1), about 80 %; interpolated 5 / 95 % quantiles hold fewer
QUANTILES = (0.0, 0.5, 1.0)


@dataclass(frozen=True)
class Forecast:
    """τ* (clock units from memorisation to grokking) and the calibrated spreads (module doc)."""

    tau_star: float = 5.0
    q_lo: float = -0.5
    q_mid: float = 0.0
    q_hi: float = 0.7
    r_lo: float = 1.1
    r_mid: float = 1.5
    r_hi: float = 2.5
    n_clock: int = 0  # calibration warnings behind the clock quantiles
    n_ratio: int = 0  # ... and behind the ratio quantiles

    def raw(self, step: int, tau_now: float | None, rate: float | None) -> float | None:
        """The law's t̂ before the calibrated correction (None without a usable clock)."""
        if tau_now is None or rate is None or not (math.isfinite(tau_now) and math.isfinite(rate) and rate > 0):
            return None
        return float(step) + max(self.tau_star - tau_now, 0.0) / rate

    def predict(self, step: int, tau_now: float | None, rate: float | None) -> dict[str, Any]:
        """{predicted, lo, hi, how}: the grok step forecast at a warning at `step`."""
        t = self.raw(step, tau_now, rate)
        if t is not None:
            return {"predicted": t * math.exp(self.q_mid), "lo": max(step, t * math.exp(self.q_lo)),
                    "hi": t * math.exp(self.q_hi), "how": f"norm-delay law: tau*={self.tau_star:.3g} clock units"}
        return {"predicted": self.r_mid * step, "lo": self.r_lo * step, "hi": self.r_hi * step,
                "how": "ratio of the warning step (no decay clock)"}

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def fit_forecast(tau_star: float, clock_points: list[tuple[int, float, float, int]],
                 ratio_points: list[tuple[int, int]], base: Forecast | None = None) -> Forecast:
    """The spreads from calibration warnings: `clock_points` (warning step, τ at it, rate, grok step) and
    `ratio_points` (warning step, grok step); too few points (< 3) keep `base`'s values."""
    base = base or Forecast()
    f = Forecast(tau_star, base.q_lo, base.q_mid, base.q_hi, base.r_lo, base.r_mid, base.r_hi)
    res = [math.log(g / f.raw(s, t, r)) for s, t, r, g in clock_points if f.raw(s, t, r)]
    rat = [g / s for s, g in ratio_points if s > 0]
    q_lo, q_mid, q_hi = (np.quantile(res, QUANTILES).tolist() if len(res) >= 3 else (f.q_lo, f.q_mid, f.q_hi))
    r_lo, r_mid, r_hi = (np.quantile(rat, QUANTILES).tolist() if len(rat) >= 3 else (f.r_lo, f.r_mid, f.r_hi))
    return Forecast(float(tau_star), float(q_lo), float(q_mid), float(q_hi), float(r_lo), float(r_mid), float(r_hi),
                    len(res), len(rat))
