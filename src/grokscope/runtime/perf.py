"""What the machine can do, measured in-process: the fp32 GEMM rate, counted FLOPs, peak memory.

Benchmarks report every speed against these, so a figure reads as "x % of what these threads can do"
rather than as a bare number that depends on the machine and its load.
"""

from __future__ import annotations

import os
import resource
import sys
import time
from collections.abc import Callable

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode


def gemm_gflops(n: int = 1024, seconds: float = 0.3, device: str | torch.device = "cpu",
                clock: Callable[[], float] = time.perf_counter, dtype: torch.dtype = torch.float32) -> float:
    """GEMM rate (GFLOP/s; fp32 unless `dtype`) of an n x n x n matmul on the current torch threads: best of
    repeated timings over about `seconds`, so a burst of load from other processes is not taken for the
    limit. `clock` times each matmul (time.thread_time with one thread: CPU time, for a shared machine)."""
    device = torch.device(device)
    a, b = (torch.randn(n, n, device=device, dtype=dtype) for _ in range(2))
    c = torch.empty(n, n, device=device, dtype=dtype)
    return 2 * n**3 / _best_seconds(lambda: torch.mm(a, b, out=c), device, clock, seconds=seconds) / 1e9


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _best_seconds(call: Callable[[], object], device: torch.device, clock: Callable[[], float],
                  seconds: float = 0.0, repeats: int = 1) -> float:
    """Shortest of repeated timed calls (after one untimed): at least `repeats` of them and for about
    `seconds`, so a burst of load from other processes is not taken for what the call costs."""
    call()
    _sync(device)
    best, start, n = float("inf"), time.perf_counter(), 0
    while n < repeats or time.perf_counter() - start < seconds:
        t0 = clock()
        call()
        _sync(device)
        best, n = min(best, clock() - t0), n + 1
    return best


def count_flops(fn: Callable[[], object]) -> int:
    """FLOPs of one call of `fn` as torch's FlopCounterMode counts them (matmuls, convolutions,
    attention kernels; elementwise work is not counted)."""
    with FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


_GEMMS = {torch.ops.aten.mm.default, torch.ops.aten.bmm.default, torch.ops.aten.addmm.default,
          torch.ops.aten.baddbmm.default}


class _GemmRecorder(TorchDispatchMode):
    """Records (op, shapes of its operands) of every matmul dispatched while active."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[object, tuple[tuple[int, ...], ...]]] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001, ANN204
        if func in _GEMMS:
            self.calls.append((func, tuple(tuple(a.shape) for a in args if isinstance(a, torch.Tensor))))
        return func(*args, **(kwargs or {}))


def gemm_calls(fn: Callable[[], object]) -> list[tuple[object, tuple[tuple[int, ...], ...]]]:
    """The matmuls one eager call of `fn` performs: (aten op, operand shapes), in order."""
    with _GemmRecorder() as rec:
        fn()
    return rec.calls


def gemm_bound_seconds(calls: list[tuple[object, tuple[tuple[int, ...], ...]]], device: str | torch.device = "cpu",
                       repeats: int = 5, clock: Callable[[], float] = time.perf_counter,
                       dtype: torch.dtype = torch.float32) -> float:
    """Seconds the matmuls `calls` take when each runs alone at its own shapes (best of `repeats`, summed):
    the time a step made of exactly these GEMMs would need with zero overhead between them."""
    device, total, cache = torch.device(device), 0.0, {}
    for func, shapes in calls:
        if (func, shapes) not in cache:
            xs = [torch.randn(s, device=device, dtype=dtype) for s in shapes]
            cache[func, shapes] = _best_seconds(lambda: func(*xs), device, clock, repeats=repeats)  # noqa: B023
        total += cache[func, shapes]
    return total


def rss_mb() -> float:
    """Resident memory of this process now, in MiB (Linux /proc; the peak elsewhere)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        return peak_rss_mb()


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MiB."""
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kb / 1024 / (1024 if sys.platform == "darwin" else 1)
