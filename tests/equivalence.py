"""Checks that run r of a batch computes the same function as run r trained alone, on any processor.

A batch of R runs multiplies [R, ...] tensors; alone, [1, ...] ones. BLAS libraries pick GEMM and reduction kernels
by shape and by processor (MKL takes other paths on AMD than on Intel, cuBLAS others again), so the two may differ in
the last bit of a float32 sum, and AdamW's division by √v turns last bits into 1e-4 within a few steps. Bitwise
equality between a batch and a run alone therefore holds only on the processor a test was written on. What holds
everywhere, and still catches a wrong index, a leaked hyper-parameter, a shared RNG stream or a missed per-run mask:

- one gradient from an identical state, in float32, equal to float32 rounding (`assert_grads_close`);
- a short horizon trained in float64 (`train(..., dtype=torch.float64)`), where rounding differences of 1e-16 grow
  to ~2e-12 relative over 300 steps of the tiny model (measured by perturbing θ₀ by 1e-16), far below
  `FLOAT64_RTOL`; a mix-up changes a run by O(1) (`test_batched_equivalence.py` breaks the separation on purpose).
"""

from __future__ import annotations

import numpy as np
import torch

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
