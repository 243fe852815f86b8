"""The default early warning (issue 38): the detector chosen from what is logged, the optimiser's clock, the forecast,
a resumed record replaying to the same choice and warning, and leave-one-family-out scoring on a synthetic corpus."""

from __future__ import annotations

import copy
import math
from dataclasses import replace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from grokscope.monitor import Monitor
from grokscope.monitor.choice import AutoDetector, WarnConstants
from grokscope.monitor.clock import clock_of, tau, unwrap
from grokscope.monitor.defaults import DEFAULT_CONSTANTS
from grokscope.monitor.external import optim_config
from grokscope.monitor.forecast import Forecast, fit_forecast
from grokscope.monitor.lofo import LofoRun, fit_constants, lofo, traces
from grokscope.monitor.transfer import ABSTAIN
from grokscope.store import RunDir


def _feed(det: AutoDetector, n: int = 30, test: bool = False, acc: bool = True, rate: float = 0.01,
          kind: str = "decoupled", test_from: int = 0) -> None:
    """A run that memorises at step 300 and keeps improving its train loss; held-out loss from `test_from`."""
    for i in range(n):
        step = 100 * i
        mem = step >= 300
        det.observe(step, 1.0, weight_norm=10.0 * math.exp(-rate * max(step - 300, 0)),
                    train_acc=(1.0 if mem else 0.5) if acc else None, train_loss=math.exp(-step / 150),
                    test_loss=(5.0 - 0.1 * i) if test and step >= test_from else None, clock_rate=rate,
                    clock_kind=kind)


def test_the_choice_follows_what_is_logged_and_says_why():
    det = AutoDetector()
    det.observe(0, 1.0)  # nothing logged yet: nothing to judge, no choice
    assert det.choice is None and det.running is None and math.isnan(det.scores[-1])
    _feed(det, test=True, test_from=1500)
    assert det.choice["detector"] == "multi-val" and det.choice["step"] == 1500  # upgraded once the held-out loss came
    assert "held-out loss" in det.describe()["reason"]
    seen: list[dict] = []
    free = AutoDetector(on_choice=seen.append)
    _feed(free)
    assert [c["running"] for c in seen] == ["transfer"] and free.free.abstain is None
    assert free.fired is not None and free.fired.detector == "transfer"  # the train loss keeps falling: it warns
    assert free.fired.evidence["choice"]["detector"] == "transfer"


@pytest.mark.parametrize("kind, acc, why", [("none", True, "none"), ("l2-adaptive", True, "l2-adaptive"),
                                            ("unknown", True, "unknown"), ("decoupled", None, "metric")])
def test_the_transfer_detector_abstains_with_a_reason(kind, acc, why):
    det = AutoDetector(mode="transfer")
    for i in range(20):
        det.observe(100 * i, 1.0, weight_norm=5.0, train_acc=acc, clock_rate=0.01 if kind == "decoupled" else 0.0,
                    clock_kind=kind)
    assert det.free.abstain == ABSTAIN[why] and all(math.isnan(s) for s in det.scores) and det.fired is None


def test_without_train_accuracy_memorisation_is_read_off_the_train_loss():
    det = AutoDetector(mode="transfer")
    _feed(det, acc=False)
    sig = det.free.signals()
    gate = DEFAULT_CONSTANTS.transfer.loss_gate
    first = next(s for s, x in zip(det.steps, sig["memorised"]) if x == 1)
    assert math.exp(-first / 150) <= gate < math.exp(-(first - 100) / 150)


def test_the_clock_follows_the_scheduler_and_the_decay_kind():
    model = nn.Linear(4, 3)
    opt = torch.optim.AdamW(model.parameters(), lr=0.1, weight_decay=0.5)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    rates = []
    for _ in range(3):
        rates.append(clock_of(opt).rate)
        opt.step()
        sched.step()
    assert rates == pytest.approx([0.05, 0.025, 0.0125]) and clock_of(opt).kind == "decoupled"
    # left sums: the rate held since the previous measurement
    assert tau([0, 10, 20, 30], rates + [0.0], 10)[-1] == pytest.approx(10 * 0.025 + 10 * 0.0125)
    assert math.isnan(tau([0, 10], [1, 1], 10)[0])
    sgd = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-3)
    assert clock_of(sgd).kind == "l2-sgd" and clock_of(sgd).rate == pytest.approx(0.1 * 1e-3 / 0.1)
    assert clock_of(torch.optim.Adam(model.parameters(), weight_decay=1e-3)).kind == "l2-adaptive"
    assert clock_of(torch.optim.Adam(model.parameters())).kind == "none" and not clock_of(None).usable
    # parameter groups weigh by size: decay on the weight (12 entries), none on the bias (3)
    groups = [{"params": [model.weight], "weight_decay": 1.0}, {"params": [model.bias], "weight_decay": 0.0}]
    assert clock_of(torch.optim.AdamW(groups, lr=0.1)).rate == pytest.approx(0.1 * 12 / 15)


