"""Run r of a batch computes the same function as run r alone, checked so that any processor passes (kernels chosen
by batch shape differ in the last bits) and a real mix-up of runs fails (`equivalence.py` says why and how)."""

from __future__ import annotations

import pytest
import torch

from grokscope.training import loop as T
from grokscope.training import model as M
from grokscope.training import train
from grokscope.training.optim import STEPS
from grokscope.training.problem import Problem

from conftest import tiny_config
from equivalence import FLOAT32_GRAD_RTOL, assert_same_run, is_null_gradient, rel_diff


def _cfgs() -> list:
    """Three runs that differ in everything a run owns: seed, lr, weight decay, clip norm and budget."""
    return [tiny_config(steps=150, seed=1),
            tiny_config(steps=100, seed=2, optim=dict(lr=3e-3, wd=0.3, clip=0.5)),
            tiny_config(steps=200, seed=3, optim=dict(lr=2e-3, wd=0.0))]


def _grads(cfgs: list, step: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    pb = Problem(cfgs, dtype=dtype)
    init = pb.init_params()
    pairs, targets = pb.minibatch(step)
    return pb.flat_grads(M.flatten(init), init, pairs, targets)


def test_one_gradient_in_a_batch_equals_alone_to_float32_rounding():
    cfgs = _cfgs()
    batched = _grads(cfgs, step=7)
    keep = torch.cat([torch.full((v.numel(),), not is_null_gradient(k))
                      for k, v in M.init_params(cfgs[0].model, cfgs[0].data, 0).items()])
    alone = [_grads([c], step=7)[0] for c in cfgs]
    for r, g in enumerate(alone):
        assert rel_diff(batched[r][keep], g[keep]) <= FLOAT32_GRAD_RTOL, r
    # the bound covers float32 rounding itself (any kernel's float32 result against the float64 one) ...
    exact = _grads(cfgs, step=7, dtype=torch.float64)
    assert max(rel_diff(batched[r][keep], exact[r][keep]) for r in range(len(cfgs))) <= FLOAT32_GRAD_RTOL / 10
    # ... and is far below what telling two runs apart takes
    assert rel_diff(batched[0][keep], alone[1][keep]) > 1e3 * FLOAT32_GRAD_RTOL


@pytest.fixture(scope="module")
def alone64() -> list:
    return [train([c], dtype=torch.float64)[0] for c in _cfgs()]


def test_float64_batch_equals_each_run_alone_through_stops_and_compaction(alone64):
    together = train(_cfgs(), dtype=torch.float64)
    assert [r.summary["steps_trained"] for r in together] == [150, 100, 200]
    for got, want in zip(together, alone64, strict=True):
        assert got.params["embed.W_E"].dtype == torch.float64
        assert_same_run(got, want)


def test_last_bit_differences_pass_the_check(monkeypatch, alone64):
    # what another kernel path does to a batch: last-bit differences. Emulated by moving every entry of the
    # batch's θ₀ by one float64 ulp; the check must still pass (the bugs below must not)
    real = Problem.init_params

    def one_ulp_off(self):
        return {k: torch.nextafter(v, torch.full_like(v, 2.0)) for k, v in real(self).items()}

    monkeypatch.setattr(Problem, "init_params", one_ulp_off)
    together = train(_cfgs(), dtype=torch.float64)
    assert not torch.equal(together[0].params["embed.W_E"], alone64[0].params["embed.W_E"])
    for got, want in zip(together, alone64, strict=True):
        assert_same_run(got, want)


def _swap_lr(monkeypatch):
    real = T.hyper_params

    def leaked(cfgs, device, dtype=torch.float32):
        hp = real(cfgs, device, dtype)
        if len(cfgs) > 1:
            hp.lr[[0, 1]] = hp.lr[[1, 0]].clone()
        return hp

    monkeypatch.setattr(T, "hyper_params", leaked)


def _shared_seed(monkeypatch):
    real = Problem.__init__

    def shared(self, cfgs, device="cpu", dtype=torch.float32):
        real(self, cfgs, device, dtype)
        self.seeds = torch.full_like(self.seeds, int(self.seeds[0]))

    monkeypatch.setattr(Problem, "__init__", shared)


def _missed_mask(monkeypatch):
    real = STEPS["adamw"]
    monkeypatch.setitem(STEPS, "adamw", lambda p, g, s, hp, t, active: real(p, g, s, hp, t, torch.ones_like(active)))
    monkeypatch.setattr(T._Loop, "_live_runs", lambda self, s: None)


@pytest.mark.parametrize("bug", [_swap_lr, _shared_seed, _missed_mask], ids=["leaked-lr", "shared-seed", "no-mask"])
def test_breaking_per_run_separation_on_purpose_fails_the_check(bug, monkeypatch, alone64):
    bug(monkeypatch)
    together = train(_cfgs(), dtype=torch.float64)
    failures = 0
    for got, want in zip(together, alone64, strict=True):
        try:
            assert_same_run(got, want)
        except AssertionError:
            failures += 1
    assert failures >= 1
