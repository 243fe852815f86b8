"""A monitored run that diverged: the first step at which the monitor saw a non-finite logged loss, parameter,
weight norm or gradient, as the trainer flags a run whose loss or weight norm turns non-finite (`diverged` in
summary.json). It fires once; the monitor then stops measuring and keeps what it recorded before."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

import torch

from grokscope.monitor.external import parse_metric

__all__ = ["DivergenceEvent", "DivergenceWatch", "all_finite"]


@dataclass(frozen=True)
class DivergenceEvent:
    """The run diverged at `step`: `source` is what the monitor found not finite, `value` its value there."""

    step: int
    source: str
    value: float

    def message(self) -> str:
        return (f"grokscope: the run diverged at step {self.step} ({self.source} is {self.value}); the monitor stops "
                "measuring (defect, Hessian, LLC, watched tensors, snapshots) and keeps what it recorded before")

    def to_dict(self) -> dict[str, Any]:
        """As summary.json holds it: the value as text ('nan', 'inf'), which standard JSON can carry."""
        return {**asdict(self), "value": str(self.value)}


class DivergenceWatch:
    """Checks values for being finite; the first that is not makes the one `DivergenceEvent` (later ones: None)."""

    def __init__(self) -> None:
        self.event: DivergenceEvent | None = None

    @property
    def diverged(self) -> bool:
        return self.event is not None

    @property
    def step(self) -> int | None:
        return None if self.event is None else self.event.step

    def value(self, step: int, source: str, value: float | None) -> DivergenceEvent | None:
        """The event if `value` is the first non-finite value seen."""
        if self.event is not None or value is None or math.isfinite(value):
            return None
        self.event = DivergenceEvent(int(step), source, float(value))
        return self.event

    def losses(self, step: int, metrics: Mapping[str, float], default_task: str) -> DivergenceEvent | None:
        """The event if a logged loss (`train_loss`, `test_loss`, `task/..._loss`) is the first non-finite value."""
        for key, v in metrics.items():
            parsed = parse_metric(key, default_task)
            if parsed is not None and parsed[2] == "loss" and self.value(step, key, v) is not None:
                return self.event
        return None

    def parameters(self, step: int, params: Mapping[str, torch.Tensor]) -> DivergenceEvent | None:
        """The event if a parameter holds the first non-finite value."""
        if self.event is not None or all_finite(params.values()):
            return None
        name, bad = next((n, p[~torch.isfinite(p)]) for n, p in params.items() if not all_finite([p]))
        return self.value(step, f"parameter {name!r}", float(bad[0]))


def all_finite(tensors: Iterable[torch.Tensor]) -> bool:
    """Whether every entry is finite. A NaN or inf entry makes its tensor's sum non-finite, so finite sums (one
    device sync; ~30x cheaper than `isfinite` on CPU) settle it; entries are looked at only when a sum is not."""
    with torch.no_grad():
        tensors = list(tensors)
        sums = [t.sum(dtype=torch.float32) for t in tensors]
        if not sums or bool(torch.stack([t.to(sums[0].device) for t in sums]).sum().isfinite()):
            return True
        return all(bool(torch.isfinite(t).all()) for t in tensors)  # finite entries whose sum overflowed float32
