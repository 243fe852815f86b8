"""Where the monitor's minibatches come from, without touching the user's data order or random streams.

A source draws batch `(step, salt)` as a pure function of (seed, step, salt), with the trainer's
counter-based sampler (`grokscope.data.sampler`): salt 0 is the training draw, salts 2k+1 and 2k+2 the
commutator's minibatches A and B of draw k, salt 7 the fixed Hessian sample, exactly as `Problem.minibatch`
draws them, so the same training examples give the same minibatches in grokscope and in a monitored loop.

Every source delivers its batches on the `device` it is given (the monitor gives the model's): tensors are
moved there once, at construction; a Dataset's rows are collated on the host and moved per batch; a callable's
batches are moved if they are elsewhere. Indices into tensors are drawn on the tensors' device (no host round
trip); into a Dataset, on the host, where the rows are read.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

import torch
from torch.utils.data import DataLoader, Dataset, default_collate

from grokscope.data.sampler import sample_indices
from grokscope.errors import ConfigError

Batch = Any  # a tuple (inputs..., target) as the user's loss expects it
Device = torch.device | str | None
SALT_MIX = 0x5F3759DF  # Problem.minibatch: seeds ^ (SALT_MIX * salt) for salt > 0
HESSIAN_SALT = 7  # geometry.hessian.SAMPLE_SALT


class BatchSource(Protocol):
    """Minibatch `salt` at `step` (batch size `batch`, or the source's own) as a pure function of its args."""

    batch_size: int | None

    def draw(self, step: int, salt: int, batch: int | None = None) -> Batch: ...

    def fixed_sample(self, n: int) -> Batch: ...


def to_device(batch: Any, device: Device) -> Any:
    """Tensors of a (nested) batch on `device` (None: where they are); anything else unchanged."""
    if device is None:
        return batch
    if isinstance(batch, torch.Tensor):
        return batch.to(device)
    if isinstance(batch, Mapping):  # a dict, or a mapping such as HF's BatchEncoding
        return {k: to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, tuple | list):
        return type(batch)(to_device(v, device) for v in batch)
    return batch


def _indices(seed: int | torch.Tensor, step: int, salt: int, batch: int, n: int) -> torch.Tensor:
    """The trainer's indices [batch] into n examples for (seed, step, salt): on the host for an int seed, on the
    seed's device for a [1] tensor (`_seed`)."""
    s = seed if isinstance(seed, torch.Tensor) else _seed(seed, "cpu")
    s = s if salt == 0 else s ^ (SALT_MIX * salt)
    return sample_indices(s, step, batch, n)[0]


def _seed(seed: int, device: Device) -> torch.Tensor:
    return torch.tensor([int(seed)], dtype=torch.int64, device=device)


class TensorBatches:
    """Rows of equally long tensors (e.g. `(X_train, y_train)`), sampled with replacement by the trainer's
    sampler; `fixed_sample(n)` is all rows when n covers them (as `hessian_sample`). With `device`, the tensors
    are moved there once (a CPU copy of the training set for a CUDA model is copied at construction, not per
    batch)."""

    def __init__(self, tensors: Sequence[torch.Tensor], batch_size: int | None, seed: int = 0,
                 device: Device = None) -> None:
        tensors = tuple(tensors)
        if not tensors or any(not isinstance(t, torch.Tensor) for t in tensors):
            raise ConfigError("batches: a tuple of tensors (inputs..., targets) is needed")
        n = {t.shape[0] for t in tensors}
        if len(n) != 1 or 0 in n:
            raise ConfigError(f"batches: tensors must share a non-zero first dimension, got {sorted(n)}")
        self.tensors, self.n, self.seed = to_device(tensors, device), n.pop(), int(seed)
        self._seeds = {t.device: _seed(seed, t.device) for t in self.tensors}
        self.batch_size = batch_size or self.n

    def draw(self, step: int, salt: int, batch: int | None = None) -> Batch:
        idx = {d: _indices(s, step, salt, batch or self.batch_size, self.n) for d, s in self._seeds.items()}
        return tuple(t[idx[t.device]] for t in self.tensors)

    def fixed_sample(self, n: int) -> Batch:
        return self.tensors if n >= self.n else self.draw(0, HESSIAN_SALT, n)


class DatasetBatches:
    """A map-style `Dataset` (or a `DataLoader`'s dataset) indexed by the trainer's sampler (on the host, where
    the rows are read), collated with `default_collate` and moved to `device`; the user's loader and its shuffling
    are never touched."""

    def __init__(self, dataset: Dataset, batch_size: int | None, seed: int = 0, device: Device = None) -> None:
        self.dataset, self.n, self.seed = dataset, len(dataset), int(seed)  # type: ignore[arg-type]
        if self.n == 0:
            raise ConfigError("batches: the dataset is empty")
        self.batch_size = batch_size or self.n
        self.device = device
        self._seed = _seed(seed, "cpu")

    def _rows(self, rows: Sequence[int]) -> Batch:
        return to_device(tuple(default_collate([self.dataset[i] for i in rows])), self.device)

    def draw(self, step: int, salt: int, batch: int | None = None) -> Batch:
        return self._rows(_indices(self._seed, step, salt, batch or self.batch_size, self.n).tolist())

    def fixed_sample(self, n: int) -> Batch:
        return self._rows(range(self.n)) if n >= self.n else self.draw(0, HESSIAN_SALT, n)


class CallableBatches:
    """A user function `fn(step, salt) -> batch`; it must not use global random state (the monitor restores
    it anyway) and should return independent batches for different salts. Its batches are moved to `device`."""

    def __init__(self, fn: Callable[[int, int], Batch], batch_size: int | None = None, device: Device = None) -> None:
        self.fn, self.batch_size, self.device = fn, batch_size, device

    def draw(self, step: int, salt: int, batch: int | None = None) -> Batch:
        return to_device(tuple(self.fn(step, salt)), self.device)

    def fixed_sample(self, n: int) -> Batch:
        return to_device(tuple(self.fn(0, HESSIAN_SALT)), self.device)


class OnDevice:
    """A user's own `BatchSource` whose batches are moved to `device`."""

    def __init__(self, source: BatchSource, device: Device) -> None:
        self.source, self.device = source, device
        self.batch_size = getattr(source, "batch_size", None)

    def draw(self, step: int, salt: int, batch: int | None = None) -> Batch:
        return to_device(self.source.draw(step, salt, batch), self.device)

    def fixed_sample(self, n: int) -> Batch:
        return to_device(self.source.fixed_sample(n), self.device)


def make_source(batches: Any, batch_size: int | None = None, seed: int = 0, device: Device = None) -> BatchSource:
    """A `BatchSource` delivering on `device` (None: where the data is) from what the user has: a tuple of tensors,
    a Dataset, a DataLoader (its dataset and batch size), a callable `(step, salt) -> batch`, or a source already."""
    if hasattr(batches, "draw") and hasattr(batches, "fixed_sample"):
        return batches if device is None else OnDevice(batches, device)
    if isinstance(batches, DataLoader):
        return DatasetBatches(batches.dataset, batch_size or batches.batch_size, seed, device)
    if isinstance(batches, tuple | list) and batches and all(isinstance(t, torch.Tensor) for t in batches):
        return TensorBatches(batches, batch_size, seed, device)
    if isinstance(batches, Dataset) or (hasattr(batches, "__getitem__") and hasattr(batches, "__len__")):
        return DatasetBatches(batches, batch_size, seed, device)
    if callable(batches):
        return CallableBatches(batches, batch_size, device)
    raise ConfigError(f"batches: cannot draw minibatches from a {type(batches).__name__}; pass a tuple of tensors "
                      "(X, y), a Dataset, a DataLoader or a function (step, salt) -> batch")
