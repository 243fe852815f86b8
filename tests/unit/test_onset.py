"""Defect-onset detectors, lead, and the lead–grok-time power law."""

import numpy as np
import pytest

from grokscope.geometry.onset import (
    defect_timing,
    fit_power_law,
    lead,
    lead_fraction,
    onset_envelope,
    onset_threshold,
    peak_ratio,
    posthoc_indices,
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


def test_threshold_detector_is_p2s_rule():
    """Baseline max(median of the first 3, 0.1); the first 2 measurements are never the onset."""
    steps = np.arange(10) * 100
    D = np.array([1.0, 500.0, 1.0, 1.0, 30.0, 30.0, 1.0, 1.0, 1.0, 1.0])
    assert onset_threshold(steps, D) == 400  # index 1 exceeds both thresholds but precedes index 2
    tiny = np.array([0.001, 0.001, 0.001, 0.5, 1.5, 21.0, 1.0, 1.0, 1.0, 1.0])
    assert onset_threshold(steps, tiny) == 500  # D > 20
    assert onset_threshold(steps, tiny, floor=0.0) == 400  # D > 10 × max(0.001, 0.1) = 1
    assert onset_threshold(steps, tiny, floor=0.0, base_floor=0.0) == 300  # D > 10 × 0.001


def _envelope_by_hand(D, w=5, frac=0.25, mult=5.0):
    """defect_wd_replot.py's rule spelled out once more, loop by loop, for comparison."""
    x = np.log10(np.where(D == 0, 0.01, D) + 1e-15)
    env = np.array([x[max(0, i - w // 2):min(len(x), i + w // 2 + 1)].max() for i in range(len(x))])
    nb = max(3, int(len(env) * frac))
    thr = np.median(env[:nb]) + np.log10(mult)
    return next((i for i in range(nb, len(env)) if env[i] > thr), None)


def test_envelope_detector_finds_planted_onset():
    steps = np.arange(100) * 200
    D = np.full(100, 2.0)
    D[60:] = 60.0  # 30× the early defect from index 60 on
    assert onset_envelope(steps, D) == 58 * 200  # the centred window sees it window//2 = 2 points early
    assert onset_envelope(steps, D, center=False) == 60 * 200
    D[70:] = 2.0
    D[40] = 9.0  # 4.5× for one point: below 5×
    assert onset_envelope(steps, D) == 58 * 200
    assert onset_envelope(steps, np.full(100, 2.0)) is None


def test_envelope_baseline_and_search_window():
    steps = np.arange(100) * 200
    D = np.full(100, 2.0)
    D[10:20] = 500.0  # a rise inside the first 25 % raises the baseline envelope only a little (median)
    assert onset_envelope(steps, D) is None
    D = np.full(8, 1.0)
    D[3] = 0.0  # an exact zero is read as 0.01, not -inf
    D[6] = 10.0
    assert onset_envelope(np.arange(8), D) == 4  # n_base = max(3, 2) = 3; envelope at 4 reaches index 6
    rng = np.random.default_rng(0)
    for _ in range(20):
        n = int(rng.integers(5, 120))
        D = np.exp(rng.normal(0, 1.5, n)) * (rng.random(n) > 0.1)
        i = _envelope_by_hand(D)
        assert onset_envelope(np.arange(n), D) == i


def test_envelope_factor_multiplies_D_not_log_D():
    steps = np.arange(40) * 100
    base = np.full(40, 100.0)  # log10 D = 2 early on
    four, six = base.copy(), base.copy()
    four[20:], six[20:] = 400.0, 600.0
    assert onset_envelope(steps, four) is None  # 4× < 5×
    assert onset_envelope(steps, six) == 1800  # 6× > 5×; centred window: 2 points early


def test_posthoc_indices_subsample_evenly():
    np.testing.assert_array_equal(posthoc_indices(50), np.arange(50))
    idx = posthoc_indices(151, 120)
    assert len(idx) == 120 and idx[0] == 0 and idx[-1] == 150
    np.testing.assert_array_equal(idx, np.linspace(0, 150, 120, dtype=int))


def test_rolling_max_trailing_and_centred():
    x = np.array([1.0, 3.0, 2.0, 0.0, 5.0, 1.0])
    np.testing.assert_array_equal(rolling_max(x, 3), [1, 3, 3, 3, 5, 5])
    np.testing.assert_array_equal(rolling_max(x, 3, center=True), [3, 3, 3, 5, 5, 5])
    np.testing.assert_array_equal(rolling_max(x, 5, center=True), [3, 3, 5, 5, 5, 5])


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


def test_peak_ratio_is_p2s_rule():
    """P2's peak/baseline (reproduces its 513× and 47×): the max over every record, the last (post-grok tail)
    included, over the median of the first three records by step (step 0, 100, 200), with no 0.1 floor."""
    steps = [300, 0, 500, 200, 100, 400]  # rows out of order: defect_timing orders them by step
    D = [50.0, 4.0, 80.0, 1.6, 1.0, 20.0]  # first three by step 4.0, 1.0, 1.6: median 1.6, mean 2.2, first 4.0
    assert defect_timing(steps, D, {})["defect_peak_ratio"] == pytest.approx(80.0 / 1.6)
    assert peak_ratio([0.05, 0.02, 0.04, 3.0]) == pytest.approx(3.0 / 0.04)  # no max(baseline, 0.1) here
    # the authors' stored records (pca_sweep_plots/generalization_dynamics_results.pt): first three and max
    assert peak_ratio([2.2279, 1.4674, 2.9527, 103.643]) == pytest.approx(46.5, abs=0.05)  # a²+ab+b², "47×"
    assert peak_ratio([2.3105, 1.4427, 2.3539, 1186.317]) == pytest.approx(513.4, abs=0.1)  # a²+b², "513×"
