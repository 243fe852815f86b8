"""Whether and what the trainer compiles: inductor's CPU/GPU code for the training loss, forward and
backward, and for the attention core the evaluation uses.

Compiling pays where eager PyTorch is weakest: outside its GEMMs a step is memory-bound elementwise work
(attention over 2-3 positions, LayerNorm, GELU, bias adds, the loss), one pass per op forward and backward.
Compiled whole, the loss's forward and (through AOTAutograd) its backward become a few fused loops between
the GEMMs. Compiling costs tens of seconds up front (and a C compiler on CPU), so by default only runs long
enough to repay it compile; a failure to compile falls back to eager with a one-line notice.
"""

from __future__ import annotations

import inspect
import os
import sys
from collections.abc import Callable

import torch

from grokscope.training import model as M
from grokscope.training.optim import adamw_rows_
from grokscope.training.problem import Problem

ENV = "GROKSCOPE_COMPILE"  # "0" / "1" overrides the default (tests set 0: bitwise checks need eager)
AUTO_STEPS = 10_000  # batches whose longest run has at least this many steps compile by default
BACKEND: str | Callable = "inductor"  # torch.compile's backend (tests count compilations with their own)


# Errors that are not a failure to compile: the step itself failed (eager would fail the same way), so the trainer
# re-raises them instead of falling back (an out-of-memory error must say so, not "torch.compile unavailable").
NOT_A_COMPILE_FAILURE: tuple[type[BaseException], ...] = (torch.OutOfMemoryError,) + (
    (torch.AcceleratorError,) if hasattr(torch, "AcceleratorError") else ())


def wanted(requested: bool | None, max_steps: int) -> bool:
    """Compile or not: an explicit `requested` wins, then $GROKSCOPE_COMPILE, then the run length."""
    if requested is not None:
        return requested
    env = os.environ.get(ENV, "").strip().lower()
    if env in ("0", "false", "no", "off"):
        return False
    if env in ("1", "true", "yes", "on"):
        return True
    return max_steps >= AUTO_STEPS


def _compile(fn: Callable) -> Callable:
    """torch.compile(fn) with recompilations of its own. Dynamo keeps compiled entries per code object, at most
    `recompile_limit` (8), so every batch a process trains (a sweep's ops, learning rates, compacted sizes) would
    share one budget, and batches after the first few would silently run eager. torch >= 2.13 isolates each
    call's entries; older torch clears its in-process caches instead (later batches recompile, served by
    inductor's disk cache)."""
    if "isolate_recompiles" in inspect.signature(torch.compile).parameters:
        return torch.compile(fn, backend=BACKEND, isolate_recompiles=True)
    torch.compiler.reset()
    return torch.compile(fn, backend=BACKEND)


def attend() -> Callable:
    """The attention core compiled by torch.compile (compiled lazily, at its first call)."""
    return _compile(M.attend)


def total_loss(problem: Problem) -> Callable:
    """`problem.total_loss` compiled whole (lazily, at its first call), for `Problem.flat_grads`. The first batch
    compacted to fewer runs compiles once more, with the number of runs dynamic, so later compactions reuse it."""
    return _compile(problem.total_loss)


def adamw() -> Callable:
    """AdamW's elementwise update (`optim.adamw_rows_`) compiled into one loop over all runs (lazily)."""
    return _compile(adamw_rows_)


def notice_fallback(err: BaseException) -> None:
    """The one line a user sees when compiling is unavailable or fails."""
    first = (str(err).strip().splitlines() or [type(err).__name__])[0][:160]
    print(f"grokscope: torch.compile unavailable ({type(err).__name__}: {first}); training without it",
          file=sys.stderr, flush=True)
