"""Bounded trajectories of large tensors: a fixed random projection (CountSketch) of each record.

A watched tensor of n entries is kept as S·vec(W) ∈ R^k instead of W: S hashes every coordinate i to one of
k buckets h(i) with a random sign s(i) (one int32 per coordinate, drawn once from a seed and the tensor's
name, so every record of a tensor uses the same S). S is linear, so centred PCA of the sketched rows is the
PCA of S applied to the centred trajectory, and for any x, y: E⟨Sx, Sy⟩ = ⟨x, y⟩ and
Var⟨Sx, Sy⟩ ≤ (‖x‖²‖y‖² + ⟨x, y⟩²)/k ≤ 2‖x‖²‖y‖²/k: the second-moment Johnson–Lindenstrauss property (Kane &
Nelson's sparse JL with one non-zero per column). `pc1_error_bound` turns it into a bound on PC1%.
"""

from __future__ import annotations

import math
import zlib

import torch


class CountSketch:
    """S: R^n -> R^k, one random bucket and sign per coordinate, from `seed` (deterministic).

    Args:
        n: the input size (entries of the tensor sketched).
        k: the sketch size.
        seed: fixes the buckets and signs (the same seed, the same sketch in any process).
        device: where the bucket codes live (that of the tensors sketched).
    """

    def __init__(self, n: int, k: int, seed: int, device: torch.device | str = "cpu") -> None:
        g = torch.Generator().manual_seed(int(seed))
        bucket = torch.randint(0, k, (n,), generator=g, device="cpu")
        negative = torch.randint(0, 2, (n,), generator=g, device="cpu").bool()
        # buckets k..2k-1 hold the coordinates with sign -1: one int32 per coordinate carries both
        self.code = (bucket + k * negative).to(torch.int32).to(device)
        self.n, self.k = n, k

    @torch.no_grad()
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """S·vec(x) [k] in x's dtype and device."""
        flat = x.detach().reshape(-1)
        both = torch.zeros(2 * self.k, dtype=flat.dtype, device=flat.device).index_add_(0, self.code, flat)
        return both[:self.k] - both[self.k:]


def sketch_seed(seed: int, name: str) -> int:
    """The sketch seed of one tensor: the monitor's seed and the tensor's name (stable across processes)."""
    return (int(seed) * 1_000_003 + zlib.crc32(name.encode())) % (2**63)


def pc1_error_bound(k: int, delta: float) -> float:
    """ε such that, with probability ≥ 1 − 2δ over S, both |λ₁' − λ₁| ≤ ε·tr and |tr' − tr| ≤ ε·tr, where λ₁,
    tr (λ₁', tr') are the top eigenvalue and trace of the centred trajectory's Gram matrix G = XXᵀ (of SX):
    ε = √(2/(kδ)). From the variance above, E‖G' − G‖_F² ≤ 2·tr²/k and Var tr' ≤ 2·tr²/k; Chebyshev on each,
    and Weyl (|λ₁' − λ₁| ≤ ‖G' − G‖₂ ≤ ‖G' − G‖_F)."""
    return math.sqrt(2.0 / (k * delta))


def pc1_interval(p: float, eps: float) -> tuple[float, float]:
    """Where the sketch's PC1 fraction p' = λ₁'/tr' can lie given the full one p = λ₁/tr and ε of
    `pc1_error_bound`: [(p − ε)/(1 + ε), (p + ε)/(1 − ε)] clipped to [0, 1]."""
    lo = (p - eps) / (1 + eps)
    hi = (p + eps) / (1 - eps) if eps < 1 else 1.0
    return max(lo, 0.0), min(hi, 1.0)
