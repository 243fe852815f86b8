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

The monitor's signals (`grokscope/defect`, `grokscope/weight_norm`, `grokscope/warning_score`, the warning and its
message, ...: `monitor/sinks.py`) go through the Trainer's own logging, so every `report_to` integration
(TensorBoard, W&B, MLflow, ...) records them at their step: as soon as the monitor has new ones, the callback hands
them to the Trainer's callbacks as one more log event (`on_log`), apart from the Trainer's own logs, whose steps and
values (`trainer.state.log_history`) stay as they were.
"""

from __future__ import annotations

import inspect
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from torch import nn
from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments
from transformers.trainer_callback import CallbackHandler

from grokscope.errors import ConfigError
from grokscope.integrations.adapters import HF_NAMES, KwargsModule, loader_batches, monitor_metrics, output_loss
from grokscope.integrations.setup import start_monitor
from grokscope.monitor import Monitor, WarningEvent
from grokscope.monitor.functional import LossFn
from grokscope.monitor.sinks import PREFIX, Signals
from grokscope.store import read_json, write_json

STATE_FILE = "grokscope_monitor.json"  # in a checkpoint folder: the monitor's state_dict at that checkpoint


def calling_handler(callback: TrainerCallback) -> CallbackHandler | None:
    """The Trainer's CallbackHandler that is calling `callback` now, found on the call stack (the Trainer hands its
    callbacks no reference to it), or None."""
    frame = inspect.currentframe()
    for _ in range(6):
        frame = frame.f_back if frame is not None else None
        owner = frame.f_locals.get("self") if frame is not None else None
        if isinstance(owner, CallbackHandler) and any(c is callback for c in owner.callbacks):
            return owner
    return None


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
        log_signals: send the monitor's signals and its warning through the Trainer's logging (`report_to`).
        **settings: any `MonitorConfig` field by name.
    """

    def __init__(self, out: str | Path, *, loss_fn: LossFn | None = None, batches: Any = None,
                 batch_size: int | None = None, watch: list[str] | None = None, seed: int | None = None,
                 names: Mapping[str, str | None] | None = None,
                 on_warning: Callable[[WarningEvent], None] | None = None, log_signals: bool = True,
                 **settings: Any) -> None:
        self.out, self.loss_fn, self.batches, self.batch_size = out, loss_fn, batches, batch_size
        self.watch, self.seed, self.on_warning, self.settings = watch, seed, on_warning, settings
        self.names = {**HF_NAMES, **(names or {})}
        self.monitor: Monitor | None = None
        self.log_signals = log_signals
        self.handler: CallbackHandler | None = None  # the Trainer's callbacks, which the signals are logged through
        self.pending: dict[str, float | str] = {}  # signals not logged yet
        self._sending = False

    def _signals(self) -> Signals:
        def text(tag: str, message: str, step: int) -> None:
            self.pending[tag] = message

        return Signals(lambda metrics, step: self.pending.update(metrics), text)

    def _send(self, args: TrainingArguments, state: TrainerState, control: TrainerControl) -> None:
        """The pending signals as one log event of the Trainer's callbacks, at the Trainer's step (the monitor
        measures at that step)."""
        if not self.pending or self.handler is None or self._sending:
            return
        logs, self.pending = dict(self.pending), {}
        flags = dict(vars(control))  # the handler's on_log clears should_log: the Trainer's own log must still come
        self._sending = True
        try:
            self.handler.on_log(args, state, control, logs)
        finally:
            self._sending = False
            vars(control).update(flags)

    def on_init_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
                    **kwargs: Any) -> None:
        if self.log_signals:
            self.handler = calling_handler(self)

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
        if self.log_signals and self.handler is None:  # added after the Trainer was built (`add_callback`)
            self.handler = calling_handler(self)
            if self.handler is None:
                print("grokscope: the monitor's signals go only to the callbacks after GrokscopeCallback (the "
                      "Trainer's callbacks were not found)", file=sys.stderr, flush=True)
        self.monitor = start_monitor(
            model, self.loss_fn or output_loss, batches, self.out, optimizer=optimizer, seed=seed,
            start_step=state.global_step, steps=max(state.max_steps, 0), watch=self.watch,
            on_warning=self.on_warning, settings=self.settings, measured=KwargsModule(model),
            log=self._signals() if self.log_signals else None)
        self._send(args, state, control)
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
        self._send(args, state, control)
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
        if mon is None or mon.closed or not logs or self._sending:  # not the signals' own event
            return
        metrics = monitor_metrics({k: v for k, v in logs.items() if not k.startswith(PREFIX)}, self.names)
        if metrics:
            mon.log_metrics(state.global_step, metrics)
        if self.handler is None:  # the callbacks after this one still see them, in the Trainer's logs
            logs.update(self.pending)
            self.pending.clear()
        self._send(args, state, control)
        self._keep_up(control.should_save)

    def on_train_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
                     **kwargs: Any) -> None:
        if self.monitor is not None:
            self.monitor.close()
