"""Checks that run r of a batch computes the same function as run r trained alone, on any processor.

A batch of R runs multiplies [R, ...] tensors; alone, [1, ...] ones. BLAS libraries pick GEMM and reduction kernels
by shape and by processor (MKL takes other paths on AMD than on Intel, cuBLAS others again), so the two may differ in
the last bit of a float32 sum, and AdamW's division by √v turns last bits into 1e-4 within a few steps. Bitwise
equality between a batch and a run alone therefore holds only on the processor a test was written on. What holds
everywhere, and still catches a wrong index, a leaked hyper-parameter, a shared RNG stream or a missed per-run mask:

- one gradient from an identical state, in float32, equal to float32 rounding (`assert_grads_close`);
- a short horizon trained in float64 (`train(..., dtype=torch.float64)`), where rounding differences of 1e-16 grow
  to ~2e-12 relative over 300 steps of the tiny model (measured by perturbing θ₀ by 1e-16), far below
  `FLOAT64_RTOL`; a mix-up changes a run by O(1) (`test_batched_equivalence.py` breaks the separation on purpose);
- two stores of the same runs (`assert_stores_match`, e.g. killed and resumed against uninterrupted): bit for bit
  where a run trained in the same batch shapes in both (its summary's `batch_shapes`), else, both trained in float64
  (`float64_cli`), to `FLOAT64_RTOL`;
- a float32 training against its float64 reference to `FLOAT32_TRAIN_RTOL` of how far each tensor moved.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from grokscope.store import RunDir
from grokscope.training import RunResult

# softmax is invariant to the key bias, so its gradient is exactly 0 in exact arithmetic: what the kernels return is
# rounding noise, which Adam normalises to ±lr per entry. Its values are noise on any processor and have no effect on
# the function the run computes, so they are compared to that bound (|Δ| ≤ 2·lr·steps), not to rounding.
NULL_GRADIENT = ("attn.b_K",)
# float64: ~2e-12 measured growth of a 1e-16 perturbation over 300 steps (module docstring), times 500 for margin.
FLOAT64_RTOL = 1e-9
# float32: a gradient entry is a sum over ~10² products (batch × width), so rounding is ≤ n·u ≈ 10² · 6e-8 relative
# to the tensor's scale; a mix-up of runs is O(1).
FLOAT32_GRAD_RTOL = 1e-5
# float32 training, 30 AdamW steps of a two-layer trunk (test_paper_exact.py): a tensor's largest distance from the
# float64 run, relative to how far it moved, was at most 2.1e-4 over ten kernel paths on one Intel Xeon (torch 2.13:
# AVX-512; ATEN_CPU_CAPABILITY=avx2, =default; MKL_ENABLE_INSTRUCTIONS=AVX2, =SSE4_2; avx2 with MKL AVX2; default
# with MKL SSE4_2; mkldnn off; 2 threads; AVX-512 with MKL SSE4_2 on 2 threads), for grokscope's loop and for the
# authors' nn.Module loop alike (the noisiest tensor: a second-layer W_K, whose gradient is mostly cancellation);
# about ×5 for margin. A wrong hyper-parameter or a mix-up moves a tensor by O(1e-2) of its movement or more.
FLOAT32_TRAIN_RTOL = 1e-3


def rel_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    """‖a − b‖ / ‖b‖ (0 when both are 0): the difference relative to the tensor's scale."""
    den = b.double().norm()
    num = (a.double() - b.double()).norm()
    return float(num / den) if den > 0 else float(num)


def is_null_gradient(name: str) -> bool:
    return name.endswith(NULL_GRADIENT)


def assert_params_close(got: dict[str, torch.Tensor], want: dict[str, torch.Tensor], rtol: float = FLOAT64_RTOL,
                        null_bound: float | None = None, label: str = "") -> None:
    """Every parameter tensor within `rtol` of its scale; a null-gradient tensor within `null_bound` absolute."""
    assert got.keys() == want.keys(), label
    for k in want:
        if is_null_gradient(k):
            if null_bound is not None:
                assert float((got[k] - want[k]).abs().max()) <= null_bound, f"{label} {k}"
            continue
        d = rel_diff(got[k], want[k])
        assert d <= rtol, f"{label} {k}: relative difference {d:.3g} > {rtol:g}"


def assert_same_run(got: RunResult, want: RunResult, rtol: float = FLOAT64_RTOL, metrics: bool = True) -> None:
    """A run from a batch against the same run alone (both trained in float64): same steps, same accuracies and
    grok steps, losses, weight norms and parameters equal to `rtol`. `metrics=False` skips the metric rows, for
    a run whose budget is not on the batch's evaluation grid (in a batch its last row is logged at the batch's
    next evaluation, alone at its own last step)."""
    name = want.config.name
    assert got.summary["steps_trained"] == want.summary["steps_trained"], name
    assert got.summary["grok_step"] == want.summary["grok_step"], name
    steps = int(want.summary["steps_trained"])
    null_bound = 2 * want.config.optim.lr * steps
    assert_params_close(got.params, want.params, rtol, null_bound, name)
    if not metrics:
        return
    a, b = got.metrics, want.metrics
    assert a.step.tolist() == b.step.tolist() and a.task.tolist() == b.task.tolist(), name
    assert a.acc.tolist() == b.acc.tolist(), name
    np.testing.assert_allclose(a.loss.to_numpy(), b.loss.to_numpy(), rtol=rtol, atol=0, err_msg=f"{name} loss")
    # the weight norm counts the null-gradient tensors too: |Δ‖θ‖| ≤ ‖Δ b_K‖ ≤ √n · null_bound
    n_null = sum(v.numel() for k, v in want.params.items() if is_null_gradient(k))
    np.testing.assert_allclose(a.weight_norm.to_numpy(), b.weight_norm.to_numpy(), rtol=rtol,
                               atol=n_null ** 0.5 * null_bound, err_msg=f"{name} weight_norm")


