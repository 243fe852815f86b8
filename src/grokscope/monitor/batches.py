"""Where the monitor's minibatches come from, without touching the user's data order or random streams.

A source draws batch `(step, salt)` as a pure function of (seed, step, salt), with the trainer's
counter-based sampler (`grokscope.data.sampler`): salt 0 is the training draw, salts 2k+1 and 2k+2 the
commutator's minibatches A and B of draw k, salt 7 the fixed Hessian sample, exactly as `Problem.minibatch`
draws them, so the same training examples give the same minibatches in grokscope and in a monitored loop.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

import torch
from torch.utils.data import DataLoader, Dataset, default_collate

from grokscope.data.sampler import sample_indices
from grokscope.errors import ConfigError

Batch = Any  # a tuple (inputs..., target) as the user's loss expects it
SALT_MIX = 0x5F3759DF  # Problem.minibatch: seeds ^ (SALT_MIX * salt) for salt > 0
HESSIAN_SALT = 7  # geometry.hessian.SAMPLE_SALT


class BatchSource(Protocol):
    """Minibatch `salt` at `step` (batch size `batch`, or the source's own) as a pure function of its args."""

    batch_size: int | None

    def draw(self, step: int, salt: int, batch: int | None = None) -> Batch: ...

    def fixed_sample(self, n: int) -> Batch: ...


def _indices(seed: int, step: int, salt: int, batch: int, n: int) -> torch.Tensor:
    """The trainer's indices [batch] into n examples for (seed, step, salt)."""
    s = torch.tensor([seed], dtype=torch.int64)
    s = s if salt == 0 else s ^ (SALT_MIX * salt)
    return sample_indices(s, step, batch, n)[0]


class TensorBatches:
    """Rows of equally long tensors (e.g. `(X_train, y_train)`), sampled with replacement by the trainer's
    sampler; `fixed_sample(n)` is all rows when n covers them (as `hessian_sample`)."""

    def __init__(self, tensors: Sequence[torch.Tensor], batch_size: int | None, seed: int = 0) -> None:
        tensors = tuple(tensors)
        if not tensors or any(not isinstance(t, torch.Tensor) for t in tensors):
            raise ConfigError("batches: a tuple of tensors (inputs..., targets) is needed")
        n = {t.shape[0] for t in tensors}
        if len(n) != 1 or 0 in n:
            raise ConfigError(f"batches: tensors must share a non-zero first dimension, got {sorted(n)}")
        self.tensors, self.n, self.seed = tensors, n.pop(), int(seed)
        self.batch_size = batch_size or self.n

    def draw(self, step: int, salt: int, batch: int | None = None) -> Batch:
        idx = _indices(self.seed, step, salt, batch or self.batch_size, self.n)
        return tuple(t[idx.to(t.device)] for t in self.tensors)

    def fixed_sample(self, n: int) -> Batch:
        return self.tensors if n >= self.n else self.draw(0, HESSIAN_SALT, n)


class DatasetBatches:
    """A map-style `Dataset` (or a `DataLoader`'s dataset) indexed by the trainer's sampler and collated with
    `default_collate`; the user's loader and its shuffling are never touched."""

    def __init__(self, dataset: Dataset, batch_size: int | None, seed: int = 0) -> None:
        self.dataset, self.n, self.seed = dataset, len(dataset), int(seed)  # type: ignore[arg-type]
        if self.n == 0:
            raise ConfigError("batches: the dataset is empty")
        self.batch_size = batch_size or self.n

    def draw(self, step: int, salt: int, batch: int | None = None) -> Batch:
        idx = _indices(self.seed, step, salt, batch or self.batch_size, self.n)
        return tuple(default_collate([self.dataset[i] for i in idx.tolist()]))

    def fixed_sample(self, n: int) -> Batch:
        if n >= self.n:
            return tuple(default_collate([self.dataset[i] for i in range(self.n)]))
        return self.draw(0, HESSIAN_SALT, n)


class CallableBatches:
    """A user function `fn(step, salt) -> batch`; it must not use global random state (the monitor restores
    it anyway) and should return independent batches for different salts."""

    def __init__(self, fn: Callable[[int, int], Batch], batch_size: int | None = None) -> None:
        self.fn, self.batch_size = fn, batch_size

    def draw(self, step: int, salt: int, batch: int | None = None) -> Batch:
        return tuple(self.fn(step, salt))

    def fixed_sample(self, n: int) -> Batch:
        return tuple(self.fn(0, HESSIAN_SALT))


def make_source(batches: Any, batch_size: int | None = None, seed: int = 0) -> BatchSource:
    """A `BatchSource` from what the user has: a tuple of tensors, a Dataset, a DataLoader (its dataset and
    batch size), a callable `(step, salt) -> batch`, or a source already."""
    if hasattr(batches, "draw") and hasattr(batches, "fixed_sample"):
        return batches
    if isinstance(batches, DataLoader):
        return DatasetBatches(batches.dataset, batch_size or batches.batch_size, seed)
    if isinstance(batches, tuple | list) and batches and all(isinstance(t, torch.Tensor) for t in batches):
        return TensorBatches(batches, batch_size, seed)
    if isinstance(batches, Dataset) or (hasattr(batches, "__getitem__") and hasattr(batches, "__len__")):
        return DatasetBatches(batches, batch_size, seed)
    if callable(batches):
        return CallableBatches(batches, batch_size)
    raise ConfigError(f"batches: cannot draw minibatches from a {type(batches).__name__}; pass a tuple of tensors "
                      "(X, y), a Dataset, a DataLoader or a function (step, salt) -> batch")
