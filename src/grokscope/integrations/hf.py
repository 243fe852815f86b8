"""`GrokscopeCallback` for the Hugging Face `Trainer`: `grokscope.Monitor` driven by a training run.

    trainer = Trainer(model, args, train_dataset=ds, callbacks=[GrokscopeCallback("runs/mine")])

The model is called as `model(**batch)` and its loss is the one it returns (`outputs.loss`, as HF models do
when the batch holds labels; or `loss_fn(outputs, batch)`); the monitor's minibatches come from the
training loader's dataset and data collator. Measurements fall on optimiser steps (`state.global_step`);
the Trainer's logs are recorded (`loss` as `train_loss`, `eval_loss` / `eval_accuracy` as the held-out split,
the rest as scalars).

Resuming: `Trainer.train(resume_from_checkpoint=...)` continues the record from the checkpoint's step. At a step
where the Trainer will save a checkpoint, the callback writes the monitor's store in full once that step's logs and
evaluation are in (before the checkpoint is written), and `on_save` keeps the monitor's `state_dict` in the
checkpoint folder (`grokscope_monitor.json`), checked when a run resumes from that folder.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from torch import nn
from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from grokscope.errors import ConfigError
from grokscope.integrations.common import HF_NAMES, KwargsModule, loader_batches, monitor_metrics, output_loss
from grokscope.integrations.setup import start_monitor
from grokscope.monitor import Monitor, WarningEvent
from grokscope.monitor.functional import LossFn
from grokscope.store import read_json, write_json

STATE_FILE = "grokscope_monitor.json"  # in a checkpoint folder: the monitor's state_dict at that checkpoint


class GrokscopeCallback(TrainerCallback):
    """Records grokscope's measurements of the Trainer's model into the store at `out`; the keyword
    `settings` are `MonitorConfig`'s (cadences, sketch, ...).

    Args:
        out: the run directory the monitor writes.
        loss_fn: `loss_fn(outputs, batch)`; None: the loss the model returns (`outputs.loss`).
        batches: the monitor's minibatches (as `Monitor`'s); None: drawn from the training dataset with the
            Trainer's data collator.
        batch_size: size of those minibatches (None: `per_device_train_batch_size`).
        watch: globs of parameter names recorded as a trajectory (None: attention-like matrices).
        seed: seeds the monitor's own draws (None: the Trainer's `args.seed`).
        names: renames of the Trainer's log keys to the monitor's metrics (`{"eval_top1": "test_acc"}`; None
            drops a key), over the defaults (`loss` → `train_loss`, `eval_loss` → `test_loss`, ...).
        on_warning: called with the `WarningEvent` when the early warning fires.
        **settings: any `MonitorConfig` field by name.
    """

    def __init__(self, out: str | Path, *, loss_fn: LossFn | None = None, batches: Any = None,
                 batch_size: int | None = None, watch: list[str] | None = None, seed: int | None = None,
                 names: Mapping[str, str | None] | None = None,
                 on_warning: Callable[[WarningEvent], None] | None = None, **settings: Any) -> None:
        self.out, self.loss_fn, self.batches, self.batch_size = out, loss_fn, batches, batch_size
        self.watch, self.seed, self.on_warning, self.settings = watch, seed, on_warning, settings
        self.names = {**HF_NAMES, **(names or {})}
        self.monitor: Monitor | None = None

    def on_train_begin(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
                       model: nn.Module | None = None, optimizer: Any = None, train_dataloader: Any = None,
                       **kwargs: Any) -> None:
        if model is None:
            raise ConfigError("GrokscopeCallback: the Trainer passed no model")
        seed = args.seed if self.seed is None else self.seed
        batches = self.batches
        if batches is None:
            device = next(model.parameters()).device
            batches = loader_batches(train_dataloader, self.batch_size or args.per_device_train_batch_size, seed,
                                     device, as_kwargs=True)
        self.monitor = start_monitor(
            model, self.loss_fn or output_loss, batches, self.out, optimizer=optimizer, seed=seed,
            start_step=state.global_step, steps=max(state.max_steps, 0), watch=self.watch,
            on_warning=self.on_warning, settings=self.settings, measured=KwargsModule(model))
        saved = self._checkpoint(args, state) / STATE_FILE
        if self.monitor is not None and state.global_step > 0 and saved.is_file():
            self.monitor.load_state_dict(read_json(saved))  # the checkpoint's record, at the checkpoint's step

    @staticmethod
    def _checkpoint(args: TrainingArguments, state: TrainerState) -> Path:
        """The folder the Trainer saves the checkpoint of this step in (and resumes it from)."""
        return Path(args.output_dir) / f"checkpoint-{state.global_step}"

    def _keep_up(self, saving: bool) -> None:
        """When a checkpoint may follow, write the store in full now: the checkpoint never gets ahead of the record."""
        mon = self.monitor
        if saving and mon is not None and not mon.closed:
            mon.state_dict()

    def on_step_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
                    **kwargs: Any) -> None:
        mon = self.monitor
        if mon is not None and state.global_step > (mon.last_step or 0):
            mon.step(state.global_step)
        self._keep_up(control.should_save)

    def on_epoch_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
                     **kwargs: Any) -> None:
        self._keep_up(control.should_save)

    def on_evaluate(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
                    **kwargs: Any) -> None:
        self._keep_up(control.should_save or args.save_strategy == "best")  # "best" decides after evaluating

    def on_save(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any) -> None:
        folder = self._checkpoint(args, state)
        if self.monitor is not None and folder.is_dir():
            write_json(folder / STATE_FILE, self.monitor.state_dict())

    def on_log(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
               logs: dict[str, Any] | None = None, **kwargs: Any) -> None:
        mon = self.monitor
        if mon is None or mon.closed or not logs:
            return
        metrics = monitor_metrics(logs, self.names)
        if metrics:
            mon.log_metrics(state.global_step, metrics)
        self._keep_up(control.should_save)

    def on_train_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
                     **kwargs: Any) -> None:
        if self.monitor is not None:
            self.monitor.close()
