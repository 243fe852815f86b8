"""Curvature depth (SPEC §4): extreme Hessian eigenvalues of the training loss by batched Lanczos.

Everything works on the run axis. A Hessian-vector product of the *summed* loss over R independent
runs is each run's own HVP, so many checkpoints of one run, many runs, or one checkpoint under several
losses (total, each task) become one batched program: stack them on R and call `lanczos` once.

What `analyze_hessian` reports per (checkpoint, loss):
- `lambda_min`, `lambda_max`: the smallest / largest Ritz value of 25 Lanczos steps with full
  re-orthogonalisation on the Hessian of the loss over a fixed sample of 512 training examples
  (`bottom`, `top`: the k = 5 smallest ascending, the k largest descending).
- `exec_curv` (`exec_max`): the smallest (largest) eigenvalue of Bᵀ H B, with B the orthonormal
  execution basis [P, K] of `grokscope.geometry.pca.exec_basis`: the extreme Rayleigh quotients of H over
  the execution subspace, computed exactly from K HVPs.
- `perp_curv` (`perp_max`): the smallest (largest) Ritz value of Lanczos (same iterations) on
  P⊥ H P⊥, P⊥ = I − B Bᵀ, started in the complement: the extreme Rayleigh quotients of H over the
  orthogonal complement of the execution subspace.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from grokscope import model as M
from grokscope.errors import StoreError
from grokscope.problem import Params, Problem
from grokscope.store import RunDir

MatVec = Callable[[torch.Tensor], torch.Tensor]
SAMPLE_SALT = 7  # the fixed draw of training examples the curvature is measured on


# ---------------------------------------------------------------------------------------------- losses


def hessian_sample(problem: Problem, n_samples: int = 512) -> tuple[torch.Tensor, torch.Tensor]:
    """The fixed training sample the curvature is measured on: pairs [R, n, 2], targets [R, n, T].
    The whole training split when it has at most `n_samples` examples, else the seeded draw
    `problem.minibatch(step=0, salt=7, batch=n_samples)` (with replacement, as training batches)."""
    if n_samples >= problem.n_train:
        return problem.split("train")
    return problem.minibatch(step=0, salt=SAMPLE_SALT, batch=n_samples)


def loss_weights(tasks: tuple[str, ...], loss: str) -> torch.Tensor:
    """Task weights [T] that select a loss: 'total' = plain sum of task losses, a task name = that
    task's loss alone (one-hot)."""
    if loss == "total":
        return torch.ones(len(tasks))
    if loss not in tasks:
        raise ValueError(f"unknown loss {loss!r}; choose 'total' or one of {', '.join(tasks)}")
    return torch.eye(len(tasks))[tasks.index(loss)]


def weighted_loss(problem: Problem, params: Params, pairs: torch.Tensor, targets: torch.Tensor,
                  task_weights: torch.Tensor | None = None) -> torch.Tensor:
    """Per-run loss [R]; `task_weights` is None (sum of tasks), [T] (as `Problem.loss`) or [R, T]
    (each run its own weighting, so several losses of one checkpoint batch on the run axis)."""
    if task_weights is None or task_weights.dim() == 1:
        return problem.loss(params, pairs, targets, task_weights)
    per_task = M.per_task_loss(M.forward(params, pairs, problem.model, problem.data), targets, problem.model)
    return (per_task * task_weights.to(per_task)).sum(-1)


def make_hvp(problem: Problem, params: Params, pairs: torch.Tensor, targets: torch.Tensor,
             task_weights: torch.Tensor | None = None, mode: str = "rev") -> MatVec:
    """Flat Hessian-vector product v [R, P] -> H_r v_r of each run's loss at `params` (layout of
    `model.flatten`). mode 'rev' = grad of (grad · v), 'fwd' = jvp of grad (same numbers; 'rev'
    measured ~2x faster on CPU for the P1 trunk)."""
    if mode not in ("rev", "fwd"):
        raise ValueError(f"mode must be 'rev' or 'fwd', not {mode!r}")
    params = {k: v.detach() for k, v in params.items()}

    def total(p: Params) -> torch.Tensor:
        return weighted_loss(problem, p, pairs, targets, task_weights).sum()

    grad = torch.func.grad(total)

    def matvec(v: torch.Tensor) -> torch.Tensor:
        vd = M.unflatten(v.to(next(iter(params.values())).dtype), params)
        if mode == "fwd":
            out = torch.func.jvp(grad, (params,), (vd,))[1]
        else:
            def gdotv(p: Params) -> torch.Tensor:
                g = grad(p)
                return sum((g[k] * vd[k]).sum() for k in g)

            out = torch.func.grad(gdotv)(params)
        return M.flatten(out).detach()

    return matvec


