"""The benchmarks' yardsticks: recorded matmuls account for the FLOPs torch counts, and the GEMM bound is finite."""

import math

import torch
from torch.utils.flop_counter import FlopCounterMode

from grokscope.config import preset, with_overrides
from grokscope.runtime.perf import gemm_bound_seconds, gemm_calls
from grokscope.training import stepper

_FLOPS = {"mm": lambda a, b: 2 * a[0] * a[1] * b[1], "addmm": lambda c, a, b: 2 * a[0] * a[1] * b[1],
          "bmm": lambda a, b: 2 * a[0] * a[1] * a[2] * b[2], "baddbmm": lambda c, a, b: 2 * a[0] * a[1] * a[2] * b[2]}


def _tiny_step():
    cfgs = [with_overrides(preset("quick"), p=11, d_model=16, n_heads=2, batch=8, seed=s, steps=4) for s in (0, 1)]
    step = stepper(cfgs, torch.device("cpu"), compile=False)
    step(0)
    return step


def test_recorded_matmuls_account_for_every_counted_flop():
    step = _tiny_step()
    calls = gemm_calls(lambda: step(1))
    assert calls, "a training step performs matmuls"
    recorded = sum(_FLOPS[str(f).split(".")[-2]](*shapes) for f, shapes in calls)
    with FlopCounterMode(display=False) as counter:
        step(2)
    assert recorded == counter.get_total_flops()


def test_gemm_bound_is_a_positive_finite_time_summed_over_calls():
    calls = gemm_calls(lambda: _tiny_step()(1))
    one = gemm_bound_seconds(calls[:1], repeats=2)
    total = gemm_bound_seconds(calls, repeats=2)
    assert 0 < one <= total and math.isfinite(total)
