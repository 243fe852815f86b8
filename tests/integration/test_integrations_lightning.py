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

from store_checks import assert_cli_reads  # noqa: E402


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
