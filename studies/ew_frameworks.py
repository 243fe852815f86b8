"""Framework code of the early-warning corpus, recorded through grokscope's callbacks as a user would: a GPT-2
trained by the Hugging Face `Trainer` (`grokscope.integrations.hf.GrokscopeCallback`) and a `LightningModule`
trained by a Lightning `Trainer` (`grokscope.integrations.lightning.GrokscopeCallback`). Both evaluate the full
train and test sets every 100 steps and stop once the run has grokked."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from ew_corpus import Group, Run
from ew_data import modular
from ew_models import example, gpt2, setup
from ew_train import EVERY, make_optimizer, run_meta, write_meta
from torch import nn

# The Trainer's evaluation of {"test": ..., "train": ...} under the monitor's names: the held-out split as
# test_loss / test_acc, the full train set as train_loss / train_acc (as every family of the corpus logs them);
# the Trainer's running minibatch `loss` is kept as the scalar `running_loss`.
HF_NAMES = {"eval_test_loss": "test_loss", "eval_test_accuracy": "test_acc", "eval_train_loss": "train_loss",
            "eval_train_accuracy": "train_acc", "loss": "running_loss"}
HF_DECAY_EXCLUDES = "biases and LayerNorm weights (the Trainer's default parameter groups)"


def train_hf(g: Group, r: Run, out: Path, steps: int) -> None:
    """A one-layer GPT-2 on `a b = c` under the HF Trainer (its AdamW, constant lr, grad clip 1) with the HF
    callback; the loss on c alone."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import PrinterCallback, Trainer, TrainerCallback, TrainingArguments

    from grokscope.integrations.hf import GrokscopeCallback

    text = example("hf_trainer_gpt2")
    X, y, Xt, yt = modular(g.task, g.p, r.train_frac, r.seed)
    model = gpt2(g.p, 64, r.seed)
    cb = GrokscopeCallback(out, tasks=(g.task,), names=HF_NAMES, overwrite=True, defect_every=EVERY, warn=False,
                           verbose=False)

    class StopAtGrok(TrainerCallback):
        """Ends training once the monitor has seen the run grok."""

        def on_log(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if cb.monitor is not None and cb.monitor.grok_step()[g.task] is not None:
                control.should_training_stop = True

    with tempfile.TemporaryDirectory(prefix="ew-hf-") as tmp:
        targs = TrainingArguments(
            output_dir=tmp, max_steps=steps, per_device_train_batch_size=g.batch, per_device_eval_batch_size=4096,
            learning_rate=r.lr, weight_decay=r.wd, adam_beta2=g.beta2, optim="adamw_torch",
            lr_scheduler_type="constant", max_grad_norm=1.0, logging_steps=EVERY, eval_strategy="steps",
            eval_steps=EVERY, save_strategy="no", report_to=[], use_cpu=True, seed=r.seed, disable_tqdm=True,
            dataloader_num_workers=0)
        trainer = Trainer(model=model, args=targs, train_dataset=text.as_text(X, y, g.p),
                          eval_dataset={"test": text.as_text(Xt, yt, g.p), "train": text.as_text(X, y, g.p)},
                          compute_metrics=text.accuracy, preprocess_logits_for_metrics=text.answer_logits,
                          callbacks=[cb, StopAtGrok()])
        trainer.remove_callback(PrinterCallback)  # the logs are in the store, not the study's log
        trainer.train()
    write_meta(out, run_meta(g, r, steps, "hf", n_train=len(X), decay_excludes=HF_DECAY_EXCLUDES, grad_clip=1.0))


def _lightning_module(g: Group, r: Run, net: nn.Module) -> Any:
    """A LightningModule around `net`: cross-entropy (`loss_fn`, which the callback finds), the group's optimiser,
    validation on the test set (val_loss / val_acc) and on the full train set (train_loss / train_acc; the
    minibatch loss is logged as batch_loss)."""
    import lightning.pytorch as L

    class Classifier(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.net = net
            self.loss_fn = nn.CrossEntropyLoss()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.net(x)

        def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
            x, y = batch
            loss = self.loss_fn(self(x), y)
            self.log("batch_loss", loss)
            return loss

        def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int,
                            dataloader_idx: int = 0) -> None:
            x, y = batch
            out = self(x)
            acc = (out.argmax(1) == y).float().mean()
            if dataloader_idx == 0:
                self.log_dict({"val_loss": self.loss_fn(out, y), "val_acc": acc}, add_dataloader_idx=False)
            else:
                self.log_dict({"train_loss": self.loss_fn(out, y), "train_acc": acc}, add_dataloader_idx=False)

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return make_optimizer(g, self.parameters(), r)

    return Classifier()


def train_lightning(g: Group, r: Run, out: Path, steps: int) -> None:
    """The group's model (examples/p1_transformer.py's trunk) as a LightningModule under a Lightning Trainer,
    with the Lightning callback."""
    import lightning.pytorch as L
    from torch.utils.data import DataLoader, TensorDataset

    from grokscope.integrations.lightning import GrokscopeCallback

    L.seed_everything(r.seed, verbose=False)
    net, (X, y, Xt, yt) = setup(g.model, g.task, g.p, r.train_frac, r.seed)
    module = _lightning_module(g, r, net)
    cb = GrokscopeCallback(out, tasks=(g.task,), batch_size=g.batch, seed=r.seed, overwrite=True,
                           defect_every=EVERY, warn=False, verbose=False)

    class StopAtGrok(L.Callback):
        """Ends training once the monitor has seen the run grok."""

        def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
            if cb.monitor is not None and cb.monitor.grok_step()[g.task] is not None:
                trainer.should_stop = True

    trainer = L.Trainer(max_steps=steps, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, val_check_interval=EVERY,
                        check_val_every_n_epoch=None, num_sanity_val_steps=0, callbacks=[cb, StopAtGrok()])
    train = DataLoader(TensorDataset(X, y), batch_size=g.batch, shuffle=True,
                       generator=torch.Generator().manual_seed(r.seed))
    trainer.fit(module, train, [DataLoader(TensorDataset(Xt, yt), batch_size=len(Xt)),
                                DataLoader(TensorDataset(X, y), batch_size=len(X))])
    write_meta(out, run_meta(g, r, steps, "lightning", n_train=len(X)))
