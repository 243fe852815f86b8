"""The monitor's checks of what a user hands it, at construction: each mistake is one `ConfigError` line naming the
argument (`optimizer`, `batches`, `loss_fn`) instead of a traceback from deep inside torch later on."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from grokscope.errors import ConfigError, GrokscopeError
from grokscope.monitor.functional import Target

__all__ = ["check_optimizer", "describe", "probe"]


def describe(value: Any) -> str:
    """A short description of a (nested) batch or output: tensor shapes and dtypes, else the type's name."""
    if isinstance(value, torch.Tensor):
        return f"{list(value.shape)} {str(value.dtype).removeprefix('torch.')}"
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{k}: {describe(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list | tuple):
        return "(" + ", ".join(describe(v) for v in value) + ")"
    return type(value).__name__


def _first_line(e: BaseException) -> str:
    """`Type: first line of the message` of an exception (torch's messages run over several lines)."""
    lines = str(e).strip().splitlines()
    return f"{type(e).__name__}: {lines[0] if lines else ''}".rstrip(": ")


def check_optimizer(optimizer: Any, target: Target) -> None:
    """The optimiser must hold every trainable tensor of the model: the monitor reads its hyper-parameters as the
    run's (and the early warning its clock), so one built over another model's parameters is refused."""
    if optimizer is None:
        return
    groups = getattr(optimizer, "param_groups", None)
    if not isinstance(groups, list):
        raise ConfigError(f"optimizer: expected a torch.optim.Optimizer, got a {type(optimizer).__name__}")
    trainable = {n: p for n, p in target.live.items() if p.requires_grad} or target.live
    held = {id(p) for g in groups for p in g.get("params", [])}
    missing = [n for n, p in trainable.items() if id(p) not in held]
    if missing:
        names = ", ".join(repr(n) for n in missing[:3]) + (f" and {len(missing) - 3} more" if len(missing) > 3 else "")
        raise ConfigError(f"optimizer covers {len(trainable) - len(missing)} of the model's {len(trainable)} trainable "
                          f"tensors (not {names}): pass the optimizer that trains this model, or set "
                          "requires_grad=False on the parameters it does not train")


def probe(target: Target, batch: Any) -> None:
    """Call the model and `loss_fn` once on one of the monitor's batches (no gradient, under `target.measuring`
    by the caller): a batch the model cannot take, a `loss_fn` that fails on the outputs or returns no scalar is a
    one-line `ConfigError` at construction, naming the batch's shapes."""
    batch = tuple(batch)
    if len(batch) < 2:
        raise ConfigError(f"batches: each batch must be (inputs..., target), got {len(batch)} element(s): "
                          f"{describe(batch)}")
    *inputs, y = batch
    try:
        out = target.outputs(target.live, tuple(inputs))
    except (GrokscopeError, torch.OutOfMemoryError):
        raise
    except Exception as e:
        raise ConfigError(f"batches: the model cannot take the monitor's minibatches (inputs {describe(inputs)}, "
                          f"target {describe(y)}): {_first_line(e)}") from e
    try:
        loss = target.loss_fn(out, y)
    except (GrokscopeError, torch.OutOfMemoryError):
        raise
    except Exception as e:
        raise ConfigError(f"loss_fn failed on the model's outputs {describe(out)} and the target {describe(y)} of "
                          f"the monitor's batches: {_first_line(e)}") from e
    if not isinstance(loss, torch.Tensor):
        raise ConfigError(f"loss_fn returned a {type(loss).__name__}, not a scalar tensor (0-dim, differentiable)")
    if loss.dim() != 0:
        raise ConfigError(f"loss_fn returned a tensor of shape {list(loss.shape)}, not a scalar: reduce it over the "
                          "batch (e.g. .mean(), or reduction='mean')")
