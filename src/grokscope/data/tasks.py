"""Modular-arithmetic tasks and the shared (a, b) train/test split (docs/papers.md §1)."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

import torch

Op = Callable[[torch.Tensor, torch.Tensor, int], torch.Tensor]


def _inverse(b: torch.Tensor, p: int) -> torch.Tensor:
    """Multiplicative inverse mod prime p via Fermat (b^(p-2)); b must be non-zero."""
    out = torch.ones_like(b)
    base, e = b % p, p - 2
    while e:
        if e & 1:
            out = (out * base) % p
        base = (base * base) % p
        e >>= 1
    return out


@dataclass(frozen=True)
class Operation:
    """One binary operation mod p. `needs_prime`: only well-defined / as studied for prime p."""

    name: str
    formula: str
    fn: Op
    needs_prime: bool


OPERATIONS: dict[str, Operation] = {
    op.name: op
    for op in [
        Operation("add", "a+b", lambda a, b, p: (a + b) % p, False),
        Operation("sub", "a-b", lambda a, b, p: (a - b) % p, False),
        Operation("mul", "a*b", lambda a, b, p: (a * b) % p, True),
        Operation("div", "a*b^-1", lambda a, b, p: (a * _inverse(b, p)) % p, True),
        Operation("sq", "a^2+b^2", lambda a, b, p: (a * a + b * b) % p, True),
        Operation("sq_ab", "a^2+ab+b^2", lambda a, b, p: (a * a + a * b + b * b) % p, True),
        Operation("cube_ab", "a^3+ab", lambda a, b, p: (a * a * a + a * b) % p, True),
    ]
}


def is_prime(n: int) -> bool:
    if n < 2:
        return False
    return all(n % k for k in range(2, int(n**0.5) + 1))


@dataclass
class Split:
    """All (a, b) pairs with one target column per task, and the train/test index split.

    `pairs` [N, 2] int64, `targets` [N, n_tasks] int64, `train_idx` / `test_idx` index rows of both.
    """

    pairs: torch.Tensor
    targets: torch.Tensor
    train_idx: torch.Tensor
    test_idx: torch.Tensor

    @property
    def n_train(self) -> int:
        return int(self.train_idx.numel())


def all_pairs(p: int, exclude_zero: bool = True, unordered: bool = False) -> torch.Tensor:
    """Every (a, b) operand pair. `exclude_zero` follows the papers' code (a, b in 1..p-1);
    `unordered` keeps a <= b only (P3's commutative setup)."""
    lo = 1 if exclude_zero else 0
    r = torch.arange(lo, p, device="cpu")
    a, b = torch.meshgrid(r, r, indexing="ij")
    pairs = torch.stack([a.reshape(-1), b.reshape(-1)], dim=1)
    if unordered:
        pairs = pairs[pairs[:, 0] <= pairs[:, 1]]
    return pairs


def make_split(
    tasks: tuple[str, ...],
    p: int,
    train_frac: float,
    data_seed: int,
    exclude_zero: bool = True,
    unordered: bool = False,
    order: str = "randperm",
) -> Split:
    """One split shared by all tasks: a seeded permutation of the pairs, first `train_frac` for training.

    `order` "randperm": torch.randperm from `data_seed`, round(train_frac·N) training pairs, index lists
    sorted. "authors": the papers' scripts, `random.Random(data_seed).shuffle` of the pair list (a outer,
    b inner), the first int(train_frac·N) for training, and the index lists kept in that shuffled order
    (their minibatch sampler indexes the shuffled training list)."""
    pairs = all_pairs(p, exclude_zero, unordered)
    if any(t == "div" for t in tasks) and not exclude_zero:
        # b = 0 has no inverse: keep those pairs out of every task of this run.
        pairs = pairs[pairs[:, 1] != 0]
    a, b = pairs[:, 0], pairs[:, 1]
    targets = torch.stack([OPERATIONS[t].fn(a, b, p) for t in tasks], dim=1)
    if order == "authors":
        perm_list = list(range(len(pairs)))  # shuffling positions = shuffling the pair list itself
        random.Random(data_seed).shuffle(perm_list)
        n = int(train_frac * len(pairs))
        perm_t = torch.tensor(perm_list, dtype=torch.int64, device="cpu")
        return Split(pairs, targets, perm_t[:n], perm_t[n:])
    if order != "randperm":
        raise ValueError(f"unknown split order {order!r}; choose randperm or authors")
    gen = torch.Generator().manual_seed(int(data_seed))
    perm = torch.randperm(len(pairs), generator=gen)
    n_train = max(1, min(len(pairs) - 1, int(round(train_frac * len(pairs)))))
    return Split(pairs, targets, perm[:n_train].sort().values, perm[n_train:].sort().values)
