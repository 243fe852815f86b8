"""Batched optimisers over params dicts with a leading run axis: per-run lr, wd, clip and betas.

Each update equals torch.optim.AdamW / SGD applied to that run alone (see tests), and runs whose
`active` flag is off keep their parameters and state untouched. Nothing here reads a device tensor back to
the host: the per-run hyper-parameters live on the device as [R] tensors and enter the update broadcast as
[R, 1] columns, and `active` masks rows on the device.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from grokscope.config import RunConfig
from grokscope.training.model import Params

ADAM_FIELDS = ("lr", "wd", "beta1", "beta2", "eps")  # what the CPU's per-run fused kernel reads per run


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
    """Per-run hyper-parameters as device tensors [R]. `host`: the same AdamW values as host floats, one tuple
    (lr, wd, beta1, beta2, eps) per run, read from the tensors once (the CPU's per-run fused kernel takes host
    floats; hyper-parameters never change during training). `update`: the elementwise AdamW update
    (`adamw_rows_`, or its torch.compile'd form when the trainer compiles), None for the eager one."""

    lr: torch.Tensor
    wd: torch.Tensor
    clip: torch.Tensor
    beta1: torch.Tensor
    beta2: torch.Tensor
    eps: torch.Tensor
    momentum: torch.Tensor
    host: list[tuple[float, ...]] | None = field(default=None, repr=False)
    update: Callable | None = field(default=None, repr=False)

    def host_rows(self) -> list[tuple[float, ...]]:
        """`host`, read from the tensors at the first call (on a CPU batch: a host read, no device sync)."""
        if self.host is None:
            self.host = list(zip(*(getattr(self, f).tolist() for f in ADAM_FIELDS)))
        return self.host

    def select(self, runs: torch.Tensor, rows: list[int] | None = None) -> HyperParams:
        """The hyper-parameters of some runs only (`rows`: the same indices on the host, if known)."""
        if rows is not None and self.lr.device.type == "cpu":
            self.host_rows()  # a host read of host memory: no sync, and done once
        host = [self.host[r] for r in rows] if self.host is not None and rows is not None else None
        return HyperParams(*(getattr(self, f).index_select(0, runs) for f in self.__dataclass_fields__
                             if f not in ("host", "update")), host=host, update=self.update)


def init_state(name: str, params: Params) -> Params:
    """Optimiser state: Adam moments `m.*`, `v.*`, or SGD momentum buffers `buf.*`."""
    keys = ("m", "v") if name == "adamw" else ("buf",)
    return {f"{s}.{k}": torch.zeros_like(p) for s in keys for k, p in params.items()}


def adamw_coefficients(hp: HyperParams, t: int, dtype: torch.dtype) -> tuple[torch.Tensor, ...]:
    """Update number `t`'s per-run constants as [R, 1] columns in `dtype`, computed in float64 on the device as
    torch's fused kernel computes them on the host: decay 1 − lr·wd, 1 − β₁, 1 − β₂, β₂, √(1 − β₂ᵗ),
    −lr/(1 − β₁ᵗ), eps. `t` is every active run's own step count (a run steps at trainer step s only once it
    has taken s steps), a host int, so nothing is read back."""
    f64 = torch.float64
    lr, wd, b1, b2 = (x.to(f64) for x in (hp.lr, hp.wd, hp.beta1, hp.beta2))
    cols = (1 - lr * wd, 1 - b1, 1 - b2, b2, torch.sqrt(1 - b2 ** t), -(lr / (1 - b1 ** t)), hp.eps)
    return tuple(c.to(dtype)[:, None] for c in cols)


def adamw_rows_(p: torch.Tensor, g: torch.Tensor, m: torch.Tensor, v: torch.Tensor, on: torch.Tensor,
                decay: torch.Tensor, w1: torch.Tensor, c2: torch.Tensor, b2: torch.Tensor, s2: torch.Tensor,
                neg_step: torch.Tensor, eps: torch.Tensor) -> None:
    """One AdamW update of p, m, v [R, ...] in place, with the arithmetic of torch's fused kernel (decoupled decay
    first, m by lerp, v = β₂v + ((1 − β₂)g)g, p += (−step·m)/(√v/√bc₂ + eps)); rows whose `on` [R, 1, ...] is
    False keep p, m and v bit for bit. Elementwise with [R, 1, ...] columns: one program for all runs (a single
    loop when compiled)."""
    v_new = torch.mul(v, b2).addcmul_(g * c2, g)
    den = v_new.sqrt().div_(s2).add_(eps)
    m_new = torch.lerp(m, g, w1)
    p_new = torch.mul(p, decay).addcdiv_(m_new * neg_step, den)
    for old, new in ((p, p_new), (m, m_new), (v, v_new)):
        torch.where(on, new, old, out=old)


def _adamw_fused_rows(p: torch.Tensor, g: torch.Tensor, m: torch.Tensor, v: torch.Tensor, hp: HyperParams, t: int,
                      active: torch.Tensor) -> None:
    """The CPU's AdamW: torch's fused kernel on each run's row (one pass over p, g, m, v, at the CPU's memory
    bandwidth: 7-13x faster there than the broadcast program's eager passes, as fast as it compiled from 8 runs on,
    `benchmarks/adamw_throughput.py`), with host hyper-parameters and an inactive run skipped by the kernel's
    `found_inf` flag: no host read of `active`."""
    skip = (~active).to(torch.float32)
    step = [torch.full((), float(t), device=p.device, dtype=torch.float32)]
    for r, (lr, wd, b1, b2, eps) in enumerate(hp.host_rows()):
        torch._fused_adamw_([p[r]], [g[r]], [m[r]], [v[r]], [], step, lr=lr, beta1=b1, beta2=b2, weight_decay=wd,
                            eps=eps, amsgrad=False, maximize=False, found_inf=skip[r])


def adamw_step(params: Params, grads: Params, state: Params, hp: HyperParams, t: int,
               active: torch.Tensor) -> None:
    """In-place AdamW update number `t` (1-based), decoupled decay, of every active run. Off the CPU (or with
    `hp.update` set): one batched program, `adamw_rows_` with per-run constants on the device. On the CPU in
    eager mode: torch's fused kernel per run, the same numbers to the last bit (measured: m bit for bit, v and p
    within one ulp in a few entries per 10⁴), many times faster there."""
    for k, p in params.items():
        g, m, v = grads[k], state[f"m.{k}"], state[f"v.{k}"]
        if p.device.type == "cpu" and hp.update is None:
            _adamw_fused_rows(p, g, m, v, hp, t, active)
        else:
            cols = (_bcast(c[:, 0], p) for c in adamw_coefficients(hp, t, p.dtype))
            (hp.update or adamw_rows_)(p, g, m, v, _bcast(active, p), *cols)


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


def hyper_params(cfgs: list[RunConfig], device: torch.device, dtype: torch.dtype = torch.float32) -> HyperParams:
    """Every run's optimiser hyper-parameters as columns [R] on the device (the batched update reads them there)."""

    def col(name: str) -> torch.Tensor:
        return torch.tensor([float(getattr(c.optim, name)) for c in cfgs], device=device, dtype=dtype)

    return HyperParams(lr=col("lr"), wd=col("wd"), clip=col("clip"), beta1=col("beta1"), beta2=col("beta2"),
                       eps=col("eps"), momentum=col("momentum"))