def test_a_wrapped_optimiser_is_unwrapped():
    class Wrapper:  # accelerate's AcceleratedOptimizer holds the torch optimiser as `.optimizer`
        def __init__(self, opt):
            self.optimizer = opt
            self.param_groups = opt.param_groups

    opt = torch.optim.AdamW(nn.Linear(2, 2).parameters(), lr=0.01, weight_decay=0.1)
    assert unwrap(Wrapper(opt)) is opt and optim_config(Wrapper(opt), 8).name == "adamw"
    assert clock_of(Wrapper(opt)).rate == pytest.approx(1e-3)


def test_the_forecast_interval_covers_its_calibration_runs():
    rng = np.random.default_rng(0)
    pts = []
    for _ in range(40):  # grok at the law's step times a log-normal error
        step, t, rate = 1000, 1.0, 0.005
        raw = step + (5.0 - t) / rate
        pts.append((step, t, rate, max(step + 100, int(raw * math.exp(rng.normal(0.1, 0.3))))))  # after the warning
    f = fit_forecast(5.0, pts[:20], [(1000, 1500), (1000, 2500), (1000, 1800)])
    new = sum(f.predict(s, t, r)["lo"] <= g <= f.predict(s, t, r)["hi"] for s, t, r, g in pts[20:])
    assert new >= 16  # new runs from the same law: the range of 20 holds about 19/21 of them (>= 80 % asked)
    f = fit_forecast(5.0, pts, [(1000, 1500), (1000, 2500), (1000, 1800)])
    covered = sum(f.predict(s, t, r)["lo"] * (1 - 1e-9) <= g <= f.predict(s, t, r)["hi"] * (1 + 1e-9)
                  for s, t, r, g in pts)
    assert covered == len(pts) and f.n_clock == 40 and f.q_lo < f.q_mid < f.q_hi  # the range: all of them
    p = f.predict(1000, 1.0, 0.005)
    assert p["lo"] <= p["predicted"] <= p["hi"] and "norm-delay" in p["how"]
    q = f.predict(1000, None, None)  # no clock: the ratio of the warning step
    assert (q["lo"], q["predicted"], q["hi"]) == pytest.approx((1000 * f.r_lo, 1000 * f.r_mid, 1000 * f.r_hi))
    assert fit_forecast(5.0, pts[:2], []) .q_hi == Forecast().q_hi  # too few points: the base values


class _Loop:
    """A tiny full-batch loop whose train loss keeps falling after it fits: the transfer detector warns."""

    def __init__(self, out, start: int = 0, ckpt: dict | None = None):
        torch.manual_seed(0)
        g = torch.Generator().manual_seed(1)
        self.X = torch.randn(64, 5, generator=g)
        self.y = (self.X[:, 0] > 0).long()
        self.model = nn.Sequential(nn.Linear(5, 16), nn.ReLU(), nn.Linear(16, 2))
        with torch.no_grad():
            for p in self.model.parameters():
                p.mul_(4)
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=3e-2, weight_decay=0.5)
        if ckpt:
            self.model.load_state_dict(ckpt["model"])
            self.opt.load_state_dict(ckpt["opt"])
        self.mon = Monitor(self.model, F.cross_entropy, (self.X, self.y), out=out, batch_size=16, defect_every=5,
                           flush_every=5, verbose=False, optimizer=self.opt, start_step=start)
        self.step = start

    def run(self, until: int) -> _Loop:
        while self.step < until:
            self.step += 1
            loss = F.cross_entropy(self.model(self.X), self.y)
            self.opt.zero_grad()
            loss.backward()
            self.opt.step()
            with torch.no_grad():
                acc = float((self.model(self.X).argmax(1) == self.y).float().mean())
            self.mon.step(self.step, {"train_loss": loss.item(), "train_acc": acc} if self.step % 5 == 0 else None)
        return self


def test_a_resumed_monitor_replays_to_the_same_choice_and_warning(tmp_path):
    ref = _Loop(tmp_path / "ref").run(120)
    ref.mon.close()
    assert ref.mon.events and ref.mon.events[0].step > 50  # the choice before the checkpoint, the warning after
    first = _Loop(tmp_path / "run").run(50)
    ckpt = {"model": copy.deepcopy(first.model.state_dict()), "opt": copy.deepcopy(first.opt.state_dict()),
            "monitor": first.mon.state_dict()}
    first.run(70)  # dies here, unclosed
    again = _Loop(tmp_path / "run", start=50, ckpt=ckpt)
    assert again.mon.detector.choice == ref.mon.detector.choice is not None  # replayed, not re-decided
    again.run(120).mon.close()
    a, b = ref.mon.events[0], again.mon.events[0]
    assert (a.step, a.detector, a.predicted_grok, a.window_lo, a.window_hi) == (
        b.step, b.detector, b.predicted_grok, b.window_lo, b.window_hi)
    sa, sb = (RunDir(p).summary()["monitor"]["detector"] for p in (tmp_path / "ref", tmp_path / "run"))
    assert sa == sb and sa["running"] == "transfer"


