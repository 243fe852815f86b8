"""Norm minimisation on the zero-loss manifold (P3): tangent cosine, decoupled two-layer dynamics, toys.

After memorisation, weight decay pushes θ along the zero-loss set Z = {θ : f(θ) = Y} towards smaller
‖θ‖. P3 measures this as cos(Δθ, g̃) with g̃ = (I − J⁺J)(−θ) the part of −θ tangent to Z (J = Jacobian of
the training outputs), taken at the projection of θ onto Z. For a two-layer net whose readout W₂ = H⁺Y
is re-solved each step, the motion of W₁ is gradient flow on R(W₁) = λ‖W₁‖² + λ Tr(Yᵀ(HHᵀ)⁻¹Y) (P3 §5–7).

Conventions chosen here (P3's own text was not available; see docs/normmin.md):
- toy losses are (ŷ − y)² + λ‖w‖²;
- the decoupled simulation uses R exactly as written (λ = 1 by default: with η = 1e-3 and 5000 steps
  anything much smaller does not move W₁ at all);
- the MLP run uses the trainer's loss (MSE mean over examples and outputs) with L2 decay λ‖θ‖²/2·2 as
  torch.optim.SGD (g + wd·θ).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd
import torch

from grokscope import model as M
from grokscope.config import DataConfig, ModelConfig, OptimConfig, RunConfig, validate
from grokscope.errors import ConfigError, StoreError
from grokscope.optim import HyperParams, clip_grads, init_state, sgd_step
from grokscope.problem import Params, Problem
from grokscope.store import RunDir
from grokscope.tasks import make_split
from grokscope.train import Probe, RunResult, train

__all__ = [
    "output_fn", "output_jacobian", "tangent_projection_dense", "tangent_projection_cg",
    "project_to_zero_loss",
    "replay_sgd", "cosine", "tangent_probe", "MLPExperiment", "mlp_configs", "run_mlp", "mlp_summary",
    "decoupled_R", "decoupled_readout", "decoupled_grad", "fourier_norms", "neuron_top_frequency_share",
    "DecoupledConfig",
    "simulate_decoupled", "toy_linear", "toy_linear_limit", "toy_three", "toy_three_limit", "run_toys",
    "run_tangent_cosine", "norm_vs_decay", "memorisation_step",
]


# ---------------------------------------------------------------------------------------------------
# Tangent space of the zero-loss set
# ---------------------------------------------------------------------------------------------------

def output_fn(model: ModelConfig, data: DataConfig, like: Params) -> Callable[[torch.Tensor, torch.Tensor],
                                                                              torch.Tensor]:
    """f(vec [P], pairs [B, 2]) -> outputs [B·T·p] of one run: the map whose Jacobian is J."""

    def f(vec: torch.Tensor, pairs: torch.Tensor) -> torch.Tensor:
        return M.forward(M.unflatten(vec[None], like), pairs[None], model, data)[0].reshape(-1)

    return f


def output_jacobian(model: ModelConfig, data: DataConfig, params: Params, pairs: torch.Tensor,
                    dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Dense Jacobians J [R, B·T·p, P] of each run's outputs on its `pairs` [R, B, 2] (small models only)."""
    f = output_fn(model, data, params)
    flat = M.flatten(params).to(dtype)
    return torch.stack([torch.func.jacrev(f)(flat[r], pairs[r]) for r in range(flat.shape[0])])


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
    bnorm = b.norm(dim=1).clamp_min(1e-30)
    c = torch.zeros_like(b)
    r = b.clone()
    d = r.clone()
    rs = (r * r).sum(1)
    done = torch.zeros(b.shape[0], dtype=torch.bool)
    n_it = torch.zeros(b.shape[0], dtype=torch.int64)
    for _ in range(iters):
        done = done | (rs.sqrt() <= tol * bnorm)
        if bool(done.all()):
            break
        Ad = Jv(Jt(d))
        dAd = (d * Ad).sum(1)
        alpha = torch.where(done | (dAd <= 0), torch.zeros_like(rs), rs / dAd.clamp_min(1e-300))
        c = c + alpha[:, None] * d
        r = r - alpha[:, None] * Ad
        rs_new = (r * r).sum(1)
        beta = torch.where(done, torch.zeros_like(rs), rs_new / rs.clamp_min(1e-300))
        d = r + beta[:, None] * d
        rs = rs_new
        n_it += (~done).long()
    g = v - Jt(c)
    residual = Jv(g).norm(dim=1) / bnorm
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
                  project_momentum: float = 0.9, rcond: float = 1e-6) -> Probe:
    """In-loop probe: cos(Δθ over `horizon` steps, g̃) with g̃ = (I − J⁺J)(−θ*) at the projection θ* of θ
    onto the zero-loss set (dense J of all training outputs: for the small MLP)."""

    def measure(problem: Problem, params: Params, step: int) -> list[dict[str, Any]]:
        delta = M.flatten(replay_sgd(problem, params, step, horizon)).to(torch.float64)
        star, star_loss = project_to_zero_loss(problem, params, project_steps, momentum=project_momentum)
        pairs, _ = problem.split("train")
        J = output_jacobian(problem.model, problem.data, star, pairs)
        theta = M.flatten(params).to(torch.float64)
        theta_star = M.flatten(star).to(torch.float64)
        g = tangent_projection_dense(J, -theta_star, rcond)
        cos_t = cosine(delta, g)
        cos_d = cosine(delta, -theta)
        rows = []
        for r in range(problem.R):
            rows.append({"r": r, "cos_tangent": float(cos_t[r]), "cos_decay": float(cos_d[r]),
                         "tangent_frac": float(g[r].norm() / theta_star[r].norm()),
                         "dist_to_Z": float((theta_star[r] - theta[r]).norm()),
                         "loss_star": float(star_loss[r]), "step_norm": float(delta[r].norm())})
        return rows

    return Probe("normmin", every, measure)


