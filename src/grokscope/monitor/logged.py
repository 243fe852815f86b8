"""The user's logged metrics as the monitor keeps them: rows of metrics.parquet per (task, split), the free scalars
of scalars.parquet, and the trainer's grok rule (`training.grok.update_grok`) on each task's held-out accuracy.

Names map as `external.parse_metric` says ('test_acc', 'mul/train_loss', 'val_loss', ...); any other name is a
free scalar. A resumed record replays the stored rows through `advance_grok`, so its grok steps are the same.
"""

from __future__ import annotations

from typing import Any

import torch

from grokscope.config import RunConfig
from grokscope.monitor.external import parse_metric
from grokscope.training import GrokState, update_grok

__all__ = ["advance_grok", "grok_steps", "metric_row", "sort_metrics"]

ByTaskSplit = dict[tuple[str, str], dict[str, float]]  # (task, split) -> {kind: value}


def sort_metrics(metrics: dict[str, float], default_task: str) -> tuple[ByTaskSplit, dict[str, float]]:
    """(the metrics of known names grouped by (task, split) as {kind: value}, the others by name), in order."""
    groups: ByTaskSplit = {}
    scalars: dict[str, float] = {}
    for key, value in metrics.items():
        parsed = parse_metric(key, default_task)
        if parsed is None:
            scalars[key] = value
        else:
            task, split, kind = parsed
            groups.setdefault((task, split), {})[kind] = value
    return groups, scalars


def metric_row(run: str, step: int, task: str, split: str, vals: dict[str, float],
               weight_norm: float | None) -> dict[str, Any]:
    """A row of metrics.parquet (NaN for the kind not logged)."""
    return {"run": run, "step": step, "task": task, "split": split, "loss": vals.get("loss", float("nan")),
            "acc": vals.get("acc", float("nan")), "weight_norm": weight_norm}


def advance_grok(state: GrokState | None, step: int, acc: float, cfg: RunConfig) -> GrokState:
    """One task's grok state after a logged test accuracy `acc` at `step` (None: nothing logged before)."""
    state = state or GrokState(torch.zeros(1, 1, dtype=torch.int64), torch.full((1, 1), -1, dtype=torch.int64),
                               torch.full((1, 1), -1, dtype=torch.int64))
    return update_grok(state, torch.tensor([[acc]], dtype=torch.float64), torch.ones(1, dtype=torch.bool), step, cfg)


def grok_steps(grok: dict[str, GrokState], tasks: tuple[str, ...], which: str = "grok") -> dict[str, int | None]:
    """Per task: the step the grok rule fired (`which='grok90'`: first test acc ≥ 90 %), None if not yet."""
    out: dict[str, int | None] = {}
    for task in tasks:
        st = grok.get(task)
        v = -1 if st is None else int(getattr(st, which)[0, 0])
        out[task] = v if v >= 0 else None
    return out
