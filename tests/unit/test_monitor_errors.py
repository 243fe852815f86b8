"""The monitor's answers to a new user's mistakes and to a run that blows up: every mistake is one line naming the
argument, and a run that turns NaN is flagged `diverged` once (summary, report, stderr, `on_divergence`) with what
was recorded before it intact."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from grokscope.cli import main as cli
from grokscope.errors import ConfigError, StoreError
from grokscope.geometry.summary import geometry_summary
from grokscope.monitor import Monitor
from grokscope.report.gather import load_run, runs_overview
from grokscope.store import RunDir

N, D_IN = 48, 6


def _data(n: int = N):
    g = torch.Generator().manual_seed(0)
    X = torch.randn(n, D_IN, generator=g)
    return X, (X[:, 0] + X[:, 1] > 0).long()


def _model() -> nn.Sequential:
    torch.manual_seed(3)
    return nn.Sequential(nn.Linear(D_IN, 8), nn.ReLU(), nn.Linear(8, 2))


def _monitor(out: Path, **kw) -> Monitor:
    X, y = _data()
    args = {"model": _model(), "loss_fn": F.cross_entropy, "batches": (X, y), "batch_size": 16, "defect_every": 0,
            "warn": False, **kw}
    return Monitor(out=out, **args)


def _partial_optimizer(out: Path) -> Monitor:
    model = _model()
    return _monitor(out, model=model, optimizer=torch.optim.SGD(model[0].parameters(), lr=0.1))


def _frozen(out: Path) -> Monitor:
    model = _model().requires_grad_(False)
    return _monitor(out, model=model)


def _step_back(out: Path) -> None:
    mon = _monitor(out)
    mon.step(3)
    mon.step(3)


def _after_close(out: Path) -> None:
    mon = _monitor(out)
    mon.close()
    mon.step(1)


def _out_is_file(out: Path) -> Monitor:
    out.write_text("mine")
    return _monitor(out)


X, Y = _data()
# (what the user did, the call, the exception type, a pattern naming the argument, whether it fails at construction)
MISTAKES = [
    ("optimizer of another model", lambda o: _monitor(o, optimizer=torch.optim.AdamW(_model().parameters())),
     ConfigError, r"^optimizer covers 0 of the model's 4 trainable tensors", True),
    ("optimizer over some parameters", _partial_optimizer, ConfigError,
     r"^optimizer covers 2 of the model's 4 trainable tensors \(not '2.weight', '2.bias'\)", True),
    ("loss per example", lambda o: _monitor(o, loss_fn=lambda out, t: F.cross_entropy(out, t, reduction="none")),
     ConfigError, r"^loss_fn returned a tensor of shape \[16\], not a scalar", True),
    ("batches the model cannot take", lambda o: _monitor(o, batches=(torch.randn(N, 5), Y)), ConfigError,
     r"^batches: the model cannot take the monitor's minibatches \(inputs \(\[16, 5\] float32\), target \[16\] "
     r"int64\): RuntimeError: mat1 and mat2", True),
    ("batches without a target", lambda o: _monitor(o, batches=(X,)), ConfigError,
     r"^batches: each batch must be \(inputs\.\.\., target\), got 1 element", True),
    ("a metric as a string", lambda o: _monitor(o).step(1, {"test_acc": 0.5, "train_loss": "high"}), ConfigError,
     r"^metrics\['train_loss'\] = 'high' is not a number", False),
    ("a metric as a vector", lambda o: _monitor(o).step(1, {"train_loss": torch.ones(3)}), ConfigError,
     r"^metrics\['train_loss'\] is an array of shape \[3\]", False),
    ("X and y of other lengths", lambda o: _monitor(o, batches=(X, Y[:5])), ConfigError,
     r"^batches: tensors must share a non-zero first dimension, got \[5, 48\]", True),
    ("empty batches", lambda o: _monitor(o, batches=(X[:0], Y[:0])), ConfigError,
     r"^batches: tensors must share a non-zero first dimension, got \[0\]", True),
    ("out is a file", _out_is_file, StoreError, r"^out=.* exists and is not a folder", False),
    ("negative defect_every", lambda o: _monitor(o, defect_every=-1), ConfigError, r"^monitor defect_every=-1", True),
    ("a watch pattern that matches nothing", lambda o: _monitor(o, watch=["attn*"]), ConfigError,
     r"^watch=\['attn\*'\] matches no parameter", True),
    ("a model without trainable parameters", _frozen, ConfigError, r"^model has no trainable", True),
    ("steps going backwards", _step_back, ConfigError, r"^Monitor\.step\(3\): steps must increase", False),
    ("step after close", _after_close, ConfigError, r"^Monitor\.step called after close\(\)", False),
]


@pytest.mark.parametrize(("what", "call", "error", "names", "at_construction"), MISTAKES, ids=[m[0] for m in MISTAKES])
def test_each_mistake_is_one_line_naming_the_argument(tmp_path, what, call, error, names, at_construction):
    out = tmp_path / "run"
    with pytest.raises(error, match=names) as info:
        call(out)
    assert "\n" not in str(info.value), what
    if at_construction:
        assert not out.exists(), f"{what}: something was written before the error"


def test_a_bad_metric_records_none_of_its_step(tmp_path):
    mon = _monitor(tmp_path / "m")
    with pytest.raises(ConfigError, match="^metrics: key 3 is not a string"):
        mon.step(1, {"train_loss": 0.5, 3: 1.0})
    assert mon.rows == [] and mon.scalars == []
    with pytest.raises(ConfigError, match="^metrics: expected a dict"):
        mon.log_metrics(1, [("train_loss", 0.5)])
    mon.step(2, {"train_loss": torch.tensor(0.5), "train_acc": torch.tensor([1.0])})  # one-element tensors are fine
    assert [r["loss"] for r in mon.rows] == [0.5] and [r["acc"] for r in mon.rows] == [1.0]


NAN_AT = 17  # the parameters are set to NaN before this step's forward pass


def _train(out: Path, nan_at: int | None, events: list, steps: int = 30) -> Monitor:
    """AdamW on the tiny model, metrics every 3 steps, watched tensors every 2, snapshots every 4, defects every 5,
    λ_min every 10; with `nan_at`, every parameter becomes NaN before that step (so its loss and all later are NaN)."""
    X, y = _data()
    model = _model()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.1)
    mon = Monitor(model, F.cross_entropy, (X, y), out, optimizer=opt, batch_size=16, seed=1, watch_every=2,
                  snapshot_every=4, n_snapshots=20, defect_every=5, draws=2, hessian_every=10, hessian_iters=4,
                  hessian_samples=16, warn=False, on_divergence=events.append)
    for s in range(1, steps + 1):
        if s == nan_at:
            with torch.no_grad():
                for p in model.parameters():
                    p.fill_(float("nan"))
        out_ = model(X)
        loss = F.cross_entropy(out_, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        acc = float((out_.argmax(-1) == y).float().mean())
        mon.step(s, {"train_loss": loss.item(), "train_acc": acc, "test_acc": acc} if s % 3 == 0 else None)
    mon.close()
    return mon


def test_a_run_that_turns_nan_is_flagged_once_and_keeps_what_came_before(tmp_path, capsys):
    clean = _train(tmp_path / "clean", None, [])
    assert not RunDir(tmp_path / "clean").summary()["diverged"] and clean.divergence.event is None
    capsys.readouterr()
    events: list = []
    _train(tmp_path / "store" / "nan", NAN_AT, events)
    # step 17 logs nothing and measures nothing; step 18 logs train_loss = NaN: the first non-finite value seen
    first = 18
    err = capsys.readouterr().err
    assert err.count("diverged") == 1 and f"diverged at step {first} (train_loss is nan)" in err
    assert len(events) == 1 and (events[0].step, events[0].source) == (first, "train_loss")
    run = RunDir(tmp_path / "store" / "nan")
    s = json.loads(run.file("summary.json").read_text())  # standard JSON: no NaN literal
    assert s["diverged"] is True and s["diverged_step"] == first and s["finished"] and s["steps_trained"] == 30
    assert s["monitor"]["divergence"] == {"step": first, "source": "train_loss", "value": "nan"}

    ref = RunDir(tmp_path / "clean")

    def before(t: pd.DataFrame) -> pd.DataFrame:  # the rows before the divergence, without the run's name
        return t[t.step < first].drop(columns="run", errors="ignore").reset_index(drop=True)

    m, m_ref = run.metrics(), ref.metrics()
    pd.testing.assert_frame_equal(before(m), before(m_ref))
    assert sorted(m.step.unique()) == sorted(m_ref.step.unique())  # the user's numbers are still logged after it
    for table in ("defect", "hessian"):
        t, t_ref = run.table(table), ref.table(table)
        assert t.step.max() < first and list(t.step) == [v for v in t_ref.step if v < first], table
        pd.testing.assert_frame_equal(before(t), before(t_ref))
    steps, attn = run.attention_trajectory()
    steps_ref, attn_ref = ref.attention_trajectory()
    keep = steps_ref < first
    assert torch.equal(steps, steps_ref[keep]) and all(torch.equal(attn[n], attn_ref[n][keep]) for n in attn_ref)
    assert all(torch.isfinite(v).all() for v in attn.values())
    geo = geometry_summary(run)  # PCA still reads the records before the divergence
    assert geo["pc1_mean"] is not None and geo["missing"] == [f"the run diverged at step {first}: the monitor's "
                                                              "records stop there"]

    overview = runs_overview([load_run(run), load_run(ref)], {}, {}, pd.DataFrame())
    flagged = overview.set_index("run")["diverged"]
    assert flagged[run.config().name] == f"at step {first}" and pd.isna(flagged[ref.config().name])
    assert "diverged" not in runs_overview([load_run(ref)], {}, {}, pd.DataFrame())
    assert cli(["runs", "show", str(run.path)]) == 0
    assert f"DIVERGED at step {first}" in capsys.readouterr().out


def test_nan_parameters_are_caught_before_a_measurement_and_measured_no_further(tmp_path, capsys):
    model = _model()
    events: list = []
    mon = _monitor(tmp_path / "p", model=model, watch_every=4, defect_every=4, on_divergence=events.append)
    with torch.no_grad():
        model[2].bias[1] = float("inf")
    for s in range(1, 13):
        mon.step(s)  # no metrics: only the parameter check before the step-4 measurements can see it
    mon.close()
    assert [(e.step, e.source, e.value) for e in events] == [(4, "parameter '2.bias'", float("inf"))]
    assert mon.watch_steps == [0] and [r["step"] for r in mon.defect_rows] == [0]
    assert RunDir(tmp_path / "p").summary()["diverged_step"] == 4
    assert capsys.readouterr().err.count("diverged at step 4") == 1


def test_an_infinite_loss_at_finite_parameters_is_caught_by_the_defect(tmp_path):
    scale = [1.0]
    events: list = []
    mon = _monitor(tmp_path / "g", loss_fn=lambda out, t: F.cross_entropy(out, t) * scale[0], defect_every=2,
                   on_divergence=events.append, verbose=False)
    mon.step(2)
    scale[0] = float("inf")
    mon.step(4)
    mon.step(6)
    assert [(e.step, e.source) for e in events] == [(4, "the gradient (defect)")]
    assert [r["step"] for r in mon.defect_rows] == [0, 2]


def test_the_lightning_callback_forwards_the_divergence(tmp_path):
    L = pytest.importorskip("lightning.pytorch")
    from torch.utils.data import DataLoader, TensorDataset

    from grokscope.integrations.lightning import GrokscopeCallback

    class Blows(L.LightningModule):
        """A tiny classifier whose loss turns NaN from optimiser step 5 on (so its parameters do after it)."""

        def __init__(self) -> None:
            super().__init__()
            self.net = _model()
            self.loss_fn = nn.CrossEntropyLoss()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.net(x)

        def training_step(self, batch, batch_idx):
            x, y = batch
            loss = self.loss_fn(self(x), y)
            return loss * float("nan") if self.global_step >= 5 else loss

        def configure_optimizers(self):
            return torch.optim.AdamW(self.parameters(), lr=1e-2)

    events: list = []
    cb = GrokscopeCallback(tmp_path / "lit", watch_every=1, defect_every=3, draws=1, warn=False, verbose=False,
                           on_divergence=events.append)
    trainer = L.Trainer(max_steps=10, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0, callbacks=[cb])
    X, y = _data()
    trainer.fit(Blows(), DataLoader(TensorDataset(X, y), batch_size=16))
    # step 6's parameters are the first NaN ones (the update after the NaN loss of the sixth batch)
    assert [(e.step, e.source) for e in events] == [(6, "parameter 'net.0.weight'")]
    run = RunDir(tmp_path / "lit")
    assert run.summary()["diverged"] and run.summary()["diverged_step"] == 6
    assert list(run.table("defect").step) == [0, 3] and run.attention_trajectory()[0].tolist() == [0, 1, 2, 3, 4, 5]


def test_a_record_resumed_after_its_divergence_stays_diverged(tmp_path):
    events: list = []
    mon = _monitor(tmp_path / "r", defect_every=2, on_divergence=events.append, verbose=False)
    mon.step(2, metrics={"train_loss": 0.5})
    mon.step(4, metrics={"train_loss": float("nan")})
    mon.step(6)
    state = mon.state_dict()  # the user's checkpoint at step 6, after the divergence at step 4
    again = _monitor(tmp_path / "r", defect_every=2, on_divergence=events.append, verbose=False, start_step=6)
    again.load_state_dict(state)
    assert again.divergence.step == 4 and [e.step for e in events] == [4]
    again.step(8)
    again.close()
    assert [r["step"] for r in again.defect_rows] == [0, 2]  # measured no further after the resume either
    assert RunDir(tmp_path / "r").summary()["diverged_step"] == 4
