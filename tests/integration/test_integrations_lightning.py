"""The Lightning callback: a real `Trainer` run is unchanged by it, and its store is read by the CLI."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

L = pytest.importorskip("lightning.pytorch")

from grokscope.errors import ConfigError  # noqa: E402
from grokscope.integrations.lightning import GrokscopeCallback  # noqa: E402
from grokscope.store import RunDir  # noqa: E402

from store_checks import assert_cli_reads, assert_same_record  # noqa: E402


class Tiny(L.LightningModule):
    """An MLP with dropout on a separable task; it keeps every training loss."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Dropout(0.2), nn.Linear(16, 2))
        self.loss_fn = nn.CrossEntropyLoss()
        self.losses: list[float] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = self.loss_fn(self(x), y)
        self.losses.append(loss.item())
        self.log("train_loss", loss)
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        out = self(x)
        self.log("val_loss", F.cross_entropy(out, y))
        self.log("val_acc", (out.argmax(-1) == y).float().mean())

    def configure_optimizers(self):
        return torch.optim.AdamW(self.parameters(), lr=1e-2, weight_decay=0.1)


def _data(n: int = 96):
    g = torch.Generator().manual_seed(0)
    X = torch.randn(n, 6, generator=g)
    return TensorDataset(X, (X[:, 0] + X[:, 1] > 0).long())


def _fit(steps: int, callbacks: list) -> Tiny:
    L.seed_everything(11, verbose=False)
    model = Tiny()
    trainer = L.Trainer(max_steps=steps, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, val_check_interval=8,
                        check_val_every_n_epoch=None,
                        num_sanity_val_steps=0, callbacks=callbacks)
    trainer.fit(model, DataLoader(_data(), batch_size=16, shuffle=True), DataLoader(_data(32), batch_size=32))
    return model


def test_run_with_the_callback_equals_one_without_bit_for_bit(tmp_path, capsys):
    plain = _fit(24, [])
    cb = GrokscopeCallback(tmp_path / "store" / "lit", defect_every=4, draws=2, watch_every=2, hessian_every=8,
                           hessian_iters=5, hessian_samples=32, flush_every=10)
    seen = _fit(24, [cb])
    assert plain.losses == seen.losses and len(plain.losses) == 24
    for (n, a), (_, b) in zip(plain.state_dict().items(), seen.state_dict().items(), strict=True):
        assert torch.equal(a, b), n
    run = RunDir(tmp_path / "store" / "lit")
    assert list(run.table("defect").step) == list(range(0, 25, 4))
    assert len(run.table("hessian")) == 4
    steps, attn = run.attention_trajectory()
    assert steps.tolist() == list(range(0, 25, 2)) and set(attn) == {"net.0.weight", "net.3.weight"}
    m = run.metrics()
    assert sorted(m.step.unique()) == [8, 16, 24] and set(m.split) == {"train", "test"}
    assert run.summary()["finished"] and run.summary()["steps_trained"] == 24
    det = run.summary()["monitor"]["detector"]  # val_loss is the held-out loss: the validation detector runs
    assert det["running"] == "multi-val" and det["since_step"] == 12 and "held-out" in det["reason"]
    assert_cli_reads(tmp_path / "store", run, capsys)


def test_a_module_without_a_loss_attribute_asks_for_loss_fn(tmp_path):
    class NoLoss(Tiny):
        def __init__(self) -> None:
            super().__init__()
            del self.loss_fn

    trainer = L.Trainer(max_steps=2, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False,
                        callbacks=[GrokscopeCallback(tmp_path / "x")])
    with pytest.raises(ConfigError, match="loss_fn"):
        trainer.fit(NoLoss(), DataLoader(_data(), batch_size=16))


