"""The monitor's signals in the user's own logger, read back from that logger's own files: a plain loop's `log=`
(W&B offline, an MLflow file store), the Lightning callback through the Trainer's loggers (CSV, TensorBoard, W&B,
MLflow), the HF callback through `report_to` (TensorBoard, W&B, MLflow). Each carries `grokscope/defect`,
`grokscope/weight_norm`, `grokscope/warning_score` at the steps and values of the store, and the warning at its
step; and a run with a logger attached still ends bit for bit where the unmonitored run does."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from grokscope.monitor import DetectorConfig, Monitor, MultiSignalDetector
from grokscope.store import RunDir

from conftest import extra_module
from logger_files import csv_metrics, mlflow_run, same, tensorboard_events, wandb_run, wandb_series

# fires once the training set is memorised (train acc >= 0.6): the gate alone, whatever the model learns next
GATE = DetectorConfig(bias=1.0, norm_weight=0.0, acc_gate=0.6, threshold=0.5, name="gate")
MEASURE = dict(defect_every=4, draws=1, watch_every=4, n_snapshots=0, verbose=False)


def _need(module: str):
    """A module of the `loggers` extra (`conftest.extra_module`: fails under CI, skips elsewhere)."""
    return extra_module(module, "loggers")


@pytest.fixture(autouse=True)
def _offline(tmp_path, monkeypatch):
    """W&B offline and silent, writing under the test's folder; MLflow's file store allowed."""
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.setenv("WANDB_CONSOLE", "off")
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def _store(run: RunDir) -> dict[str, dict[int, float]]:
    """The signals as the store holds them: defect per measurement, the weight norm per logged step, the warning."""
    d, m = run.table("defect"), run.metrics()
    out = {"grokscope/defect": dict(zip(d.step.astype(int), d.defect.astype(float))),
           "grokscope/weight_norm": {int(s): float(g.weight_norm.iloc[0]) for s, g in m.groupby("step")}}
    if run.has_table("warnings"):
        w = run.table("warnings")
        out["grokscope/warning"] = {int(s): 1.0 for s in w.step}
        out["grokscope/window_hi"] = dict(zip(w.step.astype(int), w.window_hi.astype(float)))
    return out


def _assert_signals(got: dict[str, dict[int, float]], run: RunDir, rel: float = 0.0) -> None:
    want = _store(run)
    assert "grokscope/warning" in want, "the detector did not fire: nothing to check the event on"
    for name, series in want.items():
        assert same(got.get(name, {}), series, rel), (name, got.get(name), series)
    scores = got["grokscope/warning_score"]
    assert scores.keys() == want["grokscope/defect"].keys()
    (at,) = want["grokscope/warning"]
    assert scores[at] >= GATE.threshold and all(v < GATE.threshold for s, v in scores.items() if s < at)


# ---- a plain loop -----------------------------------------------------------------------------------------------
def _plain(out, log=None, monitored: bool = True) -> dict[str, torch.Tensor]:
    torch.manual_seed(3)
    g = torch.Generator().manual_seed(0)
    X = torch.randn(96, 6, generator=g)
    y = (X[:, 0] + X[:, 1] > 0).long()
    model = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 2))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.1)
    mon = Monitor(model, F.cross_entropy, (X[:64], y[:64]), out=out, optimizer=opt, batch_size=16, seed=1,
                  detector=MultiSignalDetector(GATE), log=log, **MEASURE) if monitored else None
    for step in range(1, 33):
        idx = torch.randint(0, 64, (16,), generator=torch.Generator().manual_seed(step))
        loss = F.cross_entropy(model(X[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        if mon is not None:
            metrics = None
            if step % 2 == 0:
                with torch.no_grad():
                    acc = (model(X).argmax(-1) == y).float()
                metrics = {"train_loss": loss.item(), "train_acc": acc[:64].mean().item(),
                           "test_acc": acc[64:].mean().item()}
            mon.step(step, metrics)
    if mon is not None:
        mon.close()
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_plain_loop_log_into_wandb_offline(tmp_path):
    wandb = _need("wandb")
    run = wandb.init(project="grokscope-test", dir=str(tmp_path))
    theta = _plain(tmp_path / "store" / "plain", log=wandb.log)
    folder = Path(run.dir).parent
    run.finish()
    assert all(torch.equal(a, b) for a, b in zip(theta.values(), _plain(None, monitored=False).values()))
    history, _ = wandb_run(folder)
    names = {k for h in history for k in h if k.startswith("grokscope/")}
    got = {n: wandb_series(history, n) for n in names}
    _assert_signals(got, RunDir(tmp_path / "store" / "plain"))


def test_plain_loop_log_into_an_mlflow_file_store(tmp_path):
    mlflow = _need("mlflow")
    uri = (tmp_path / "mlruns").as_uri()
    mlflow.set_tracking_uri(uri)
    with mlflow.start_run():
        _plain(tmp_path / "store" / "plain", log=mlflow.log_metrics)
    metrics, _ = mlflow_run(uri)
    _assert_signals(metrics, RunDir(tmp_path / "store" / "plain"))


# ---- Lightning -------------------------------------------------------------------------------------------------
L = None


def _lightning():
    global L
    L = _need("lightning.pytorch")
    return L


def _lit_module():
    class Tiny(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.net = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 2))
            self.loss_fn = nn.CrossEntropyLoss()

        def forward(self, x):
            return self.net(x)

        def training_step(self, batch, batch_idx):
            x, y = batch
            out = self(x)
            self.log("train_acc", (out.argmax(-1) == y).float().mean())
            return self.loss_fn(out, y)

        def validation_step(self, batch, batch_idx):
            x, y = batch
            out = self(x)
            self.log("val_loss", F.cross_entropy(out, y))
            self.log("val_acc", (out.argmax(-1) == y).float().mean())

        def configure_optimizers(self):
            return torch.optim.AdamW(self.parameters(), lr=1e-2, weight_decay=0.1)

    return Tiny()


def _lit_fit(loggers, callbacks) -> dict[str, torch.Tensor]:
    from torch.utils.data import DataLoader, TensorDataset

    g = torch.Generator().manual_seed(0)
    X = torch.randn(96, 6, generator=g)
    data = TensorDataset(X, (X[:, 0] + X[:, 1] > 0).long())
    L.seed_everything(11, verbose=False)
    model = _lit_module()
    trainer = L.Trainer(max_steps=24, accelerator="cpu", devices=1, logger=loggers, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, val_check_interval=4,
                        check_val_every_n_epoch=None, num_sanity_val_steps=0, log_every_n_steps=4,
                        callbacks=callbacks)
    trainer.fit(model, DataLoader(data, batch_size=16, shuffle=True), DataLoader(data, batch_size=96))
    return {k: v.clone() for k, v in model.state_dict().items()}


def _callback(out):
    from grokscope.integrations.lightning import GrokscopeCallback

    return GrokscopeCallback(out, detector=MultiSignalDetector(GATE), **MEASURE)


def test_lightning_csv_and_tensorboard_loggers_get_the_signals_and_the_warning(tmp_path):
    _lightning()
    _need("tensorboard")
    from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

    plain = _lit_fit([CSVLogger(tmp_path / "plain"), TensorBoardLogger(tmp_path / "plain")], [])
    csv_logger, tb = CSVLogger(tmp_path / "csv"), TensorBoardLogger(tmp_path / "tb")
    seen = _lit_fit([csv_logger, tb], [_callback(tmp_path / "store" / "lit")])
    for (n, a), (_, b) in zip(plain.items(), seen.items(), strict=True):
        assert torch.equal(a, b), n  # the loggers and the monitor leave the run as it was
    run = RunDir(tmp_path / "store" / "lit")
    _assert_signals(csv_metrics(tmp_path / "csv" / "lightning_logs" / "version_0" / "metrics.csv"), run)
    scalars, texts = tensorboard_events(tb.log_dir)
    _assert_signals(scalars, run, rel=1e-6)  # TensorBoard keeps float32
    (at,) = _store(run)["grokscope/warning"]
    assert "grokscope early warning at step" in texts["grokscope/warning_message"][at]


def test_lightning_wandb_and_mlflow_loggers_get_the_signals_and_the_warning(tmp_path):
    _lightning()
    _need("wandb")
    _need("mlflow")
    from lightning.pytorch.loggers import MLFlowLogger, WandbLogger

    uri = (tmp_path / "mlruns").as_uri()
    wb = WandbLogger(project="grokscope-test", save_dir=str(tmp_path), offline=True)
    mlf = MLFlowLogger(experiment_name="grokscope-test", tracking_uri=uri)
    _lit_fit([wb, mlf], [_callback(tmp_path / "store" / "lit")])
    folder = Path(wb.experiment.dir).parent
    wb.experiment.finish()
    run = RunDir(tmp_path / "store" / "lit")
    history, summary = wandb_run(folder)
    names = {k for h in history for k in h if k.startswith("grokscope/")}
    _assert_signals({n: wandb_series(history, n, "trainer/global_step") for n in names}, run)
    assert "grokscope early warning at step" in summary["grokscope/warning_message"]
    metrics, tags = mlflow_run(uri)
    _assert_signals(metrics, run)
    assert "grokscope early warning at step" in tags["grokscope/warning_message"]


# ---- Hugging Face Trainer ----------------------------------------------------------------------------------------
def _hf_fit(tmp_path, report_to, callbacks):
    transformers = _need("transformers")
    g = torch.Generator().manual_seed(0)
    starts = torch.randint(0, 32, (64, 1), generator=g)
    ids = (starts + torch.arange(12)) % 32
    data = [{"input_ids": x, "labels": x.clone()} for x in ids]
    transformers.set_seed(0)
    model = transformers.GPT2LMHeadModel(transformers.GPT2Config(vocab_size=32, n_positions=16, n_embd=16,
                                                                 n_layer=1, n_head=2))
    args = transformers.TrainingArguments(
        output_dir=str(tmp_path / "hf"), max_steps=12, per_device_train_batch_size=8, learning_rate=3e-3,
        weight_decay=0.1, logging_steps=4, eval_strategy="steps", eval_steps=3, save_strategy="no",
        report_to=report_to, use_cpu=True, seed=0, disable_tqdm=True,
        dataloader_num_workers=0, run_name="grokscope-test")
    trainer = transformers.Trainer(model=model, args=args, train_dataset=data, eval_dataset=data[:16],
                                   callbacks=callbacks)
    trainer.train()
    return {k: v.clone() for k, v in model.state_dict().items()}, trainer.state.log_history


# no train accuracy in a Trainer's logs: this one fires when the held-out loss first falls below its running max
HELD_OUT = DetectorConfig(gate=False, norm_weight=0.0, test_weight=1.0, threshold=1e-6, name="held-out drop")


def test_hf_trainer_report_to_tensorboard_wandb_and_mlflow_gets_the_signals(tmp_path, monkeypatch):
    _need("wandb")
    _need("mlflow")
    _need("tensorboard")
    from grokscope.integrations.hf import GrokscopeCallback

    plain, plain_history = _hf_fit(tmp_path / "plain", [], [])
    uri = (tmp_path / "mlruns").as_uri()
    _need("mlflow").set_tracking_uri(uri)  # where the Trainer's MLflow integration logs
    monkeypatch.setenv("WANDB_PROJECT", "grokscope-test")
    monkeypatch.setenv("TENSORBOARD_LOGGING_DIR", str(tmp_path / "tb"))
    cb = GrokscopeCallback(tmp_path / "store" / "gpt2", detector=MultiSignalDetector(HELD_OUT), **MEASURE)
    seen, history = _hf_fit(tmp_path, ["tensorboard", "wandb", "mlflow"], [cb])
    wandb = _need("wandb")
    folder = Path(wandb.run.dir).parent
    wandb.finish()  # the Trainer leaves its W&B run open: the user's script ends it
    _need("mlflow").end_run()
    for (n, a), (_, b) in zip(plain.items(), seen.items(), strict=True):
        assert torch.equal(a, b), n
    def losses(h):
        return [(x["step"], x["loss"]) for x in h if "loss" in x]

    assert losses(history) == losses(plain_history) and len(losses(history)) == 3  # the Trainer's own logs as were
    run = RunDir(tmp_path / "store" / "gpt2")
    want = _store(run)
    assert "grokscope/warning" in want
    (at,) = want["grokscope/warning"]
    scalars, texts = tensorboard_events(tmp_path / "tb")  # HF's TensorBoard and W&B integrations file them under train/
    for name in ("grokscope/defect", "grokscope/weight_norm", "grokscope/warning"):
        assert same(scalars["train/" + name], want[name], rel=1e-6), (name, scalars.get(name), want[name])
    assert "grokscope early warning at step" in texts["train/grokscope/warning_message"][at]
    wb_history, _ = wandb_run(folder)
    for name in ("grokscope/defect", "grokscope/weight_norm", "grokscope/warning"):
        assert same(wandb_series(wb_history, "train/" + name, "train/global_step"), want[name]), name
    metrics, _ = mlflow_run(uri)
    for name in ("grokscope/defect", "grokscope/weight_norm", "grokscope/warning"):
        assert same(metrics[name], want[name]), (name, metrics.get(name), want[name])
