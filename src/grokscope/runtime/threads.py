"""How many CPU threads torch should use: `pick_threads` is the rule (idle cores, unless the user's environment
already says), `machine_threads` applies it to this machine. Only the CLI applies it; the library never changes
torch's thread count by itself."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping

import torch

__all__ = ["ENV_VARS", "MAX_THREADS", "apply_threads", "load_average", "machine_threads", "pick_threads",
           "resume_thread_note", "usable_cores"]

ENV_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")  # what torch itself reads at start-up: the user has decided
MAX_THREADS = 4096  # an explicit --threads above this is a typo, not a machine


def pick_threads(cores: int, load: float | None, env: Mapping[str, str]) -> int | None:
    """Threads for `cores` usable cores at 1-minute `load`: None when `env` sets them (torch's own choice stands),
    else the idle cores, cores - load rounded half up, within [1, cores] (oversubscribed OpenMP threads spin-wait)."""
    if any(env.get(k, "").strip() for k in ENV_VARS):
        return None
    cores = max(1, int(cores))
    if load is None or not math.isfinite(load):
        return cores
    return min(cores, max(1, math.floor(cores - max(load, 0.0) + 0.5)))


def usable_cores() -> int:
    """Cores this process may run on: its CPU affinity where the OS has one, else the machine's count."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def load_average() -> float | None:
    """The machine's 1-minute load average, or None where the OS has none (Windows)."""
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return None


def machine_threads(option: int | str, env: Mapping[str, str] | None = None) -> tuple[int | None, str]:
    """(threads to set or None to leave torch alone, why) for a `--threads` value: an int, or "auto" (`pick_threads`
    on this machine's cores and load, `env` defaulting to os.environ)."""
    if option != "auto":
        return int(option), f"--threads {option}"
    env = os.environ if env is None else env
    cores, load = usable_cores(), load_average()
    n = pick_threads(cores, load, env)
    if n is None:
        given = next(k for k in ENV_VARS if env.get(k, "").strip())
        return None, f"{given}={env[given]}"
    load_text = "unknown" if load is None else f"{load:.1f}"
    return n, f"{cores} cores, load {load_text}"


def apply_threads(n: int) -> int:
    """Set torch's intra-op threads to `n` (and its inter-op pool too while that is still possible: torch refuses
    once parallel work has started); returns the previous intra-op count, to restore."""
    previous = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        torch.set_num_interop_threads(n)
    except RuntimeError:  # already started or already set: the inter-op pool keeps its size
        pass
    return previous


def resume_thread_note(recorded: list[int | None], now: int) -> str | None:
    """What to tell a user resuming runs that last trained with the thread counts `recorded` (None: unknown or
    never trained) on `now` threads: GEMMs and reductions split by thread count, so a changed count gives a run
    equal to an uninterrupted one to rounding, not bit for bit. None when nothing changed."""
    before = sorted({t for t in recorded if isinstance(t, int) and t != now})
    if not before:
        return None
    was = "/".join(str(t) for t in before)
    return (f"resume: these runs last trained with {was} CPU thread(s), now {now}: they will equal an uninterrupted "
            f"run to rounding, not bit for bit (--threads {before[0]} keeps them bitwise)")
