"""Packing runs into batched programs: how many runs of one shape a device holds, and the batch plan.

Runs that share a `batch_key` can train as one program; `plan` packs them into as few batches per shape as
the device's memory (and the host's, for the recorded trajectories) allows, split evenly, by the trainer's memory
model (`training.memory`).
"""

from __future__ import annotations

from collections.abc import Sequence

from grokscope.config import RunConfig, batch_key
from grokscope.errors import ConfigError
from grokscope.training.memory import (
    CPU_MAX_RUNS,
    EVAL_CHUNK,
    act_floats,
    device_budget,
    fit_runs,
    host_budget,
    host_bytes,
    memory_budget,
    program_runs,
    run_bytes,
)

__all__ = ["CPU_MAX_RUNS", "EVAL_CHUNK", "act_floats", "run_bytes", "device_budget", "memory_budget", "program_runs",
           "capacity", "fit_runs", "plan"]


def capacity(cfg: RunConfig, device: str, max_runs: int | None = None) -> int:
    """How many runs shaped like `cfg` one batched program may hold on `device`."""
    mem, cap = device_budget(device)
    cap = min(cap, program_runs(cfg))
    if mem is not None:
        fixed = 4 * EVAL_CHUNK * act_floats(cfg)  # one evaluation chunk, shared by the batch
        cap = min(cap, max(1, (mem - fixed) // run_bytes(cfg)))
    cap = min(cap, max(1, host_budget() // max(1, host_bytes(cfg))))
    return max(1, min(cap, max_runs) if max_runs else cap)


def plan(cfgs: Sequence[RunConfig], device: str, max_runs: int | None = None) -> list[list[RunConfig]]:
    """Pack runs into batched programs: runs of one `batch_key` together (similar budgets side by side),
    as few batches per shape as the device allows, split evenly; other shapes go to other batches."""
    if max_runs is not None and max_runs < 1:
        raise ConfigError(f"max_runs={max_runs} must be >= 1")
    groups: dict[str, list[RunConfig]] = {}
    for c in cfgs:
        groups.setdefault(batch_key(c), []).append(c)
    batches: list[list[RunConfig]] = []
    for group in groups.values():
        group = sorted(group, key=lambda c: c.steps)  # stable: grid order within a budget
        cap = capacity(group[0], device, max_runs)
        n = -(-len(group) // cap)
        size, extra = divmod(len(group), n)  # even split: 70 runs, cap 64 → 35 + 35
        start = 0
        for i in range(n):
            stop = start + size + (i < extra)
            batches.append(group[start:stop])
            start = stop
    return batches
