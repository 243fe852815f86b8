"""`grokscope.Monitor`: grokscope's measurements from inside a researcher's own PyTorch training loop.

    mon = gs.Monitor(model, loss_fn, (X_train, y_train), out="runs/mine", watch=["*attn*"], batch_size=256)
    for step in range(1, steps + 1):
        ...; optimizer.step()
        mon.step(step, metrics={"train_loss": ..., "test_acc": ...} if step % 100 == 0 else None)
    mon.close()

`step` is the number of optimiser steps taken so far (the monitor records θ₀ as step 0 when it starts).
It writes the trainer's run-store format (config.json with model kind `external`, metrics.parquet,
trajectory with the watched tensors as `attn.<name>` and full snapshots as `snap.<name>`, defect.parquet,
hessian.parquet, summary.json) plus monitor.json and warnings.parquet, so `grokscope runs`, `analyze` and
`report` read it. The math is grokscope's own (`geometry.commutator.defect_from_grad_fn`,
`geometry.hessian.lanczos`, `training.grok.update_grok`). It never writes to the model, the optimiser or any global
random stream: parameters are read as copies, buffers are copied, and every generator is restored. Every
evaluation of the model runs inside `Target.measuring`, which checks afterwards that the model still holds the
very tensors it held (else restores them and raises `ModelChangedError`); integrations that wrap the monitor
measure through `defects_at` / `lambda_min_at` and inherit that guard. A run whose logged loss, parameters or
gradients turn non-finite is flagged `diverged` once (`monitor/divergence.py`) and measured no further; what the
user passed is checked at construction (`monitor/checks.py`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from grokscope.config import RunConfig
from grokscope.errors import ConfigError
from grokscope.geometry.llc import require_devinterp
from grokscope.monitor.batches import make_source
from grokscope.monitor.checks import check_optimizer, probe
from grokscope.monitor.choice import AutoDetector, detector_kwargs
from grokscope.monitor.detector import Detector
from grokscope.monitor.detector_inputs import detector_inputs
from grokscope.monitor.divergence import DivergenceEvent, DivergenceWatch
from grokscope.monitor.external import metric_values, run_config
from grokscope.monitor.functional import Forward, LossFn, Params, Target
from grokscope.monitor.logged import advance_grok, grok_steps, metric_row, sort_metrics
from grokscope.monitor.measure import Measurer
from grokscope.monitor.outlets import Outlets, signals_of, writer_of
from grokscope.monitor.rng import preserved_rng
from grokscope.monitor.schedule import due
from grokscope.monitor.settings import MonitorConfig, settings_of
from grokscope.monitor.sinks import Signals
from grokscope.monitor.state import Record, check_state, continue_record, open_record, state_of, write_record
from grokscope.monitor.tensorboard import require as require_tensorboard
from grokscope.monitor.trajectory import append, sketches_for, watched_copies
from grokscope.monitor.warning import WarningEvent
from grokscope.monitor.writer import description_of, summary_of, write_store, write_summary
from grokscope.store import TENSORBOARD_DIR, RunDir
from grokscope.training import GrokState


class Monitor:
    """Records grokscope's measurements of a user's model into a run directory (see the module doc). Given the
    `start_step` of a checkpoint and an `out` that holds its record, it continues that record (`state_dict`).

    Args:
        model: the `nn.Module` being trained, or a dict of parameter tensors with `forward`.
        loss_fn: `loss_fn(outputs, target)`, the training loss (its gradients drive the defect and λ_min).
        batches: where the monitor draws its own minibatches: a tuple of tensors `(X, y)`, a Dataset, a
            DataLoader (its dataset and batch size) or a function `(step, salt) -> batch`.
        out: the run directory written (a folder of grokscope's store format).
        watch: globs of parameter names recorded as a trajectory (what PCA reads); None: attention-like
            matrices, else every matrix.
        forward: `forward(params, inputs)` when `model` is a dict of tensors.
        optimizer: the training optimiser, read (never written) for its hyper-parameters in `config.json`.
        tasks: names of the tasks whose metrics are logged as `<task>/test_acc` (one task: `("task",)`).
        batch_size: size of the monitor's minibatches (None: the batch source's own, or the whole tensors).
        seed: seeds the monitor's own draws (minibatches, sketches), never the user's random streams.
        steps: the planned step budget, recorded in `config.json` (0: unknown).
        start_step: the optimiser steps already taken (a resumed run continues the record at `out`).
        overwrite: replace a record already at `out` instead of refusing it.
        on_warning: called with the `WarningEvent` when the early warning fires.
        detector: the early-warning detector (default: `MultiSignalDetector`; None with `warn=False`).
        tensorboard: also write TensorBoard events: True into `out/tensorboard`, or a folder (`grokscope[tensorboard]`).
        config: a `MonitorConfig`; keyword `settings` override its fields.
        on_divergence: called once with the `DivergenceEvent` when the run turns non-finite.
        log: your logger, called as `log({"grokscope/defect": ..., ...}, step=step)` with each new measurement
            and the warning (`wandb.log`, `mlflow.log_metrics`; `monitor/sinks.py` lists the signals), or a `Signals`.
        **settings: any `MonitorConfig` field by name (`defect_every=100`, ...).
    """

    def __init__(self, model: nn.Module | Params, loss_fn: LossFn, batches: Any, out: str | Path, *,
                 watch: list[str] | None = None, forward: Forward | None = None,
                 optimizer: torch.optim.Optimizer | None = None, tasks: tuple[str, ...] = ("task",),
                 batch_size: int | None = None, seed: int = 0, steps: int = 0, start_step: int = 0,
                 overwrite: bool = False, on_warning: Callable[[WarningEvent], None] | None = None,
                 detector: Detector | None = None, tensorboard: bool | str = False,
                 config: MonitorConfig | None = None,
                 on_divergence: Callable[[DivergenceEvent], None] | None = None,
                 log: Callable[..., Any] | Signals | None = None, **settings: Any) -> None:
        t0 = time.perf_counter()
        self.cfg = settings_of(config, settings)
        if self.cfg.llc_every:
            require_devinterp()  # a missing extra fails before anything is written
        self.target = Target(model, loss_fn, forward)
        self.device = next(iter(self.target.live.values())).device  # the model's: batches are drawn there
        self.source = make_source(batches, batch_size, seed, self.device)
        self.watched = self.target.select(list(watch) if watch is not None else None)
        check_optimizer(optimizer, self.target)  # mistakes in what was passed fail here, before anything is written
        with preserved_rng(), self.target.measuring(self.cfg.eval_mode), torch.no_grad():
            probe(self.target, self.source.draw(int(start_step), 1, self.cfg.defect_batch))
        self.tasks = tuple(tasks)
        self.run = RunDir(out)
        if tensorboard:
            require_tensorboard()  # a missing extra fails before anything is written
        start = int(start_step)
        found = open_record(self.run, start, overwrite)  # None: a new record (monitor/state.py)
        self.seed = int(seed)
        self.run_cfg = run_config(self.cfg, self.tasks, optimizer, self.source.batch_size, self.seed, int(steps),
                                  self.run.path.name)
        self.optimizer = optimizer  # read at each measurement: the test-free detector's clock (lr, decay, kind)
        self.detector = detector if detector is not None else (AutoDetector() if self.cfg.warn else None)
        self.detector_inputs: list[dict[str, Any]] = []  # what the detector saw: replayed when the record continues
        self.divergence = DivergenceWatch()
        self._measure = Measurer(self.target, self.source, self.cfg, self.seed)
        self._buffers()
        self.sketches = sketches_for(self.target, self.watched, self.cfg, self.seed)
        self.last_step: int | None = None
        self._changes = 0  # records taken so far; with last_step, what a flush has already written
        self._written: tuple[int | None, int] | None = None
        self.closed = False
        self.spent = 0.0  # seconds inside the monitor
        self._started = t0
        self.record = found or Record.new(start)
        with preserved_rng():
            if found is None:
                write_record(self.run, self.record)  # first: whatever the folder holds says whose record it is
            else:
                continue_record(self, found, start)
            self._out = Outlets(writer_of(tensorboard, self.run.path / TENSORBOARD_DIR,
                                          None if found is None else start + 1),
                                self.cfg.verbose, on_warning, on_divergence,
                                signals_of(log, start if found is not None else start - 1))
            if isinstance(self.detector, AutoDetector):  # after a replay: the choice is said once, when it is made
                self.detector.on_choice = lambda choice: self._out.choice(choice["message"], self.last_step or 0)
            if found is None:
                self._record(start, None, self._due(start, force=True))
            self.flush()  # the record exists in full from the start
        self.spent += time.perf_counter() - t0
        self._out.forward(self)

    def _buffers(self) -> None:
        """What the monitor keeps until it writes the store: rows of each table, the kept series, the grok states."""
        self.events: list[WarningEvent] = []
        self.rows: list[dict[str, Any]] = []
        self.scalars: list[dict[str, Any]] = []
        self.defect_rows: list[dict[str, Any]] = []
        self.hessian_rows: list[dict[str, Any]] = []
        self.llc_rows: list[dict[str, Any]] = []
        self.defect_group_rows: list[dict[str, Any]] = []
        self.hessian_group_rows: list[dict[str, Any]] = []
        self.watch_steps: list[int] = []
        self.watch_records: dict[str, list[torch.Tensor]] = {n: [] for n in self.watched}
        self.snap_steps: list[int] = []
        self.snaps: dict[str, list[torch.Tensor]] = {n: [] for n in self.target.names}
        self._watch_stride = self._snap_stride = 1
        self.grok: dict[str, GrokState] = {}
        self.final_acc: dict[str, dict[str, float]] = {}

    @property
    def _tb(self) -> Any:
        """The live TensorBoard writer (None: none)."""
        return self._out.tb

    @property
    def _hessian_batch(self) -> Any:
        """The fixed sample the Hessian is taken on (None until the first λ_min)."""
        return self._measure.hessian_batch

    # ---- the per-step call --------------------------------------------------------------------------
    def step(self, step: int, metrics: dict[str, float] | None = None) -> WarningEvent | None:
        """Record after optimiser step `step` (steps taken so far): metrics if given, and whatever measurement
        is due. Returns the early-warning event if the detector fired now."""
        t0 = time.perf_counter()
        if self.closed:
            raise ConfigError("Monitor.step called after close()")
        step = int(step)
        if self.last_step is not None and step <= self.last_step:
            raise ConfigError(f"Monitor.step({step}): steps must increase (last recorded {self.last_step}); pass the "
                              "number of optimiser steps taken so far (1 after the first update)")
        flush = step % self.cfg.flush_every == 0
        due = self._due(step)
        # saving and restoring the RNG states costs ~0.1 ms: only around real work; metrics alone are
        # arithmetic on the user's numbers and touch no random stream
        with preserved_rng() if due or flush else nullcontext():
            event = self._record(step, metrics, due)
            if flush:
                self.flush()
        self.spent += time.perf_counter() - t0
        self._out.forward(self)  # the logger's time is the user's, not the monitor's
        return event

    def log_metrics(self, step: int, metrics: dict[str, float]) -> None:
        """Log `metrics` at a step already recorded by `step()` (frameworks log after the step's measurements)."""
        if self.closed:
            raise ConfigError("Monitor.log_metrics called after close()")
        if self.last_step is None or int(step) > self.last_step:
            raise ConfigError(f"Monitor.log_metrics({step}): call step({step}) first (last recorded {self.last_step})")
        t0 = time.perf_counter()
        self._log_metrics(int(step), metrics)
        self.spent += time.perf_counter() - t0
        self._out.forward(self)

    def _due(self, step: int, force: bool = False) -> set[str]:
        return due(self.cfg, step, self._watch_stride, self._snap_stride, force)

    def _record(self, step: int, metrics: dict[str, float] | None, due: set[str]) -> WarningEvent | None:
        """Log `metrics` and take the measurements `due` at `step`."""
        self.last_step = step
        self._changes += 1
        if metrics:
            self._log_metrics(step, metrics)
        due = self._measurable(step, due)
        cfg = self.cfg
        if "watch" in due:
            self.watch_steps, self.watch_records, self._watch_stride = append(
                (self.watch_steps, self.watch_records, self._watch_stride), step,
                watched_copies(self.target, self.watched, self.sketches), cfg.watch_every, cfg.max_records)
        if "snapshot" in due:
            self.snap_steps, self.snaps, self._snap_stride = append(
                (self.snap_steps, self.snaps, self._snap_stride), step, self.target.host_copy(self.target.names),
                cfg.snapshot_every, cfg.n_snapshots)
        event = self._measure_defect(step) if "defect" in due else None
        if "hessian" in due and not self.divergence.diverged:
            self._measure_hessian(step)
        if "llc" in due and not self.divergence.diverged:
            self.llc_rows.append(self.llc_at(step))
        return event

    def _measurable(self, step: int, due: set[str]) -> set[str]:
        """`due`, or nothing once the run diverged (checked on the parameters first: a NaN model measures nothing)."""
        if due and not self.divergence.diverged:
            self._diverge(self.divergence.parameters(step, self.target.live))
        return set() if self.divergence.diverged else due

    def _diverge(self, event: DivergenceEvent | None) -> bool:
        """Say once that the run diverged (stderr, TensorBoard, the store, then `on_divergence`); False if no event."""
        if event is None:
            return False
        self._out.divergence(event, self.flush)
        return True

    def _log_metrics(self, step: int, metrics: dict[str, float]) -> None:
        """The user's metrics at `step`: rows per (task, split), free scalars, last accuracies, the grok rule."""
        self._changes += 1
        metrics = metric_values(metrics)
        groups, scalars = sort_metrics(metrics, self.tasks[0])
        name = self.run_cfg.name
        self.scalars += [{"run": name, "step": step, "name": k, "value": v} for k, v in scalars.items()]
        for key, value in metrics.items():
            self._out.scalar(f"metrics/{key}", value, step)
        norm = self.target.weight_norm() if groups else None
        for (task, split), vals in groups.items():
            if task not in self.tasks:
                self.tasks = self.tasks + (task,)
            self.rows.append(metric_row(name, step, task, split, vals, norm))
            if "acc" in vals:
                self.final_acc.setdefault(task, {})[split] = vals["acc"]
                if split == "test":
                    self.grok[task] = advance_grok(self.grok.get(task), step, vals["acc"], self.run_cfg)
        self._diverge(self.divergence.losses(step, metrics, self.tasks[0])
                      or self.divergence.value(step, "the weight norm", norm))

    def grok_step(self, which: str = "grok") -> dict[str, int | None]:
        """Per task: the step the grok rule fired (`which='grok90'`: first test acc ≥ 90 %), None if not yet."""
        return grok_steps(self.grok, self.tasks, which)

    # ---- measurements --------------------------------------------------------------------------------
    def defects_at(self, step: int) -> torch.Tensor:
        """D of each of the K draws [K] at the current parameters, minibatches A_k, B_k = salts 2k+1, 2k+2 at
        `step` (as `geometry.commutator`), by `defect_from_grad_fn`."""
        return self._measure.defect_draws(step)[0]

    def group_lambda_min_at(self, step: int, group: str, k: int = 5) -> dict[str, Any]:
        """λ_min/λ_max of the Hessian block of one parameter group (a glob, as `hessian_groups`) on the fixed
        sample: Lanczos on H_gg v = (H [v_g; 0])_g, the full HVP's cost per iteration, a basis of the group's
        size only. With the seconds it took."""
        return {"run": self.run_cfg.name, **self._measure.group_lambda_min(step, group, k)}

    def lambda_min_at(self, step: int, k: int = 5) -> dict[str, Any]:
        """Bottom/top Hessian eigenvalues of the loss on the fixed sample (salt 7, `hessian_samples` examples)
        at the current parameters: `geometry.hessian.lanczos` with the monitor's HVP."""
        return self._measure.lambda_min(step, k)

    def llc_at(self, step: int) -> dict[str, Any]:
        """devinterp's LLC at the current parameters on a fixed training sample (`llc_samples` rows; the
        monitor's settings llc_*): grokscope.geometry.llc.estimate_llc over the user's own loss."""
        return self._measure.llc(step, self.device)

    def _measure_defect(self, step: int) -> WarningEvent | None:
        """The defect's row (and each group's), into TensorBoard, then to the detector: its event if it fired."""
        D, shares, finite = self._measure.defect_draws(step)
        if not finite:  # the loss's gradients on the monitor's batches are not finite: not a defect, a divergence
            bad = D[~torch.isfinite(D)]
            self._diverge(self.divergence.value(step, "the gradient (defect)", float(bad[0]) if len(bad) else math.nan))
            return None
        row, group_rows = self._measure.defect_rows(self.run_cfg.name, step, D, shares)
        self.defect_rows.append(row)
        self.defect_group_rows += group_rows
        median = row["defect"]
        self._out.scalar("geometry/defect", median, step)
        if self.detector is None:
            return None
        inputs = detector_inputs(self.rows, self.tasks, self.target.weight_norm(), self.optimizer)
        self.detector_inputs.append({"step": step, "defect": median, **inputs})
        event = self.detector.observe(step, median, **detector_kwargs(self.detector, inputs))
        if event is not None:
            self.events.append(event)
            self._out.warning(event)
            self.flush()
        return event

    def _measure_hessian(self, step: int) -> None:
        row = self.lambda_min_at(step)
        if self._diverge(self.divergence.value(step, "the loss on the Hessian sample", row["loss_value"])):
            return
        self.hessian_rows.append(row)
        for group in self.cfg.hessian_groups:
            self.hessian_group_rows.append(self.group_lambda_min_at(step, group))
        self._out.scalar("geometry/lambda_min", row["lambda_min"], step)
        self._out.scalar("geometry/lambda_max", row["lambda_max"], step)

    # ---- the store -------------------------------------------------------------------------------------
    def summary(self) -> dict[str, Any]:
        """As the trainer's summary.json, plus the monitor's own time and the warnings."""
        return summary_of(self)

    def overhead(self) -> float:
        """Time spent in the monitor over the rest of the wall time since it started (the user's training)."""
        rest = time.perf_counter() - self._started - self.spent
        return self.spent / rest if rest > 0 else float("nan")

    def config(self) -> RunConfig:
        """The store's config.json: model kind `external`, tasks as logged so far."""
        return replace(self.run_cfg, data=replace(self.run_cfg.data, tasks=self.tasks), steps=self.last_step or 0)

    def flush(self) -> None:
        """Write everything recorded so far (each file atomically); if nothing was recorded since the last
        flush (e.g. `close()` right after the periodic write), only summary.json, which says `finished`."""
        if self._written == (self.last_step, self._changes):
            write_summary(self)
            return
        self._written = (self.last_step, self._changes)
        write_store(self)

    def description(self) -> dict[str, Any]:
        """monitor.json: the settings, the model's parameter names and shapes, the watched tensors and sketches."""
        return description_of(self)

    def state_dict(self) -> dict[str, Any]:
        """Write the store in full now and return what your checkpoint keeps of the monitor, as of an optimiser: the
        folder, the record's id and the step. Save it with every checkpoint: whatever happens to the process after,
        `Monitor(..., start_step=<that step>)` continues the record from there (docs/monitor.md)."""
        t0 = time.perf_counter()
        with preserved_rng():
            self.flush()
        self.spent += time.perf_counter() - t0
        return state_of(self)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Check that a checkpoint's `state_dict()` is of the record this monitor continues, at the step it continues
        from (the monitor resumed from its store when created with that `start_step`)."""
        check_state(self, state)

    def close(self) -> None:
        """Write the store one last time and mark the run finished."""
        if self.closed:
            return
        t0 = time.perf_counter()
        self.closed = True
        with preserved_rng():
            self.flush()
            self._out.close()
        self.spent += time.perf_counter() - t0

    def __enter__(self) -> Monitor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
