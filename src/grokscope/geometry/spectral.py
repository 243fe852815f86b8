"""Spectral edge (P1 v2+, docs/papers.md §4): singular-value gaps of W_Q, ‖[W_Q, W_K]‖_F, and the rolling Gram matrix
of parameter updates, all from a run's recorded attention trajectory (every `attn_every` steps).

Definitions (following the authors' `spectral/thesis_table7_replication.py` and `commutator_heatmap.py`):
- gaps: σ₁ − σ₂ and σ₂ − σ₃ of W_Q per layer;
- commutator: ‖W_Q W_K − W_K W_Q‖_F per layer, and per head on the head's diagonal d_h × d_h block
  (W[h·d_h:(h+1)·d_h, h·d_h:(h+1)·d_h]); transposing both matrices leaves these norms unchanged, so our
  x @ W layout gives the same numbers as torch's Linear layout;
- Gram: u_t = vec(all attention matrices at record t) − vec(… at t−1); over the last W = 10 updates
  U [W, D], G = U Uᵀ with eigenvalues λ₁ ≥ λ₂ ≥ … (λ_j = σ_j², σ the singular values of U);
  **g₂₃ = λ₂ − λ₃**; the signal rank k = argmax_j (σ_j / Σσ)·(σ_j / σ_{j+1}) (the authors' "weighted k*";
  plain argmax of σ_j/σ_{j+1} with `weighted=False`), and **R = σ_k / σ_{k+1}**, the gap ratio at k.
  Singular values below the numerical-rank tolerance (σ₁·10·√(W·eps)) are clamped to it, so a window of
  rank-one updates gives k = 1 and a large finite R instead of a rounding-noise argmax.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from grokscope.errors import StoreError
from grokscope.store import RunDir


def singular_gaps(W: torch.Tensor) -> torch.Tensor:
    """(σ₁ − σ₂, σ₂ − σ₃) of matrices [..., m, n] -> [..., 2] (float64)."""
    S = torch.linalg.svdvals(W.double())
    S = torch.nn.functional.pad(S, (0, max(0, 3 - S.shape[-1])))
    return torch.stack([S[..., 0] - S[..., 1], S[..., 1] - S[..., 2]], -1)


def commutator_norm(A: torch.Tensor, B: torch.Tensor) -> torch.Tensor:
    """‖AB − BA‖_F of square matrices [..., d, d] -> [...] (float64)."""
    A, B = A.double(), B.double()
    return torch.linalg.matrix_norm(A @ B - B @ A)


def head_blocks(W: torch.Tensor, n_heads: int) -> torch.Tensor:
    """The diagonal d_h × d_h block of each head: [..., d, d] -> [..., H, d_h, d_h]."""
    d = W.shape[-1]
    dh = d // n_heads
    return torch.stack([W[..., h * dh:(h + 1) * dh, h * dh:(h + 1) * dh] for h in range(n_heads)], -3)


def head_commutator_norms(W_Q: torch.Tensor, W_K: torch.Tensor, n_heads: int) -> torch.Tensor:
    """‖[W_Q^h, W_K^h]‖_F on each head's diagonal block: [..., d, d] -> [..., H]."""
    return commutator_norm(head_blocks(W_Q, n_heads), head_blocks(W_K, n_heads))


@dataclass
class GramStats:
    """Rolling-window Gram statistics at each window end: g₂₃ = λ₂ − λ₃, R = σ_k/σ_{k+1}, signal rank k."""

    end: np.ndarray  # [N] index of the last record in the window
    g23: np.ndarray  # [N]
    R: np.ndarray  # [N]
    k: np.ndarray  # [N] 1-based
    eigenvalues: np.ndarray  # [N, W] descending


