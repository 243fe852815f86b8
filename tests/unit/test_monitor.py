"""grokscope.Monitor in a user's own loop: it changes nothing, and it leaves a store the CLI reads."""

from __future__ import annotations

import random
import sys

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import grokscope.monitor.monitor as monitor_module
from grokscope.cli import main as cli
from grokscope.errors import ConfigError, StoreError
from grokscope.monitor import Monitor, parse_metric
from grokscope.store import RunDir


def _data(n: int = 96):
    g = torch.Generator().manual_seed(0)
    X = torch.randn(n, 6, generator=g)
    return X, (X[:, 0] + X[:, 1] > 0).long()


def _model() -> nn.Module:
    torch.manual_seed(3)
    return nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Dropout(0.2), nn.BatchNorm1d(16), nn.Linear(16, 2))


def _loop(steps: int, monitor_dir=None, **settings):
    """A plain loop whose data order, dropout and extra draws use torch's, numpy's and Python's global RNGs."""
    torch.manual_seed(11)
    np.random.seed(5)
    random.seed(7)
    X, y = _data()
    model = _model()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.1)
    loader = DataLoader(TensorDataset(X, y), batch_size=16, shuffle=True)
    mon = None
    if monitor_dir is not None:
        mon = Monitor(model, F.cross_entropy, loader, out=monitor_dir, optimizer=opt, seed=1, **settings)
    losses, step = [], 0
    while step < steps:
        for xb, yb in loader:
            step += 1
            xb = xb + 0.01 * float(np.random.randn()) + 0.01 * random.random()
            loss = F.cross_entropy(model(xb), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
            if mon is not None:
                mon.step(step, {"train_loss": loss.item(), "test_acc": 0.5} if step % 4 == 0 else None)
            if step == steps:
                break
    if mon is not None:
        mon.close()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    opt_state = [{k: v.clone() for k, v in s.items() if isinstance(v, torch.Tensor)} for s in opt.state.values()]
    rng = (torch.get_rng_state(), np.random.get_state()[1].copy(), random.getstate())
    return losses, state, opt_state, rng, mon


@pytest.mark.parametrize("eval_mode", [True, False])  # False: dropout and batch-norm run in train mode
def test_monitored_run_equals_unmonitored_bit_for_bit(tmp_path, eval_mode):
    plain = _loop(24)
    seen = _loop(24, tmp_path / "mon", defect_every=3, draws=2, watch_every=2, snapshot_every=4, n_snapshots=3,
                 hessian_every=8, hessian_iters=5, hessian_samples=32, flush_every=10, eval_mode=eval_mode)
    assert plain[0] == seen[0]  # every loss, bit for bit
    for k in plain[1]:
        assert torch.equal(plain[1][k], seen[1][k]), k  # parameters and batch-norm buffers
    for a, b in zip(plain[2], seen[2], strict=True):
        assert all(torch.equal(a[k], b[k]) for k in a)  # optimiser state
    assert torch.equal(plain[3][0], seen[3][0]) and np.array_equal(plain[3][1], seen[3][1])
    assert plain[3][2] == seen[3][2]
    mon = seen[4]
    assert len(mon.defect_rows) == 9 and len(mon.hessian_rows) == 4  # it did measure: steps 0, 3, ..., 24
    assert mon.snap_steps == [0, 16] and len(mon.watch_steps) == 13


def test_store_is_read_by_runs_analyze_and_report(tmp_path, capsys):
    _loop(40, tmp_path / "store" / "mine", defect_every=5, watch_every=5, hessian_every=20, hessian_iters=5)
    run = RunDir(tmp_path / "store" / "mine")
    assert run.config().model.kind == "external" and run.config().name == "mine"
    m = run.metrics()
    assert set(m.columns) >= {"run", "step", "task", "split", "loss", "acc", "weight_norm"}
    assert sorted(m.step.unique()) == list(range(4, 41, 4))
    d = run.table("defect")
    assert list(d.step) == list(range(0, 41, 5)) and (d.defect > 0).all()
    steps, attn = run.attention_trajectory()
    assert steps.tolist() == list(range(0, 41, 5)) and set(attn) == {"0.weight", "4.weight"}
    assert run.table("hessian").lambda_max.gt(0).all()
    assert cli(["runs", "list", str(tmp_path / "store"), "--json"]) == 0
    assert cli(["runs", "show", str(run.path)]) == 0
    assert cli(["analyze", str(run.path), "--json"]) == 0
    out = capsys.readouterr().out
    assert '"source": "inline (Monitor)"' in out and '"pc1_mean"' in out
    assert cli(["report", str(tmp_path / "store"), "--compute"]) == 0
    assert (tmp_path / "store" / "report" / "index.html").exists()
    assert cli(["run", "--out", str(tmp_path / "x"), "--steps", "0"]) == 2
    s = run.summary()
    assert s["finished"] and s["steps_trained"] == 40 and s["monitor"]["seconds"] > 0


def test_grok_rule_and_metric_names(tmp_path):
    X, y = _data()
    mon = Monitor(_model(), F.cross_entropy, (X, y), out=tmp_path / "g", batch_size=8, defect_every=0, warn=False)
    accs = [0.5, 0.99, 0.99, 0.95, 0.98, 0.99, 0.99]
    for i, a in enumerate(accs, 1):
        mon.step(10 * i, {"val_acc": a, "train/train_acc": 1.0, "lr": 0.1})
    mon.close()
    assert mon.grok_step() == {"task": 70, "train": None}  # 3 consecutive evals >= 0.98 after the dip
    assert mon.grok_step("grok90") == {"task": 20, "train": None}
    assert parse_metric("mul/test_loss", "t") == ("mul", "test", "loss") and parse_metric("lr", "t") is None
    sc = RunDir(tmp_path / "g").table("scalars")
    assert list(sc.name.unique()) == ["lr"] and len(sc) == 7


def test_watched_records_stay_bounded(tmp_path):
    X, y = _data()
    mon = Monitor(_model(), F.cross_entropy, (X, y), out=tmp_path / "b", watch=["4.*"], watch_every=1,
                  max_records=8, defect_every=0, n_snapshots=0, warn=False)
    for s in range(1, 41):
        mon.step(s)
    assert len(mon.watch_steps) <= 8 and mon.watch_steps[0] == 0 and list(mon.watch_records) == ["4.weight", "4.bias"]
    assert all(b - a == mon.watch_steps[1] for a, b in zip(mon.watch_steps, mon.watch_steps[1:]))


def test_bad_input_is_one_clear_error(tmp_path):
    X, y = _data()
    with pytest.raises(ConfigError, match="watch=.*matches no parameter"):
        Monitor(_model(), F.cross_entropy, (X, y), out=tmp_path / "a", watch=["nope*"])
    with pytest.raises(ConfigError, match="defect_every=-1"):
        Monitor(_model(), F.cross_entropy, (X, y), out=tmp_path / "a", defect_every=-1)
    with pytest.raises(ConfigError, match="unexpected keyword"):
        Monitor(_model(), F.cross_entropy, (X, y), out=tmp_path / "a", defect_evry=1)
    with pytest.raises(ConfigError, match="first dimension"):
        Monitor(_model(), F.cross_entropy, (X, y[:5]), out=tmp_path / "a")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "x.txt").write_text("mine")
    with pytest.raises(StoreError, match="not a grokscope run"):
        Monitor(_model(), F.cross_entropy, (X, y), out=tmp_path / "other")
    mon = Monitor(_model(), F.cross_entropy, (X, y), out=tmp_path / "ok", defect_every=0)
    mon.step(5)
    with pytest.raises(ConfigError, match="steps must increase"):
        mon.step(5)
    mon.close()
    with pytest.raises(StoreError, match="already holds a run"):
        Monitor(_model(), F.cross_entropy, (X, y), out=tmp_path / "ok")
    assert isinstance(RunDir(tmp_path / "ok").metrics(), pd.DataFrame)


