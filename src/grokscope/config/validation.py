"""Validation of a run config: one ConfigError naming the value, before anything allocates."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import fields
from typing import Any

from grokscope.config.schema import (
    EXTERNAL,
    MAX_BATCH,
    MAX_GRID_RUNS,
    MAX_P,
    MAX_STEPS,
    MAX_WIDTH,
    DataConfig,
    ModelConfig,
    OptimConfig,
    RunConfig,
    _check_fields,
    validate_method,
)
from grokscope.data.tasks import OPERATIONS, is_prime
from grokscope.errors import ConfigError


def validate(cfg: RunConfig) -> RunConfig:
    """Raise ConfigError (one line, naming the value) on anything that cannot train, or that would allocate
    absurd amounts of memory or time before training (a huge p, batch or step budget)."""
    if cfg.model.kind == EXTERNAL:
        raise ConfigError(f"run {cfg.name!r} was recorded by grokscope.Monitor from the user's own model "
                          "(model kind 'external'): grokscope cannot rebuild, train or re-measure it")
    _check_types(cfg)
    _check_tasks(cfg.data)
    _check_schemes(cfg)
    _check_pairs(cfg)
    _check_model(cfg.model)
    _check_optim(cfg.optim)
    validate_method(cfg.method)
    if cfg.method.loss == "stablemax" and cfg.model.kind == "mlp":
        raise ConfigError("method stablemax replaces softmax cross-entropy; the mlp model trains on squared error")
    _check_schedule(cfg)
    return cfg


def _check_tasks(data: DataConfig) -> None:
    """The tasks, the modulus they need, the split scheme."""
    if not data.tasks:
        raise ConfigError("tasks: at least one task is required")
    for t in data.tasks:
        if t not in OPERATIONS:
            raise ConfigError(f"unknown task {t!r}; choose from {', '.join(OPERATIONS)}")
    if len(set(data.tasks)) != len(data.tasks):
        raise ConfigError(f"tasks {','.join(data.tasks)!r} repeat a task")
    if data.p < 3:
        raise ConfigError(f"p={data.p!r} is too small: p must be an integer >= 3")
    if data.p > MAX_P:
        raise ConfigError(f"p={data.p} is too large: its table holds {data.p ** 2:.3g} pairs per task; "
                          f"p must be <= {MAX_P}")
    needs = [t for t in data.tasks if OPERATIONS[t].needs_prime]
    if needs and not is_prime(data.p):
        raise ConfigError(
            f"p={data.p} is not prime, but task {needs[0]!r} needs a prime modulus "
            "(division needs inverses; mul/sq-type ops form a field only mod a prime)"
        )
    for t in data.nonzero_tasks or ():
        if t not in OPERATIONS:
            raise ConfigError(f"unknown task {t!r} in nonzero_tasks; choose from {', '.join(OPERATIONS)}")
    if data.split not in ("randperm", "authors"):
        raise ConfigError(f"unknown split {data.split!r}; choose randperm or authors")


def _check_schemes(cfg: RunConfig) -> None:
    """The paper-exact switches: θ₀, the minibatch stream, the inline defects' stream."""
    if cfg.init not in ("independent", "authors"):
        raise ConfigError(f"unknown init {cfg.init!r}; choose independent or authors")
    if cfg.init == "authors" and cfg.model.kind != "trunk":
        raise ConfigError(f"init 'authors' exists for model kind 'trunk' only (got {cfg.model.kind!r})")
    if cfg.sampler not in ("counter", "authors"):
        raise ConfigError(f"unknown sampler {cfg.sampler!r}; choose counter or authors")
    if cfg.sampler == "authors" and not 0 <= cfg.seed < 2**32:
        raise ConfigError(f"seed={cfg.seed} must lie in [0, 2**32) for the authors' numpy sampler")
    if cfg.defect_stream not in ("counter", "training"):
        raise ConfigError(f"unknown defect_stream {cfg.defect_stream!r}; choose counter or training")


def _check_pairs(cfg: RunConfig) -> None:
    """A train fraction that leaves pairs on both sides of the split."""
    data = cfg.data
    if not 0.0 < data.train_frac < 1.0:
        raise ConfigError(f"train fraction {data.train_frac!r} must lie strictly between 0 and 1")
    n = n_pairs(cfg)
    n_train = round(data.train_frac * n)
    if not 1 <= n_train <= n - 1:
        raise ConfigError(f"train fraction {data.train_frac!r} of p={data.p}'s {n} pairs leaves "
                          f"{n_train} for training and {n - n_train} for test; both need at least one")


def _check_model(model: ModelConfig) -> None:
    """A model kind, with widths and depths that fit in memory."""
    if model.kind not in ("trunk", "transformer1", "mlp"):
        raise ConfigError(f"unknown model kind {model.kind!r}; choose trunk, transformer1 or mlp")
    if model.kind != "mlp":
        if model.d_model <= 0 or model.n_heads <= 0 or model.d_model % model.n_heads:
            raise ConfigError(f"d_model={model.d_model} must be a positive multiple of n_heads={model.n_heads}")
        if model.n_layers <= 0 or model.d_ff <= 0:
            raise ConfigError(f"n_layers={model.n_layers} and d_ff={model.d_ff} must be positive")
        for name in ("d_model", "d_ff"):
            if getattr(model, name) > MAX_WIDTH:
                raise ConfigError(f"{name}={getattr(model, name)} is too large; at most {MAX_WIDTH}")
        if model.n_layers > 64:
            raise ConfigError(f"n_layers={model.n_layers} is too large; at most 64")
    elif not 0 < model.width <= MAX_WIDTH:
        raise ConfigError(f"mlp width={model.width} must be positive and at most {MAX_WIDTH}")


