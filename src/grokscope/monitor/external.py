"""How a user's run maps onto grokscope's run config: metric names to (task, split, kind), the optimiser to the
store's OptimConfig, the monitor's settings to the `RunConfig` of its record's config.json."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from grokscope.config import EXTERNAL, DataConfig, ModelConfig, OptimConfig, RunConfig
from grokscope.errors import ConfigError
from grokscope.monitor.clock import unwrap
from grokscope.monitor.settings import MonitorConfig

__all__ = ["KINDS", "SPLITS", "metric_values", "optim_config", "parse_metric", "run_config"]

SPLITS = {"train": "train", "test": "test", "val": "test", "valid": "test"}
KINDS = ("loss", "acc")


def parse_metric(key: str, default_task: str) -> tuple[str, str, str] | None:
    """'test_acc' -> (task, 'test', 'acc'); 'mul/train_loss' -> ('mul', 'train', 'loss'); else None.
    'val'/'valid' count as the held-out split the grok rule reads ('test')."""
    task, _, rest = key.rpartition("/")
    split, _, kind = rest.rpartition("_")
    if split in SPLITS and kind in KINDS:
        return task or default_task, SPLITS[split], kind
    return None


def metric_values(metrics: Any) -> dict[str, float]:
    """`metrics` as {name: float}, all checked before any is recorded: a one-line ConfigError naming the key whose
    value is not one number (numbers, numpy scalars and one-element tensors are)."""
    if not isinstance(metrics, Mapping):
        raise ConfigError(f"metrics: expected a dict of name -> number, got a {type(metrics).__name__}")
    out: dict[str, float] = {}
    for key, value in metrics.items():
        if not isinstance(key, str):
            raise ConfigError(f"metrics: key {key!r} is not a string (names look like 'train_loss', 'test_acc')")
        if isinstance(value, torch.Tensor | np.ndarray) and int(np.prod(value.shape)) != 1:
            raise ConfigError(f"metrics[{key!r}] is an array of shape {list(value.shape)}, not one number")
        try:
            if isinstance(value, str | bytes):
                raise TypeError
            out[key] = float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"metrics[{key!r}] = {repr(value)[:40]} is not a number (a {type(value).__name__})"
                              ) from None
    return out


def optim_config(optimizer: torch.optim.Optimizer | None, batch: int | None) -> OptimConfig:
    """The user's optimiser as the store's OptimConfig (first param group; NaN where unknown)."""
    nan = float("nan")
    if optimizer is None:
        return OptimConfig(name="unknown", lr=nan, wd=nan, beta1=nan, beta2=nan, eps=nan, clip=nan, batch=batch)
    optimizer = unwrap(optimizer)  # accelerate's / Lightning's wrapper: the torch optimiser inside
    g = optimizer.param_groups[0]
    betas = g.get("betas", (nan, nan))
    return OptimConfig(name=type(optimizer).__name__.lower(), lr=float(g.get("lr", nan)),
                       wd=float(g.get("weight_decay", 0.0)), beta1=float(betas[0]), beta2=float(betas[1]),
                       eps=float(g.get("eps", nan)), clip=nan, momentum=float(g.get("momentum", 0.0) or 0.0),
                       batch=batch)


def run_config(cfg: MonitorConfig, tasks: tuple[str, ...], optimizer: torch.optim.Optimizer | None,
               batch: int | None, seed: int, steps: int, tag: str) -> RunConfig:
    """The record's config.json: model kind `external` (no architecture), the user's optimiser, the monitor's
    cadences and grok rule, preset `monitor`, tagged `tag` (the run folder's name)."""
    return RunConfig(
        data=DataConfig(tasks=tasks, p=0, train_frac=0.0),
        model=ModelConfig(kind=EXTERNAL, d_model=0, n_heads=0, d_ff=0, n_layers=0, width=0),
        optim=optim_config(optimizer, batch), seed=seed, steps=steps, eval_every=1, attn_every=cfg.watch_every,
        n_snapshots=cfg.n_snapshots, checkpoint_every=cfg.flush_every, grok_acc=cfg.grok_acc,
        grok_patience=cfg.grok_patience, grok_acc_90=cfg.grok_acc_90, defect_every=cfg.defect_every,
        defect_draws=cfg.draws, preset="monitor", tag=tag)