def test_measurements_fall_on_optimiser_steps_under_gradient_accumulation(tmp_path):
    L.seed_everything(0, verbose=False)
    cb = GrokscopeCallback(tmp_path / "acc", defect_every=2, draws=1, watch_every=3, warn=False)
    trainer = L.Trainer(max_steps=6, accumulate_grad_batches=2, accelerator="cpu", logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        limit_val_batches=0, callbacks=[cb])
    trainer.fit(Tiny(), DataLoader(_data(), batch_size=8, shuffle=True))
    run = RunDir(tmp_path / "acc")
    assert list(run.table("defect").step) == [0, 2, 4, 6] and run.summary()["steps_trained"] == 6
    assert run.attention_trajectory()[0].tolist() == [0, 3, 6]


class Steady(Tiny):
    """Tiny without dropout: Lightning does not carry the global RNG across a resume, so this trains the same
    interrupted or not."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 2))


class Crash(L.Callback):
    """The process dies at step `at`, after the monitor recorded it: nothing more is written (the callback's own
    `on_exception`, which would write the store once more, is left nothing to write with)."""

    def __init__(self, at: int, callback: GrokscopeCallback) -> None:
        self.at, self.callback = at, callback

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step == self.at:
            self.callback.monitor = None
            raise RuntimeError("killed")


def _saving_fit(folder, steps: int, callbacks: list, ckpt_path=None) -> Steady:
    """Fit `Steady` in order (6 steps an epoch), validating and saving a checkpoint at each epoch's end."""
    from lightning.pytorch.callbacks import ModelCheckpoint

    L.seed_everything(11, verbose=False)
    model = Steady()
    saver = ModelCheckpoint(dirpath=folder, filename="{step}", every_n_epochs=1, save_on_train_epoch_end=True,
                            save_top_k=-1)
    trainer = L.Trainer(max_steps=steps, accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
                        enable_model_summary=False, num_sanity_val_steps=0, callbacks=[*callbacks, saver])
    trainer.fit(model, DataLoader(_data(), batch_size=16), DataLoader(_data(32), batch_size=32), ckpt_path=ckpt_path)
    return model


SETTINGS = dict(defect_every=3, draws=2, watch_every=2, hessian_every=6, hessian_iters=5, hessian_samples=32,
                flush_every=4)


def test_fit_resumed_with_ckpt_path_continues_the_record(tmp_path, capsys):
    ref = _saving_fit(tmp_path / "ref-ckpts", 18, [GrokscopeCallback(tmp_path / "ref" / "lit", **SETTINGS)])
    dying = GrokscopeCallback(tmp_path / "got" / "lit", **SETTINGS)
    with pytest.raises(RuntimeError, match="killed"):
        _saving_fit(tmp_path / "ckpts", 18, [dying, Crash(9, dying)])
    got = RunDir(tmp_path / "got" / "lit")
    assert got.attention_trajectory()[0].max() == 8  # the store went on past the checkpoint at step 6 (written at 8)
    kept = torch.load(tmp_path / "ckpts" / "step=6.ckpt", weights_only=True)["callbacks"]
    state = next(v for k, v in kept.items() if k.startswith("GrokscopeCallback"))
    assert state["step"] == 6 and state["out"] == str(got.path)  # the monitor's state_dict, in the checkpoint
    again = _saving_fit(tmp_path / "ckpts", 18, [GrokscopeCallback(got.path, **SETTINGS)],
                        ckpt_path=str(tmp_path / "ckpts" / "step=6.ckpt"))
    for (n, a), (_, b) in zip(ref.state_dict().items(), again.state_dict().items(), strict=True):
        assert torch.equal(a, b), n  # Lightning resumed exactly: the record can be compared bit for bit
    assert_same_record(tmp_path / "ref" / "lit", got.path)
    assert list(got.table("defect").step) == list(range(0, 19, 3))
    assert sorted(got.metrics().step.unique()) == [6, 12, 18]
    capsys.readouterr()
    _saving_fit(tmp_path / "ckpts2", 2, [GrokscopeCallback(got.path, **SETTINGS)])  # a fresh fit on the folder
    err = [line for line in capsys.readouterr().err.splitlines() if "grokscope" in line]
    assert len(err) == 1 and "not monitored" in err[0] and "already holds a run (steps 0–18)" in err[0]
    assert got.summary()["steps_trained"] == 18
