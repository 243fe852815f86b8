"""A monitored plain loop stopped and resumed from its own checkpoint records what an uninterrupted one does, and
every wrong way to resume is one line naming the values (issue 35)."""

from __future__ import annotations

import copy
import importlib.util
import json

import pytest
import torch
import torch.nn.functional as F
from store_checks import assert_same_record
from torch import nn

from grokscope.errors import RecordExistsError, StoreError
from grokscope.monitor import DetectorConfig, Monitor, MultiSignalDetector
from grokscope.store import RunDir

TB = importlib.util.find_spec("tensorboard") is not None
# every measurement on, thinning of both trajectories (watched records at 12 and 24, snapshots at 12 and 24), a
# write every 7 steps; the grok rule fires at 14, its 90 % variant at 4; the detector warns at 18 (train acc >= 0.81)
SETTINGS = dict(defect_every=3, draws=2, watch_every=2, max_records=6, snapshot_every=4, n_snapshots=3,
                hessian_every=6, hessian_iters=4, hessian_samples=32, hessian_groups=["0.*"], flush_every=7,
                grok_acc=0.75, grok_patience=2, grok_acc_90=0.7, verbose=False)
STEPS, CHECKPOINT = 28, 10


def _data():
    g = torch.Generator().manual_seed(0)
    X = torch.randn(96, 6, generator=g)
    return X, (X[:, 0] + X[:, 1] > 0).long()


class Loop:
    """A user's plain loop that resumes exactly from its own checkpoints (its minibatches are drawn by step)."""

    def __init__(self, out, start: int = 0, ckpt: dict | None = None, tensorboard: bool = False, **settings):
        torch.manual_seed(3)
        self.X, self.y = _data()
        self.model = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 2))
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=1e-2, weight_decay=0.1)
        if ckpt is not None:
            self.model.load_state_dict(ckpt["model"])
            self.opt.load_state_dict(ckpt["opt"])
        detector = MultiSignalDetector(DetectorConfig(bias=1.0, norm_weight=0.0, acc_gate=0.81, threshold=0.5))
        self.mon = Monitor(self.model, F.cross_entropy, (self.X[:64], self.y[:64]), out=out, optimizer=self.opt,
                           batch_size=16, seed=1, start_step=start, detector=detector, tensorboard=tensorboard,
                           **{**SETTINGS, **settings})
        if ckpt is not None:
            self.mon.load_state_dict(ckpt["monitor"])
        self.step = start

    def run(self, until: int) -> Loop:
        X, y = self.X, self.y
        while self.step < until:
            self.step += 1
            idx = torch.randint(0, 64, (16,), generator=torch.Generator().manual_seed(self.step))
            loss = F.cross_entropy(self.model(X[idx]), y[idx])
            self.opt.zero_grad()
            loss.backward()
            self.opt.step()
            metrics = None
            if self.step % 2 == 0:
                with torch.no_grad():
                    out = self.model(X)
                acc = (out.argmax(-1) == y).float()
                metrics = {"train_loss": loss.item(), "train_acc": acc[:64].mean().item(),
                           "test_acc": acc[64:].mean().item(), "lr": 1e-2}
            self.mon.step(self.step, metrics)
        return self

    def checkpoint(self) -> dict:
        """What the user saves: model, optimiser, the monitor's state_dict (which writes its store in full), step."""
        return {"model": copy.deepcopy(self.model.state_dict()), "opt": copy.deepcopy(self.opt.state_dict()),
                "monitor": self.mon.state_dict(), "step": self.step}

    def die(self) -> None:
        """The process ends without a word: nothing more is written (the TensorBoard writer's buffer aside)."""
        if self.mon._tb is not None:
            self.mon._tb.close()


@pytest.mark.parametrize("died_at", [CHECKPOINT, 19])  # 19: writes at 14 and 18 (the warning) came after the checkpoint
def test_a_resumed_loop_records_what_an_uninterrupted_one_does(tmp_path, died_at):
    ref = Loop(tmp_path / "ref" / "run", tensorboard=TB).run(STEPS)
    ref.mon.close()
    assert ref.mon.grok_step() == {"task": 14} and ref.mon.grok_step("grok90") == {"task": 4}
    assert [e.step for e in ref.mon.events] == [18] and ref.mon._watch_stride == 4 and ref.mon._snap_stride == 4
    first = Loop(tmp_path / "run", tensorboard=TB).run(CHECKPOINT)
    ckpt = first.checkpoint()
    first.run(died_at).die()
    stored = RunDir(tmp_path / "run")
    written = json.loads(stored.file("monitor_state.json").read_text())["step"]
    assert written == (18 if died_at == 19 else CHECKPOINT)  # the store went past the checkpoint, warning included
    again = Loop(tmp_path / "run", start=ckpt["step"], ckpt=ckpt, tensorboard=TB)
    assert again.mon.last_step == CHECKPOINT and not again.mon.events and again.mon.grok_step() == {"task": None}
    assert stored.metrics().step.max() == CHECKPOINT  # cut back to the checkpoint at once
    again.run(STEPS).mon.close()
    assert_same_record(tmp_path / "ref" / "run", tmp_path / "run", tensorboard=TB)
    assert [e.step for e in again.mon.events] == [18]


