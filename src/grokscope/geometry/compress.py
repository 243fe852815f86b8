"""Fragility of a final model (docs/papers.md §4 "Compression / perturbation"): how much of Δθ = θ − θ₀ can go?

Four families of edited models, each evaluated for per-task accuracy as one batched program (variants
on the run axis):
- `svd`: every weight matrix's ΔW (2-D, ≥ `min_numel` entries, as the authors' `postgrok_compression.py`)
  replaced by its best rank-r approximation; vectors keep their full Δ. W_Q, W_K, W_V of a layer are
  truncated jointly as one [d, 3d] matrix by default (`qkv="joint"`), as the authors' SVD of PyTorch's
  packed in_proj_weight [3d, d] does (snapshot_decomposition.py); `qkv="separate"` cuts each alone;
- `prune`: magnitude pruning of Δθ, keeping the top fraction q of |Δθ| over the whole vector;
- `scale`: θ₀ + s·Δθ;
- `perturb`: a random fraction x of the parameters multiplied by (1 + ε·z), z ~ N(0, 1) — relative noise
  of size ε on exactly those entries (our definition: the papers give only "x% of parameters").

Every variant is written as θ + (correction), with the correction exactly zero at the identity setting
(full rank, keep 100%, s = 1, x = 0), so those settings give back θ bit for bit.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from grokscope.config import RunConfig
from grokscope.geometry.checkpoints import final_snapshot
from grokscope.store import RunDir
from grokscope.training import model as M
from grokscope.training.problem import Problem

Params = M.Params


@dataclass(frozen=True)
class FragilityConfig:
    """Which edits to try; the defaults follow the paper's tables (SVD ranks, keep fractions, ±5%)."""

    ranks: tuple[int, ...] = (1, 2, 3, 5, 10, 16, 32, 64)
    keeps: tuple[float, ...] = (0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 0.9, 1.0)
    scales: tuple[float, ...] = (0.9, 0.95, 0.99, 1.0, 1.01, 1.05, 1.1)
    perturb_fractions: tuple[float, ...] = (0.01, 0.05, 0.1)
    perturb_sizes: tuple[float, ...] = (0.05, 0.2)
    min_numel: int = 128
    qkv: str = "joint"  # joint: one SVD of [W_Q | W_K | W_V] per layer (the authors' in_proj); separate
    seed: int = 0
    chunk: int = 16  # variants evaluated per batched call


# ---- the edits (pure functions; single-run params without a run axis, flat vectors [P]) ----------

QKV_MODES = ("joint", "separate")


def _qkv_groups(theta: Params, qkv: str) -> list[list[str]]:
    """Names truncated together: each layer's [W_Q, W_K, W_V] when `qkv="joint"`, else one per matrix."""
    if qkv not in QKV_MODES:
        raise ValueError(f"qkv={qkv!r}: choose from {', '.join(QKV_MODES)}")
    groups, seen = [], set()
    for k in theta:
        if k in seen:
            continue
        if qkv == "joint" and k.endswith(".attn.W_Q"):
            trio = [k[: -len("W_Q")] + m for m in ("W_Q", "W_K", "W_V")]
            if all(t in theta for t in trio):
                groups.append(trio)
                seen.update(trio)
                continue
        groups.append([k])
        seen.add(k)
    return groups


def svd_truncate(theta0: Params, theta: Params, ranks: Sequence[int], min_numel: int = 128,
                 qkv: str = "joint") -> Params:
    """θ with each weight matrix's ΔW cut to its best rank-r approximation, one variant per rank:
    {name: [len(ranks), ...]}. A layer's W_Q, W_K, W_V (x @ W, [d, d] each) are cut as one [d, 3d]
    matrix with `qkv="joint"` (the authors' packed in_proj). Ranks ≥ the (joint) matrix's smaller side
    leave it untouched (bitwise)."""
    out: dict[str, list[torch.Tensor]] = {k: [] for k in theta}
    for names in _qkv_groups(theta, qkv):
        w = torch.cat([theta[k] for k in names], dim=1) if len(names) > 1 else theta[names[0]]
        if w.dim() != 2 or w.numel() < min_numel:
            for k in names:
                out[k] = [theta[k]] * len(ranks)
            continue
        w0 = torch.cat([theta0[k] for k in names], dim=1) if len(names) > 1 else theta0[names[0]]
        dW = (w - w0).double()
        U, S, Vh = torch.linalg.svd(dW, full_matrices=False)
        widths = [theta[k].shape[1] for k in names]
        for r in ranks:
            if r >= min(dW.shape):
                parts = [theta[k] for k in names]
            else:
                dropped = ((U[:, r:] * S[r:]) @ Vh[r:]).to(w.dtype)  # ΔW − ΔW_r
                cut = w - dropped
                parts = list(torch.split(cut, widths, dim=1)) if len(names) > 1 else [cut]
            for k, part in zip(names, parts, strict=True):
                out[k].append(part)
    return {k: torch.stack(v) for k, v in out.items()}


def prune_delta(theta0: torch.Tensor, theta: torch.Tensor, keeps: Sequence[float]) -> torch.Tensor:
    """Magnitude pruning of Δθ: keep the round(q·P) largest |Δθ| entries, reset the rest to θ₀ [Q, P]."""
    delta = theta - theta0
    order = delta.abs().argsort(descending=True)
    P = delta.numel()
    out = []
    for q in keeps:
        n = int(round(float(q) * P))
        drop = torch.zeros(P, dtype=torch.bool, device=theta.device)
        drop[order[n:]] = True
        out.append(torch.where(drop, theta - delta, theta))
    return torch.stack(out)


