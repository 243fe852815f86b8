"""P3's quantities on stored runs (transformers): the tangent cosine between consecutive snapshots, and the
weight norm after memorisation against what pure weight decay would give."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd
import torch

from grokscope.errors import StoreError
from grokscope.geometry.normmin.tangent import cosine, project_to_zero_loss, tangent_projection_cg
from grokscope.store import RunDir
from grokscope.training import model as M
from grokscope.training.problem import Problem

__all__ = ["memorisation_step", "norm_vs_decay", "RunTangentConfig", "run_tangent_cosine"]


def memorisation_step(metrics: pd.DataFrame, acc: float = 1.0) -> int | None:
    """First evaluated step at which every task's train accuracy reaches `acc` (None if never)."""
    tr = metrics[metrics.split == "train"].groupby("step").acc.min()
    hit = tr[tr >= acc - 1e-12]
    return int(hit.index[0]) if len(hit) else None



def norm_vs_decay(run: RunDir, mem_acc: float = 1.0) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Weight norm after memorisation against ‖θ(t_mem)‖(1 − η·wd)^(t − t_mem), the norm pure weight decay
    would give (AdamW's decoupled decay and SGD's L2 decay shrink by the same factor per step)."""
    cfg, m = run.config(), run.metrics()
    t_mem = memorisation_step(m, mem_acc)
    wn = m.groupby("step").weight_norm.first()
    df = pd.DataFrame({"step": wn.index.astype(int), "weight_norm": wn.to_numpy()})
    info: dict[str, Any] = {"mem_step": t_mem, "lr": cfg.optim.lr, "wd": cfg.optim.wd}
    grok = run.grok_steps()
    steps_grok = [v for v in grok.values() if v is not None]
    info["grok_step"] = max(steps_grok) if len(steps_grok) == len(grok) and grok else None
    if t_mem is None:
        df["pure_decay"] = np.nan
        return df, info
    n0 = float(wn.loc[t_mem])
    rate = math.log1p(-cfg.optim.lr * cfg.optim.wd) if cfg.optim.lr * cfg.optim.wd < 1 else -math.inf
    after = df.step >= t_mem
    df["pure_decay"] = np.where(after, n0 * np.exp(rate * (df.step - t_mem)), np.nan)
    info["norm_at_mem"] = n0
    t_end = info["grok_step"] if info["grok_step"] is not None else int(df.step.max())
    seg = df[(df.step >= t_mem) & (df.step <= t_end)]
    if len(seg) >= 2:
        slope = np.polyfit(seg.step.to_numpy(float), np.log(seg.weight_norm.to_numpy()), 1)[0]
        info["fitted_log_rate"] = float(slope)
        info["pure_decay_log_rate"] = rate
        info["rate_ratio"] = float(slope / rate) if rate != 0 else None
    if info["grok_step"] is not None and info["grok_step"] in wn.index:
        g = info["grok_step"]
        info["norm_at_grok"] = float(wn.loc[g])
        info["pure_decay_at_grok"] = float(n0 * math.exp(rate * (g - t_mem)))
    return df, info


@dataclass(frozen=True)
class RunTangentConfig:
    """Options of the stored-run tangent cosine: J on `subsample` training examples (same for all
    snapshots), CG on JJᵀ, at most `max_snapshots` snapshot pairs, optional projection onto Z."""

    subsample: int = 64
    cg_iters: int = 100
    cg_tol: float = 1e-6
    max_snapshots: int | None = None
    project_steps: int = 0
    project_momentum: float = 0.9
    project_lr: float | None = None
    seed: int = 0
    chunk: int = 8


def run_tangent_cosine(run: RunDir, opts: RunTangentConfig = RunTangentConfig()) -> pd.DataFrame:
    """cos(θ(s_{i+1}) − θ(s_i), (I − J⁺J)(−θ(s_i))) over consecutive stored snapshots, J = Jacobian of the
    outputs on a training subsample, solved with CG on JJᵀ (jvp/vjp). Snapshots are spaced by the run's
    snapshot interval, not P3's 10 steps: the optimiser state between them is not stored."""
    if not run.exists():
        raise StoreError(f"{run.path} is not a grokscope run (no config.json)")
    if not run.has_trajectory():
        raise StoreError(f"{run.path} has no trajectory yet (no snapshots to analyse; train it first)")
    cfg = run.config()
    steps, snaps = run.snapshots()
    S = int(steps.numel())
    if S < 2:
        raise StoreError(f"{run.path} has {S} snapshot(s); the tangent cosine needs at least 2")
    idx = list(range(S - 1))
    if opts.max_snapshots is not None and len(idx) > opts.max_snapshots:
        idx = sorted(set(np.linspace(0, S - 2, opts.max_snapshots).round().astype(int).tolist()))
    pb = Problem([replace(cfg, optim=replace(cfg.optim, batch=None))])
    pairs, targets = pb.split("train")
    g = torch.Generator().manual_seed(opts.seed)
    n = pairs.shape[1]
    sel = torch.randperm(n, generator=g)[: min(opts.subsample, n)].sort().values
    sub_pairs = pairs[:, sel]
    rows = []
    for c0 in range(0, len(idx), opts.chunk):
        ch = idx[c0:c0 + opts.chunk]
        R = len(ch)
        theta = {k: v[ch].to(torch.float32) for k, v in snaps.items()}
        nxt = {k: v[[i + 1 for i in ch]].to(torch.float32) for k, v in snaps.items()}
        delta = M.flatten(nxt) - M.flatten(theta)
        at = theta
        if opts.project_steps > 0:
            sub = Problem([pb.cfgs[0]] * R)
            at, _ = project_to_zero_loss(sub, theta, opts.project_steps, opts.project_lr,
                                         opts.project_momentum)
        flat = M.flatten(at)
        gt, info = tangent_projection_cg(pb.model, pb.data, at, sub_pairs.expand(R, -1, -1), -flat,
                                         opts.cg_iters, opts.cg_tol)
        cos_t = cosine(delta, gt)
        cos_d = cosine(delta, -M.flatten(theta))
        for j, i in enumerate(ch):
            rows.append({"step": int(steps[i]), "next_step": int(steps[i + 1]),
                         "cos_tangent": float(cos_t[j]),
                         "cos_decay": float(cos_d[j]), "tangent_frac": float(gt[j].norm() / flat[j].norm()),
                         "cg_residual": float(info["residual"][j]), "cg_iters": int(info["iters"][j]),
                         "weight_norm": float(flat[j].norm())})
    return pd.DataFrame(rows)
