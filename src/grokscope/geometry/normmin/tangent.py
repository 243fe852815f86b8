"""The tangent space of the zero-loss set Z = {θ : f(θ) = Y} and P3's tangent cosine cos(Δθ, g̃).

g̃ = (I − J⁺J)(−θ) is the part of −θ tangent to Z (J = Jacobian of the training outputs): densely for the
small MLP (`tangent_projection_dense`), or with conjugate gradients on J Jᵀ through jvp/vjp without
forming J (`tangent_projection_cg`). `tangent_probe` measures the cosine inside the training loop.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from grokscope.config import DataConfig, ModelConfig
from grokscope.errors import ConfigError
from grokscope.geometry.krylov import conjugate_gradient
from grokscope.store import TANGENT_TABLE
from grokscope.training import Probe
from grokscope.training import model as M
from grokscope.training.optim import HyperParams, clip_grads, init_state, sgd_step
from grokscope.training.problem import Params, Problem

__all__ = ["output_fn", "output_jacobian", "mlp_output_jacobian", "tangent_projection_dense", "tangent_projection_cg",
           "cosine", "project_to_zero_loss", "replay_sgd", "tangent_probe"]


def output_fn(model: ModelConfig, data: DataConfig, like: Params) -> Callable[[torch.Tensor, torch.Tensor],
                                                                              torch.Tensor]:
    """f(vec [P], pairs [B, 2]) -> outputs [B·T·p] of one run: the map whose Jacobian is J."""

    def f(vec: torch.Tensor, pairs: torch.Tensor) -> torch.Tensor:
        return M.forward(M.unflatten(vec[None], like), pairs[None], model, data)[0].reshape(-1)

    return f


def output_jacobian(model: ModelConfig, data: DataConfig, params: Params, pairs: torch.Tensor,
                    dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Dense Jacobians J [R, B·T·p, P] of each run's outputs on its `pairs` [R, B, 2] (small models only):
    in closed form for the one-task bias-free MLP (`mlp_output_jacobian`), by reverse mode otherwise."""
    if model.kind == "mlp" and list(params) == ["mlp.W_in", f"head.{data.tasks[0]}.W"]:
        return mlp_output_jacobian(params, pairs, data.p, dtype)
    f = output_fn(model, data, params)
    flat = M.flatten(params).to(dtype)
    return torch.stack([torch.func.jacrev(f)(flat[r], pairs[r]) for r in range(flat.shape[0])])


def mlp_output_jacobian(params: Params, pairs: torch.Tensor, p: int, dtype: torch.dtype = torch.float64
                        ) -> torch.Tensor:
    """J [R, B·p, P] of ŷ = relu(X W_in) W_out (X = e_a + e_b) in the flat layout (W_in, then W_out):
    ∂ŷ_no/∂W_in[i, h] = X_ni·1[Z_nh > 0]·W_out[h, o] and ∂ŷ_no/∂W_out[h, o'] = H_nh·δ_oo'."""
    W_in, W_out = (v.detach().to(dtype) for v in params.values())
    X = torch.nn.functional.one_hot(pairs, p).to(dtype).sum(2)  # [R, B, p]
    Z = X @ W_in
    H, gate = torch.relu(Z), (Z > 0).to(dtype)
    R, B = X.shape[:2]
    w, o = W_out.shape[1:]
    J1 = torch.einsum("rni,rnh,rho->rnoih", X, gate, W_out).reshape(R, B * o, -1)
    J2 = torch.einsum("rnh,oq->rnohq", H, torch.eye(o, dtype=dtype, device=X.device)).reshape(R, B * o, -1)
    return torch.cat([J1, J2], dim=2)


def tangent_projection_dense(J: torch.Tensor, v: torch.Tensor, rcond: float = 1e-6) -> torch.Tensor:
    """(I − J⁺J) v for each run: v [R, P] minus its projection Jᵀ(JJᵀ)⁺Jv on the row space of J [R, M, P],
    via the eigen-decomposition of the Gram JJᵀ (singular values below rcond·σ_max count as zero)."""
    out = []
    for Jr, vr in zip(J.to(torch.float64), v.to(torch.float64), strict=True):
        lam, U = torch.linalg.eigh(Jr @ Jr.T)
        keep = lam > (rcond ** 2) * lam[-1].clamp_min(1e-300)
        U, lam = U[:, keep], lam[keep]
        c = U @ ((U.T @ (Jr @ vr)) / lam)
        out.append(vr - Jr.T @ c)
    return torch.stack(out)


def _batched_outputs(model: ModelConfig, data: DataConfig, like: Params, pairs: torch.Tensor
                     ) -> Callable[[torch.Tensor], torch.Tensor]:
    """flat [R, P] -> outputs [R, M]; runs are independent, so jvp/vjp of it act run by run."""

    def f(flat: torch.Tensor) -> torch.Tensor:
        out = M.forward(M.unflatten(flat, like), pairs, model, data)
        return out.reshape(out.shape[0], -1)

    return f


