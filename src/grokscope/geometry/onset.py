"""Defect onset, lead over grokking and the lead–grok-time power law (docs/papers.md §4).

Two onset detectors over a defect series D(t), each the rule of the script behind a paper's numbers:
- `onset_threshold` (P2 §4.3; grok_generalization_dynamics.py `find_spike_step`): first step, from the
  third measurement on, with D > 10 × max(median of the first 3 measurements, 0.1) and D > 20;
- `onset_envelope` (P1 Table 5; defect_wd_replot.py `detect_onset_envelope`): centred rolling max (window 5)
  of log10 D, baseline = median of that envelope over the first max(3, ⌊25 %⌋) measurements, onset = first
  measurement after those where the envelope exceeds baseline + log10 5 (i.e. 5× the early defect).
Lead = t_grok − t_onset (positive: the defect rose before grokking); lead fraction = lead / t_grok.
P2 measures the lead to the first evaluation ≥ 90 % test accuracy; P1 to the first task's grok step
(98 % for 3 evaluations), with the envelope detector on ≤ 120 post-hoc checkpoints (`posthoc_indices`).
`defect_timing` is the one place these are put together for a run (onset, peak ratio, lead per task).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass
class PowerLawFit:
    """y = 10^intercept · x^alpha fitted by least squares in log10–log10: slope, its standard error, R², n."""

    alpha: float
    alpha_se: float
    intercept: float
    r2: float
    n: int


def _clean(steps, D) -> tuple[np.ndarray, np.ndarray]:
    steps, D = np.asarray(steps), np.asarray(D, dtype=float)
    if steps.shape != D.shape:
        raise ValueError(f"steps {steps.shape} and D {D.shape} differ in shape")
    order = np.argsort(steps, kind="stable")
    return steps[order], D[order]


def onset_threshold(steps, D, factor: float = 10.0, floor: float = 20.0, n_base: int = 3,
                    base_floor: float = 0.1) -> int | None:
    """P2's onset: first step at index ≥ n_base − 1 with D > factor × max(median(D[:n_base]), base_floor)
    and D > floor; None if never (or with fewer than n_base measurements)."""
    steps, D = _clean(steps, D)
    if len(D) < n_base:
        return None
    base = max(float(np.nanmedian(D[:n_base])), base_floor)
    hit = np.flatnonzero((D > factor * base) & (D > floor))
    hit = hit[hit >= n_base - 1]
    return int(steps[hit[0]]) if len(hit) else None


def onset_envelope(steps, D, window: int = 5, factor: float = 5.0, base_frac: float = 0.25,
                   min_base: int = 3, center: bool = True) -> int | None:
    """P1's post-hoc onset: envelope = rolling max (centred, `window`) of log10 D with exact zeros read as
    0.01; baseline = median of the envelope over the first n_base = max(min_base, ⌊base_frac·n⌋)
    measurements; the first step after those whose envelope exceeds baseline + log10(factor). None if
    never. `center=False` gives a trailing (causal) window, which a detector run during training needs."""
    steps, D = _clean(steps, D)
    n = len(D)
    n_base = max(min_base, int(base_frac * n))
    if n <= n_base:
        return None
    D = np.where(D == 0, 0.01, D)
    with np.errstate(divide="ignore", invalid="ignore"):
        logD = np.log10(D + 1e-15)
    env = rolling_max(logD, window, center)
    thr = float(np.nanmedian(env[:n_base])) + np.log10(factor)
    hit = np.flatnonzero(env[n_base:] > thr)
    return int(steps[n_base + hit[0]]) if len(hit) else None


def posthoc_indices(n: int, max_points: int = 120) -> np.ndarray:
    """Which of n stored checkpoints P1's post-hoc defect uses: all when n ≤ max_points, else max_points
    spread evenly (integer linspace, first and last included), as defect_wd_comparison.py subsamples."""
    if n <= max_points:
        return np.arange(n)
    return np.linspace(0, n - 1, max_points).astype(int)


def rolling_max(x: np.ndarray, window: int, center: bool = False) -> np.ndarray:
    """Max over the last `window` entries, or over i ± window//2 (centred), NaN-aware, shortened at the
    ends."""
    x = np.asarray(x, dtype=float)
    n, out = len(x), np.full(len(x), np.nan)
    for i in range(n):
        lo, hi = (i - window // 2, i + window // 2 + 1) if center else (i - window + 1, i + 1)
        seg = x[max(lo, 0):min(hi, n)]
        if np.isfinite(seg).any():
            out[i] = np.nanmax(seg)
    return out


def lead(t_grok: int | None, t_onset: int | None) -> int | None:
    """Δt = t_grok − t_onset; None when either is missing."""
    if t_grok is None or t_onset is None:
        return None
    return int(t_grok) - int(t_onset)


def lead_fraction(t_grok: int | None, t_onset: int | None) -> float | None:
    """Lead as a fraction of the grok step, (t_grok − t_onset) / t_grok; None when undefined."""
    d = lead(t_grok, t_onset)
    return None if d is None or not t_grok else d / float(t_grok)


def peak_ratio(D, n_base: int = 3) -> float | None:
    """max D / median of the first `n_base` measurements (NaN-aware, in step order); None when undefined."""
    D = np.asarray(D, dtype=float)
    if not np.isfinite(D).any() or not np.isfinite(D[:n_base]).any():
        return None
    base = float(np.nanmedian(D[:n_base]))
    ratio = float(np.nanmax(D)) / base if base > 0 else math.nan
    return ratio if math.isfinite(ratio) else None


def defect_timing(steps, D, grok: Mapping[str, int | None]) -> dict[str, Any]:
    """A defect series' `onset` (threshold detector), `defect_peak_ratio`, and per task the `lead` and
    `lead_fraction` of the onset over the grok steps `grok` (None where undefined)."""
    steps, D = _clean(steps, D)
    onset = onset_threshold(steps, D)
    frac = {t: lead_fraction(g, onset) for t, g in grok.items()}
    return {"onset": onset, "defect_peak_ratio": peak_ratio(D),
            "lead": {t: lead(g, onset) for t, g in grok.items()},
            "lead_fraction": {t: None if f is None or not math.isfinite(f) else f for t, f in frac.items()}}


def fit_power_law(x, y) -> PowerLawFit:
    """Least squares of log10 y on log10 x over the points with x, y > 0: y ∝ x^alpha, with the slope's
    standard error sqrt(SSR / (n − 2) / Σ(log x − mean)²) (P2: lead ∝ t_grok^1.27)."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    ok = np.isfinite(x) & np.isfinite(y) & (x > 0) & (y > 0)
    lx, ly = np.log10(x[ok]), np.log10(y[ok])
    n = len(lx)
    if n < 3:
        raise ValueError(f"a power-law fit needs at least 3 positive points, got {n}")
    sxx = float(((lx - lx.mean()) ** 2).sum())
    if sxx == 0:
        raise ValueError("a power-law fit needs at least two distinct x values")
    alpha = float(((lx - lx.mean()) * (ly - ly.mean())).sum() / sxx)
    intercept = float(ly.mean() - alpha * lx.mean())
    resid = ly - (intercept + alpha * lx)
    ssr, sst = float((resid**2).sum()), float(((ly - ly.mean()) ** 2).sum())
    return PowerLawFit(alpha=alpha, alpha_se=float(np.sqrt(ssr / (n - 2) / sxx)), intercept=intercept,
                       r2=1.0 - ssr / sst if sst > 0 else float("nan"), n=n)
