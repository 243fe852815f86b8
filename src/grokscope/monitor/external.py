"""How a user's run maps onto grokscope's run config: metric names to (task, split, kind), the optimiser to the
store's OptimConfig."""

from __future__ import annotations

import torch

from grokscope.config import OptimConfig

__all__ = ["KINDS", "SPLITS", "optim_config", "parse_metric"]

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


def optim_config(optimizer: torch.optim.Optimizer | None, batch: int | None) -> OptimConfig:
    """The user's optimiser as the store's OptimConfig (first param group; NaN where unknown)."""
    nan = float("nan")
    if optimizer is None:
        return OptimConfig(name="unknown", lr=nan, wd=nan, beta1=nan, beta2=nan, eps=nan, clip=nan, batch=batch)
    g = optimizer.param_groups[0]
    betas = g.get("betas", (nan, nan))
    return OptimConfig(name=type(optimizer).__name__.lower(), lr=float(g.get("lr", nan)),
                       wd=float(g.get("weight_decay", 0.0)), beta1=float(betas[0]), beta2=float(betas[1]),
                       eps=float(g.get("eps", nan)), clip=nan, momentum=float(g.get("momentum", 0.0) or 0.0),
                       batch=batch)
