"""Batched optimisers over params dicts with a leading run axis: per-run lr, wd, clip and betas.

Each update equals torch.optim.AdamW / SGD applied to that run alone (see tests), and runs whose
`active` flag is off keep their parameters and state untouched.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from grokscope.training.model import Params


def _bcast(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """[R] -> [R, 1, ..., 1] to broadcast against a [R, ...] tensor."""
    return v.view((-1,) + (1,) * (like.dim() - 1))


def grad_norm(grads: Params) -> torch.Tensor:
    """Global L2 norm of each run's gradient [R]."""
    return torch.sqrt(sum(g.flatten(1).pow(2).sum(1) for g in grads.values()))


def _clip_coef(norm: torch.Tensor, clip: torch.Tensor) -> torch.Tensor:
    """clip_grad_norm_'s scale per run [R]: clip / (‖g‖ + 1e-6), at most 1; 1 where clip <= 0 (no clipping)."""
    coef = torch.clamp(clip / (norm + 1e-6), max=1.0)
    return torch.where(clip > 0, coef, torch.ones_like(coef))


def clip_grads(grads: Params, clip: torch.Tensor) -> Params:
    """Per-run global-norm clipping as torch.nn.utils.clip_grad_norm_ (clip <= 0: no clipping)."""
    coef = _clip_coef(grad_norm(grads), clip)
    return {k: g * _bcast(coef, g) for k, g in grads.items()}


def clip_rows_(g: torch.Tensor, clip: torch.Tensor) -> torch.Tensor:
    """`clip_grads` of flat per-run gradients g [R, P], in place: one pass for the norms (no squared copy of g),
    one to scale, and no new [R, P] tensor (the trainer's step)."""
    return g.mul_(_clip_coef(torch.linalg.vector_norm(g, dim=1), clip)[:, None])


@dataclass
class HyperParams:
    """Per-run hyper-parameters as device tensors [R]."""

    lr: torch.Tensor
    wd: torch.Tensor
    clip: torch.Tensor
    beta1: torch.Tensor
    beta2: torch.Tensor
    eps: torch.Tensor
    momentum: torch.Tensor

    def select(self, runs: torch.Tensor) -> HyperParams:
        """The hyper-parameters of some runs only."""
        return HyperParams(*(getattr(self, f).index_select(0, runs) for f in self.__dataclass_fields__))


def init_state(name: str, params: Params) -> Params:
    """Optimiser state: Adam moments `m.*`, `v.*`, or SGD momentum buffers `buf.*`."""
    keys = ("m", "v") if name == "adamw" else ("buf",)
    return {f"{s}.{k}": torch.zeros_like(p) for s in keys for k, p in params.items()}


def adamw_step(params: Params, grads: Params, state: Params, hp: HyperParams, t: int,
               active: torch.Tensor) -> None:
    """In-place AdamW update number `t` (1-based), decoupled decay: torch's fused AdamW kernel (one pass
    over parameters, gradient and moments) on each active run's rows, with that run's hyper-parameters."""
    runs = active.nonzero().flatten().tolist()
    if not runs:
        return
    host = {f: getattr(hp, f).tolist() for f in ("lr", "wd", "beta1", "beta2", "eps")}
    steps = [torch.tensor(float(t), device=next(iter(params.values())).device)]
    for k, p in params.items():
        g, m, v = grads[k], state[f"m.{k}"], state[f"v.{k}"]
        for r in runs:
            torch._fused_adamw_([p[r]], [g[r]], [m[r]], [v[r]], [], steps, lr=host["lr"][r],
                                beta1=host["beta1"][r], beta2=host["beta2"][r], weight_decay=host["wd"][r],
                                eps=host["eps"][r], amsgrad=False, maximize=False)


def sgd_step(params: Params, grads: Params, state: Params, hp: HyperParams, t: int, active: torch.Tensor) -> None:
    """In-place SGD with L2 weight decay and optional momentum, as torch.optim.SGD."""
    for k, p in params.items():
        on = _bcast(active, p)
        g = grads[k] + _bcast(hp.wd, p) * p
        buf = state[f"buf.{k}"]
        mom = _bcast(hp.momentum, p)
        buf_new = torch.where(mom > 0, g if t == 1 else buf * mom + g, g)
        p.copy_(torch.where(on, p - _bcast(hp.lr, p) * buf_new, p))
        buf.copy_(torch.where(on, buf_new, buf))


STEPS = {"adamw": adamw_step, "sgd": sgd_step}
