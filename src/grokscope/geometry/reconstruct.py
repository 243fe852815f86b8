"""Reconstruction threshold k* (docs/papers.md §4): how many uncentred trajectory PCs rebuild a working model?

θ_k = θ₀ + Σ_{i≤k} v_i v_iᵀ Δθ with v_i the uncentred trajectory PCs and Δθ the final snapshot minus θ₀;
k* is the smallest k in 1..K at which every task's test accuracy exceeds `threshold` (90%). All K
reconstructions are evaluated as one batched program (k on the run axis).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from grokscope.geometry.compress import evaluate_variants
from grokscope.geometry.pca import TRAJECTORY_CHECKPOINTS, snapshot_matrix, trajectory_pcs_from_matrix
from grokscope.store import RunDir
from grokscope.training import model as M


def reconstruct(theta0: torch.Tensor, delta: torch.Tensor, basis: torch.Tensor,
                ks: Sequence[int] | None = None) -> torch.Tensor:
    """θ₀ + V_k V_kᵀ Δθ for each k in `ks` (default 1..K): [len(ks), P]. `basis` [P, K] has orthonormal
    columns; the projection runs in float64 and is cast back to θ₀'s dtype."""
    K = basis.shape[1]
    ks = list(range(1, K + 1)) if ks is None else list(ks)
    V = basis.double()
    c = V.T @ delta.double()  # [K]
    partial = torch.cumsum(V * c, dim=1)  # [P, K]: column k-1 = Σ_{i≤k} v_i c_i
    out = [theta0.double() + (partial[:, k - 1] if k > 0 else 0.0) for k in ks]
    return torch.stack(out).to(theta0.dtype)


def k_star(test_acc: np.ndarray, ks: Sequence[int], threshold: float = 0.9) -> int | None:
    """Smallest k whose every task's accuracy (rows of `test_acc` [len(ks), T]) exceeds `threshold`."""
    for k, acc in zip(ks, test_acc, strict=True):
        if bool(np.all(acc > threshold)):
            return int(k)
    return None


@dataclass
class ReconstructionResult:
    """Per-k accuracies (table: run, step, k, task, train_acc, test_acc, cumulative, delta_captured),
    k* (None when no k reaches the threshold) and the trajectory variance captured at k*."""

    table: pd.DataFrame
    k_star: int | None
    cumulative_at_k_star: float | None
    threshold: float


def reconstruction_threshold(run: RunDir, k: int = 20, threshold: float = 0.9, device: str = "cpu",
                             chunk: int = 20) -> ReconstructionResult:
    """k* of a run from its stored snapshots (Δθ = last snapshot − θ₀, top-k uncentred trajectory PCs; a
    paper-exact run: the script's ≤ 100 checkpoints, the last on the grid as the final model)."""
    cfg = run.config()
    steps, theta = snapshot_matrix(run, TRAJECTORY_CHECKPOINTS)
    pcs = trajectory_pcs_from_matrix(theta, k, steps)
    theta0, delta = theta[0], theta[-1] - theta[0]
    ks = list(range(1, pcs.basis.shape[1] + 1))
    recon = reconstruct(theta0, delta, pcs.basis, ks)
    like = M.init_params(cfg.model, cfg.data, cfg.seed)  # shapes in the flat-layout order
    tr, te = evaluate_variants(cfg, recon, like, device, chunk)
    dd = delta.double()
    captured = (recon.double() - theta0.double()).pow(2).sum(1) / dd.pow(2).sum().clamp_min(1e-300)
    rows = []
    for i, kk in enumerate(ks):
        for t, task in enumerate(cfg.data.tasks):
            rows.append({"run": cfg.name, "step": int(steps[-1]), "k": kk, "task": task,
                         "train_acc": float(tr[i, t]), "test_acc": float(te[i, t]),
                         "cumulative": float(pcs.cumulative[i]), "delta_captured": float(captured[i])})
    ksel = k_star(te, ks, threshold)
    cum = float(pcs.cumulative[ksel - 1]) if ksel is not None else None
    return ReconstructionResult(pd.DataFrame(rows), ksel, cum, threshold)