def test_a_loop_resumed_twice_and_a_finished_record_extended(tmp_path):
    ref = Loop(tmp_path / "ref" / "run").run(STEPS)
    ref.mon.close()
    loop = Loop(tmp_path / "run").run(8)
    ckpt = loop.checkpoint()
    loop.run(12).die()
    loop = Loop(tmp_path / "run", start=8, ckpt=ckpt).run(20)
    ckpt = loop.checkpoint()
    loop.mon.close()  # a run that ended, continued for more steps later
    assert RunDir(tmp_path / "run").summary()["finished"]
    loop = Loop(tmp_path / "run", start=20, ckpt=ckpt)
    assert not RunDir(tmp_path / "run").summary()["finished"]
    loop.run(STEPS).mon.close()
    assert_same_record(tmp_path / "ref" / "run", tmp_path / "run")


def _record(tmp_path, steps: int = 12, **settings) -> tuple[Loop, dict]:
    """A record at tmp_path/'run' written through `steps`, stopped there, and the checkpoint at `steps`."""
    loop = Loop(tmp_path / "run", **settings).run(steps)
    ckpt = loop.checkpoint()
    loop.die()
    return loop, ckpt


def test_e_each_wrong_way_to_resume_is_one_line_naming_the_values(tmp_path):
    loop, ckpt = _record(tmp_path)
    run = tmp_path / "run"

    def resume(start=12, model_ckpt=ckpt, **kw):
        return Loop(run, start=start, ckpt=model_ckpt, **kw)

    cases = [  # (how, error type, what the one line says)
        (lambda: Loop(run), RecordExistsError, r"already holds a run \(steps 0–12\); start_step=0 would start it over"),
        (lambda: resume(start=20), StoreError, r"up to step 12 only, but start_step=20: steps 13–20 were never"),
        (lambda: resume(defect_every=4), StoreError, r"recorded with defect_every=3, this Monitor has defect_every=4"),
        (lambda: resume(model_ckpt=None), StoreError, r"'0.weight' differs from what .* recorded at step 12"),
    ]
    for how, kind, message in cases:
        with pytest.raises(kind, match=message) as e:
            how()
        assert "\n" not in str(e.value)
    with pytest.raises(StoreError, match=r"checkpoint's monitor state is at step 8, .* continues from step 12: "
                                         r"pass start_step=8"):
        resume(model_ckpt={**ckpt, "monitor": {**ckpt["monitor"], "step": 8}})
    with pytest.raises(StoreError, match="belongs to another record"):
        resume(model_ckpt={**ckpt, "monitor": {**ckpt["monitor"], "record": "0" * 32}})
    wide = nn.Sequential(nn.Linear(6, 32), nn.ReLU(), nn.Linear(32, 2))
    X, y = _data()
    with pytest.raises(StoreError, match=r"another model: '0.weight' has shape \(16, 6\) there and \(32, 6\) here"):
        Monitor(wide, F.cross_entropy, (X, y), out=run, seed=1, start_step=12, **SETTINGS)
    with pytest.raises(StoreError, match="another model: the record has no parameter 'extra'"):
        Monitor({**dict(loop.model.named_parameters()), "extra": torch.zeros(2, requires_grad=True)},
                F.cross_entropy, (X, y), out=run, forward=lambda p, x: x, seed=1, start_step=12, **SETTINGS)
    assert RunDir(run).metrics().step.max() == 12  # none of them wrote anything
    resume().run(14)  # the right way still works after all of them
    with pytest.raises(StoreError, match="starts at step 0; start_step=-3 is before it"):
        resume(start=-3)
    Loop(run, overwrite=True).run(2).mon.close()  # overwrite=True replaces the record
    assert RunDir(run).metrics().step.max() == 2


def test_e_a_gap_before_the_first_write_and_a_store_from_before_resuming(tmp_path):
    loop = Loop(tmp_path / "run", flush_every=50).run(12)  # killed at 12: nothing written since step 0
    ckpt = {"model": copy.deepcopy(loop.model.state_dict()), "opt": copy.deepcopy(loop.opt.state_dict())}
    loop.die()
    with pytest.raises(StoreError, match="up to step 0 only, but start_step=12: steps 1–12 were never written"):
        Loop(tmp_path / "run", start=12, ckpt=ckpt, flush_every=50)
    Loop(tmp_path / "run").run(2).mon.close()  # a record that holds only step 0 is started afresh
    RunDir(tmp_path / "run").file("monitor_state.json").unlink()  # as a store written before records could resume
    with pytest.raises(RecordExistsError, match="written before monitors could resume.*overwrite=True"):
        Loop(tmp_path / "run", start=2)


def test_e_a_record_started_mid_run_cannot_be_resumed_before_its_start(tmp_path):
    loop = Loop(tmp_path / "run", start=6).run(12)
    ckpt = loop.checkpoint()
    loop.die()
    with pytest.raises(StoreError, match="starts at step 6; start_step=4 is before it"):
        Loop(tmp_path / "run", start=4, ckpt=ckpt)
    Loop(tmp_path / "run", start=12, ckpt=ckpt).run(14).mon.close()
    assert RunDir(tmp_path / "run").metrics().step.min() == 8