def tangent_projection_cg(model: ModelConfig, data: DataConfig, params: Params, pairs: torch.Tensor,
                          v: torch.Tensor, iters: int = 100, tol: float = 1e-6
                          ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """(I − J⁺J) v without forming J: solve (J Jᵀ) c = J v by conjugate gradients with jvp/vjp, then
    return v − Jᵀc [R, P] and {'residual': ‖J g̃‖/‖J v‖ [R], 'iters': [R]} (0 residual = exactly tangent)."""
    flat = M.flatten(params).detach()
    f = _batched_outputs(model, data, params, pairs)
    _, vjp_fn = torch.func.vjp(f, flat)

    def Jt(c: torch.Tensor) -> torch.Tensor:
        return vjp_fn(c)[0]

    def Jv(u: torch.Tensor) -> torch.Tensor:
        return torch.func.jvp(f, (flat,), (u,))[1]

    v = v.to(flat.dtype)
    b = Jv(v)
    c, n_it = conjugate_gradient(lambda d: Jv(Jt(d)), b, iters, tol)
    g = v - Jt(c)
    residual = Jv(g).norm(dim=1) / b.norm(dim=1).clamp_min(1e-30)
    return g, {"residual": residual, "iters": n_it}


def cosine(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Row-wise cosine similarity of [R, P] tensors (0 where either is zero)."""
    a, b = a.to(torch.float64), b.to(torch.float64)
    den = a.norm(dim=1) * b.norm(dim=1)
    return torch.where(den > 0, (a * b).sum(1) / den.clamp_min(1e-300), torch.zeros_like(den))


def _hyper(problem: Problem, lr: float | None = None, wd: float | None = None,
           momentum: float | None = None) -> HyperParams:
    """Per-run hyper-parameters of `problem`'s configs, optionally overridden for every run."""
    def col(name: str, over: float | None) -> torch.Tensor:
        vals = [float(getattr(c.optim, name)) if over is None else float(over) for c in problem.cfgs]
        return torch.tensor(vals, device=problem.device)

    return HyperParams(lr=col("lr", lr), wd=col("wd", wd), clip=col("clip", None), beta1=col("beta1", None),
                       beta2=col("beta2", None), eps=col("eps", None), momentum=col("momentum", momentum))


def project_to_zero_loss(problem: Problem, params: Params, steps: int = 100, lr: float | None = None,
                         momentum: float = 0.9) -> tuple[Params, torch.Tensor]:
    """θ* ≈ the projection of θ onto Z: `steps` full-batch GD steps on the training loss at λ = 0 with
    heavy-ball momentum (P3: 100 steps, momentum 0.9); returns (θ*, training loss at θ* [R])."""
    p = {k: v.detach().clone() for k, v in params.items()}
    hp = _hyper(problem, lr=lr, wd=0.0, momentum=momentum)
    state = init_state("sgd", p)
    pairs, targets = problem.split("train")
    on = torch.ones(problem.R, dtype=torch.bool, device=problem.device)
    for t in range(1, steps + 1):
        grads, _ = problem.grads(p, pairs, targets)
        sgd_step(p, grads, state, hp, t, on)
    with torch.no_grad():
        final = problem.loss(p, pairs, targets)
    return p, final


def replay_sgd(problem: Problem, params: Params, step: int, horizon: int = 10) -> Params:
    """θ(step + horizon) − θ(step) as the trainer would make it: the same minibatches, clipping and
    SGD-with-L2 update. Exact for momentum-free SGD (the probe has no optimiser state)."""
    for c in problem.cfgs:
        if c.optim.name != "sgd" or c.optim.momentum != 0:
            raise ConfigError("the in-loop tangent probe replays plain SGD steps; it needs optim sgd with "
                              f"momentum 0 (got {c.optim.name}, momentum {c.optim.momentum})")
    p = {k: v.detach().clone() for k, v in params.items()}
    hp = _hyper(problem)
    state = init_state("sgd", p)
    on = torch.ones(problem.R, dtype=torch.bool, device=problem.device)
    for i in range(horizon):
        pairs, targets = problem.minibatch(step + i)
        grads, _ = problem.grads(p, pairs, targets)
        sgd_step(p, clip_grads(grads, hp.clip), state, hp, i + 1, on)
    return {k: p[k] - params[k] for k in p}


def tangent_probe(every: int = 100, horizon: int = 10, project_steps: int = 100,
                  project_momentum: float = 0.9, rcond: float = 1e-6, eval_every: int = 1) -> Probe:
    """In-loop probe (P3 App. D): cos(Δθ_n, g̃) with Δθ_n = θ_n − θ_{n−horizon} and g̃ = (I − J⁺J)(−θ_n),
    J the dense Jacobian of all training outputs at θ′, the projection of θ_n onto the zero-loss set
    (`project_steps` GD steps with momentum). The probe is called at every evaluation (`eval_every`
    steps, which must divide `horizon` and `every`) to keep θ_{n−horizon}; it measures every `every`
    steps from step `horizon` on (dense J: for the small MLP)."""
    if horizon % eval_every or every % eval_every:
        raise ConfigError(f"horizon={horizon} and every={every} must be multiples of eval_every={eval_every}")
    past: dict[int, torch.Tensor] = {}

    def measure(problem: Problem, params: Params, step: int) -> list[dict[str, Any]]:
        theta = M.flatten(params).detach().to(torch.float64)
        past[step] = theta.clone()
        for s in [s for s in past if s < step - horizon]:
            del past[s]
        if step % every or (step - horizon) not in past:
            return []
        delta = theta - past[step - horizon]
        star, star_loss = project_to_zero_loss(problem, params, project_steps, momentum=project_momentum)
        pairs, _ = problem.split("train")
        J = output_jacobian(problem.model, problem.data, star, pairs)
        theta_star = M.flatten(star).to(torch.float64)
        g = tangent_projection_dense(J, -theta, rcond)
        cos_t = cosine(delta, g)
        cos_d = cosine(delta, -theta)
        rows = []
        for r in range(problem.R):
            rows.append({"r": r, "cos_tangent": float(cos_t[r]), "cos_decay": float(cos_d[r]),
                         "tangent_frac": float(g[r].norm() / theta[r].norm()),
                         "dist_to_Z": float((theta_star[r] - theta[r]).norm()),
                         "loss_star": float(star_loss[r]), "step_norm": float(delta[r].norm())})
        return rows

    return Probe(TANGENT_TABLE, eval_every, measure)