def _synthetic_run(family: str, i: int, grok: bool, tau_star: float, rate: float = 0.005) -> LofoRun:
    """A run memorising at 200: grokking ones keep lowering their train and held-out loss and grok at
    200 + tau_star/rate; never-grokking ones sit at a plateau."""
    steps = np.arange(0, 6000, 100)
    g = int(200 + tau_star / rate) if grok else None
    mem = steps >= 200
    t = np.clip(steps - 200, 0, None)
    train_loss = np.where(mem, 0.05 * np.exp(-t * rate * (0.8 if grok else 0.0)), 1.0)
    test_loss = np.where(mem, 5.0 * np.exp(-t * rate * (0.5 if grok else 0.0)) + 0.01 * i, 5.0)
    s = {"step": steps, "defect": np.ones(len(steps)), "weight_norm": 10 * np.exp(-t * rate * (0.2 if grok else 0.0)),
         "train_acc": np.where(mem, 1.0, 0.5), "train_loss": train_loss, "test_loss": test_loss,
         "clock_rate": np.full(len(steps), rate), "clock_kind": ["decoupled"] * len(steps)}
    if g is not None:
        s = {k: (v[steps <= g] if isinstance(v, np.ndarray) else v[: int((steps <= g).sum())]) for k, v in s.items()}
    return LofoRun(family, f"{family}-{i}", g, s)


def test_lofo_on_a_synthetic_corpus_fits_each_fold_without_its_family():
    taus = {"a": 3.0, "b": 5.0, "c": 8.0}
    runs = [_synthetic_run(f, i, grok=i < 2, tau_star=ts) for f, ts in taus.items() for i in range(4)]
    res = lofo(runs)
    assert res["families"] == ["a", "b", "c"]
    for fam in taus:  # τ* of a fold: the median over the other families' grokking runs, never the held-out one's
        others = sorted(v for f, v in taus.items() if f != fam)
        assert res["folds"][fam]["transfer"]["tau_star"] == pytest.approx(np.median(others * 2), rel=0.05)
    val = next(r for r in res["summary"] if r["detector"] == "multi-val")
    free = next(r for r in res["summary"] if r["detector"] == "transfer")
    assert val["n_grok"] == 6 and val["never"] == 6 and val["auroc"] == 1.0 and free["auroc"] == 1.0
    assert val["hit_rate"] == 1.0 and val["false_alarm_rate"] == 0.0 and val["coverage"] is not None
    assert len(res["rows"]) == 3 * len(runs)


def test_live_scores_equal_the_vectorised_traces():
    run = _synthetic_run("a", 0, grok=True, tau_star=5.0)
    k = fit_constants([_synthetic_run(f, i, i < 2, 5.0) for f in "xy" for i in range(4)])
    tr = traces(run, k)
    for mode in ("transfer", "multi-val"):
        det = AutoDetector(k, mode=mode)
        s = run.series
        for i, step in enumerate(s["step"]):
            det.observe(int(step), 1.0, weight_norm=s["weight_norm"][i], train_acc=s["train_acc"][i],
                        train_loss=s["train_loss"][i], test_loss=s["test_loss"][i], clock_rate=s["clock_rate"][i],
                        clock_kind=s["clock_kind"][i])
        np.testing.assert_allclose(det.scores, tr[mode], rtol=1e-9, equal_nan=True)


def test_constants_round_trip_and_the_shipped_ones_are_fitted():
    assert DEFAULT_CONSTANTS.source and DEFAULT_CONSTANTS.transfer.threshold > 0
    k = replace(WarnConstants(), source="x")
    from grokscope.monitor.lofo import _from_dict

    assert _from_dict(k.to_dict()) == k


def test_the_logistic_transfer_variant_fits_and_separates_a_separable_corpus():
    from grokscope.monitor.transfer import FEATURES, TransferConfig

    runs = [_synthetic_run(f, i, grok=i < 2, tau_star=5.0) for f in "ab" for i in range(4)]
    k = fit_constants(runs, WarnConstants(transfer=TransferConfig(score="logistic")))
    assert len(k.transfer.coef) == len(FEATURES) + 1 and k.transfer.coef[1] > 0  # a falling train loss: grokking
    res = lofo(runs, WarnConstants(transfer=TransferConfig(score="logistic")))
    assert next(r for r in res["summary"] if r["detector"] == "transfer")["auroc"] == 1.0


def test_a_detector_written_to_the_older_protocol_gets_only_what_it_names(tmp_path):
    class Old:  # observe(step, defect, weight_norm, train_acc, test_loss): no train loss, no clock
        def __init__(self):
            self.seen = []

        def observe(self, step, defect, weight_norm=None, train_acc=None, test_loss=None):
            self.seen.append((step, train_acc))

    model = nn.Linear(3, 2)
    X, y = torch.randn(16, 3), torch.randint(0, 2, (16,))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    det = Old()
    mon = Monitor(model, F.cross_entropy, (X, y), out=tmp_path / "m", batch_size=8, defect_every=2, verbose=False,
                  optimizer=opt, detector=det)
    for step in range(1, 5):
        mon.step(step, {"train_loss": 1.0, "train_acc": 0.5})
    mon.close()
    assert det.seen == [(0, None), (2, 0.5), (4, 0.5)]
    assert RunDir(tmp_path / "m").summary()["monitor"]["detector"]["reason"].startswith("chosen by the user")
