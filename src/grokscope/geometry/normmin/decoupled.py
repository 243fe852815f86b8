"""P3 §5–7: decoupled two-layer dynamics. The readout W₂ = H⁺Y is re-solved every step and W₁ follows
−∇R, R(W₁) = λ‖W₁‖² + λ Tr(Yᵀ(HHᵀ)⁻¹Y), H = relu(X W₁); Fourier structure of W₁ as it groks."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import pandas as pd
import torch

from grokscope.data.tasks import make_split
from grokscope.errors import ConfigError

__all__ = ["decoupled_R", "decoupled_readout", "decoupled_grad", "decoupled_update", "fourier_norms",
           "neuron_top_frequency_share", "DecoupledConfig", "decoupled_data", "simulate_decoupled", "decoupled_summary"]


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


def decoupled_update(grad: torch.Tensor, lam: float) -> torch.Tensor:
    """P3 §7's ΔE = Xᵀ((A Y Yᵀ A H) ⊙ σ′(X E)) − E from ∇R: ΔE = −∇R / (2λ), so E ← E + η ΔE has no λ
    (the previous W₁ ← W₁ − η∇R stepped 2λη, twice P3's step at λ = 1)."""
    return -grad / (2 * lam)


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
    hidden width 512, E = W₁ ~ N(0, p^−1/2) (read as standard deviation p^−1/2; `init_std` overrides),
    E ← E + η ΔE with ΔE = Xᵀ((A Y Yᵀ A H) ⊙ σ′(X E)) − E = −∇R/(2λ), A = (HHᵀ)⁻¹, η = 1e-3, for
    `steps` steps, R seeds batched."""

    p: int = 37
    width: int = 512
    train_frac: float = 0.7
    lr: float = 1e-3
    lam: float = 1.0
    steps: int = 5000
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    eval_every: int = 50
    init_std: float | None = None  # W₁ ~ N(0, init_std²) from each seed; None: p^−1/2 (P3 §7)
    dtype: str = "float64"

    @property
    def std(self) -> float:
        """The standard deviation W₁ is drawn with."""
        return self.p ** -0.5 if self.init_std is None else float(self.init_std)


def decoupled_data(cfg: DecoupledConfig) -> tuple[torch.Tensor, ...]:
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
    Xtr, Ytr, Xte, yte = decoupled_data(cfg)
    dt = getattr(torch, cfg.dtype)
    Xtr, Ytr, Xte = Xtr.to(dt), Ytr.to(dt), Xte.to(dt)
    W1 = torch.stack([torch.randn(cfg.p, cfg.width, generator=torch.Generator().manual_seed(s),
                                  dtype=torch.float64, device="cpu") for s in cfg.seeds]).to(dt) * cfg.std
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
            W1 = W1 + cfg.lr * decoupled_update(grad, cfg.lam)
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


def _first_step(d: pd.DataFrame, thr: float) -> int | None:
    hit = d[d.test_acc >= thr]
    return int(hit.step.iloc[0]) if len(hit) else None
