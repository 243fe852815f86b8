"""The trainer's compiled attention: same training as the nn.Module reference; a failure to compile falls
back to eager with one line; when it compiles by default."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from grokscope.config import preset, with_overrides
from grokscope.training import compiled, train
from grokscope.training import model as M
from grokscope.training import reference as Ref
from grokscope.training.problem import Problem


def _trunk(steps: int):
    return preset("quick", data=dict(p=11, tasks=("add", "mul")), model=dict(d_model=32, n_heads=2, d_ff=64,
                  n_layers=2), optim=dict(batch=64, lr=3e-3, wd=0.5, clip=1.0), defect_every=0, steps=steps,
                  eval_every=50, attn_every=50, checkpoint_every=50)


def _movement_error(ours, theirs, start):
    """Max over tensors of |ours - theirs| relative to how far ours moved (b_K, whose gradient is rounding
    noise, left out as in test_reference)."""
    return max((ours[k] - theirs[k]).abs().max().item() / (ours[k] - start[k]).abs().max().item()
               for k in ours if not k.endswith("b_K"))


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("cc") is None and shutil.which("gcc") is None, reason="no C compiler")
def test_compiled_training_matches_eager_and_the_module_reference(monkeypatch, capsys):
    """The compiled loss (forward and backward) trains as the eager path does, within float tolerance, and as the
    nn.Module loop. (A compacted batch, whose smaller size compiles again, is left out: minutes of compiling.)"""
    calls = []
    real = compiled.total_loss

    def counted(problem):
        fn = real(problem)
        return lambda *a: calls.append(a[1].shape[0]) or fn(*a)

    monkeypatch.setattr(compiled, "total_loss", counted)
    steps = 100
    cfgs = [_trunk(steps), with_overrides(_trunk(steps), seed=7, wd=0.1)]
    ours = train(cfgs, compile=True)
    assert "torch.compile unavailable" not in capsys.readouterr().err  # the compiled path really ran
    assert calls == [2] * steps  # every step
    eager = train(cfgs, compile=False)
    for got, want, cfg in zip(ours, eager, cfgs):
        start = M.init_params(cfg.model, cfg.data, cfg.seed)
        assert got.summary["steps_trained"] == want.summary["steps_trained"] == cfg.steps
        assert _movement_error(got.params, want.params, start) < 1e-4
        torch.testing.assert_close(torch.tensor(got.metrics.loss.values), torch.tensor(want.metrics.loss.values),
                                   rtol=1e-4, atol=1e-6)
        # accuracies equal, up to one example per evaluation whose two top logits tie within round-off
        one_example = 1 / Problem([cfg]).test_idx.shape[1]  # the smaller split
        assert np.abs(got.metrics.acc.to_numpy() - want.metrics.acc.to_numpy()).max() <= one_example + 1e-9
    cfg = cfgs[0]
    pb = Problem([cfg])
    theirs = Ref.reference_train(cfg, steps, eval_every=steps,
                                 batches=lambda s: tuple(x[0] for x in pb.minibatch(s)))
    start = M.init_params(cfg.model, cfg.data, cfg.seed)
    assert _movement_error(ours[0].params, theirs.params, start) < 1e-3
    a = ours[0].metrics[ours[0].metrics.step == steps].sort_values(["task", "split"]).loss.values
    b = theirs.metrics[theirs.metrics.step == steps].sort_values(["task", "split"]).loss.values
    torch.testing.assert_close(torch.tensor(a), torch.tensor(b), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("fails", ["attend", "total_loss"])
def test_failed_compile_falls_back_to_eager_with_one_line(monkeypatch, capsys, fails):
    """Whichever compiled function fails first (evaluation's attention at step 0, or the step's loss), training
    goes on eagerly, bit for bit as an eager run, after one line on stderr."""
    def broken(*args):
        raise RuntimeError("InvalidCxxCompiler: no working C compiler found\nmore detail")

    monkeypatch.setattr(compiled, "attend", lambda: broken if fails == "attend" else M.attend)
    monkeypatch.setattr(compiled, "total_loss", lambda problem: broken)
    cfg = _trunk(60)
    (fell_back,) = train([cfg], compile=True)
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("grokscope: torch.compile unavailable (RuntimeError")
    (eager,) = train([cfg], compile=False)
    assert all(torch.equal(fell_back.params[k], eager.params[k]) for k in eager.params)


def test_compile_is_on_for_long_runs_unless_told(monkeypatch):
    monkeypatch.delenv(compiled.ENV, raising=False)
    assert compiled.wanted(None, compiled.AUTO_STEPS) and not compiled.wanted(None, compiled.AUTO_STEPS - 1)
    assert not compiled.wanted(False, 10**6) and compiled.wanted(True, 1)
    monkeypatch.setenv(compiled.ENV, "0")
    assert not compiled.wanted(None, 10**6) and compiled.wanted(True, 1)
    monkeypatch.setenv(compiled.ENV, "1")
    assert compiled.wanted(None, 1)


@pytest.mark.slow
def test_every_batch_of_a_long_process_trains_compiled(monkeypatch):
    """A process training batch after batch (a sweep's ops, each compacting as its runs stop) compiles every
    batch: the compiled entries of earlier batches do not use up later ones' recompile budget, after which
    torch would run them eagerly without a word. Dynamo only (a counting backend): no C compiler needed."""
    compiled_in: list[int] = []
    current = [0]  # the batch training now

    def counting(gm, example_inputs):
        compiled_in.append(current[0])
        return gm.forward

    monkeypatch.setattr(compiled, "BACKEND", counting)
    ops = ("add", "sub", "mul", "sq", "add", "sub")
    for current[0], op in enumerate(ops):
        cfgs = [preset("p2-single", data=dict(p=11, tasks=(op,)), model=dict(d_model=16, d_ff=32),
                       optim=dict(batch=16), defect_every=0, steps=10 * (seed + 1), seed=seed, eval_every=10,
                       checkpoint_every=10) for seed in range(3)]  # stops at 10, 20, 30: compacted twice
        train(cfgs, compile=True)
    assert sorted(set(compiled_in)) == list(range(len(ops)))


def test_out_of_memory_in_a_compiled_step_is_reported_as_one(monkeypatch, capsys):
    """A device running out of memory inside the compiled step is not a failure to compile: the trainer re-raises
    it (no eager fallback, no "torch.compile unavailable") with the batch it was training."""
    def oom(*args):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(compiled, "total_loss", lambda problem: oom)
    cfgs = [_trunk(20), with_overrides(_trunk(20), seed=7)]
    with pytest.raises(torch.OutOfMemoryError, match=r"training 2 runs per batch \(minibatch 64.*Tried to allocate"):
        train(cfgs, compile=True)
    assert "torch.compile unavailable" not in capsys.readouterr().err