def test_params_dict_with_functional_forward_equals_the_module(tmp_path):
    X, y = _data()
    net = nn.Sequential(nn.Linear(6, 16, bias=False), nn.ReLU(), nn.Linear(16, 2, bias=False))
    params = {"W1": net[0].weight.detach().clone(), "W2": net[2].weight.detach().clone()}

    def forward(p, x):
        return torch.relu(x @ p["W1"].T) @ p["W2"].T

    a = Monitor(net, F.cross_entropy, (X, y), out=tmp_path / "a", batch_size=16, defect_every=0, warn=False)
    b = Monitor(params, F.cross_entropy, (X, y), out=tmp_path / "b", batch_size=16, forward=forward,
                defect_every=0, warn=False)
    torch.testing.assert_close(a.defects_at(7), b.defects_at(7), rtol=0, atol=0)
    assert b.target.names == ["W1", "W2"]
    with pytest.raises(ConfigError, match="needs forward="):
        Monitor(params, F.cross_entropy, (X, y), out=tmp_path / "c")


def test_missing_tensorboard_extra_is_one_line_naming_it(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # as if the extra were not installed
    X, y = _data()
    with pytest.raises(ConfigError, match=r'pip install "grokscope\[tensorboard\]"'):
        Monitor(_model(), F.cross_entropy, (X, y), out=tmp_path / "tb", tensorboard=True)
    assert not (tmp_path / "tb").exists()  # nothing written
    assert cli(["runs", "tensorboard", str(tmp_path)]) == 2
    assert 'grokscope[tensorboard]' in capsys.readouterr().err


def test_rng_saved_only_around_work_and_close_after_a_write_rewrites_only_the_summary(tmp_path, monkeypatch):
    X, y = _data()
    mon = Monitor(_model(), F.cross_entropy, (X, y), out=tmp_path / "w", batch_size=8, watch_every=5,
                  defect_every=5, n_snapshots=0, flush_every=10, warn=False)
    calls = []
    real = monitor_module.preserved_rng
    monkeypatch.setattr(monitor_module, "preserved_rng", lambda: (calls.append(1), real())[1])
    for s in range(1, 11):
        mon.step(s, {"test_acc": 0.5})
    assert len(calls) == 2  # steps 5 and 10 measure (and 10 writes); the metrics-only steps do not touch RNG
    run = RunDir(tmp_path / "w")
    stamp = {f: run.file(f).stat().st_mtime_ns for f in ("metrics.parquet", "defect.parquet", "config.json")}
    assert not run.summary()["finished"]
    mon.close()
    assert run.summary()["finished"] and run.summary()["steps_trained"] == 10
    assert stamp == {f: run.file(f).stat().st_mtime_ns for f in stamp}  # nothing new: not rewritten
    mon2 = Monitor(_model(), F.cross_entropy, (X, y), out=tmp_path / "v", batch_size=8, defect_every=5,
                   n_snapshots=0, flush_every=10, warn=False)
    for s in range(1, 13):
        mon2.step(s, {"test_acc": 0.5})
    mon2.close()  # steps 11 and 12 came after the last write: they are written
    assert RunDir(tmp_path / "v").metrics().step.max() == 12 and RunDir(tmp_path / "v").config().steps == 12
