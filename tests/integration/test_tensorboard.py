"""TensorBoard event files from a store (`grokscope runs tensorboard`) and live from the monitor."""

from __future__ import annotations

import importlib.util

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from grokscope.cli import main as cli
from grokscope.monitor import Monitor

if importlib.util.find_spec("tensorboard") is None:
    pytest.skip('TensorBoard tests need the optional extra: pip install "grokscope[tensorboard]"',
                allow_module_level=True)

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402


def _scalars(logdir) -> dict[str, list[tuple[int, float]]]:
    acc = EventAccumulator(str(logdir))
    acc.Reload()
    return {t: [(e.step, e.value) for e in acc.Scalars(t)] for t in acc.Tags()["scalars"]}


def test_runs_tensorboard_and_live_writer_hold_the_stored_values(tmp_path):
    torch.manual_seed(0)
    X, y = torch.randn(64, 4), torch.randint(0, 2, (64,))
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    mon = Monitor(model, F.cross_entropy, (X, y), out=tmp_path / "run", batch_size=16, defect_every=5,
                  tensorboard=True, warn=False)
    for s in range(1, 11):
        loss = F.cross_entropy(model(X), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        mon.step(s, {"train_loss": loss.item(), "test_acc": 0.5})
    mon.close()
    live = _scalars(tmp_path / "run" / "tensorboard")
    defects = mon.run.table("defect")
    assert [v for _, v in live["geometry/defect"]] == pytest.approx(defects.defect.tolist(), rel=1e-6)
    assert cli(["runs", "tensorboard", str(tmp_path / "run"), "--out", str(tmp_path / "tb")]) == 0
    offline = _scalars(tmp_path / "tb" / "run")
    assert offline["geometry/defect"] == live["geometry/defect"]
    assert [s for s, _ in offline["task/test_acc"]] == list(range(1, 11))
    assert offline["task/train_loss"][-1][1] == pytest.approx(mon.rows[-2]["loss"], rel=1e-6)
