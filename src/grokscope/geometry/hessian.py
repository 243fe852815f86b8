"""Curvature depth (docs/papers.md §4) of a stored run: extreme Hessian eigenvalues at its snapshots, by Lanczos.

The operator is `grokscope.geometry.hvp.make_hvp`, the algorithms `grokscope.geometry.krylov`; this module
reads the run directory and batches its checkpoints × losses on the run axis of one Lanczos call.

What `analyze_hessian` reports per (checkpoint, loss):
- `lambda_min`, `lambda_max`: the smallest / largest Ritz value of 25 Lanczos steps with full
  re-orthogonalisation on the Hessian of the loss over a fixed sample of 512 training examples
  (`bottom`, `top`: the k = 5 smallest ascending, the k largest descending), as the papers computed them.
  25 steps need not converge (docs/fidelity.md item 15): `lambda_min_residual`, `lambda_max_residual`,
  `bottom_residual` are the Ritz residuals ‖H y − θ y‖ (a true eigenvalue lies within each), and with
  `tol` the iteration runs on (up to `iters`) until λ_min's and λ_max's residuals are ≤ tol·|θ|
  (`lanczos_iters`, `converged` say how it ended).
- `exec_curv` (`exec_max`): the smallest (largest) eigenvalue of Bᵀ H B, with B the orthonormal
  execution basis [P, K] of `grokscope.geometry.pca.exec_basis`: the extreme Rayleigh quotients of H over
  the execution subspace, computed exactly from K HVPs.
- `perp_curv` (`perp_max`): the smallest (largest) Ritz value of Lanczos (same iterations) on
  P⊥ H P⊥, P⊥ = I − B Bᵀ, started in the complement: the extreme Rayleigh quotients of H over the
  orthogonal complement of the execution subspace.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from grokscope.errors import StoreError, TooLittleData
from grokscope.geometry.checkpoints import select_snapshots
from grokscope.geometry.hvp import SAMPLE_SALT, hessian_sample, loss_weights, make_hvp, weighted_loss
from grokscope.geometry.krylov import complement_lanczos, lanczos, subspace_curvature
from grokscope.geometry.pca import exec_basis, flat_layout
from grokscope.store import RunDir
from grokscope.training import model as M
from grokscope.training.problem import Problem

__all__ = ["DRAW_SALT", "checkpoint_indices", "analyze_hessian", "summarize_hessian", "depth_over_samples",
           "summarize_depth_draws"]

DRAW_SALT = 100  # fresh Hessian samples for `depth_over_samples`: salts DRAW_SALT + d, apart from SAMPLE_SALT


def checkpoint_indices(n_snapshots: int, n_checkpoints: int) -> list[int]:
    """≤ n_checkpoints snapshot indices evenly spaced over the run, first (θ₀) and last included."""
    if n_snapshots <= n_checkpoints:
        return list(range(n_snapshots))
    return sorted(set(np.linspace(0, n_snapshots - 1, n_checkpoints).round().astype(int).tolist()))


def _exec_basis(run: RunDir) -> torch.Tensor | None:
    """The run's execution basis, or None (an MLP has none; a run too short to have one gets NaN columns)."""
    if run.config().model.kind == "mlp":
        return None
    try:
        return exec_basis(run)
    except TooLittleData:
        return None


