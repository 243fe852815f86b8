"""Defect-onset detectors, lead, and the lead–grok-time power law."""

import numpy as np
import pytest

from grokscope.geometry.onset import (
    fit_power_law,
    lead,
    lead_fraction,
    onset_envelope,
    onset_threshold,
    rolling_max,
)


def _series(onset_at=2300, n=60, base=2.0, high=800.0, seed=0, noise=0.2):
    """Defect every 100 steps: noisy baseline, then a rise starting at `onset_at`."""
    rng = np.random.default_rng(seed)
    steps = np.arange(n) * 100
    D = base * np.exp(noise * rng.standard_normal(n))
    after = steps >= onset_at
    D[after] = high * np.exp(noise * rng.standard_normal(after.sum()))
    return steps, D


def test_threshold_detector_finds_planted_onset():
    steps, D = _series()
    assert onset_threshold(steps, D) == 2300
    shuffled = np.random.default_rng(1).permutation(len(steps))  # order of rows does not matter
    assert onset_threshold(steps[shuffled], D[shuffled]) == 2300


def test_threshold_detector_needs_both_ratio_and_floor():
    steps, D = _series(base=0.5, high=15.0, noise=0.0)  # 30× baseline but below the floor of 20
    assert onset_threshold(steps, D) is None
    assert onset_threshold(steps, D, floor=10) == 2300
    steps, D = _series(base=5.0, high=40.0, noise=0.0)  # above the floor but only 8× baseline
    assert onset_threshold(steps, D) is None
    assert onset_threshold(steps, D, factor=5) == 2300
    assert onset_threshold(steps[:3], D[:3]) is None


def test_envelope_detector_finds_planted_onset():
    steps, D = _series(onset_at=3100, base=3.0, high=60.0)
    assert onset_envelope(steps, D) == 3100
    # a centred window sees the rise up to window//2 measurements early
    assert onset_envelope(steps, D, center=True) == 2900
    assert onset_envelope(steps[:40], np.full(40, 3.0) * np.exp(0.1 * np.sin(np.arange(40)))) is None


def test_envelope_factor_multiplies_D_not_log_D():
    steps = np.arange(40) * 100
    base = np.full(40, 100.0)  # log10 D = 2 early on
    four, six = base.copy(), base.copy()
    four[20:], six[20:] = 400.0, 600.0
    assert onset_envelope(steps, four) is None  # 4× < 5×
    assert onset_envelope(steps, six) == 2000  # 6× > 5× (5 × log10 D would need D > 1e10)


def test_rolling_max_trailing_and_centred():
    x = np.array([1.0, 3.0, 2.0, 0.0, 5.0, 1.0])
    np.testing.assert_array_equal(rolling_max(x, 3), [1, 3, 3, 3, 5, 5])
    np.testing.assert_array_equal(rolling_max(x, 3, center=True), [3, 3, 3, 5, 5, 5])


def test_lead_and_fraction():
    assert lead(10_000, 7_500) == 2_500
    assert lead_fraction(10_000, 7_500) == pytest.approx(0.25)
    assert lead(None, 7_500) is None and lead(10_000, None) is None
    assert lead_fraction(None, 100) is None
    assert lead(5_000, 6_000) == -1_000  # onset after grokking is a negative lead, not hidden


def test_power_law_recovers_planted_alpha():
    rng = np.random.default_rng(0)
    t_grok = np.exp(rng.uniform(np.log(2e3), np.log(2e5), 43))
    dt = 0.02 * t_grok**1.27 * np.exp(0.1 * rng.standard_normal(43))
    fit = fit_power_law(t_grok, dt)
    assert fit.n == 43
    assert abs(fit.alpha - 1.27) < 3 * fit.alpha_se and fit.alpha_se < 0.05
    assert fit.r2 > 0.95
    exact = fit_power_law([1, 10, 100, 1000], [3, 30 * 10**0.5, 3000, 3 * 1000**1.5])
    assert exact.alpha == pytest.approx(1.5) and exact.alpha_se == pytest.approx(0, abs=1e-9)
    assert exact.intercept == pytest.approx(np.log10(3)) and exact.r2 == pytest.approx(1.0)


def test_power_law_se_matches_numpy_polyfit():
    rng = np.random.default_rng(3)
    x = np.exp(rng.uniform(0, 5, 20))
    y = x**0.8 * np.exp(0.3 * rng.standard_normal(20))
    fit = fit_power_law(x, y)
    coef, cov = np.polyfit(np.log10(x), np.log10(y), 1, cov="unscaled")
    resid = np.log10(y) - np.polyval(coef, np.log10(x))
    se = np.sqrt(cov[0, 0] * (resid**2).sum() / (len(x) - 2))
    assert fit.alpha == pytest.approx(coef[0], rel=1e-10)
    assert fit.alpha_se == pytest.approx(se, rel=1e-8)


def test_power_law_drops_nonpositive_and_needs_three_points():
    fit = fit_power_law([1, 2, 4, 8, -1, 0], [1, 2, 4, 8, 5, 5])
    assert fit.n == 4 and fit.alpha == pytest.approx(1.0)
    with pytest.raises(ValueError):
        fit_power_law([1, 2], [1, 2])