def assert_moved_close(got: dict[str, torch.Tensor], want: dict[str, torch.Tensor], start: dict[str, torch.Tensor],
                       rtol: float = FLOAT32_TRAIN_RTOL, label: str = "") -> None:
    """Every tensor (but the null-gradient ones) within `rtol` of how far `want` moved from `start` (largest
    entries): a training's parameters against its reference, scaled by what the training did to them."""
    assert got.keys() == want.keys(), label
    for k in want:
        if is_null_gradient(k):
            continue
        moved = float((want[k].double() - start[k].double()).abs().max())
        d = float((got[k].double() - want[k].double()).abs().max())
        assert moved > 0, f"{label} {k} did not move"
        assert d <= rtol * moved, f"{label} {k}: {d:.3g} off, {d / moved:.3g} of its movement {moved:.3g} > {rtol:g}"


# ---- stores ------------------------------------------------------------------------------------------------------
_FLOAT64_MAIN = ("import functools, importlib, sys, torch; B = importlib.import_module('grokscope.sweep.batch'); "
                 "B.train = functools.partial(B.train, dtype=torch.float64); "
                 "from grokscope.cli import main; sys.exit(main(sys.argv[1:]))")


def float64_cli(*argv: str) -> list[str]:
    """The command line of `grokscope *argv` in a subprocess whose trainer runs in float64 (`train(...,
    dtype=torch.float64)`), so that a run whose batch shape changed can be held to `FLOAT64_RTOL`."""
    return [sys.executable, "-c", _FLOAT64_MAIN, *argv]


def stored_run(path: Path) -> RunResult:
    """A run read back from its directory: config, summary, metrics and the checkpoint's parameters."""
    d = RunDir(path)
    tensors, _ = d.checkpoint()
    params = {k.removeprefix("params."): v for k, v in tensors.items() if k.startswith("params.")}
    return RunResult(d.config(), d.summary(), d.metrics(), params, path=path)


SUMMARY_EXACT = ("grok_step", "grok_step_90", "final_acc", "steps_trained", "finished", "diverged")


def assert_bit_identical(got: Path, want: Path) -> None:
    """Two stored runs with bit-identical metrics, checkpoints and trajectories."""
    name = want.name
    pd.testing.assert_frame_equal(pd.read_parquet(got / "metrics.parquet"), pd.read_parquet(want / "metrics.parquet"))
    ta, tb = RunDir(got).checkpoint()[0], RunDir(want).checkpoint()[0]
    assert ta.keys() == tb.keys() and all(torch.equal(ta[k], tb[k]) for k in ta), (name, "checkpoint")
    ta, tb = RunDir(got).trajectory()[0], RunDir(want).trajectory()[0]  # segments may split differently
    assert ta.keys() == tb.keys() and all(torch.equal(ta[k], tb[k]) for k in ta), (name, "trajectory")


def _assert_tensors_close(got: dict[str, torch.Tensor], want: dict[str, torch.Tensor], null_bound: float | None,
                          label: str) -> None:
    """Floating tensors to `FLOAT64_RTOL` (null-gradient ones to `null_bound`), the others (steps, keys) exactly."""
    assert got.keys() == want.keys(), label
    floats = [k for k in want if want[k].is_floating_point()]
    assert all(torch.equal(got[k], want[k]) for k in want if k not in floats), label
    assert_params_close({k: got[k] for k in floats}, {k: want[k] for k in floats}, FLOAT64_RTOL, null_bound, label)


def _assert_close(got: Path, want: Path) -> None:
    a, b = stored_run(got), stored_run(want)
    assert_same_run(a, b)
    null_bound = 2 * b.config.optim.lr * int(b.summary["steps_trained"])
    _assert_tensors_close(RunDir(got).checkpoint()[0], RunDir(want).checkpoint()[0], None, f"{want.name} checkpoint")
    _assert_tensors_close(RunDir(got).trajectory()[0], RunDir(want).trajectory()[0], null_bound,
                          f"{want.name} trajectory")


def assert_stores_match(want: Path, got: Path) -> dict[str, str]:
    """`got` holds the runs of `want` (e.g. killed and resumed against uninterrupted, both on this processor and
    thread count): a run that trained in the same batch shapes in both (summary's `batch_shapes`) bit for bit;
    one whose batch shrank or grew on the way (a resumed sweep packed it with other runs) to
    `FLOAT64_RTOL`, which needs both stores trained in float64 (`float64_cli`). Either way no run of `got` passes
    the bound against another run of `want`: a mix-up of runs fails. Returns how each run was compared."""
    names = sorted(p.name for p in want.iterdir())
    assert sorted(p.name for p in got.iterdir()) == names
    cases = {}
    for name in names:
        a, b = got / name, want / name
        sa, sb = RunDir(a).summary(), RunDir(b).summary()
        assert {k: sa[k] for k in SUMMARY_EXACT} == {k: sb[k] for k in SUMMARY_EXACT}, name
        if sa["batch_shapes"] == sb["batch_shapes"]:
            assert_bit_identical(a, b)
            cases[name] = "same batch shapes: bit-identical"
        else:
            _assert_close(a, b)
            cases[name] = (f"batch shapes {sa['batch_shapes']}, uninterrupted {sb['batch_shapes']}: "
                           f"to {FLOAT64_RTOL:g}")
        for other in names:
            if other != name:
                with pytest.raises(AssertionError):
                    _assert_close(a, want / other)
    leftovers = [p for p in got.rglob("*") if p.name.endswith(".tmp")]
    assert not leftovers, leftovers
    return cases