def scale_delta(theta0: torch.Tensor, theta: torch.Tensor, scales: Sequence[float]) -> torch.Tensor:
    """θ₀ + s·Δθ for each s, written θ + (s − 1)·Δθ so that s = 1 is θ exactly [len(scales), P]."""
    delta = theta - theta0
    return torch.stack([theta + (float(s) - 1.0) * delta for s in scales])


def perturb(theta: torch.Tensor, fraction: float, size: float, seed: int = 0) -> torch.Tensor:
    """θ with a random `fraction` of its entries multiplied by (1 + size·z), z ~ N(0, 1) [P]."""
    g = torch.Generator().manual_seed(int(seed))
    P = theta.numel()
    n = int(round(float(fraction) * P))
    idx = torch.randperm(P, generator=g)[:n]
    z = torch.randn(n, generator=g, dtype=theta.dtype).to(theta.device)
    out = theta.clone()
    out[idx] = theta[idx] + float(size) * theta[idx].abs() * z
    return out


def delta_kept(theta0: torch.Tensor, theta: torch.Tensor, variants: torch.Tensor) -> np.ndarray:
    """‖Δθ'‖² / ‖Δθ‖² of each variant [N, P] (the paper's "var%" column)."""
    d = (theta - theta0).double()
    dv = (variants.double() - theta0.double())
    return (dv.pow(2).sum(1) / d.pow(2).sum().clamp_min(1e-300)).numpy()


# ---- evaluation -------------------------------------------------------------------------------------

def evaluate_variants(cfg: RunConfig, flat: torch.Tensor, like: Params, device: str = "cpu",
                      chunk: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """(train acc, test acc), each [N, T], of N parameter vectors [N, P] of one run (same split as `cfg`),
    evaluated `chunk` at a time with `Problem.evaluate` (variants on the run axis)."""
    like_b = {k: v.unsqueeze(0) for k, v in like.items()}
    train, test = [], []
    for i in range(0, flat.shape[0], chunk):
        part = flat[i:i + chunk]
        pb = Problem([cfg] * part.shape[0], device)
        params = {k: v.to(device) for k, v in M.unflatten(part, like_b).items()}
        ev = pb.evaluate(params)
        train.append(ev["train"][1].cpu().numpy())
        test.append(ev["test"][1].cpu().numpy())
    return np.concatenate(train), np.concatenate(test)


def final_and_init(run: RunDir) -> tuple[Params, Params, int]:
    """(θ₀, θ_final, final step) of a run as single-run dicts in the init (flat-layout) order: the final model
    is the checkpoint at the stop step, or for a paper-exact run the script's `checkpoints[-1]`, the last
    snapshot on its grid (`geometry.checkpoints`)."""
    cfg = run.config()
    order = list(M.init_params(cfg.model, cfg.data, cfg.seed))
    steps, snaps = run.snapshots()
    theta0 = {k: snaps[k][0] for k in order}
    last = final_snapshot(cfg, steps.numpy())
    if last is not None:
        return theta0, {k: snaps[k][last] for k in order}, int(steps[last])
    tensors, meta = run.checkpoint()
    theta = {k: tensors[f"params.{k}"] for k in order}
    return theta0, theta, int(meta["step"])


def fragility(run: RunDir, cfg: FragilityConfig | None = None, device: str = "cpu") -> pd.DataFrame:
    """Accuracy per task of every edit of the run's final model: one row per (kind, value, size, task),
    with columns run, step, kind, value, size, task, train_acc, test_acc, delta_kept."""
    cfg = cfg or FragilityConfig()
    rcfg = run.config()
    theta0_d, theta_d, step = final_and_init(run)
    like = theta_d
    flat = lambda d: M.flatten({k: v.unsqueeze(0) for k, v in d.items()})[0]  # noqa: E731
    theta0, theta = flat(theta0_d), flat(theta_d)

    kinds: list[tuple[str, float, float]] = [("full", 1.0, float("nan")), ("init", 0.0, float("nan"))]
    blocks = [theta[None], theta0[None]]
    svd = svd_truncate(theta0_d, theta_d, cfg.ranks, cfg.min_numel, cfg.qkv)
    blocks.append(M.flatten(svd))
    kinds += [("svd", float(r), float("nan")) for r in cfg.ranks]
    blocks.append(prune_delta(theta0, theta, cfg.keeps))
    kinds += [("prune", float(q), float("nan")) for q in cfg.keeps]
    blocks.append(scale_delta(theta0, theta, cfg.scales))
    kinds += [("scale", float(s), float("nan")) for s in cfg.scales]
    pert = []
    for i, x in enumerate(cfg.perturb_fractions):
        for j, eps in enumerate(cfg.perturb_sizes):
            pert.append(perturb(theta, x, eps, seed=cfg.seed * 1009 + i * 31 + j))
            kinds.append(("perturb", float(x), float(eps)))
    if pert:
        blocks.append(torch.stack(pert))
    variants = torch.cat(blocks)
    tr, te = evaluate_variants(rcfg, variants, like, device, cfg.chunk)
    kept = delta_kept(theta0, theta, variants)
    rows = []
    for n, (kind, value, size) in enumerate(kinds):
        for t, task in enumerate(rcfg.data.tasks):
            rows.append({"run": rcfg.name, "step": step, "kind": kind, "value": value, "size": size,
                         "task": task, "train_acc": float(tr[n, t]), "test_acc": float(te[n, t]),
                         "delta_kept": float(kept[n])})
    return pd.DataFrame(rows)
