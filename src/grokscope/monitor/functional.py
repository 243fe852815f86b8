"""The user's model as pure functions of a flat parameter vector θ [P]: loss, per-row gradients, HVPs.

An `nn.Module` is called through `torch.func.functional_call` with copies of its buffers (so batch-norm
statistics and the like are never updated), a params dict through the user's `forward(params, *inputs)`.
The flat layout is the order of `named_parameters()` (trainable ones) or of the dict: what `flatten` gives.
Nothing here writes to the user's tensors, and `measuring` checks it: every parameter and buffer the model
holds must be the same object, on the same storage, unwritten, after a measurement as before it.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel

from grokscope.errors import ConfigError, ModelChangedError

Params = dict[str, torch.Tensor]
LossFn = Callable[[Any, Any], torch.Tensor]
Forward = Callable[..., Any]
Slot = tuple[dict[str, Any], str]  # (the dict that holds a tensor: a module's _parameters or _buffers, its key)
KINDS = ("_parameters", "_buffers")


def slots(module: nn.Module, kind: str) -> dict[str, Slot]:
    """One dotted name per place a tensor of `kind` ('_parameters' or '_buffers') is held: each submodule object
    once (however many paths reach it, as TransformerLens bridges register the same layer under several names),
    and a tensor held by two modules (tied embeddings) once per holder."""
    out: dict[str, Slot] = {}
    for prefix, mod in module.named_modules():  # remove_duplicate=True: every module object once
        held = getattr(mod, kind)
        for key, t in held.items():
            if t is not None:
                out[f"{prefix}.{key}" if prefix else key] = (held, key)
    return out


def storage_of(t: torch.Tensor) -> int | None:
    """Where `t`'s data lives (None for a tensor without a data pointer, e.g. sparse or on the meta device)."""
    try:
        return t.data_ptr()
    except RuntimeError:
        return None


@dataclass(frozen=True)
class Held:
    """A tensor the user's model holds, as it was before a measurement (`data`: an alias keeping its storage)."""

    name: str
    slot: Slot
    tensor: torch.Tensor
    data: torch.Tensor
    version: int

    @classmethod
    def of(cls, name: str, slot: Slot) -> Held:
        """The tensor in `slot` now."""
        t = slot[0][slot[1]]
        return cls(name, slot, t, t.data, t._version)

    def restore(self) -> str | None:
        """Put the tensor (and its storage) back if they were replaced; say what had changed (None: nothing)."""
        holder, key = self.slot
        if holder.get(key) is not self.tensor:
            holder[key] = self.tensor
            return f"{self.name!r} was replaced by another tensor (restored)"
        if storage_of(self.tensor) != storage_of(self.data):
            with torch.no_grad():
                self.tensor.data = self.data
            return f"{self.name!r} was moved to other storage (restored)"
        if self.tensor._version != self.version:
            return f"{self.name!r} was written in place (its values cannot be restored)"
        return None


def check_unchanged(held: list[Held]) -> None:
    """Restore whatever a measurement replaced in the user's model and raise `ModelChangedError` naming it."""
    problems = [p for p in (h.restore() for h in held) if p is not None]
    if problems:
        more = f" and {len(problems) - 3} more" if len(problems) > 3 else ""
        raise ModelChangedError(
            "a monitor measurement changed your model: " + "; ".join(problems[:3]) + more
            + ". Training on would update tensors the model no longer uses, so the monitor stops here; please "
            "report the model class (grokscope's evaluation must leave every parameter as it was)")