def _check_optim(optim: OptimConfig) -> None:
    """The optimiser and finite hyper-parameters in their ranges; a batch that fits."""
    if optim.name not in ("adamw", "sgd"):
        raise ConfigError(f"unknown optimiser {optim.name!r}; choose adamw or sgd")
    for name in ("lr", "wd", "clip", "eps", "beta1", "beta2", "momentum"):
        v = getattr(optim, name)
        if not math.isfinite(v):
            raise ConfigError(f"{'weight decay ' if name == 'wd' else ''}{name}={v!r} must be a finite number")
    if not optim.lr >= 0:
        raise ConfigError(f"lr={optim.lr!r} must be >= 0")
    if not optim.wd >= 0:
        raise ConfigError(f"weight decay wd={optim.wd!r} must be >= 0")
    if not optim.clip >= 0:
        raise ConfigError(f"clip={optim.clip!r} must be >= 0 (0 disables clipping)")
    if not optim.eps > 0:
        raise ConfigError(f"eps={optim.eps!r} must be > 0")
    for name in ("beta1", "beta2", "momentum"):
        if not 0 <= getattr(optim, name) < 1:
            raise ConfigError(f"{name}={getattr(optim, name)!r} must lie in [0, 1)")
    if optim.batch is not None and optim.batch <= 0:
        raise ConfigError(f"batch={optim.batch} must be > 0 (or 'full' for full-batch training)")
    if optim.batch is not None and optim.batch > MAX_BATCH:
        raise ConfigError(f"batch={optim.batch} is too large; at most {MAX_BATCH} (or 'full')")


def _check_schedule(cfg: RunConfig) -> None:
    """Step budget, seed, and the intervals of evaluation, attention records, checkpoints and probes."""
    if cfg.steps <= 0:
        raise ConfigError(f"steps={cfg.steps} must be > 0")
    if cfg.steps > MAX_STEPS:
        raise ConfigError(f"steps={cfg.steps} is too large; at most {MAX_STEPS}")
    if not -(2**63) <= cfg.seed < 2**63 or not -(2**63) <= cfg.split_seed < 2**63:
        raise ConfigError(f"seed={cfg.seed} does not fit in 64 bits")
    for name in ("eval_every", "attn_every", "n_snapshots", "checkpoint_every", "grok_patience"):
        if getattr(cfg, name) <= 0:
            raise ConfigError(f"{name}={getattr(cfg, name)} must be > 0")
    if cfg.attn_every % cfg.eval_every or cfg.checkpoint_every % cfg.eval_every:
        raise ConfigError(
            f"attn_every={cfg.attn_every} and checkpoint_every={cfg.checkpoint_every} "
            f"must be multiples of eval_every={cfg.eval_every}"
        )
    if cfg.defect_every < 0 or (cfg.defect_every and cfg.defect_every % cfg.eval_every):
        raise ConfigError(f"defect_every={cfg.defect_every} must be 0 or a multiple of eval_every")
    if cfg.snapshot_spacing < 0 or cfg.snapshot_spacing % cfg.eval_every:
        raise ConfigError(f"snapshot_spacing={cfg.snapshot_spacing} must be 0 or a multiple of "
                          f"eval_every={cfg.eval_every}")
    if cfg.defect_every and cfg.defect_draws < 1:
        raise ConfigError(f"defect_draws={cfg.defect_draws} must be >= 1")
    for name in ("grok_acc", "grok_acc_90"):
        if not 0 < getattr(cfg, name) <= 1:
            raise ConfigError(f"{name}={getattr(cfg, name)!r} must lie in (0, 1]")


def _check_types(cfg: RunConfig) -> None:
    for prefix, obj in (("data.", cfg.data), ("model.", cfg.model), ("optim.", cfg.optim), ("", cfg)):
        _check_fields(type(obj), {f.name: getattr(obj, f.name) for f in fields(obj)
                                  if f.name not in ("data", "model", "optim")}, prefix)


def n_pairs(cfg: RunConfig) -> int:
    """How many (a, b) pairs the data config's table holds (before the train/test split)."""
    d = cfg.data
    n = d.p - 1 if d.exclude_zero else d.p
    total = n * (n + 1) // 2 if d.unordered else n * n
    if "div" in d.tasks and not d.exclude_zero:
        total -= n if not d.unordered else 1  # pairs with b = 0 are dropped
    return total


def check_axis(name: str, values: Sequence[Any]) -> None:
    """Refuse a grid axis that repeats a value (two runs would share one name and directory)."""
    seen: set[Any] = set()
    for v in values:
        if v in seen:
            raise ConfigError(f"{name} {v!r} appears twice; give each value once")
        seen.add(v)


def check_grid_size(axes: dict[str, int]) -> None:
    """Refuse, before expanding it, a grid of more than MAX_GRID_RUNS runs."""
    total = math.prod(max(1, n) for n in axes.values())
    if total > MAX_GRID_RUNS:
        sizes = " × ".join(f"{n} {k}" for k, n in axes.items() if n > 1)
        raise ConfigError(f"the grid expands to {total} runs ({sizes}); at most {MAX_GRID_RUNS} per command")
