"""The monitor's side of its early-warning detector: what it tells the detector at a defect measurement besides the
defect, and how summary.json names the detector that runs."""

from __future__ import annotations

import math
from typing import Any

from grokscope.monitor.choice import AutoDetector
from grokscope.monitor.clock import clock_of

__all__ = ["describe_detector", "detector_inputs"]


def detector_inputs(rows: list[dict[str, Any]], tasks: tuple[str, ...], weight_norm: float,
                    optimizer: Any) -> dict[str, Any]:
    """The detector's other inputs now: the weight norm; the latest logged train accuracy, train loss and held-out
    loss of the first task that logged any (None if never logged), from the metrics `rows`; the optimiser's clock
    (rate, kind)."""
    task = next((t for t in tasks if any(r["task"] == t for r in rows)), tasks[0])

    def latest(split: str, kind: str) -> float | None:
        return next((r[kind] for r in reversed(rows) if r["task"] == task and r["split"] == split
                     and not math.isnan(r[kind])), None)

    clock = clock_of(optimizer)
    return {"weight_norm": weight_norm, "train_acc": latest("train", "acc"), "test_loss": latest("test", "loss"),
            "train_loss": latest("train", "loss"), "clock_rate": clock.rate, "clock_kind": clock.kind}


def describe_detector(detector: Any) -> dict[str, Any] | None:
    """Which detector runs and why (summary.json `monitor.detector`; None: no detector)."""
    if detector is None:
        return None
    if isinstance(detector, AutoDetector):
        return detector.describe()
    name = getattr(getattr(detector, "cfg", None), "name", None) or getattr(detector, "detector",
                                                                            type(detector).__name__)
    return {"name": str(name), "running": str(name), "reason": "chosen by the user (Monitor(detector=...))"}
