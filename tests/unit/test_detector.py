"""The multi-signal early warning: causal, fires on a grokking-like trace and not on a memorise-only one, run-level
ROC arithmetic, and the replay of a stored run gives the scores the monitor computed live."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from grokscope.errors import ConfigError
from grokscope.monitor import Monitor
from grokscope.monitor.detector import DEFAULT_DETECTOR, DetectorConfig, MultiSignalDetector, score_series
from grokscope.monitor.evaluate import auroc, replay_multi, roc_curve, run_level_score, run_series
from grokscope.store import RunDir


def _trace(grokking: bool, n: int = 30, seed: int = 0) -> dict[str, np.ndarray]:
    """Every 200 steps: the train set is fitted from step 400 on; a grokking run's weight norm then falls by
    half (weight decay at work on the zero-loss manifold), a memorise-only run's keeps growing; the defect rises
    in both (P2's onset is not specific)."""
    rng = np.random.default_rng(seed)
    steps = 200 * np.arange(n)
    acc = np.where(steps >= 400, 1.0, 0.3)
    fall = np.clip((steps - 400) / 2000, 0, 1)
    norm = 40 * (1 - fall / 2) if grokking else 40 + steps / 500
    D = 1 + 30 * np.clip((steps - 600) / 1000, 0, 1) + rng.random(n)
    return {"step": steps, "defect": D, "weight_norm": norm * (1 + 1e-3 * rng.standard_normal(n)),
            "train_acc": acc, "test_loss": np.where(steps >= 400, 5.0, 3.0) - (3 * fall if grokking else 0)}


def test_scores_are_causal_appending_future_data_changes_no_past_score():
    for cfg in (DEFAULT_DETECTOR, DetectorConfig(defect_weight=0.1, test_weight=0.5)):
        for grokking in (True, False):
            full = _trace(grokking, seed=1)
            whole = score_series(full, cfg)
            for k in (1, 2, 5, 17):
                prefix = score_series({key: v[:k] for key, v in full.items()}, cfg)
                np.testing.assert_array_equal(prefix, whole[:k])
            live, _ = replay_multi(full, cfg)  # the online detector gives the same scores
            np.testing.assert_allclose(live, whole)


def test_fires_on_a_grokking_like_trace_and_not_on_a_memorise_only_one():
    scores, ev = replay_multi(_trace(True))
    assert ev is not None and 400 < ev.step < 2400 and ev.window_lo <= ev.predicted_grok <= ev.window_hi
    assert ev.evidence["signals"]["norm_drop"] >= DEFAULT_DETECTOR.threshold and "score" in ev.message()
    _, quiet = replay_multi(_trace(False))
    assert quiet is None
    no_acc = {**_trace(True), "train_acc": np.full(30, np.nan)}  # nothing says the run has memorised
    assert replay_multi(no_acc)[1] is None


def test_online_detector_fires_once_and_refuses_steps_out_of_order():
    det = MultiSignalDetector()
    t = _trace(True)
    events = [det.observe(int(s), float(d), float(w), float(a)) for s, d, w, a in
              zip(t["step"], t["defect"], t["weight_norm"], t["train_acc"], strict=True)]
    assert sum(e is not None for e in events) == 1 and len(det.scores) == 30
    with pytest.raises(ValueError, match="steps must increase"):
        det.observe(0, 1.0)
    with pytest.raises(ConfigError):
        DetectorConfig(acc_gate=0)


def test_auroc_and_roc_on_a_hand_made_case():
    pos, neg = [0.9, 0.8, 0.4], [0.5, 0.3]
    assert auroc(pos, neg) == pytest.approx(5 / 6)  # 0.4 loses to 0.5 only
    assert auroc([1.0], [1.0]) == 0.5 and auroc([2.0], [1.0]) == 1.0 and math.isnan(auroc([], [1.0]))
    fpr, tpr, thr = roc_curve(pos, neg)
    assert list(thr[:3]) == [math.inf, 0.9, 0.8]
    assert list(zip(fpr, tpr, strict=True)) == [(0, 0), (0, 1 / 3), (0, 2 / 3), (0.5, 2 / 3), (0.5, 1), (1, 1)]
    auc_trapezoid = float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2))
    assert auc_trapezoid == pytest.approx(5 / 6)
    # a grokking run counts its scores before the grok step only; a never-grokking run all of them
    assert run_level_score([0, 200, 400], [0.1, 0.2, 0.9], 400) == 0.2
    assert run_level_score([0, 200, 400], [0.1, 0.2, 0.9], None) == 0.9
    assert run_level_score([400], [0.9], 400) == -math.inf


def test_replay_of_a_stored_monitored_run_matches_the_live_detector(tmp_path):
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(1)
    X = torch.randn(64, 5, generator=g)
    y = (X[:, 0] > 0).long()
    model = nn.Sequential(nn.Linear(5, 16), nn.ReLU(), nn.Linear(16, 2))
    with torch.no_grad():  # a large init that weight decay then shrinks: the norm falls once the data are fitted
        for p in model.parameters():
            p.mul_(4)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-2, weight_decay=1.0)
    cfg = DetectorConfig(threshold=math.inf, acc_gate=0.6)  # never fires; the gate opens early in 40 steps
    det = MultiSignalDetector(cfg)
    mon = Monitor(model, F.cross_entropy, (X, y), out=tmp_path / "m", batch_size=16, defect_every=5, watch_every=5,
                  detector=det, verbose=False)
    for step in range(1, 41):
        loss = F.cross_entropy(model(X), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        with torch.no_grad():
            acc = float((model(X).argmax(1) == y).float().mean())
        mon.step(step, {"train_loss": loss.item(), "train_acc": acc, "test_loss": loss.item()}
                 if step % 5 == 0 else None)
    mon.close()
    series = run_series(RunDir(tmp_path / "m"))
    assert list(series["step"]) == det.steps and len(det.steps) == 9
    replayed, _ = replay_multi(series, cfg)
    np.testing.assert_allclose(replayed, det.scores, rtol=1e-6)
    assert max(det.scores) > 0  # the gate opened and the norm fell: the comparison is not of zeros


def test_the_monitor_default_warns_live_and_runs_warnings_replays_the_same_step(tmp_path, capsys):
    import json

    from grokscope.cli import main as cli

    torch.manual_seed(0)
    g = torch.Generator().manual_seed(1)
    X = torch.randn(64, 5, generator=g)
    y = (X[:, 0] > 0).long()
    model = nn.Sequential(nn.Linear(5, 16), nn.ReLU(), nn.Linear(16, 2))
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(4)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-2, weight_decay=0.5)
    mon = Monitor(model, F.cross_entropy, (X, y), out=tmp_path / "d", batch_size=16, defect_every=5, verbose=False,
                  optimizer=opt)
    for step in range(1, 121):
        loss = F.cross_entropy(model(X), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        with torch.no_grad():
            acc = float((model(X).argmax(1) == y).float().mean())
        mon.step(step, {"train_loss": loss.item(), "train_acc": acc, "test_acc": 0.5} if step % 5 == 0 else None)
    mon.close()
    assert mon.events and mon.events[0].detector == "transfer"  # no held-out loss logged: the test-free default
    assert RunDir(tmp_path / "d").summary()["monitor"]["detector"]["running"] == "transfer"
    assert cli(["runs", "warnings", str(tmp_path / "d"), "--json"]) == 0
    row = json.loads(capsys.readouterr().out)["runs"][0]
    assert row["warning_step"] == mon.events[0].step and row["predicted"] == mon.events[0].predicted_grok
    assert RunDir(tmp_path / "d").table("warnings")["step"].tolist() == [mon.events[0].step]