# --------------------------------------------------------------------------------------------- Lanczos


@dataclass
class LanczosResult:
    """Ritz values of an m-step Lanczos run per run: `ritz` [R, m] ascending; `bottom` [R, k] the k
    smallest (ascending), `top` [R, k] the k largest (descending); `residual` [R, m] and `*_residual`
    the residual norms ‖H y − θ y‖ = |β_m s_m| of the Ritz pairs (each Ritz value lies within its
    residual of a true eigenvalue); `*_vectors` [R, k, P] when asked for."""

    ritz: torch.Tensor
    residual: torch.Tensor
    bottom: torch.Tensor
    top: torch.Tensor
    bottom_residual: torch.Tensor
    top_residual: torch.Tensor
    iters: int
    bottom_vectors: torch.Tensor | None = None
    top_vectors: torch.Tensor | None = None

    @property
    def lambda_min(self) -> torch.Tensor:
        return self.bottom[:, 0]

    @property
    def lambda_max(self) -> torch.Tensor:
        return self.top[:, 0]


def _orthogonalize(w: torch.Tensor, Q: torch.Tensor) -> torch.Tensor:
    """w [R, P] minus its projection on the rows of Q [R, j, P] (classical Gram–Schmidt, twice)."""
    for _ in range(2):
        w = w - torch.einsum("rj,rjp->rp", torch.einsum("rjp,rp->rj", Q, w), Q)
    return w


def lanczos(matvec: MatVec, v0: torch.Tensor, iters: int = 25, k: int = 5, vectors: bool = False,
            project: MatVec | None = None, seed: int = 0) -> LanczosResult:
    """Batched symmetric Lanczos with full re-orthogonalisation: `matvec` maps [R, P] -> [R, P] (one
    symmetric operator per run), `v0` [R, P] starts each run. Returns the k smallest and k largest
    Ritz values per run. On breakdown (an invariant subspace found) a run restarts from a random
    vector orthogonal to its basis (`project` maps it into the operator's domain, e.g. a subspace)."""
    R, P = v0.shape
    m = min(iters, P)
    k = min(k, m)
    dtype, eps = v0.dtype, torch.finfo(v0.dtype).eps
    gen = torch.Generator().manual_seed(seed)
    Q = v0.new_zeros(R, m, P)
    alpha = torch.zeros(R, m, dtype=torch.float64)
    beta = torch.zeros(R, m, dtype=torch.float64)
    q = v0 / v0.norm(dim=1, keepdim=True)
    scale = torch.zeros(R, dtype=torch.float64)
    for j in range(m):
        Q[:, j] = q
        w = matvec(q).to(dtype)
        a = (w * q).sum(1)
        w = w - a[:, None] * q
        if j > 0:
            w = w - beta[:, j - 1].to(dtype).to(w.device)[:, None] * Q[:, j - 1]
        w = _orthogonalize(w, Q[:, : j + 1])
        b = w.norm(dim=1)
        alpha[:, j], beta[:, j] = a.double().cpu(), b.double().cpu()
        scale = torch.maximum(scale, alpha[:, j].abs() + beta[:, j])
        if j == m - 1:
            break
        dead = (beta[:, j] <= 1e3 * eps * scale.clamp_min(1e-30)).to(w.device)
        if dead.any():  # invariant subspace: restart with a fresh direction, decoupled (β = 0)
            fresh = torch.randn(R, P, generator=gen, dtype=dtype).to(w.device)
            if project is not None:
                fresh = project(fresh)
            fresh = _orthogonalize(fresh, Q[:, : j + 1])
            w = torch.where(dead[:, None], fresh, w)
            beta[dead.cpu(), j] = 0.0
        q = w / w.norm(dim=1, keepdim=True)

    off = beta[:, : m - 1]
    T = torch.diag_embed(alpha) + torch.diag_embed(off, 1) + torch.diag_embed(off, -1)
    theta, S = torch.linalg.eigh(T)  # ascending
    resid = (beta[:, m - 1 : m] * S[:, m - 1, :]).abs()
    lo, hi = torch.arange(k), torch.arange(m - 1, m - 1 - k, -1)
    res = LanczosResult(ritz=theta, residual=resid, bottom=theta[:, lo], top=theta[:, hi],
                        bottom_residual=resid[:, lo], top_residual=resid[:, hi], iters=m)
    if vectors:
        Sd = S.to(device=Q.device, dtype=dtype)
        res.bottom_vectors = torch.einsum("rjp,rjk->rkp", Q, Sd[:, :, lo])
        res.top_vectors = torch.einsum("rjp,rjk->rkp", Q, Sd[:, :, hi])
    return res


