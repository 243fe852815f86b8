"""`GrokscopeCallback` for PyTorch Lightning: `grokscope.Monitor` driven by a `Trainer`.

    trainer = L.Trainer(max_steps=2000, callbacks=[GrokscopeCallback("runs/mine", defect_every=100)])

The model is the `LightningModule` (its `forward`), the loss `loss_fn(outputs, target)` (default: the
module's `loss_fn` or `criterion` attribute), the monitor's minibatches come from the training loader's dataset
and `collate_fn` as `(inputs..., target)`. Measurements fall on optimiser steps (`trainer.global_step`);
validation metrics (`val_loss`, `val_acc`, and whatever else is logged) are recorded when validation ends.
It is a stateful callback: each checkpoint the Trainer saves writes the monitor's store in full first and keeps its
`state_dict`, so `trainer.fit(..., ckpt_path=...)` continues the record from the checkpoint's step.

The monitor's signals (`grokscope/defect`, `grokscope/weight_norm`, `grokscope/warning_score`, the warning, ...:
`monitor/sinks.py`) go to every logger of the Trainer (`trainer.loggers`: CSV, TensorBoard, W&B, MLflow, any
other) through `log_metrics` at their step; the warning's message too where the logger shows text (TensorBoard's
text, an MLflow tag, the W&B run summary).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightning.pytorch as L

from grokscope.errors import ConfigError
from grokscope.integrations.adapters import loader_batches, monitor_metrics
from grokscope.integrations.setup import start_monitor
from grokscope.monitor import Monitor, WarningEvent
from grokscope.monitor.functional import LossFn
from grokscope.monitor.sinks import Signals

LOSS_ATTRIBUTES = ("loss_fn", "criterion")


def logger_text(logger: Any, tag: str, text: str, step: int) -> None:
    """`text` in a Lightning logger that can show it: TensorBoard's text, an MLflow run tag, the W&B run's summary
    (a CSV logger keeps numbers only)."""
    exp = logger.experiment
    if hasattr(exp, "add_text"):
        exp.add_text(tag, text, step)
    elif hasattr(exp, "set_tag") and getattr(logger, "run_id", None):
        exp.set_tag(logger.run_id, tag, text)
    elif hasattr(exp, "summary"):
        exp.summary[tag] = text


def trainer_signals(trainer: L.Trainer) -> Signals | None:
    """The monitor's signals into every logger of `trainer` (None: it has none)."""
    loggers = list(trainer.loggers)
    if not loggers:
        return None

    def log(metrics: dict[str, float], step: int) -> None:
        for lg in loggers:
            lg.log_metrics(metrics, step=step)

    def text(tag: str, message: str, step: int) -> None:
        for lg in loggers:
            logger_text(lg, tag, message, step)

    return Signals(log, text)


def module_loss(module: L.LightningModule) -> LossFn:
    """The loss a LightningModule keeps as an attribute (`loss_fn` or `criterion`)."""
    for name in LOSS_ATTRIBUTES:
        fn = getattr(module, name, None)
        if callable(fn):
            return fn
    raise ConfigError(f"{type(module).__name__} has no loss_fn or criterion attribute: pass "
                      "GrokscopeCallback(loss_fn=fn(outputs, target))")


class GrokscopeCallback(L.Callback):
    """Records grokscope's measurements of the trained LightningModule into the store at `out`; the
    keyword `settings` are `MonitorConfig`'s (cadences, sketch, ...).

    Args:
        out: the run directory the monitor writes.
        loss_fn: `loss_fn(outputs, target)`; None: the module's `loss_fn` or `criterion` attribute.
        batches: the monitor's minibatches (as `Monitor`'s); None: drawn from the training loader's dataset.
        batch_size: size of those minibatches (None: the training loader's).
        watch: globs of parameter names recorded as a trajectory (None: attention-like matrices).
        seed: seeds the monitor's own draws.
        on_warning: called with the `WarningEvent` when the early warning fires.
        log_signals: send the monitor's signals and its warning to the Trainer's loggers.
        **settings: any `MonitorConfig` field by name.
    """

    def __init__(self, out: str | Path, *, loss_fn: LossFn | None = None, batches: Any = None,
                 batch_size: int | None = None, watch: list[str] | None = None, seed: int = 0,
                 on_warning: Callable[[WarningEvent], None] | None = None, log_signals: bool = True,
                 **settings: Any) -> None:
        self.out, self.loss_fn, self.batches, self.batch_size = out, loss_fn, batches, batch_size
        self.watch, self.seed, self.on_warning, self.settings = watch, seed, on_warning, settings
        self.log_signals = log_signals
        self.monitor: Monitor | None = None
        self.resumed: dict[str, Any] | None = None  # the monitor's state_dict in the checkpoint a fit resumes from

    @property
    def state_key(self) -> str:
        return self._generate_state_key(out=str(self.out))

    def state_dict(self) -> dict[str, Any]:
        """Called as the Trainer saves a checkpoint: the monitor writes its store in full, the checkpoint keeps this."""
        return self.monitor.state_dict() if self.monitor is not None else {}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.resumed = dict(state_dict) or None

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        batches = self.batches
        if batches is None:
            batches = loader_batches(trainer.train_dataloader, self.batch_size, self.seed, pl_module.device)
        self.monitor = start_monitor(
            pl_module, self.loss_fn or module_loss(pl_module), batches, self.out,
            optimizer=trainer.optimizers[0] if len(trainer.optimizers) == 1 else None, seed=self.seed,
            start_step=trainer.global_step, steps=max(trainer.max_steps, 0), watch=self.watch,
            on_warning=self.on_warning, settings=self.settings,
            log=trainer_signals(trainer) if self.log_signals else None)
        if self.monitor is not None and self.resumed is not None:
            self.monitor.load_state_dict(self.resumed)  # the checkpoint's record, at the checkpoint's step

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        mon = self.monitor
        if mon is not None and trainer.global_step > (mon.last_step or 0):  # an optimiser step was taken
            mon.step(trainer.global_step)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        mon = self.monitor
        if mon is None or mon.closed or trainer.sanity_checking:
            return
        metrics = monitor_metrics(trainer.callback_metrics)
        if metrics:
            mon.log_metrics(trainer.global_step, metrics)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.monitor is not None:
            self.monitor.close()

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        if self.monitor is not None:
            self.monitor.close()  # what was recorded stays readable
