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
import sys
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import replace
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch import nn

from grokscope.config import EXTERNAL, DataConfig, ModelConfig, RunConfig
from grokscope.errors import ConfigError
from grokscope.geometry.commutator import defect_from_grad_fn
from grokscope.geometry.hessian import lanczos
from grokscope.geometry.llc import (
    LLCSettings,
    ParamsModule,
    chains_level_off,
    estimate_llc,
    module_loss,
    require_devinterp,
)
from grokscope.monitor.batches import make_source
from grokscope.monitor.checks import check_optimizer, probe
from grokscope.monitor.choice import AutoDetector, detector_kwargs
from grokscope.monitor.clock import clock_of
from grokscope.monitor.detector import Detector
from grokscope.monitor.divergence import DivergenceEvent, DivergenceWatch, all_finite
from grokscope.monitor.external import metric_values, optim_config, parse_metric
from grokscope.monitor.functional import Forward, LossFn, Params, Target
from grokscope.monitor.groups import Groups
from grokscope.monitor.records import thin
from grokscope.monitor.rng import preserved_rng
from grokscope.monitor.settings import MonitorConfig
from grokscope.monitor.sinks import Signals
from grokscope.monitor.sketch import CountSketch, sketch_seed
from grokscope.monitor.state import (
    Record,
    check_state,
    continue_record,
    open_record,
    state_of,
    write_record,
    write_state,
)
from grokscope.monitor.tensorboard import open_writer
from grokscope.monitor.tensorboard import require as require_tensorboard
from grokscope.monitor.warning import WarningEvent
from grokscope.store import (
    DEFECT_GROUPS_TABLE,
    DEFECT_TABLE,
    HESSIAN_GROUPS_TABLE,
    HESSIAN_TABLE,
    LLC_TABLE,
    METRICS_TABLE,
    MONITOR,
    SCALARS_TABLE,
    SUMMARY,
    TENSORBOARD_DIR,
    WARNINGS_TABLE,
    RunDir,
    write_json,
)
from grokscope.training import GrokState, update_grok


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
        try:
            self.cfg = MonitorConfig(**{**(config.to_dict() if config else {}), **settings})
        except TypeError as e:
            raise ConfigError(f"Monitor: {e}") from None
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
        self.signals = None if log is None else log if isinstance(log, Signals) else Signals(log)
        if self.signals is not None:  # a continued record forwards only what it measures from now on
            self.signals.after = start if found is not None else start - 1
        self.run_cfg = RunConfig(
            data=DataConfig(tasks=self.tasks, p=0, train_frac=0.0),
            model=ModelConfig(kind=EXTERNAL, d_model=0, n_heads=0, d_ff=0, n_layers=0, width=0),
            optim=optim_config(optimizer, self.source.batch_size), seed=int(seed), steps=int(steps),
            eval_every=1, attn_every=self.cfg.watch_every, n_snapshots=self.cfg.n_snapshots,
            checkpoint_every=self.cfg.flush_every, grok_acc=self.cfg.grok_acc,
            grok_patience=self.cfg.grok_patience, grok_acc_90=self.cfg.grok_acc_90,
            defect_every=self.cfg.defect_every, defect_draws=self.cfg.draws, preset="monitor",
            tag=self.run.path.name)
        self.seed = int(seed)
        self.optimizer = optimizer  # read at each measurement: the test-free detector's clock (lr, decay, kind)
        self.detector = detector if detector is not None else (AutoDetector() if self.cfg.warn else None)
        self.on_warning = on_warning
        self.divergence, self.on_divergence = DivergenceWatch(), on_divergence
        self.events: list[WarningEvent] = []
        self.detector_inputs: list[dict[str, Any]] = []  # what the detector saw: replayed when the record continues
        self.rows: list[dict[str, Any]] = []
        self.scalars: list[dict[str, Any]] = []
        self.defect_rows: list[dict[str, Any]] = []
        self.hessian_rows: list[dict[str, Any]] = []
        self.llc_rows: list[dict[str, Any]] = []
        self.watch_steps: list[int] = []
        self.watch_records: dict[str, list[torch.Tensor]] = {n: [] for n in self.watched}
        self.sketches = self._sketches()
        self.groups = Groups(self.target.names, self.target.sizes)
        self.hessian_groups = (Groups(self.target.names, self.target.sizes, list(self.cfg.hessian_groups))
                               if self.cfg.hessian_groups else None)
        self.defect_group_rows: list[dict[str, Any]] = []
        self.hessian_group_rows: list[dict[str, Any]] = []
        self.snap_steps: list[int] = []
        self.snaps: dict[str, list[torch.Tensor]] = {n: [] for n in self.target.names}
        self._watch_stride = self._snap_stride = 1
        self.grok: dict[str, GrokState] = {}
        self.final_acc: dict[str, dict[str, float]] = {}
        self.last_step: int | None = None
        self._changes = 0  # records taken so far; with last_step, what a flush has already written
        self._written: tuple[int | None, int] | None = None
        self.closed = False
        self._hessian_batch = None
        self.spent = 0.0  # seconds inside the monitor
        self._started = t0
        self.record = found or Record.new(start)
        with preserved_rng():
            if found is None:
                write_record(self.run, self.record)  # first: whatever the folder holds says whose record it is
            else:
                continue_record(self, found, start)
            self._tb = self._open_tensorboard(tensorboard, None if found is None else start + 1)
            if isinstance(self.detector, AutoDetector):  # after a replay: the choice is said once, when it is made
                self.detector.on_choice = self._say_choice
            if found is None:
                self._record(start, None, self._due(start, force=True))
            self.flush()  # the record exists in full from the start
        self.spent += time.perf_counter() - t0
        self._forward()

    # ---- setup ------------------------------------------------------------------------------------
    def _open_tensorboard(self, tensorboard: bool | str, purge_step: int | None) -> Any:
        """The live writer; continuing a record, it hides the events a stopped process wrote after the step it
        continues from (`purge_step`)."""
        if not tensorboard:
            return None
        return open_writer(self.run.path / TENSORBOARD_DIR if tensorboard is True else Path(tensorboard), purge_step)

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
        self._forward()
        return event

    def _forward(self) -> None:
        """The new measurements into the user's logger (their time is the logger's, not the monitor's)."""
        if self.signals is not None:
            self.signals.forward(self)

    def log_metrics(self, step: int, metrics: dict[str, float]) -> None:
        """Log `metrics` at a step already recorded by `step()` (frameworks log after the step's measurements)."""
        if self.closed:
            raise ConfigError("Monitor.log_metrics called after close()")
        if self.last_step is None or int(step) > self.last_step:
            raise ConfigError(f"Monitor.log_metrics({step}): call step({step}) first (last recorded {self.last_step})")
        t0 = time.perf_counter()
        self._log_metrics(int(step), metrics)
        self.spent += time.perf_counter() - t0
        self._forward()

    def _due(self, step: int, force: bool = False) -> set[str]:
        """The measurements that fall on `step` (every configured one when `force`)."""
        cfg = self.cfg
        due = {"watch": force or step % (cfg.watch_every * self._watch_stride) == 0,
               "snapshot": bool(cfg.n_snapshots) and (force or step % (cfg.snapshot_every * self._snap_stride) == 0),
               "defect": bool(cfg.defect_every) and (force or step % cfg.defect_every == 0),
               "hessian": bool(cfg.hessian_every) and (force or step % cfg.hessian_every == 0),
               "llc": bool(cfg.llc_every) and (force or step % cfg.llc_every == 0)}
        return {name for name, on in due.items() if on}

    def _record(self, step: int, metrics: dict[str, float] | None, due: set[str]) -> WarningEvent | None:
        """Log `metrics` and take the measurements `due` at `step`."""
        self.last_step = step
        self._changes += 1
        if metrics:
            self._log_metrics(step, metrics)
        due = self._measurable(step, due)
        if "watch" in due:
            self._record_watch(step)
        if "snapshot" in due:
            self._record_snapshot(step)
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
        if self.cfg.verbose:
            print(event.message(), file=sys.stderr, flush=True)
        if self._tb is not None:
            self._tb.add_text("divergence", event.message(), event.step)
        self.flush()
        if self.on_divergence is not None:
            self.on_divergence(event)
        return True

    def _log_metrics(self, step: int, metrics: dict[str, float]) -> None:
        self._changes += 1
        groups: dict[tuple[str, str], dict[str, float]] = {}
        metrics = metric_values(metrics)
        for key, value in metrics.items():
            parsed = parse_metric(key, self.tasks[0])
            if parsed is None:
                self.scalars.append({"run": self.run_cfg.name, "step": step, "name": key, "value": value})
            else:
                task, split, kind = parsed
                groups.setdefault((task, split), {})[kind] = value
            if self._tb is not None:
                self._tb.add_scalar(f"metrics/{key}", value, step)
        norm = self.target.weight_norm() if groups else None
        for (task, split), vals in groups.items():
            if task not in self.tasks:
                self.tasks = self.tasks + (task,)
            self.rows.append({"run": self.run_cfg.name, "step": step, "task": task, "split": split,
                              "loss": vals.get("loss", float("nan")), "acc": vals.get("acc", float("nan")),
                              "weight_norm": norm})
            if "acc" in vals:
                self.final_acc.setdefault(task, {})[split] = vals["acc"]
                if split == "test":
                    self._update_grok(task, step, vals["acc"])
        self._diverge(self.divergence.losses(step, metrics, self.tasks[0])
                      or self.divergence.value(step, "the weight norm", norm))

    def _update_grok(self, task: str, step: int, acc: float) -> None:
        """The trainer's grok rule (`training.grok.update_grok`) on this task's logged test accuracy."""
        state = self.grok.get(task) or GrokState(torch.zeros(1, 1, dtype=torch.int64),
                                                 torch.full((1, 1), -1, dtype=torch.int64),
                                                 torch.full((1, 1), -1, dtype=torch.int64))
        self.grok[task] = update_grok(state, torch.tensor([[acc]], dtype=torch.float64),
                                      torch.ones(1, dtype=torch.bool), step, self.run_cfg)

    def grok_step(self, which: str = "grok") -> dict[str, int | None]:
        """Per task: the step the grok rule fired (`which='grok90'`: first test acc ≥ 90 %), None if not yet."""
        out: dict[str, int | None] = {}
        for task in self.tasks:
            st = self.grok.get(task)
            v = -1 if st is None else int(getattr(st, which)[0, 0])
            out[task] = v if v >= 0 else None
        return out

    def _sketches(self) -> dict[str, CountSketch]:
        """A fixed CountSketch of dimension `sketch_dim` for each watched tensor above `sketch_above` entries."""
        k, cfg = self.cfg.sketch_dim, self.cfg
        big = [n for n in self.watched if k and self.target.live[n].numel() > cfg.sketch_above]
        return {n: CountSketch(self.target.live[n].numel(), k, sketch_seed(self.seed, n), self.target.live[n].device)
                for n in big}

    def _record_watch(self, step: int) -> None:
        self.watch_steps.append(step)
        full = self.target.host_copy([n for n in self.watched if n not in self.sketches])
        for n in self.watched:
            self.watch_records[n].append(full[n] if n in full else self.sketches[n](self.target.live[n]).cpu())
        self.watch_steps, self.watch_records, self._watch_stride = thin(
            self.watch_steps, self.watch_records, self._watch_stride, self.cfg.watch_every, self.cfg.max_records)

    def _record_snapshot(self, step: int) -> None:
        self.snap_steps.append(step)
        for n, t in self.target.host_copy(self.target.names).items():
            self.snaps[n].append(t)
        self.snap_steps, self.snaps, self._snap_stride = thin(
            self.snap_steps, self.snaps, self._snap_stride, self.cfg.snapshot_every, self.cfg.n_snapshots)

    # ---- measurements --------------------------------------------------------------------------------
    def defects_at(self, step: int) -> torch.Tensor:
        """D of each of the K draws [K] at the current parameters, minibatches A_k, B_k = salts 2k+1, 2k+2 at
        `step` (as `geometry.commutator`), by `defect_from_grad_fn`."""
        return self._defect_draws(step)[0]

    def _defect_draws(self, step: int) -> tuple[torch.Tensor, dict[str, torch.Tensor], bool]:
        """(D [K], per group ‖δ_g‖²/‖δ‖² [K], whether every δ is finite) of the K draws at `step`."""
        theta = self.target.theta()[None]
        out, shares, finite = [], [], True
        with self.target.measuring(self.cfg.eval_mode):
            for k in range(self.cfg.draws):
                a = self.source.draw(step, 2 * k + 1, self.cfg.defect_batch)
                b = self.source.draw(step, 2 * k + 2, self.cfg.defect_batch)
                D, delta = defect_from_grad_fn(self.target.grad_fn(a), self.target.grad_fn(b), theta, self.cfg.eta)
                out.append(D[0].detach())
                finite = finite and all_finite([delta])
                if self.cfg.defect_groups:
                    total = delta.detach().pow(2).sum()
                    shares.append({g: float(v[0] / total) for g, v in self.groups.square_norms(delta.detach()).items()})
        per_group = {g: torch.tensor([s[g] for s in shares], dtype=torch.float64) for g in shares[0]} if shares else {}
        return torch.stack(out).cpu(), per_group, finite

    def _measure_defect(self, step: int) -> WarningEvent | None:
        D, shares, finite = self._defect_draws(step)
        if not finite:  # the loss's gradients on the monitor's batches are not finite: not a defect, a divergence
            bad = D[~torch.isfinite(D)]
            self._diverge(self.divergence.value(step, "the gradient (defect)", float(bad[0]) if len(bad) else math.nan))
            return None
        median = float(D.median())  # the lower median for even K, as commutator_defect
        self.defect_rows.append({"run": self.run_cfg.name, "step": step, "defect": median,
                                 "defect_draws": [float(d) for d in D]})
        for g, share in shares.items():  # D_g = D·‖δ_g‖/‖δ‖ per draw, so Σ_g D_g² = D²
            self.defect_group_rows.append({"run": self.run_cfg.name, "step": step, "group": g,
                                           "n_params": self.groups.size(g), "share": float(share.median()),
                                           "defect": float((D.double() * share.sqrt()).median())})
        if self._tb is not None:
            self._tb.add_scalar("geometry/defect", median, step)
        if self.detector is None:
            return None
        inputs = self._detector_inputs()
        self.detector_inputs.append({"step": step, "defect": median, **inputs})
        event = self.detector.observe(step, median, **detector_kwargs(self.detector, inputs))
        if event is not None:
            self._warn(event)
        return event

    def _detector_inputs(self) -> dict[str, Any]:
        """The detector's other inputs now: the weight norm; the latest logged train accuracy, train loss and
        held-out loss of the first task that logged any (None if never logged); the optimiser's clock (rate, kind)."""
        task = next((t for t in self.tasks if any(r["task"] == t for r in self.rows)), self.tasks[0])

        def latest(split: str, kind: str) -> float | None:
            return next((r[kind] for r in reversed(self.rows) if r["task"] == task and r["split"] == split
                         and not math.isnan(r[kind])), None)

        clock = clock_of(self.optimizer)
        return {"weight_norm": self.target.weight_norm(), "train_acc": latest("train", "acc"),
                "test_loss": latest("test", "loss"), "train_loss": latest("train", "loss"),
                "clock_rate": clock.rate, "clock_kind": clock.kind}

    def _say_choice(self, choice: dict[str, Any]) -> None:
        """The default detector's choice, once when made (and once more if a held-out loss appears later)."""
        if self.cfg.verbose:
            print(choice["message"], file=sys.stderr, flush=True)
        if self._tb is not None:
            self._tb.add_text("early_warning", choice["message"], self.last_step or 0)

    def _warn(self, event: WarningEvent) -> None:
        self.events.append(event)
        if self.cfg.verbose:
            print(event.message(), flush=True)
        if self._tb is not None:
            self._tb.add_text("early_warning", event.message(), event.step)
        if self.on_warning is not None:
            self.on_warning(event)
        self.flush()

    def group_lambda_min_at(self, step: int, group: str, k: int = 5) -> dict[str, Any]:
        """λ_min/λ_max of the Hessian block of one parameter group (a glob, as `hessian_groups`) on the fixed
        sample: Lanczos on H_gg v = (H [v_g; 0])_g, the full HVP's cost per iteration, a basis of the group's
        size only. With the seconds it took."""
        t0 = time.perf_counter()
        groups = self.hessian_groups if self.hessian_groups and group in self.hessian_groups.slices else \
            Groups(self.target.names, self.target.sizes, [group])
        if self._hessian_batch is None:
            self._hessian_batch = self.source.fixed_sample(self.cfg.hessian_samples)
        theta = self.target.theta()
        with self.target.measuring(self.cfg.eval_mode):
            hvp = groups.block(group, self.target.hvp(theta, self._hessian_batch))
            v0 = torch.randn(1, groups.size(group), generator=torch.Generator().manual_seed(self.seed * 7919 + step),
                             dtype=theta.dtype).to(theta.device)
            res = lanczos(hvp, v0, self.cfg.hessian_iters, k)
        return {"run": self.run_cfg.name, "step": step, "group": group, "n_params": groups.size(group),
                "lambda_min": float(res.bottom[0, 0]), "lambda_max": float(res.top[0, 0]),
                "lambda_min_residual": float(res.bottom_residual[0, 0]), "iters": self.cfg.hessian_iters,
                "seconds": round(time.perf_counter() - t0, 4)}

    def lambda_min_at(self, step: int, k: int = 5) -> dict[str, Any]:
        """Bottom/top Hessian eigenvalues of the loss on the fixed sample (salt 7, `hessian_samples` examples)
        at the current parameters: `geometry.hessian.lanczos` with the monitor's HVP."""
        if self._hessian_batch is None:
            self._hessian_batch = self.source.fixed_sample(self.cfg.hessian_samples)
        theta = self.target.theta()
        with self.target.measuring(self.cfg.eval_mode):
            hvp = self.target.hvp(theta, self._hessian_batch)
            v0 = torch.randn(1, theta.numel(), generator=torch.Generator().manual_seed(self.seed * 7919 + step),
                             dtype=theta.dtype).to(theta.device)
            res = lanczos(hvp, v0, self.cfg.hessian_iters, k)
            with torch.no_grad():
                value = float(self.target.loss(self.target.unflatten(theta), self._hessian_batch))
        nan = float("nan")
        return {"step": step, "loss": "total", "lambda_min": float(res.bottom[0, 0]),
                "lambda_max": float(res.top[0, 0]), "bottom": res.bottom[0].tolist(), "top": res.top[0].tolist(),
                "exec_curv": nan, "perp_curv": nan, "exec_max": nan, "perp_max": nan,
                "lambda_min_residual": float(res.bottom_residual[0, 0]), "loss_value": value}

    def llc_at(self, step: int) -> dict[str, Any]:
        """devinterp's LLC at the current parameters on a fixed training sample (`llc_samples` rows; the
        monitor's settings llc_*): grokscope.geometry.llc.estimate_llc over the user's own loss."""
        cfg = self.cfg
        batch = tuple(self.source.fixed_sample(cfg.llc_samples))
        n = len(batch[0])
        settings = LLCSettings(lr=cfg.llc_lr, n_beta=cfg.llc_nbeta, localization=cfg.llc_localization,
                               chains=cfg.llc_chains, draws=cfg.llc_draws, seed=self.seed + step)

        def loss(params: Params, rows: torch.Tensor) -> torch.Tensor:
            return self.target.loss(params, tuple(t[rows.to(t.device)] for t in batch)).expand(len(rows))

        with self.target.measuring(cfg.eval_mode):
            est = estimate_llc(ParamsModule(self.target.live, loss), module_loss, range(n), settings, str(self.device))
        return {"step": step, "llc": est["llc_mean"], "llc_std": est["llc_std"],
                "llc_per_chain": est["llc_per_chain"], "init_loss": est["init_loss"],
                "levels_off": chains_level_off(est["loss_trace"], est["init_loss"])}

    def _measure_hessian(self, step: int) -> None:
        row = self.lambda_min_at(step)
        if self._diverge(self.divergence.value(step, "the loss on the Hessian sample", row["loss_value"])):
            return
        self.hessian_rows.append(row)
        for group in self.cfg.hessian_groups:
            self.hessian_group_rows.append(self.group_lambda_min_at(step, group))
        if self._tb is not None:
            self._tb.add_scalar("geometry/lambda_min", row["lambda_min"], step)
            self._tb.add_scalar("geometry/lambda_max", row["lambda_max"], step)

    # ---- the store -------------------------------------------------------------------------------------
    def summary(self) -> dict[str, Any]:
        """As the trainer's summary.json, plus the monitor's own time and the warnings."""
        wall = time.perf_counter() - self._started
        return {
            "name": self.run_cfg.name, "config": self.config().to_dict(),
            "grok_step": self.grok_step("grok"), "grok_step_90": self.grok_step("grok90"),
            "final_acc": self.final_acc, "steps_trained": self.last_step, "finished": self.closed,
            "diverged": self.divergence.diverged, "diverged_step": self.divergence.step, "wall_time": round(wall, 3),
            "monitor": {"seconds": round(self.spent, 3), "overhead": round(self.overhead(), 4),
                        "warnings": [e.to_row() for e in self.events], "detector": self._detector_description(),
                        "divergence": self.divergence.event.to_dict() if self.divergence.event else None},
        }

    def _detector_description(self) -> dict[str, Any] | None:
        """Which detector runs and why (summary.json `monitor.detector`)."""
        det = self.detector
        if det is None:
            return None
        if isinstance(det, AutoDetector):
            return det.describe()
        name = getattr(getattr(det, "cfg", None), "name", None) or getattr(det, "detector", type(det).__name__)
        return {"name": str(name), "running": str(name), "reason": "chosen by the user (Monitor(detector=...))"}

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
        run = self.run
        if self._written == (self.last_step, self._changes):
            write_json(run.file(SUMMARY), self.summary())
            return
        self._written = (self.last_step, self._changes)
        run.write_config(self.config())
        write_json(run.file(MONITOR), self.description())
        traj = {"attn_steps": torch.tensor(self.watch_steps, dtype=torch.int64),
                "snap_steps": torch.tensor(self.snap_steps, dtype=torch.int64)}
        traj.update({f"attn.{n}": torch.stack(v) for n, v in self.watch_records.items() if v})
        traj.update({f"snap.{n}": torch.stack(v) for n, v in self.snaps.items() if v})
        run.write_trajectory(traj, {"watch_stride": self._watch_stride, "snap_stride": self._snap_stride})
        run.write_table(METRICS_TABLE, pd.DataFrame(self.rows, columns=["run", "step", "task", "split", "loss", "acc",
                                                                    "weight_norm"]))
        if self.scalars:
            run.write_table(SCALARS_TABLE, pd.DataFrame(self.scalars))
        if self.defect_rows:
            run.write_table(DEFECT_TABLE, pd.DataFrame(self.defect_rows))
        if self.hessian_rows:
            run.write_table(HESSIAN_TABLE, pd.DataFrame(self.hessian_rows))
        if self.defect_group_rows:
            run.write_table(DEFECT_GROUPS_TABLE, pd.DataFrame(self.defect_group_rows))
        if self.hessian_group_rows:
            run.write_table(HESSIAN_GROUPS_TABLE, pd.DataFrame(self.hessian_group_rows))
        if self.llc_rows:
            run.write_table(LLC_TABLE, pd.DataFrame(self.llc_rows))
        if self.events:
            run.write_table(WARNINGS_TABLE, pd.DataFrame([e.to_row() for e in self.events]))
        write_json(run.file(SUMMARY), self.summary())
        if self._tb is not None:
            self._tb.flush()
        write_state(self)  # last: the store now holds everything up to last_step

    def description(self) -> dict[str, Any]:
        """monitor.json: the settings, the model's parameter names and shapes, the watched tensors and sketches."""
        return {
            "settings": self.cfg.to_dict(), "watch": self.watched, "n_params": self.target.n_params,
            "parameters": {n: list(s) for n, s in self.target.shapes.items()},
            "model": type(self.target.module).__name__ if self.target.module is not None else "params dict",
            "batch_source": type(self.source).__name__,
            "sketch": {n: {"kind": "countsketch", "dim": sk.k, "numel": sk.n, "seed": sketch_seed(self.seed, n)}
                       for n, sk in self.sketches.items()}}

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
            if self._tb is not None:
                self._tb.close()
        self.spent += time.perf_counter() - t0

    def __enter__(self) -> Monitor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
