"""A rate for a plan before anything is stored: time a few update steps of each batched program on this machine.

`probe_rate(batches)` builds each batch's own per-step update (`training.stepper`: minibatch, gradients,
clipping, optimiser; in memory, nothing written), runs a warm-up step, then times steps for about `seconds`,
and returns the batches' run-steps per wall second. Batches of one shape and size cost the same, so each is
timed once (`RateProbe` keeps the timings of one plan). The update is timed eager: evaluations, checkpoints
and a scan's gradient transform are not in it, and torch.compile (on for long runs) would make it faster.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from grokscope.config import RunConfig
from grokscope.config.schema import batch_key
from grokscope.training import stepper

__all__ = ["RateProbe", "PROBE_NOTE"]

PROBE_NOTE = ("rate probed now: a few eager update steps of each batched program, in memory (evaluations, "
              "checkpoints, a scan's transform and compile not included)")


@dataclass
class RateProbe:
    """Times batched programs' update steps on `device`, each distinct (shape, size, methods) once."""

    device: str = "cpu"
    seconds: float = 1.0  # timed wall per distinct batch (after one warm-up step), at least `min_steps` steps
    min_steps: int = 3
    max_steps: int = 50
    timings: dict[tuple[str, int, tuple[str, ...]], float] = field(default_factory=dict)  # key → seconds per step

    def step_seconds(self, batch: list[RunConfig]) -> float:
        """Wall seconds of one update step of `batch` trained as one program."""
        key = (batch_key(batch[0]), len(batch), tuple(sorted(c.method.name for c in batch)))
        if key not in self.timings:
            step = stepper(batch, self.device, compile=False)
            step(1)  # warm-up: first-call allocations
            n, t0 = 0, time.perf_counter()
            while n < self.min_steps or (n < self.max_steps and time.perf_counter() - t0 < self.seconds):
                n += 1
                step(1 + n)
            self.timings[key] = (time.perf_counter() - t0) / n
        return self.timings[key]

    def rate(self, batches: list[list[RunConfig]]) -> float | None:
        """Run-steps per wall second over `batches` run one after another (as `measured_rate` sums them)."""
        batches = [b for b in batches if b]
        wall = sum(self.step_seconds(b) for b in batches)
        return sum(len(b) for b in batches) / wall if wall > 0 else None