# ---------------------------------------------------------------------------------------------------
# Experiment 4.6: the MLP on mod-11 addition
# ---------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class MLPExperiment:
    """P3 experiment 4.6: e_a + e_b inputs, one-hot targets, squared error, bias-free ReLU MLP,
    full-batch GD with L2 decay, R seeds as one batch; the tangent cosine every `every` steps."""

    p: int = 11
    width: int = 128
    train_frac: float = 0.9
    lr: float = 1.0
    wd: float = 1e-4
    steps: int = 30_000
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    every: int = 500
    horizon: int = 10
    project_steps: int = 100
    project_momentum: float = 0.9
    eval_every: int = 100


def mlp_configs(exp: MLPExperiment) -> list[RunConfig]:
    """One trainer config per seed (never stops on grokking, so the post-grokking cosine is seen too)."""
    if exp.every % exp.eval_every:
        raise ConfigError(f"every={exp.every} must be a multiple of eval_every={exp.eval_every}")
    return [validate(RunConfig(
        data=DataConfig(tasks=("add",), p=exp.p, train_frac=exp.train_frac, exclude_zero=False),
        model=ModelConfig(kind="mlp", width=exp.width),
        optim=OptimConfig(name="sgd", lr=exp.lr, wd=exp.wd, clip=0.0, momentum=0.0, batch=None),
        seed=s, steps=exp.steps, eval_every=exp.eval_every, attn_every=exp.eval_every,
        checkpoint_every=max(exp.eval_every, 2000 - 2000 % exp.eval_every),
        stop_on_grok=False, preset="p3-mlp")) for s in exp.seeds]


def memorisation_step(metrics: pd.DataFrame, acc: float = 1.0) -> int | None:
    """First evaluated step at which every task's train accuracy reaches `acc` (None if never)."""
    tr = metrics[metrics.split == "train"].groupby("step").acc.min()
    hit = tr[tr >= acc - 1e-12]
    return int(hit.index[0]) if len(hit) else None


def _window_mean(df: pd.DataFrame, lo: float | None, hi: float | None) -> float:
    """Mean tangent cosine over probe steps in [lo, hi) (NaN when a bound is unknown or nothing falls in)."""
    if lo is None or hi is None:
        return float("nan")
    sel = df[(df.step >= lo) & (df.step < hi)].cos_tangent
    return float(sel.mean()) if len(sel) else float("nan")


def _first_step(d: pd.DataFrame, thr: float) -> int | None:
    hit = d[d.test_acc >= thr]
    return int(hit.step.iloc[0]) if len(hit) else None


