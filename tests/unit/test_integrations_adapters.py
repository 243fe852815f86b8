"""The pieces both callbacks share: minibatches as pure functions of (seed, step, salt), log names, the
keyword-input wrapper."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from grokscope.errors import ConfigError
from grokscope.integrations.adapters import HF_NAMES, KwargsModule, loader_batches, monitor_metrics
from grokscope.monitor.batches import DatasetBatches


def _dataset(n: int = 50) -> TensorDataset:
    X = torch.arange(n * 3, dtype=torch.float32).reshape(n, 3)
    return TensorDataset(X, torch.arange(n))


def test_loader_batches_are_the_samplers_draws_and_never_touch_the_loader():
    loader = DataLoader(_dataset(), batch_size=8, shuffle=True)
    src = loader_batches(loader, None, seed=3, device="cpu")
    ref = DatasetBatches(_dataset(), 8, seed=3)
    for step, salt in [(0, 1), (5, 2), (5, 7)]:
        a, b = src.draw(step, salt), ref.draw(step, salt)
        assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    assert not torch.equal(src.draw(5, 1)[1], src.draw(5, 2)[1])  # salts give different minibatches
    assert len(src.fixed_sample(1000)[0]) == 50


def test_keyword_batches_come_as_a_dict_twice_and_a_tuple_collate_is_refused_for_them():
    data = [{"input_ids": torch.tensor([i, i + 1]), "labels": torch.tensor([i, i + 1])} for i in range(10)]
    src = loader_batches(DataLoader(data, batch_size=4), None, seed=0, device="cpu", as_kwargs=True)
    inputs, target = src.draw(1, 1)
    assert inputs is not target and set(inputs) == {"input_ids", "labels"} and inputs["input_ids"].shape == (4, 2)
    with pytest.raises(ConfigError, match="not a dict"):
        loader_batches(DataLoader(_dataset(), batch_size=4), None, 0, "cpu", as_kwargs=True).draw(0, 1)


def test_log_names_map_to_the_monitors_and_non_numbers_are_dropped():
    logs = {"loss": 1.5, "eval_loss": torch.tensor(2.0), "eval_accuracy": 0.25, "train_loss": 9.0,
            "learning_rate": 1e-3, "flag": True, "text": "x", "vector": torch.ones(3)}
    assert monitor_metrics(logs, HF_NAMES) == {"train_loss": 1.5, "test_loss": 2.0, "test_acc": 0.25,
                                               "learning_rate": 1e-3}


def test_kwargs_module_keeps_the_models_names_and_refuses_top_level_parameters():
    model = nn.Sequential(nn.Linear(2, 3), nn.Linear(3, 1))
    assert [n for n, _ in KwargsModule(model).named_parameters()] == [n for n, _ in model.named_parameters()]

    class Top(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.scale = nn.Parameter(torch.ones(1))

    with pytest.raises(ConfigError, match="top level"):
        KwargsModule(Top())


def test_snapshots_are_off_by_default_only_on_big_models():
    from grokscope.integrations.setup import BIG_MODEL, sized_settings

    small, big = nn.Linear(10, 10), nn.Linear(1000, BIG_MODEL // 1000 + 1)
    assert sized_settings(small, {}) == {} and sized_settings(big, {}) == {"n_snapshots": 0}
    assert sized_settings(big, {"n_snapshots": 5}) == {"n_snapshots": 5}  # asked for: kept