# ------------------------------------------------------------------------------------------- subspaces


def _batched_basis(basis: torch.Tensor, R: int) -> torch.Tensor:
    return basis.expand(R, *basis.shape) if basis.dim() == 2 else basis


def subspace_curvature(matvec: MatVec, basis: torch.Tensor, R: int) -> torch.Tensor:
    """Eigenvalues [R, K] (ascending) of Bᵀ H_r B for an orthonormal basis B [P, K] (or [R, P, K]):
    the extreme Rayleigh quotients of each run's Hessian over span(B). K HVPs."""
    B = _batched_basis(basis, R)
    HB = torch.stack([matvec(B[:, :, i].contiguous()) for i in range(B.shape[2])], 2)  # [R, P, K]
    C = torch.einsum("rpk,rpl->rkl", B, HB).double()
    return torch.linalg.eigvalsh((C + C.transpose(1, 2)) / 2)


def complement_projector(basis: torch.Tensor, R: int) -> MatVec:
    """x [R, P] -> (I − B Bᵀ) x for an orthonormal B [P, K] (or [R, P, K])."""
    B = _batched_basis(basis, R)

    def proj(x: torch.Tensor) -> torch.Tensor:
        x = x.to(B)
        return x - torch.einsum("rpk,rk->rp", B, torch.einsum("rpk,rp->rk", B, x))

    return proj


def complement_lanczos(matvec: MatVec, basis: torch.Tensor, v0: torch.Tensor, iters: int = 25,
                       k: int = 5) -> LanczosResult:
    """Lanczos on P⊥ H P⊥ (P⊥ = I − B Bᵀ) started in the complement of span(B): Ritz values of H
    restricted to the orthogonal complement of the subspace."""
    proj = complement_projector(basis, v0.shape[0])
    return lanczos(lambda v: proj(matvec(proj(v))), proj(v0), iters, k, project=proj)


# -------------------------------------------------------------------------------------------- analysis


def checkpoint_indices(n_snapshots: int, n_checkpoints: int) -> list[int]:
    """≤ n_checkpoints snapshot indices evenly spaced over the run, first (θ₀) and last included."""
    if n_snapshots <= n_checkpoints:
        return list(range(n_snapshots))
    return sorted(set(np.linspace(0, n_snapshots - 1, n_checkpoints).round().astype(int).tolist()))


def _exec_basis(run: RunDir) -> torch.Tensor | None:
    if run.config().model.kind == "mlp":
        return None
    from grokscope.geometry.pca import exec_basis

    return exec_basis(run)


