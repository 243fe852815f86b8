"""A monitored plain loop stopped and resumed from its own checkpoint records what an uninterrupted one does, and
every wrong way to resume is one line naming the values (issue 35)."""

from __future__ import annotations

import copy
import json

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from grokscope.errors import RecordExistsError, StoreError
from grokscope.monitor import Monitor
from grokscope.store import RunDir

from monitored_loop import CHECKPOINT, SETTINGS, STEPS, TB, Loop, data
from store_checks import assert_same_record


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
    X, y = data()
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


class Died(BaseException):
    """The process ended in the middle of a write of the store."""


def test_a_process_that_died_inside_a_write_of_the_store_resumes_to_the_same_record(tmp_path, monkeypatch):
    """The store's write at step 14 (after the thinning at 12) stops after each of its files in turn; resuming from
    the checkpoint at 10 each time ends with the uninterrupted record, as does a resume that itself stops while
    cutting the store back."""
    from grokscope.store import files as store

    ref = Loop(tmp_path / "ref" / "run").run(16)
    ref.mon.close()
    real, count = store.atomic_write, {"n": 0, "at": None}

    def dying(path, write):
        count["n"] += 1
        if count["at"] is not None and count["n"] >= count["at"]:
            raise Died(path.name)
        real(path, write)

    monkeypatch.setattr(store, "atomic_write", dying)
    k, files = 0, set()
    while True:
        k += 1
        out = tmp_path / f"k{k}" / "run"
        loop = Loop(out).run(CHECKPOINT)
        ckpt = loop.checkpoint()
        loop.run(13)
        count.update(n=0, at=k)
        try:
            loop.run(14)
        except Died as e:
            files.add(e.args[0])
        else:
            break  # the write had fewer than k files: every position was hit
        count["at"] = None
        if k == 3:  # the resume itself stops after cutting the state file back and one more file
            count.update(n=0, at=3)
            with pytest.raises(Died):
                Loop(out, start=CHECKPOINT, ckpt=ckpt)
            count["at"] = None
        Loop(out, start=CHECKPOINT, ckpt=ckpt).run(16).mon.close()
        assert_same_record(tmp_path / "ref" / "run", out)
    assert {"trajectory.safetensors", "metrics.parquet", "monitor_state.json"} <= files and k > 10
