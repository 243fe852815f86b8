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


def test_a_purging_writer_opened_within_the_second_of_the_last_is_read_after_it(tmp_path):
    """A resumed writer's purge hides the earlier writer's later events even when the two open within one second
    and the per-process counter in their file names crosses a digit ("10" sorts before "9")."""
    from pathlib import Path

    from torch.utils.tensorboard import SummaryWriter

    from grokscope.monitor.tensorboard import open_writer

    from store_checks import tensorboard_scalars

    def uids(logdir: Path) -> list[int]:  # the counters ending the names of the event files in logdir
        return sorted(int(f.name.split(".")[-1]) for f in logdir.glob("events.out.tfevents.*"))

    for i in range(1000):  # scratch writers until the next one's counter is all nines and the one after gains a digit
        w = SummaryWriter(log_dir=str(tmp_path / "scratch" / str(i)))
        w.add_scalar("x", 0.0, 0)
        w.close()
        (u,) = uids(tmp_path / "scratch" / str(i))
        if len(str(u + 2)) > len(str(u + 1)):
            break
    first = SummaryWriter(log_dir=str(tmp_path / "tb"))
    for step in range(6):
        first.add_scalar("x", 1.0, step)
    first.close()
    again = open_writer(tmp_path / "tb", purge_step=3)
    for step in range(3, 6):
        again.add_scalar("x", 2.0, step)
    again.close()
    assert uids(tmp_path / "tb") == [u + 1, u + 2]  # 9 and 10, 99 and 100, …
    assert tensorboard_scalars(tmp_path / "tb")["x"] == [(0, 1.0), (1, 1.0), (2, 1.0), (3, 2.0), (4, 2.0), (5, 2.0)]
