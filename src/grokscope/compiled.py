"""Whether and what the trainer compiles: inductor's CPU/GPU code for the model's attention core.

Compiling pays where eager PyTorch is weakest: attention over 2-3 positions is a dozen small
broadcast ops forward and backward, which inductor fuses into two loops (≈5x less time on CPU).
Compiling costs seconds up front (and a C compiler on CPU), so by default only runs long enough to
repay it compile; a failure to compile falls back to eager with a one-line notice.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

import torch

from grokscope import model as M

ENV = "GROKSCOPE_COMPILE"  # "0" / "1" overrides the default (tests set 0: bitwise checks need eager)
AUTO_STEPS = 10_000  # batches whose longest run has at least this many steps compile by default


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


def attend() -> Callable:
    """The attention core compiled by torch.compile (compiled lazily, at its first call)."""
    return torch.compile(M.attend)


def notice_fallback(err: BaseException) -> None:
    """The one line a user sees when compiling is unavailable or fails."""
    first = (str(err).strip().splitlines() or [type(err).__name__])[0][:160]
    print(f"grokscope: torch.compile unavailable ({type(err).__name__}: {first}); training without it",
          file=sys.stderr, flush=True)
