"""The optimiser's own clock: how fast its weight decay alone would shrink the weights, per step.

The norm-delay law (T_grok − T_mem ≈ log(V_mem/V*)/(2κηλ)) measures the grokking delay in units of 1/(ηλ): time on
the optimiser's clock transfers across learning rates, decays and models better than raw steps. `Clock` is the rate
r = d(−ln‖θ‖)/dt that the decay term alone gives, read from the optimiser at each measurement (schedulers change
lr) or from a stored run's config:
- decoupled decay (AdamW, `Adam(decoupled_weight_decay=True)`): r = η λ;
- L2 in plain SGD with momentum μ: r = η λ / (1 − μ) (momentum's steady-state gain on a constant gradient term);
- L2 inside an adaptive optimiser (Adam, RMSprop, ... with `weight_decay`): the decay is divided by the per-weight
  second moments, so its rate is not a function of η and λ: no clock (`kind` "l2-adaptive", the detector abstains);
- no decay: rate 0 (`kind` "none").
Several parameter groups: the rate of each weighted by its number of parameters. `tau` accumulates the clock.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

KINDS = ("decoupled", "l2-sgd", "l2-adaptive", "none", "unknown")
DECOUPLED_NAMES = ("adamw", "lamb", "lion")  # optimisers whose weight_decay is decoupled (by class name, lower case)


@dataclass(frozen=True)
class Clock:
    """The decay clock at one moment: `rate` per step (NaN where unknown), its `kind`, and the raw lr / wd."""

    rate: float
    kind: str
    lr: float = math.nan
    wd: float = math.nan

    @property
    def usable(self) -> bool:
        """A positive, known rate: the test-free detector can put time on this clock."""
        return self.kind in ("decoupled", "l2-sgd") and math.isfinite(self.rate) and self.rate > 0


def unwrap(optimizer: Any) -> Any:
    """The torch optimiser inside framework wrappers (accelerate's `AcceleratedOptimizer`, Lightning's
    `LightningOptimizer`): follows `.optimizer` while it leads to an object with `param_groups`."""
    seen = 0
    while seen < 5 and hasattr(getattr(optimizer, "optimizer", None), "param_groups"):
        optimizer, seen = optimizer.optimizer, seen + 1
    return optimizer


def _kind(name: str, wd: float, decoupled_flag: bool) -> str:
    if not wd > 0:
        return "none"
    if decoupled_flag or name in DECOUPLED_NAMES:
        return "decoupled"
    if name == "sgd":
        return "l2-sgd"
    if name in ("adam", "adamax", "nadam", "radam", "rmsprop", "adagrad", "adadelta"):
        return "l2-adaptive"
    return "unknown"


def _group_rate(kind: str, lr: float, wd: float, momentum: float) -> float:
    if kind == "none":
        return 0.0
    if kind == "decoupled":
        return lr * wd
    if kind == "l2-sgd":
        return lr * wd / (1.0 - momentum) if momentum < 1 else math.nan
    return math.nan


def clock_of(optimizer: Any) -> Clock:
    """The clock of a live optimiser now (None: kind "unknown"), over its parameter groups (see the module doc)."""
    if optimizer is None:
        return Clock(math.nan, "unknown")
    opt = unwrap(optimizer)
    name = type(opt).__name__.lower()
    groups = getattr(opt, "param_groups", None) or []
    rates, sizes, kinds, lrs, wds = [], [], [], [], []
    for g in groups:
        lr, wd = float(g.get("lr", math.nan)), float(g.get("weight_decay", 0.0) or 0.0)
        kind = _kind(name, wd, bool(g.get("decoupled_weight_decay", False)))
        n = sum(int(p.numel()) for p in g.get("params", []))
        rates.append(_group_rate(kind, lr, wd, float(g.get("momentum", 0.0) or 0.0)))
        sizes.append(max(n, 1))
        kinds.append(kind)
        lrs.append(lr)
        wds.append(wd)
    if not groups:
        return Clock(math.nan, "unknown")
    w = np.asarray(sizes, dtype=float) / sum(sizes)
    decayed = [k for k in kinds if k != "none"]
    kind = decayed[0] if decayed and all(k == decayed[0] for k in decayed) else ("none" if not decayed else "unknown")
    return Clock(float(np.dot(w, rates)), kind, float(np.dot(w, lrs)), float(np.dot(w, wds)))


def clock_of_config(optim: Any, meta: Mapping[str, Any] | None = None) -> Clock:
    """The clock of a stored run, constant over it: its config's `optim` (name, lr, wd, momentum), corrected by the
    study's `ew_run.json` (`optimizer.kind` / `decay`) where the stored name is a wrapper's."""
    o = (meta or {}).get("optimizer") or {}
    name = str(o.get("kind") or getattr(optim, "name", "unknown")).lower()
    lr, wd = float(getattr(optim, "lr", math.nan)), float(getattr(optim, "wd", math.nan))
    momentum = float(o.get("momentum") or getattr(optim, "momentum", 0.0) or 0.0)
    kind = "decoupled" if o.get("decay") == "decoupled" and wd > 0 else _kind(name, wd, False)
    return Clock(_group_rate(kind, lr, wd, momentum), kind, lr, wd)


def tau(steps, rates, start: int | None) -> np.ndarray:
    """Σ rate Δt from step `start` to each of `steps` (the rate held since the previous measurement: left sums);
    NaN before `start` or when `start` is None."""
    steps, rates = np.asarray(steps, dtype=float), np.asarray(rates, dtype=float)
    out = np.full(len(steps), np.nan)
    if start is None:
        return out
    acc, prev = 0.0, None
    for i, (t, r) in enumerate(zip(steps, rates)):
        if t < start:
            continue
        if prev is not None:
            acc += prev[1] * (t - prev[0])
        out[i] = acc
        prev = (t, r if math.isfinite(r) else 0.0)
    return out
