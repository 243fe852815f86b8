"""Early warning: the online detector equals the papers' offline detectors on the data so far, fires once,
and its window comes from the lead relation."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from grokscope.cli import main as cli
from grokscope.errors import ConfigError, StoreError
from grokscope.geometry.onset import onset_envelope, onset_threshold
from grokscope.monitor.evaluate import fit_lead_model, warning_summary, warning_table
from grokscope.monitor.warning import LeadModel, OnsetDetector, replay
from grokscope.store import RunDir, write_json


def _series(seed: int, rise_at: int | None, n: int = 40) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    steps = np.arange(n) * 100
    D = 3 + rng.random(n)
    if rise_at is not None:
        D[steps >= rise_at] *= 50 * (1 + rng.random((steps >= rise_at).sum()))
    return steps, D


@pytest.mark.parametrize("detector, offline", [("threshold", onset_threshold), ("envelope", onset_envelope)])
def test_online_detector_is_causal_and_fires_once(detector, offline):
    for seed in range(5):
        steps, D = _series(seed, rise_at=1700 + 100 * seed)
        det = OnsetDetector(detector)
        fired = [det.update(s, d) for s, d in zip(steps, D)]
        events = [e for e in fired if e is not None]
        assert len(events) == 1
        ev = events[0]
        i = int(np.flatnonzero(steps == ev.step)[0])
        assert offline(steps[: i + 1], D[: i + 1]) == ev.onset  # the detector on the data up to the warning
        assert all(offline(steps[: j + 1], D[: j + 1]) is None for j in range(i))  # and never earlier
        if detector == "threshold":
            assert ev.onset == ev.step == offline(steps, D) == 1700 + 100 * seed


def test_no_rise_no_warning():
    steps, D = _series(0, rise_at=None)
    assert replay(steps, D) is None and replay(steps, D, "envelope") is None


def test_lead_model_window_solves_the_power_law():
    lm = LeadModel(alpha=1.3, intercept=-2.0, resid_sd=0.1, n=10)
    onset = 700.0
    t = lm.grok_step(onset)
    assert t - 10 ** -2.0 * t**1.3 == pytest.approx(onset, rel=1e-9)
    pred, lo, hi = lm.window(onset)
    assert lo < pred < hi
    assert LeadModel(alpha=1.3, intercept=0.0, resid_sd=0.1, n=10).grok_step(1e6) is None  # no root this late
    x = np.array([500, 1000, 2000, 4000.0])
    fit = LeadModel.fit(x, 0.05 * x**1.2)
    assert fit.alpha == pytest.approx(1.2) and fit.resid_sd == pytest.approx(0, abs=1e-9)
    with pytest.raises(ConfigError, match="unknown onset detector"):
        OnsetDetector("magic")


def _fake_run(path, name, grok, series):
    run = RunDir(path / name)
    from grokscope.config import preset

    run.write_config(preset("quick", seed=len(name)))
    write_json(run.file("summary.json"), {"grok_step": {"add": grok}, "steps_trained": 4000, "finished": True})
    run.write_table("defect", pd.DataFrame({"step": series[0], "defect": series[1]}))
    return run


def test_warning_table_counts_hits_late_warnings_and_false_alarms(tmp_path):
    runs = [_fake_run(tmp_path, "early", 2500, _series(1, 1500)),  # warned 1000 steps ahead
            _fake_run(tmp_path, "late", 1200, _series(2, 1500)),  # warned after grokking
            _fake_run(tmp_path, "never", None, _series(3, 2000)),  # false alarm
            _fake_run(tmp_path, "quiet", None, _series(4, None)),  # correctly silent
            _fake_run(tmp_path, "running", None, _series(5, 1000))]  # still training: no outcome yet
    write_json(runs[-1].file("summary.json"), {"grok_step": {"add": None}, "finished": False})
    table = warning_table(runs, "threshold")
    s = warning_summary(table)
    assert s["n_grokking"] == 2 and s["n_warned_before"] == 1 and s["n_warned_late"] == 1
    assert s["fraction_warned_before"] == 0.5 and s["median_lead"] == 1000
    assert s["n_never_grok"] == 2 and s["false_alarms"] == 1 and s["n_unfinished"] == 1 and s["n_runs"] == 4


def test_lead_fit_with_p2_alpha_fixed_fits_the_intercept():
    x = np.array([800, 1200, 3000.0])
    y = 10**-1.5 * x**1.27 * np.array([1.1, 0.9, 1.0])
    lm = LeadModel.fit(x, y, alpha=1.27)
    assert lm.alpha == 1.27 and lm.intercept == pytest.approx(-1.5 + np.log10([1.1, 0.9, 1.0]).mean())
    assert lm.resid_sd > 0 and lm.n == 3


def test_calibration_fits_the_lead_of_stored_runs_and_the_cli_replays_them(tmp_path, capsys):
    # onsets at 1000/1500/2000 (the threshold detector on these series), grok steps chosen on lead = 10^-1 t^1.27
    groks = [float(g) for g in (1600, 2300, 3000)]
    runs = [_fake_run(tmp_path / "calib", f"r{i}", int(g), _series(i, on)) for i, (g, on) in
            enumerate(zip(groks, (1000, 1500, 2000), strict=True))]
    leads = [g - on for g, on in zip(groks, (1000, 1500, 2000), strict=True)]
    lm = fit_lead_model(runs)
    assert lm.n == 3 and lm.alpha == 1.27
    assert lm.intercept == pytest.approx(float(np.mean(np.log10(leads) - 1.27 * np.log10(groks))))
    with pytest.raises(StoreError, match="calibration needs"):
        fit_lead_model(runs[:1])
    assert cli(["runs", "warnings", str(tmp_path / "calib"), "--calibrate", str(tmp_path / "calib"), "--json",
                "--detector", "threshold"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["lead_model"]["intercept"] == pytest.approx(lm.intercept)
    assert out["summary"]["n_warned_before"] == 3 and [r["lead"] for r in out["runs"]] == leads
    # the table: whole steps, — when absent
    assert cli(["runs", "warnings", str(tmp_path / "calib"), "--detector", "threshold"]) == 0
    text = capsys.readouterr().out
    assert "None" not in text and "nan" not in text
    rows = text.splitlines()[1:4]
    assert [r.split()[1:4] for r in rows] == [[f"{g:.0f}", str(on), f"{g - on:.0f}"]
                                              for g, on in zip(groks, (1000, 1500, 2000), strict=True)]
    assert not any(w in c for r in rows for c in r.split()[1:-1] for w in ("None", "nan", "."))  # peak_ratio: .1f
    assert cli(["runs", "warnings", str(tmp_path / "calib"), "--detector", "magic"]) == 2
    assert cli(["runs", "warnings", str(tmp_path / "calib"), "--every", "0"]) == 2
    capsys.readouterr()
    every = warning_table(runs, "threshold", every=300)  # what a monitor measuring every 300 steps would have said
    for row, (steps, D) in zip(every.itertuples(), (_series(i, on) for i, on in enumerate((1000, 1500, 2000))),
                               strict=True):
        ev = replay(steps[steps % 300 == 0], D[steps % 300 == 0])
        assert row.warning_step == ev.step and row.warning_step % 300 == 0
