"""Nanda et al.'s progress measures (arXiv 2301.05217) as pure functions over tensors.

A modular task whose answer is a group operation reads its operands through a cyclic group Z_n: add and sub
through Z_p itself (token x ↦ x), mul and div through the multiplicative group Z_p^* ≅ Z_{p-1} (token x ↦ its
discrete logarithm). In that labelling the embedding's Fourier basis over Z_n, the key frequencies and the
logit directions cos/sin(w_k · (u(a) ± u(b))) are the paper's; tasks that are not a group operation (sq, ...)
have none, and `group_map` says so.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from grokscope.errors import NotApplicable

KEY_RATIO = 5.0  # a key frequency carries ≥ KEY_RATIO × the median squared Fourier norm per frequency


@dataclass(frozen=True)
class GroupMap:
    """How a task's operands sit in Z_n: `index[x]` is token x's element (-1: outside the group, e.g. 0 for
    mul), and the answer depends on index[a] + sign · index[b] mod n."""

    n: int
    index: torch.Tensor
    sign: int


def primitive_root(p: int) -> int:
    """The smallest generator of Z_p^* (p prime)."""
    n = p - 1
    factors = {q for q in range(2, n + 1) if n % q == 0 and all(q % r for r in range(2, int(q**0.5) + 1))}
    for g in range(2, p):
        if all(pow(g, n // q, p) != 1 for q in factors):
            return g
    return 1  # p = 2: the group is trivial


def group_map(task: str, p: int) -> GroupMap:
    """The cyclic group a task's answer is a function of (add/sub: Z_p, mul/div: Z_p^* by discrete log)."""
    if task in ("add", "sub"):
        return GroupMap(p, torch.arange(p, device="cpu"), 1 if task == "add" else -1)
    if task in ("mul", "div"):
        g, index = primitive_root(p), torch.full((p,), -1, dtype=torch.int64, device="cpu")
        x = 1
        for k in range(p - 1):
            index[x] = k
            x = x * g % p
        return GroupMap(p - 1, index, 1 if task == "mul" else -1)
    raise NotApplicable(f"progress measures need a task that is a group operation mod p (add, sub, mul, div); "
                        f"{task!r} is not one, so it has no Fourier key frequencies")


def fourier_basis(n: int) -> torch.Tensor:
    """Orthonormal real Fourier basis of Z_n, rows [constant, cos w_1 x, sin w_1 x, ...], w_k = 2πk/n [n, n]
    (for even n the last row is the cos of frequency n/2, which has no sin)."""
    x = torch.arange(n, dtype=torch.float64, device="cpu")
    rows = [torch.ones(n, dtype=torch.float64, device="cpu")]
    for k in range(1, n // 2 + 1):
        rows.append(torch.cos(2 * math.pi * k * x / n))
        if 2 * k != n:
            rows.append(torch.sin(2 * math.pi * k * x / n))
    B = torch.stack(rows)
    return B / B.norm(dim=1, keepdim=True)


def frequency_norms(embed: torch.Tensor, n: int) -> torch.Tensor:
    """The L2 norm of the embedding's component along each frequency k = 1..n//2 (cos and sin together)
    [n//2], for embed [n, d] whose row i is the group element i."""
    coef = fourier_basis(n) @ embed.to(torch.float64)  # [n, d]
    sq = coef.pow(2).sum(1)[1:]
    pairs = [sq[2 * i:2 * i + 2].sum() for i in range(n // 2)]
    return torch.stack(pairs).sqrt()


def group_embedding(W_E: torch.Tensor, gm: GroupMap) -> torch.Tensor:
    """Rows of a token embedding W_E [vocab, d] ordered by group element (row i: the token with index i)."""
    tokens = torch.full((gm.n,), -1, dtype=torch.int64, device="cpu")
    inside = gm.index >= 0
    tokens[gm.index[inside]] = torch.arange(len(gm.index), device="cpu")[inside]
    return W_E[tokens]


def key_frequencies(norms: torch.Tensor, ratio: float = KEY_RATIO) -> list[int]:
    """Frequencies (1-based) whose squared norm is ≥ `ratio` × the median squared norm (and not round-off next
    to the largest), strongest first: at a random init every ratio is ~1, a Fourier circuit's frequencies
    stand out by an order of magnitude."""
    sq = norms.pow(2)
    keep = torch.nonzero((sq >= ratio * sq.median()) & (sq > 1e-9 * sq.max())).flatten()
    return [int(k) + 1 for k in keep[sq[keep].argsort(descending=True)]]


def gini(x: torch.Tensor) -> float:
    """Gini coefficient of non-negative values: Σ_ij |x_i − x_j| / (2 n² mean); 0 equal, (n−1)/n one only."""
    x = x.to(torch.float64).flatten()
    total = x.sum()
    if total <= 0:
        return float("nan")
    return float((x[:, None] - x[None, :]).abs().sum() / (2 * x.numel() * total))


def _design(elements: torch.Tensor, n: int, keys: list[int]) -> torch.Tensor:
    """[N, 1 + 2K] columns: constant, then cos and sin of w_k · element for each key frequency."""
    e = elements.to(torch.float64)[:, None]
    w = 2 * math.pi * torch.tensor(keys, dtype=torch.float64, device="cpu")[None, :] / n
    return torch.cat([torch.ones_like(e), torch.cos(w * e), torch.sin(w * e)], 1)


def _project(X: torch.Tensor, L: torch.Tensor) -> torch.Tensor:
    """L [N, p] projected onto span(X) (least squares: the pairs need not be the full grid)."""
    return X @ (torch.linalg.pinv(X) @ L)


def restricted_excluded(logits: torch.Tensor, elements: torch.Tensor, n: int,
                        keys: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """The paper's restricted and excluded logits [N, p] for logits [N, p] over pairs whose answer's group
    element is `elements` [N]: restricted keeps, per output, the constant and the cos/sin(w_k · element)
    components of the key frequencies; excluded removes those key components (keeps the constant). On the
    full Z_n × Z_n grid these directions are orthogonal, as in the paper; on a partial grid they are
    projected by least squares."""
    L = logits.to(torch.float64)
    restricted = _project(_design(elements, n, keys), L)
    return restricted, L - restricted + _project(_design(elements, n, []), L)


def cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> float:
    """Mean cross-entropy of logits [N, p] against targets [N]."""
    return float(torch.nn.functional.cross_entropy(logits.to(torch.float64), targets))
