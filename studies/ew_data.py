"""The early-warning corpus' data sets, made on the fly from a seed: modular arithmetic and composition in a
symmetric group (sparse parity is examples/sparse_parity.py's). Each returns (X_train, y_train, X_test, y_test)."""

from __future__ import annotations

import itertools
from collections.abc import Callable

import torch

Split = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]

OPS: dict[str, Callable[[torch.Tensor, torch.Tensor, int], torch.Tensor]] = {
    "add": lambda a, b, p: (a + b) % p,
    "sub": lambda a, b, p: (a - b) % p,
    "mul": lambda a, b, p: (a * b) % p,
}


def split(X: torch.Tensor, y: torch.Tensor, train_frac: float, seed: int) -> Split:
    """A seeded random split of (X, y) with `train_frac` of the rows for training."""
    perm = torch.randperm(len(X), generator=torch.Generator().manual_seed(seed))
    n = int(train_frac * len(X))
    return X[perm[:n]], y[perm[:n]], X[perm[n:]], y[perm[n:]]


def modular(op: str, p: int, train_frac: float, seed: int) -> Split:
    """All pairs (a, b) in 0..p-1 as rows [a, b] and op(a, b) mod p (`OPS`)."""
    a, b = torch.cartesian_prod(torch.arange(p), torch.arange(p)).T
    return split(torch.stack([a, b], 1), OPS[op](a, b, p), train_frac, seed)


def with_equals(data: Split, p: int) -> Split:
    """Rows [a, b] as token rows [a, b, =] (token p is `=`), Nanda et al.'s input for a one-layer transformer."""
    X, y, Xt, yt = data
    return (torch.cat([X, torch.full((len(X), 1), p)], 1), y, torch.cat([Xt, torch.full((len(Xt), 1), p)], 1), yt)


def symmetric_group(n: int, train_frac: float, seed: int) -> Split:
    """Composition g∘h in S_n: rows [i, j] of permutation indices (n! of them) and the index of g_i∘g_j."""
    perms = list(itertools.permutations(range(n)))
    index = {q: i for i, q in enumerate(perms)}
    X = torch.tensor([(i, j) for i in range(len(perms)) for j in range(len(perms))])
    y = torch.tensor([index[tuple(perms[i][perms[j][k]] for k in range(n))] for i, j in X.tolist()])
    return split(X, y, train_frac, seed)

