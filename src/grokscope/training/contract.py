"""What the training loop takes and gives: probes (measurements every N steps) and gradient transforms (interventions)
in, an `EvalInfo` after each evaluation and a `RunResult` per run out. Plain callables and dataclasses, so the loop
knows nothing of the analyses that plug into it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from grokscope.config import RunConfig
from grokscope.training.problem import Params, Problem

GradTransform = Callable[[int, Params, Params], Params]
# A transform holding state a resume needs also has `export(r) -> {name: tensor}` (run r's state, saved in its
# checkpoint; names start with `transform.`) and `restore(r, tensors)` (given the checkpoint's tensors).


@dataclass
class Probe:
    """A measurement taken inside the loop every `every` steps: `measure(problem, params, step)` returns
    rows (dicts with an int `r`, the run's index in the batch); they land in `<name>.parquet`."""

    name: str
    every: int
    measure: Callable[[Problem, Params, int], list[dict[str, Any]]]


@dataclass
class EvalInfo:
    """What the loop reports after each evaluation (host copies, for progress displays)."""

    step: int
    max_steps: int
    train_acc: np.ndarray  # [R, T]
    test_acc: np.ndarray  # [R, T]
    grok_step: np.ndarray  # [R, T], -1 = not yet
    stopped: np.ndarray  # [R] bool
    tasks: tuple[str, ...]


@dataclass
class RunResult:
    """One run's outcome: its summary (as in summary.json), metrics and final parameters."""

    config: RunConfig
    summary: dict[str, Any]
    metrics: pd.DataFrame
    params: Params
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    path: Path | None = None
