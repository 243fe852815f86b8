"""Building the `Monitor` a callback drives: settings with defaults sized to the model, one place for both."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from grokscope.errors import RecordExistsError
from grokscope.monitor import Monitor, WarningEvent
from grokscope.monitor.functional import LossFn
from grokscope.monitor.sinks import Signals

BIG_MODEL = 1_000_000  # parameters; above this, full snapshots are off unless asked for (each is a model copy)


def sized_settings(model: nn.Module, settings: dict[str, Any]) -> dict[str, Any]:
    """The user's monitor settings, with full-parameter snapshots off by default on a big model (the
    watched tensors' trajectory, sketched when large, is what the analyses read)."""
    n = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {"n_snapshots": 0, **settings} if n > BIG_MODEL else dict(settings)


def start_monitor(model: nn.Module, loss_fn: LossFn, batches: Any, out: str | Path, *,
                  optimizer: torch.optim.Optimizer | None, seed: int, start_step: int, steps: int,
                  watch: list[str] | None, on_warning: Callable[[WarningEvent], None] | None,
                  settings: dict[str, Any], measured: nn.Module | None = None, log: Signals | None = None
                  ) -> Monitor | None:
    """A `Monitor` over `measured` (default `model`) that records θ at `start_step` now, or continues the record at
    `out` from there (a fit resumed from its checkpoint), forwarding its signals to `log` (the trainer's loggers).
    None when a fit starting afresh finds a record at `out`:
    said in one line on stderr, and the user's training goes on unmonitored instead of crashing."""
    try:
        return Monitor(measured if measured is not None else model, loss_fn, batches, out, watch=watch,
                       optimizer=optimizer, seed=seed, steps=steps, start_step=start_step, on_warning=on_warning,
                       log=log, **sized_settings(model, settings))
    except RecordExistsError as e:
        print(f"grokscope: this run is not monitored: {e}", file=sys.stderr, flush=True)
        return None
