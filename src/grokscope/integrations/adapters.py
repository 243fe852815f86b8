"""What both framework callbacks share: minibatches drawn from a framework's loader, a model called on a
dict of keyword inputs, the loss a model returns itself, and metric names mapped to the monitor's."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, default_collate

from grokscope.errors import ConfigError
from grokscope.monitor.batches import HESSIAN_SALT, _indices, to_device


class LoaderBatches:
    """Minibatches of a map-style dataset indexed by grokscope's sampler (as `DatasetBatches`) and collated
    with the framework loader's own `collate_fn`, so they look like the training batches; the loader itself is
    never iterated. `as_kwargs`: each batch is `(dict, dict)` for a model called on keyword inputs."""

    def __init__(self, dataset: Dataset, collate_fn: Callable[[list[Any]], Any] | None, batch_size: int | None,
                 seed: int = 0, device: torch.device | str = "cpu", as_kwargs: bool = False) -> None:
        if not hasattr(dataset, "__getitem__") or not hasattr(dataset, "__len__"):
            raise ConfigError("the training data is not a map-style dataset (an IterableDataset?): pass batches= "
                              "(a tuple of tensors, a Dataset or a function (step, salt) -> batch)")
        self.dataset, self.n, self.seed = dataset, len(dataset), int(seed)  # type: ignore[arg-type]
        if self.n == 0:
            raise ConfigError("batches: the dataset is empty")
        self.collate = collate_fn or default_collate
        self.batch_size = batch_size or self.n
        self.device, self.as_kwargs = torch.device(device), as_kwargs

    def _collate(self, idx: list[int]) -> Any:
        batch = to_device(self.collate([self.dataset[i] for i in idx]), self.device)
        if self.as_kwargs:
            if not isinstance(batch, Mapping):
                raise ConfigError(f"the collated batch is a {type(batch).__name__}, not a dict of model inputs")
            return dict(batch), dict(batch)
        return tuple(batch.values()) if isinstance(batch, Mapping) else tuple(batch)

    def draw(self, step: int, salt: int, batch: int | None = None) -> Any:
        return self._collate(_indices(self.seed, step, salt, batch or self.batch_size, self.n).tolist())

    def fixed_sample(self, n: int) -> Any:
        if n >= self.n:
            return self._collate(list(range(self.n)))
        return self.draw(0, HESSIAN_SALT, n)


def loader_batches(loader: Any, batch_size: int | None, seed: int, device: torch.device | str,
                   as_kwargs: bool = False) -> LoaderBatches:
    """A `LoaderBatches` over a framework's training `DataLoader` (its dataset, collate_fn and batch size)."""
    if not isinstance(loader, DataLoader):
        raise ConfigError(f"cannot find a dataset in the training loader ({type(loader).__name__}): pass batches=")
    return LoaderBatches(loader.dataset, loader.collate_fn, batch_size or loader.batch_size, seed, device, as_kwargs)


class KwargsModule(nn.Module):
    """`model(**batch)` as a module whose parameter names are the model's own: it registers the model's
    children (shared, not copied), so `functional_call` on it substitutes the model's parameters."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        if dict(model.named_parameters(recurse=False)) or dict(model.named_buffers(recurse=False)):
            raise ConfigError(f"{type(model).__name__} holds parameters at its top level: pass model= and loss_fn= "
                              "to the plain grokscope.Monitor")
        for name, child in model.named_children():
            self.add_module(name, child)
        object.__setattr__(self, "inner", model)  # not registered: no "inner." prefix in the names

    def forward(self, batch: Mapping[str, Any]) -> Any:
        """The model on keyword inputs, in eval mode while this wrapper is (the monitor's `measuring`)."""
        model, was = self.inner, self.inner.training
        if not self.training:
            model.training = False
        try:
            return model(**batch)
        finally:
            model.training = was


def output_loss(outputs: Any, batch: Any) -> torch.Tensor:
    """The loss a model returns itself (`outputs.loss`, `outputs["loss"]` or `outputs[0]`), as HF models do
    when the batch holds labels."""
    loss = getattr(outputs, "loss", None)
    if loss is None and isinstance(outputs, Mapping):
        loss = outputs.get("loss")
    if loss is None and isinstance(outputs, tuple | list) and outputs:
        loss = outputs[0]
    if not isinstance(loss, torch.Tensor) or loss.dim() != 0:
        raise ConfigError("the model returned no scalar loss: put labels in the batch or pass loss_fn=")
    return loss


HF_NAMES = {"loss": "train_loss", "train_loss": None, "eval_loss": "test_loss", "eval_accuracy": "test_acc",
            "eval_acc": "test_acc"}


def monitor_metrics(logs: Mapping[str, Any], names: Mapping[str, str | None] | None = None) -> dict[str, float]:
    """Numeric scalars of a framework's logs under the monitor's names (`names` renames; None drops a key)."""
    out: dict[str, float] = {}
    for key, value in logs.items():
        if isinstance(value, torch.Tensor):
            if value.numel() != 1:
                continue
            value = value.item()
        if not isinstance(value, int | float) or isinstance(value, bool):
            continue
        key = names.get(key, key) if names else key
        if key is not None:
            out[key] = float(value)
    return out
