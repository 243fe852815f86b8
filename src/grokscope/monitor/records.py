"""Bounded records: when a kept series outgrows its cap, its cadence doubles and only the records on the new cadence
(and the first) stay. A rule of the steps alone, so a record cut back to an earlier step and continued at the doubled
cadence holds what an uninterrupted one holds once it has thinned too."""

from __future__ import annotations

from typing import TypeVar

T = TypeVar("T")


def thin(steps: list[int], records: dict[str, list[T]], stride: int, every: int,
         cap: int) -> tuple[list[int], dict[str, list[T]], int]:
    """(steps, records, stride) with at most `cap` records: while there are more, the stride doubles and the records
    whose step is not a multiple of `every`·stride are dropped (the first is always kept)."""
    while len(steps) > cap:
        stride *= 2
        keep = [i for i, s in enumerate(steps) if i == 0 or s % (every * stride) == 0]
        steps = [steps[i] for i in keep]
        records = {n: [v[i] for i in keep] for n, v in records.items()}
    return steps, records, stride