def analyze_hessian(run: RunDir, n_checkpoints: int = 30, k: int = 5, iters: int = 25, n_samples: int = 512,
                    device: str = "cpu", batch_checkpoints: int = 8, subspace: bool = True,
                    mode: str = "rev", seed: int = 0, tol: float | None = None, sample_salt: int = SAMPLE_SALT,
                    losses: list[str] | None = None) -> pd.DataFrame:
    """Hessian spectrum of a run at ≤ n_checkpoints snapshots (`checkpoint_indices`; a paper-exact run: the
    script's checkpoints, `geometry.checkpoints`) for the total loss and each task's loss:
    one row per (step, loss), in step order, with lambda_min, lambda_max, bottom, top, exec_curv,
    perp_curv and the residuals (see the module doc). `batch_checkpoints` snapshots × all losses share the
    run axis of one batched Lanczos; `tol`: run to that residual tolerance, `iters` being the cap;
    `sample_salt` picks the training sample (`hvp.hessian_sample`), `seed` the start vectors, `losses` a subset."""
    cfg = run.config()
    problem = Problem([cfg], device)
    tasks = problem.tasks
    if losses is None:
        losses = ["total"] + (list(tasks) if len(tasks) > 1 else [])  # one task: its loss is the total
    steps, stored = run.snapshots()
    if len(steps) == 0:
        raise StoreError(f"{run.path} has no parameter snapshots")
    snaps = {name: stored[name] for name in flat_layout(run)}  # the flat layout's order, not the file's
    idx = [int(i) for i in select_snapshots(cfg, steps.numpy(), n_checkpoints, checkpoint_indices)]
    pairs1, targets1 = hessian_sample(problem, n_samples, sample_salt)
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
        sel = torch.tensor(chunk, device="cpu").repeat_interleave(len(losses))  # indexes host snapshots
        params = {name: v[sel].to(problem.device, torch.float32) for name, v in snaps.items()}
        R = len(sel)
        weights = weights1.repeat(len(chunk), 1)
        pairs, targets = pairs1.expand(R, *pairs1.shape[1:]), targets1.expand(R, *targets1.shape[1:])
        hvp = make_hvp(problem, params, pairs, targets, weights, mode)
        with torch.no_grad():
            value = weighted_loss(problem, params, pairs, targets, weights)
        P = M.flatten(params).shape[1]
        # one start vector per checkpoint (seeded by its index), shared by its losses, whatever the batching
        v0 = torch.stack([torch.randn(P, generator=torch.Generator().manual_seed(seed * 7919 + int(i)), device="cpu")
                          for i in sel]).to(problem.device)
        full = lanczos(hvp, v0, iters, k, seed=seed, tol=tol)
        ex = pp = None
        if basis is not None:
            ex = subspace_curvature(hvp, basis, R)
            pp = complement_lanczos(hvp, basis, v0, iters, k, tol)
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
                "lambda_max_residual": float(full.top_residual[r, 0]),
                "bottom_residual": full.bottom_residual[r].tolist(),
                "lanczos_iters": full.iters,
                "loss_value": float(value[r]),
                **({"converged": bool(full.converged[r])} if full.converged is not None else {}),
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


def depth_over_samples(run: RunDir, draws: int, n_checkpoints: int = 30, iters: int = 25, n_samples: int = 512,
                       device: str = "cpu", tol: float | None = None) -> pd.DataFrame:
    """The total loss's λ_min at the run's checkpoints under `draws` fresh (training sample, start vectors)
    pairs; one row per (draw, step). The depth, a minimum over checkpoints, moves with the sample far more
    than with the iteration count (docs/notes/p1-lambda-min.md); this measures by how much. Draw d uses sample
    salt DRAW_SALT + d for all its checkpoints (the P1 scripts draw anew at every checkpoint as well) and
    start-vector seed d + 1 (a run with ≤ n_samples training examples: the same sample, other starts)."""
    frames = [analyze_hessian(run, n_checkpoints, iters=iters, n_samples=n_samples, device=device, subspace=False,
                              seed=d + 1, tol=tol, sample_salt=DRAW_SALT + d, losses=["total"]).assign(draw=d)
              for d in range(draws)]
    return pd.concat(frames, ignore_index=True)[["draw", "step", "lambda_min", "lambda_min_residual",
                                                  "lanczos_iters"]]


def summarize_depth_draws(df: pd.DataFrame) -> dict:
    """Depth per draw (min λ_min over its checkpoints) with their mean and sample sd (NaN for one draw)."""
    depths = df.groupby("draw")["lambda_min"].min()
    return {"draws": int(len(depths)), "depths": [float(x) for x in depths],
            "mean": float(depths.mean()), "sd": float(depths.std(ddof=1)) if len(depths) > 1 else float("nan")}