def mlp_summary(results: list[RunResult], table: str = "normmin"
                ) -> tuple[pd.DataFrame, list[dict[str, Any]]]:
    """Join each run's tangent-cosine rows with its metrics and say where the cosine peaks relative to
    memorisation (train acc 100%) and grokking (test acc >= 98% for 3 evals; also first >= 90%)."""
    frames, rows = [], []
    for res in results:
        m = res.metrics
        df = res.tables[table].copy()
        te = m[m.split == "test"].groupby("step").acc.min()
        tr = m[m.split == "train"].groupby("step").acc.min()
        trl = m[m.split == "train"].groupby("step").loss.sum()
        wn = m.groupby("step").weight_norm.first()
        df["test_acc"] = df.step.map(te)
        df["train_acc"] = df.step.map(tr)
        df["train_loss"] = df.step.map(trl)
        df["weight_norm"] = df.step.map(wn)
        df["seed"] = res.config.seed
        frames.append(df)
        t_mem = memorisation_step(m)
        t_grok = next(iter(res.summary["grok_step"].values()))
        t_grok90 = next(iter(res.summary["grok_step_90"].values()))
        smooth = df.cos_tangent.rolling(5, center=True, min_periods=1).mean()
        i = int(np.nanargmax(smooth.to_numpy()))
        t_peak = int(df.step.iloc[i])
        inf = float("inf")
        rows.append({
            "seed": res.config.seed, "mem_step": t_mem, "grok_step": t_grok, "grok_step_90": t_grok90,
            "peak_step": t_peak, "peak_cos": float(smooth.iloc[i]),
            "peak_between_mem_and_grok": bool(t_mem is not None and t_grok is not None
                                              and t_mem <= t_peak <= t_grok),
            "cos_before_mem": _window_mean(df, 0, t_mem if t_mem is not None else inf),
            "cos_mem_to_grok": _window_mean(df, t_mem, t_grok),
            "cos_after_grok": _window_mean(df, t_grok, inf),
            "norm_at_mem": float(wn.get(t_mem, float("nan"))) if t_mem is not None else float("nan"),
            "norm_at_grok": float(wn.get(t_grok, float("nan"))) if t_grok is not None else float("nan"),
            "norm_final": float(wn.iloc[-1]),
            "test_acc_final": float(te.iloc[-1]),
        })
    return pd.concat(frames, ignore_index=True), rows


def run_mlp(exp: MLPExperiment, out: str | None = None) -> dict[str, Any]:
    """Train the P3 MLP runs through the trainer with the tangent-cosine probe; returns the per-probe
    table, the per-seed summary and the wall time."""
    t0 = time.perf_counter()
    cfgs = mlp_configs(exp)
    probe = tangent_probe(exp.every, exp.horizon, exp.project_steps, exp.project_momentum)
    results = train(cfgs, out, probes=(probe,), force=out is not None)
    table, seeds = mlp_summary(results)
    return {"experiment": exp, "table": table, "seeds": seeds, "results": results,
            "wall_s": time.perf_counter() - t0}


# ---------------------------------------------------------------------------------------------------
# Decoupled two-layer dynamics (P3 §5–7)
# ---------------------------------------------------------------------------------------------------

def decoupled_R(W1: torch.Tensor, X: torch.Tensor, Y: torch.Tensor, lam: float) -> torch.Tensor:
    """R(W₁) = λ‖W₁‖² + λ Tr(Yᵀ(HHᵀ)⁻¹Y), H = relu(X W₁): the weight norm left once W₂ = H⁺Y [R]."""
    H = torch.relu(X @ W1)
    K = H @ H.transpose(-1, -2)
    A = torch.linalg.solve(K, Y)
    return lam * W1.pow(2).sum((-1, -2)) + lam * (Y * A).sum((-1, -2))


def decoupled_readout(W1: torch.Tensor, X: torch.Tensor, Y: torch.Tensor) -> torch.Tensor:
    """W₂ = H⁺Y = Hᵀ(HHᵀ)⁻¹Y: the minimum-norm readout that fits Y exactly (H of full row rank)."""
    H = torch.relu(X @ W1)
    return H.transpose(-1, -2) @ torch.linalg.solve(H @ H.transpose(-1, -2), Y)