def analyze_hessian(run: RunDir, n_checkpoints: int = 30, k: int = 5, iters: int = 25, n_samples: int = 512,
                    device: str = "cpu", batch_checkpoints: int = 8, subspace: bool = True,
                    mode: str = "rev", seed: int = 0) -> pd.DataFrame:
    """Hessian spectrum of a run at ≤ n_checkpoints snapshots for the total loss and each task's loss:
    one row per (step, loss), in step order, with lambda_min, lambda_max, bottom, top, exec_curv,
    perp_curv (see the module doc). `batch_checkpoints` snapshots × all losses share the run axis of
    one batched Lanczos."""
    from grokscope.geometry.pca import flat_layout

    cfg = run.config()
    problem = Problem([cfg], device)
    tasks = problem.tasks
    losses = ["total"] + (list(tasks) if len(tasks) > 1 else [])  # one task: its loss is the total
    steps, stored = run.snapshots()
    if len(steps) == 0:
        raise StoreError(f"{run.path} has no parameter snapshots")
    snaps = {name: stored[name] for name in flat_layout(run)}  # the flat layout's order, not the file's
    idx = checkpoint_indices(len(steps), n_checkpoints)
    pairs1, targets1 = hessian_sample(problem, n_samples)
    basis = _exec_basis(run) if subspace else None
    if basis is not None:
        basis = basis.to(device=problem.device, dtype=torch.float32)
        if basis.shape[1] == 0:
            basis = None
    weights1 = torch.stack([loss_weights(tasks, name) for name in losses]).to(problem.device)
    rows = []
    for c0 in range(0, len(idx), max(1, batch_checkpoints)):
        chunk = idx[c0 : c0 + max(1, batch_checkpoints)]
        # run axis = (checkpoint, loss), loss fastest
        sel = torch.tensor(chunk).repeat_interleave(len(losses))
        params = {name: v[sel].to(problem.device, torch.float32) for name, v in snaps.items()}
        R = len(sel)
        weights = weights1.repeat(len(chunk), 1)
        pairs, targets = pairs1.expand(R, *pairs1.shape[1:]), targets1.expand(R, *targets1.shape[1:])
        hvp = make_hvp(problem, params, pairs, targets, weights, mode)
        with torch.no_grad():
            value = weighted_loss(problem, params, pairs, targets, weights)
        P = M.flatten(params).shape[1]
        # one start vector per checkpoint (seeded by its index), shared by its losses, whatever the batching
        v0 = torch.stack([torch.randn(P, generator=torch.Generator().manual_seed(seed * 7919 + int(i)))
                          for i in sel]).to(problem.device)
        full = lanczos(hvp, v0, iters, k, seed=seed)
        ex = pp = None
        if basis is not None:
            ex = subspace_curvature(hvp, basis, R)
            pp = complement_lanczos(hvp, basis, v0, iters, k)
        for r in range(R):
            rows.append({
                "step": int(steps[sel[r]]),
                "loss": losses[r % len(losses)],
                "lambda_min": float(full.bottom[r, 0]),
                "lambda_max": float(full.top[r, 0]),
                "bottom": full.bottom[r].tolist(),
                "top": full.top[r].tolist(),
                "exec_curv": float(ex[r, 0]) if ex is not None else float("nan"),
                "perp_curv": float(pp.bottom[r, 0]) if pp is not None else float("nan"),
                "exec_max": float(ex[r, -1]) if ex is not None else float("nan"),
                "perp_max": float(pp.top[r, 0]) if pp is not None else float("nan"),
                "lambda_min_residual": float(full.bottom_residual[r, 0]),
                "loss_value": float(value[r]),
            })
    return pd.DataFrame(rows)


def summarize_hessian(df: pd.DataFrame) -> dict:
    """Curvature depth per loss: lambda_min = min over checkpoints, the step where it occurs, top
    eigenvalue and exec/perp curvature at that checkpoint, and the largest lambda_max seen; `depth` is
    the total loss's lambda_min (a single-task run has only 'total', which is its task's loss)."""
    out: dict = {}
    for name, g in df.groupby("loss", sort=False):
        at = g.loc[g["lambda_min"].idxmin()]
        out[str(name)] = {
            "lambda_min": float(at["lambda_min"]),
            "step": int(at["step"]),
            "lambda_max": float(at["lambda_max"]),
            "lambda_max_peak": float(g["lambda_max"].max()),
            "exec_curv": float(at["exec_curv"]),
            "perp_curv": float(at["perp_curv"]),
            "n_checkpoints": int(len(g)),
        }
    if "total" in out:
        out["depth"] = out["total"]["lambda_min"]
    return out