class Target:
    """A model (nn.Module, or params dict + `forward`) and a loss `loss_fn(outputs, target)` over batches
    `(inputs..., target)`."""

    def __init__(self, model: nn.Module | Params, loss_fn: LossFn, forward: Forward | None = None) -> None:
        self.loss_fn = loss_fn
        if isinstance(model, nn.Module):
            if forward is not None:
                raise ConfigError("forward= is for a params dict; an nn.Module is called as it is")
            self.module: nn.Module | None = model
            self.forward = None
            self.params_dict: Params | None = None
            live = {n: p for n, p in model.named_parameters() if p.requires_grad}
        elif isinstance(model, dict):
            if forward is None:
                raise ConfigError("a params dict needs forward=fn(params, *inputs) -> outputs")
            self.module, self.forward = None, forward
            self.params_dict = model
            live = {n: p for n, p in model.items() if isinstance(p, torch.Tensor) and p.is_floating_point()}
        else:
            raise ConfigError(f"model: expected an nn.Module or a dict of tensors, got {type(model).__name__}")
        if not live:
            raise ConfigError("model has no trainable floating-point parameters to monitor")
        self.live = live
        self.names = list(live)
        self.shapes = {n: tuple(p.shape) for n, p in live.items()}
        self.sizes = [p.numel() for p in live.values()]
        self.n_params = sum(self.sizes)
        self._index()

    def _index(self) -> None:
        """Where the module holds each trainable parameter (slot name -> flat-layout name) and each buffer."""
        if self.module is None:
            return
        ids = {id(p): n for n, p in self.live.items()}
        self.param_slots = {s: ids[id(h[k])] for s, (h, k) in slots(self.module, "_parameters").items()
                            if id(h[k]) in ids}
        self.buffer_slots = slots(self.module, "_buffers")

    # ---- reading the user's parameters (copies, never views) --------------------------------------
    def theta(self) -> torch.Tensor:
        """The current parameters as one flat vector [P] (a copy)."""
        with torch.no_grad():
            return torch.cat([p.detach().reshape(-1) for p in self.live.values()]).clone()

    def host_copy(self, names: list[str]) -> dict[str, torch.Tensor]:
        """CPU copies of some parameters."""
        return {n: self.live[n].detach().to("cpu", copy=True) for n in names}

    def weight_norm(self) -> float:
        """Total L2 norm of the parameters (as `model.weight_norm`)."""
        with torch.no_grad():
            return float(torch.sqrt(sum(p.detach().pow(2).sum() for p in self.live.values())))

    def select(self, patterns: list[str] | None) -> list[str]:
        """Parameter names matching any glob in `patterns`; None: matrices named like attention (`*attn*`,
        `*attention*`), else every matrix (dim >= 2)."""
        if patterns is None:
            mats = [n for n in self.names if len(self.shapes[n]) >= 2]
            attn = [n for n in mats if fnmatch.fnmatch(n.lower(), "*attn*") or "attention" in n.lower()]
            return attn or mats
        out = [n for n in self.names if any(fnmatch.fnmatch(n, p) for p in patterns)]
        if not out:
            raise ConfigError(f"watch={patterns!r} matches no parameter; names look like {self.names[0]!r}")
        return out

    # ---- the loss as a function of θ ---------------------------------------------------------------
    def unflatten(self, theta: torch.Tensor) -> Params:
        """[P] -> {name: tensor} views in the flat layout."""
        return {n: t.view(self.shapes[n]) for n, t in zip(self.names, theta.split(self.sizes))}

    def loss(self, params: Params, batch: Any) -> torch.Tensor:
        """The user's loss of `batch` = (inputs..., target) under `params`."""
        *inputs, target = batch
        return self.loss_fn(self.outputs(params, tuple(inputs)), target)

    def outputs(self, params: Params, inputs: tuple[Any, ...]) -> Any:
        """The model's outputs on `inputs` under `params`."""
        return self._call_module(params, inputs) if self.module is not None else self.forward(params, *inputs)

    def _call_module(self, params: Params, inputs: tuple[Any, ...]) -> Any:
        """The module's outputs under `params` (flat-layout names) with copies of its buffers."""
        call = {slot: params[name] for slot, name in self.param_slots.items()}
        copies: dict[int, torch.Tensor] = {}
        for slot, (holder, key) in self.buffer_slots.items():
            b = holder[key]
            if id(b) not in copies:  # a buffer held twice gets one copy, as the parameters one leaf
                copies[id(b)] = b.clone()
            call[slot] = copies[id(b)]
        # Why this call shape leaves the module as it was: with tie_weights=False, functional_call swaps exactly
        # the names given, each once, and swaps the originals back on exit. `call` names every place a tensor is
        # held exactly once (`slots`), so every slot gets back its own original, and every holder of a tied
        # parameter (GPT-2's lm_head and wte) sees the evaluated value (one leaf: its gradient sums both uses).
        # The default tie_weights=True instead expands each name to all its alias paths; on a module reachable by
        # several paths (a TransformerLens bridge) it then swaps one slot several times, records an already
        # swapped tensor as the "original" of the later paths, and restoring in order leaves that tensor in the
        # model: 12 of the bridge's 15 parameters end up detached from the user's optimiser.
        return torch.func.functional_call(self.module, call, inputs, tie_weights=False)

    def grad(self, theta: torch.Tensor, batch: Any) -> torch.Tensor:
        """Gradient [P] of the loss of `batch` at θ [P] (plain autograd on per-tensor leaves: measured ~25 %
        cheaper than torch.func.grad for the example transformer on CPU)."""
        leaves = {n: t.detach().clone().requires_grad_(True) for n, t in self.unflatten(theta).items()}
        with torch.enable_grad():
            grads = torch.autograd.grad(self.loss(leaves, batch), list(leaves.values()))
        return torch.cat([g.reshape(-1) for g in grads])

    def grad_fn(self, batch: Any) -> Callable[[torch.Tensor], torch.Tensor]:
        """θ [N, P] -> per-row gradient [N, P] of the loss of `batch` (the `GradFn` of geometry.commutator)."""
        return lambda theta: torch.stack([self.grad(t, batch) for t in theta])

    def hvp(self, theta: torch.Tensor, batch: Any) -> Callable[[torch.Tensor], torch.Tensor]:
        """v [1, P] -> H v [1, P] at θ [P] for the loss of `batch` (the `MatVec` of geometry.hessian)."""
        params = self.unflatten(theta.detach())
        grad = torch.func.grad(lambda p: self.loss(p, batch))

        def matvec(v: torch.Tensor) -> torch.Tensor:
            tangent = self.unflatten(v[0].to(theta.dtype))

            def gdotv(p: Params) -> torch.Tensor:
                g = grad(p)
                return sum((g[n] * tangent[n]).sum() for n in self.names)

            # reverse over reverse, as hessian.make_hvp's default; the math attention kernel is the one that is
            # twice differentiable (the fused CPU kernel's backward has no derivative)
            with sdpa_kernel(SDPBackend.MATH), torch.enable_grad():
                out = torch.func.grad(gdotv)(params)
            return torch.cat([out[n].reshape(-1) for n in self.names])[None].detach()

        return matvec

    def holdings(self) -> list[Held]:
        """Every tensor the user's model holds (each module slot, or each entry of the params dict), as it is now."""
        if self.module is None:
            return [Held.of(n, (self.params_dict, n)) for n, t in self.params_dict.items()
                    if isinstance(t, torch.Tensor)]
        # a trainable parameter is named as in named_parameters() (the flat layout, monitor.json), others by slot
        return [Held.of(self.param_slots.get(name, name), slot)
                for kind in KINDS for name, slot in slots(self.module, kind).items()]

    @contextmanager
    def measuring(self, eval_mode: bool) -> Iterator[None]:
        """Evaluate the user's model at other parameters inside this: in eval mode if `eval_mode`, and guarded,
        so that afterwards (even on an error) every parameter and buffer is the same object on the same storage,
        or the monitor restores it and raises `ModelChangedError` naming it."""
        self._index()  # the module's tree may have changed since the last measurement (a submodule added, re-tied)
        held = self.holdings()
        try:
            with self._modes(eval_mode):
                yield
        finally:
            check_unchanged(held)

    @contextmanager
    def _modes(self, eval_mode: bool) -> Iterator[None]:
        """Put an nn.Module in eval mode (no dropout) while measuring, then restore every submodule's flag."""
        if self.module is None or not eval_mode:
            yield
            return
        flags = [(m, m.training) for m in self.module.modules()]
        self.module.eval()
        try:
            yield
        finally:
            for m, f in flags:
                m.training = f