def decoupled_grad(W1: torch.Tensor, X: torch.Tensor, Y: torch.Tensor, lam: float
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """Closed-form ∇R (P3 eq. 20, sign as derived here; the paper's appendix prints it flipped):
    ∇R = 2λW₁ − 2λ Xᵀ[σ'(XW₁) ⊙ (A W₂ᵀ)], A = (HHᵀ)⁻¹Y, W₂ = HᵀA. Returns (∇R, W₂)."""
    Z = X @ W1
    H = torch.relu(Z)
    L, info = torch.linalg.cholesky_ex(H @ H.transpose(-1, -2))
    if bool((info > 0).any()):
        raise ConfigError("HHᵀ is singular (dead or duplicate hidden units): H⁺Y is not unique")
    A = torch.cholesky_solve(Y, L)
    W2 = H.transpose(-1, -2) @ A
    G = (Z > 0).to(W1.dtype) * (A @ W2.transpose(-1, -2))
    return 2 * lam * W1 - 2 * lam * X.transpose(-1, -2) @ G, W2


def fourier_norms(W: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-frequency norms of the real and imaginary parts of the DFT of an embedding W [..., p, d] over
    its token axis: ([..., p//2 + 1], [..., p//2 + 1]) for k = 0..p//2."""
    F = torch.fft.rfft(W.to(torch.float64), dim=-2)
    return F.real.norm(dim=-1), F.imag.norm(dim=-1)


def neuron_top_frequency_share(W: torch.Tensor) -> torch.Tensor:
    """Per hidden unit, the share of its non-constant Fourier power (k >= 1) in its strongest frequency,
    averaged over units [...]: ≈ 1 when every neuron is tuned to one frequency, small for noise."""
    F = torch.fft.rfft(W.to(torch.float64), dim=-2)[..., 1:, :]
    power = F.real ** 2 + F.imag ** 2  # [..., K, d]
    return (power.max(-2).values / power.sum(-2).clamp_min(1e-300)).mean(-1)


@dataclass(frozen=True)
class DecoupledConfig:
    """P3 §7 simulation: p = 37, pairs a ≤ b, e_a + e_b inputs, one-hot (a+b mod p) targets, 70% train,
    hidden width 512, W₁ ← W₁ − η∇R for `steps` steps, R seeds batched."""

    p: int = 37
    width: int = 512
    train_frac: float = 0.7
    lr: float = 1e-3
    lam: float = 1.0
    steps: int = 5000
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    eval_every: int = 50
    init_std: float = 1.0  # W₁ ~ N(0, init_std²), drawn from each seed
    dtype: str = "float64"


def _decoupled_data(cfg: DecoupledConfig) -> tuple[torch.Tensor, ...]:
    """Per-seed train/test inputs and one-hot targets: (Xtr, Ytr, Xte, yte) stacked on a run axis."""
    xs = []
    for s in cfg.seeds:
        sp = make_split(("add",), cfg.p, cfg.train_frac, s, exclude_zero=False, unordered=True)
        x = torch.nn.functional.one_hot(sp.pairs, cfg.p).sum(1).to(torch.float64)
        y = sp.targets[:, 0]
        xs.append((x[sp.train_idx], torch.nn.functional.one_hot(y[sp.train_idx], cfg.p).to(torch.float64),
                   x[sp.test_idx], y[sp.test_idx]))
    return tuple(torch.stack([t[i] for t in xs]) for i in range(4))


def simulate_decoupled(cfg: DecoupledConfig) -> dict[str, Any]:
    """Run the decoupled dynamics; returns a history table (step, seed, R, ‖W₁‖, ‖W₂‖, test acc/loss),
    the Fourier norms of W₁ at the start and end, and the wall time."""
    if cfg.width < round(cfg.train_frac * cfg.p * (cfg.p + 1) / 2):
        raise ConfigError(f"width={cfg.width} is below the number of training pairs: HHᵀ would be singular")
    t0 = time.perf_counter()
    Xtr, Ytr, Xte, yte = _decoupled_data(cfg)
    dt = getattr(torch, cfg.dtype)
    Xtr, Ytr, Xte = Xtr.to(dt), Ytr.to(dt), Xte.to(dt)
    W1 = torch.stack([torch.randn(cfg.p, cfg.width, generator=torch.Generator().manual_seed(s),
                                  dtype=torch.float64) for s in cfg.seeds]).to(dt) * cfg.init_std
    re0, im0 = fourier_norms(W1)
    neuron_share0 = neuron_top_frequency_share(W1)
    rows = []
    for step in range(cfg.steps + 1):
        grad, W2 = decoupled_grad(W1, Xtr, Ytr, cfg.lam)
        if step % cfg.eval_every == 0 or step == cfg.steps:
            out = torch.relu(Xte @ W1) @ W2
            acc = (out.argmax(-1) == yte).double().mean(-1)
            te_loss = (out - torch.nn.functional.one_hot(yte, cfg.p)).pow(2).mean((-1, -2))
            w1n, w2n = W1.norm(dim=(-1, -2)), W2.norm(dim=(-1, -2))
            for r, s in enumerate(cfg.seeds):
                rows.append({"step": step, "seed": s, "R": float(cfg.lam * (w1n[r] ** 2 + w2n[r] ** 2)),
                             "w1_norm": float(w1n[r]), "w2_norm": float(w2n[r]), "test_acc": float(acc[r]),
                             "test_loss": float(te_loss[r])})
            if not bool(torch.isfinite(grad).all()):
                break
        if step < cfg.steps:
            W1 = W1 - cfg.lr * grad
    re1, im1 = fourier_norms(W1)
    return {"config": cfg, "history": pd.DataFrame(rows), "W1": W1, "neuron_share_init": neuron_share0,
            "neuron_share_final": neuron_top_frequency_share(W1),
            "fourier_init": (re0, im0), "fourier_final": (re1, im1), "wall_s": time.perf_counter() - t0}


def decoupled_summary(sim: dict[str, Any], chance_margin: float = 2.0, top: int = 3) -> list[dict[str, Any]]:
    """Per seed: last step near chance, first step at 100% (and >= 90%) test acc, final norms, and the
    Fourier concentration of W₁ (share of Σ|F_k|² in the top frequencies, k >= 1)."""
    cfg, h = sim["config"], sim["history"]
    chance = 1.0 / cfg.p
    out = []
    for r, s in enumerate(cfg.seeds):
        d = h[h.seed == s].sort_values("step")
        near = d[d.test_acc <= chance_margin * chance]
        row = {"seed": s, "last_chance_step": int(near.step.max()) if len(near) else None,
               "first_90_step": _first_step(d, 0.9), "first_100_step": _first_step(d, 1.0 - 1e-12),
               "test_acc_final": float(d.test_acc.iloc[-1]), "w1_norm_final": float(d.w1_norm.iloc[-1]),
               "w2_norm_final": float(d.w2_norm.iloc[-1])}
        for tag in ("init", "final"):
            re, im = sim[f"fourier_{tag}"]
            power = (re[r] ** 2 + im[r] ** 2)[1:]
            order = torch.argsort(power, descending=True)
            row[f"top_freqs_{tag}"] = [int(k) + 1 for k in order[:top]]
            row[f"top{top}_power_share_{tag}"] = float(power[order[:top]].sum() / power.sum())
            row[f"neuron_top1_share_{tag}"] = float(sim[f"neuron_share_{tag}"][r])
        out.append(row)
    return out


# ---------------------------------------------------------------------------------------------------
# Toy models (P3 §4)
# ---------------------------------------------------------------------------------------------------

def toy_linear_limit(lam: float) -> np.ndarray:
    """Fixed point of GD on (w₁ + w₂ − 2)² + λ(w₁² + w₂²): w₁ = w₂ = 2/(2 + λ) → (1, 1) as λ → 0."""
    c = 2.0 / (2.0 + lam)
    return np.array([c, c])


def toy_three_limit(lam: float) -> np.ndarray:
    """Fixed point (positive branch) of (w₃(w₁ + w₂) − 2)² + λ‖w‖²: w₁ = w₂ = a, w₃ = √2 a with
    a² = (2 − λ/√2)/(2√2); λ → 0 gives the minimum-norm point (2^-1/4, 2^-1/4, 2^1/4) of w₃(w₁+w₂) = 2."""
    a = math.sqrt((2 - lam / math.sqrt(2)) / (2 * math.sqrt(2)))
    return np.array([a, a, math.sqrt(2) * a])


def _toy_grad_linear(w: np.ndarray, lam: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    r = w.sum(-1) - 2.0
    return 2 * r[:, None] + 2 * lam[:, None] * w, r ** 2


def _toy_grad_three(w: np.ndarray, lam: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    s = w[:, 0] + w[:, 1]
    r = w[:, 2] * s - 2.0
    g = np.stack([2 * r * w[:, 2], 2 * r * w[:, 2], 2 * r * s], -1)
    return g + 2 * lam[:, None] * w, r ** 2


def _toy(grad: Callable, w0: tuple[float, ...], lams: tuple[float, ...], lr: float, steps: int,
         record_every: int) -> dict[str, Any]:
    lam = np.asarray(lams, dtype=np.float64)
    w = np.tile(np.asarray(w0, dtype=np.float64), (len(lam), 1))
    traj, losses, rec = [w.copy()], [], [0]
    for t in range(1, steps + 1):
        g, l2 = grad(w, lam)
        if t == 1:
            losses.append(l2)
        w = w - lr * g
        if t % record_every == 0 or t == steps:
            traj.append(w.copy())
            losses.append(grad(w, lam)[1])
            rec.append(t)
    return {"steps": np.array(rec), "w": np.stack(traj, 1), "fit_loss": np.stack(losses, 1), "lams": lam}


def toy_linear(lams: tuple[float, ...] = (0.01, 0.1, 0.2), w0: tuple[float, float] = (-1.0, 1.0),
               lr: float = 0.1, steps: int = 20_000, record_every: int = 10) -> dict[str, Any]:
    """GD on ŷ = w₁x₁ + w₂x₂ fit to 1 + 1 = 2 with L2 penalty λ, every λ at once: the fit is reached in a
    few steps, then w drifts along w₁ + w₂ = 2 (its antisymmetric part decays as (1 − 2ηλ)^t)."""
    return _toy(_toy_grad_linear, w0, lams, lr, steps, record_every)


def toy_three(lams: tuple[float, ...] = (0.01, 0.1, 0.2), w0: tuple[float, float, float] = (-1.0, 1.0, 1.0),
              lr: float = 0.05, steps: int = 40_000, record_every: int = 10) -> dict[str, Any]:
    """The three-parameter toy ŷ = w₃(w₁x₁ + w₂x₂) (curved zero-loss set w₃(w₁ + w₂) = 2)."""
    return _toy(_toy_grad_three, w0, lams, lr, steps, record_every)


def _toy_rows(name: str, res: dict[str, Any], limit: Callable[[float], np.ndarray],
              grad: Callable) -> list[dict[str, Any]]:
    rows = []
    for i, lam in enumerate(res["lams"]):
        w, loss = res["w"][i], res["fit_loss"][i]
        star = limit(float(lam))
        loss_star = float(grad(star[None], np.array([lam]))[1][0])
        dist = np.linalg.norm(w - star, axis=-1)
        fit = np.flatnonzero(np.abs(loss - loss_star) < 1e-2)
        near = np.flatnonzero(dist < 1e-2)
        rows.append({"model": name, "lam": float(lam), "w_final": w[-1].round(6).tolist(),
                     "limit": star.round(6).tolist(), "dist_final": float(dist[-1]),
                     "fit_step": int(res["steps"][fit[0]]) if len(fit) else None,
                     "near_limit_step": int(res["steps"][near[0]]) if len(near) else None,
                     "min_norm_lam0": limit(0.0).round(6).tolist()})
    return rows


def run_toys(lams: tuple[float, ...] = (0.01, 0.1, 0.2), steps: int | None = None) -> dict[str, Any]:
    """Both toys for every λ; rows: final w, analytic limit, the step the fit is reached (squared error
    within 1e-2 of its value at the limit) and the step w comes within 1e-2 of the limit."""
    t0 = time.perf_counter()
    lin = toy_linear(lams, **({"steps": steps} if steps else {}))
    three = toy_three(lams, **({"steps": steps} if steps else {}))
    rows = (_toy_rows("linear", lin, toy_linear_limit, _toy_grad_linear)
            + _toy_rows("three", three, toy_three_limit, _toy_grad_three))
    return {"linear": lin, "three": three, "rows": rows, "wall_s": time.perf_counter() - t0}


# ---------------------------------------------------------------------------------------------------
# Stored runs (transformers): tangent cosine between snapshots, norm vs pure decay
# ---------------------------------------------------------------------------------------------------

def norm_vs_decay(run: RunDir, mem_acc: float = 1.0) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Weight norm after memorisation against ‖θ(t_mem)‖(1 − η·wd)^(t − t_mem), the norm pure weight decay
    would give (AdamW's decoupled decay and SGD's L2 decay shrink by the same factor per step)."""
    cfg, m = run.config(), run.metrics()
    t_mem = memorisation_step(m, mem_acc)
    wn = m.groupby("step").weight_norm.first()
    df = pd.DataFrame({"step": wn.index.astype(int), "weight_norm": wn.to_numpy()})
    info: dict[str, Any] = {"mem_step": t_mem, "lr": cfg.optim.lr, "wd": cfg.optim.wd}
    grok = run.summary().get("grok_step", {}) if run.file("summary.json").exists() else {}
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
    if not run.file("trajectory.safetensors").exists():
        raise StoreError(f"{run.path} has no trajectory.safetensors (no snapshots to analyse)")
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