def gram_from_eigenvalues(lam: np.ndarray, weighted: bool = True
                          ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(g₂₃, R, k) from descending Gram eigenvalues [N, W] (module docstring for the definitions)."""
    lam = np.clip(lam, 0.0, None)
    n, w = lam.shape
    sig = np.sqrt(lam)
    # singular values below the numerical-rank tolerance of an eigvalsh'd Gram matrix are noise: clamp them
    # to it, so exact or rounding-level zeros neither win the argmax nor give an infinite R
    tol = sig[:, :1] * np.sqrt(w * np.finfo(np.float64).eps) * 10
    sig = np.maximum(sig, np.maximum(tol, 1e-300))
    g23 = lam[:, 1] - lam[:, 2] if w >= 3 else np.full(n, np.nan)
    ratios = sig[:, :-1] / sig[:, 1:]
    scores = ratios * (sig[:, :-1] / sig.sum(1, keepdims=True)) if weighted else ratios
    k = scores.argmax(1)
    return g23, ratios[np.arange(n), k], k + 1


def rolling_gram(vectors: torch.Tensor | list[torch.Tensor], window: int = 10,
                 weighted: bool = True) -> GramStats:
    """Gram statistics of the last `window` updates u_t = x_t − x_{t−1} of a recorded sequence, at every
    record t ≥ window. `vectors` is [T, D], or a list of [T, ...] pieces whose flattened concatenation is
    the vector (so the per-matrix trajectories never need concatenating: G is a sum over pieces)."""
    pieces = [vectors] if isinstance(vectors, torch.Tensor) else list(vectors)
    T = pieces[0].shape[0]
    if T < window + 1:
        empty = np.zeros(0)
        return GramStats(empty.astype(int), empty, empty, empty.astype(int), np.zeros((0, window)))
    band = torch.zeros(window, T - 1, dtype=torch.float64, device="cpu")  # band[l, i] = <u_i, u_{i+l}>
    for x in pieces:
        U = x.reshape(T, -1).double().diff(dim=0)
        for lag in range(window):
            band[lag, :T - 1 - lag] += (U[:T - 1 - lag] * U[lag:]).sum(1)
    ends = np.arange(window - 1, T - 1)  # index of the last update in each window
    a = torch.arange(window, device="cpu")
    lag = (a[:, None] - a[None, :]).abs()  # [W, W]
    lo = torch.minimum(a[:, None], a[None, :])
    starts = torch.as_tensor(ends - window + 1, device="cpu")
    G = band[lag[None], starts[:, None, None] + lo[None]]  # [N, W, W]
    lam = torch.linalg.eigvalsh(G).flip(-1).numpy()
    g23, R, k = gram_from_eigenvalues(lam, weighted)
    return GramStats(end=ends + 1, g23=g23, R=R, k=k, eigenvalues=lam)


@dataclass
class SpectralEdge:
    """Tables of one run: `layers` (step, layer, sigma1..3 of W_Q, gap12, gap23, commutator), `heads`
    (step, layer, head, commutator) and `gram` (step, g23, R, k, lambda1..3)."""

    layers: pd.DataFrame
    heads: pd.DataFrame
    gram: pd.DataFrame


def spectral_edge(run: RunDir, window: int = 10, weighted: bool = True) -> SpectralEdge:
    """The spectral-edge measurements of a run over its recorded attention trajectory."""
    cfg = run.config()
    steps, attn = run.attention_trajectory()
    if not attn:
        raise StoreError(f"{run.path} records no attention matrices (the MLP has no W_Q)")
    steps = steps.numpy()
    name = cfg.name
    layers, heads = [], []
    for i in range(cfg.model.n_layers):
        Wq, Wk = attn[f"layers.{i}.attn.W_Q"], attn[f"layers.{i}.attn.W_K"]
        S = torch.linalg.svdvals(Wq.double()).numpy()
        comm = commutator_norm(Wq, Wk).numpy()
        hc = head_commutator_norms(Wq, Wk, cfg.model.n_heads).numpy()
        for t, s in enumerate(steps):
            layers.append({"run": name, "step": int(s), "layer": i, "sigma1": S[t, 0], "sigma2": S[t, 1],
                           "sigma3": S[t, 2], "gap12": S[t, 0] - S[t, 1], "gap23": S[t, 1] - S[t, 2],
                           "commutator": comm[t]})
            for h in range(hc.shape[1]):
                heads.append({"run": name, "step": int(s), "layer": i, "head": h, "commutator": hc[t, h]})
    gs = rolling_gram(list(attn.values()), window, weighted)
    gram = pd.DataFrame({"run": name, "step": steps[gs.end].astype(int) if len(gs.end) else [], "g23": gs.g23,
                         "R": gs.R, "k": gs.k,
                         **{f"lambda{j + 1}": gs.eigenvalues[:, j] for j in range(min(3, window))}})
    return SpectralEdge(pd.DataFrame(layers), pd.DataFrame(heads), gram)
