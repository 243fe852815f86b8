"""The batched training loop: step, evaluate, detect grokking, record the trajectory, checkpoint, resume.

R runs train as one program. Each run keeps its own seed, data order, lr, weight decay, clip norm and
step budget; a run whose tasks have all grokked, that hit its budget, or that diverged is frozen while
the others go on. The loop knows nothing of analyses: it takes *probes* (measurements every N steps,
e.g. inline commutator defects) and a *gradient transform* (interventions) as plain callables.
"""

from __future__ import annotations

import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
import torch

from grokscope import compiled
from grokscope import model as M
from grokscope.config import RunConfig
from grokscope.environment import environment
from grokscope.errors import ConfigError, StoreError
from grokscope.methods import MethodState
from grokscope.optim import STEPS, HyperParams, clip_rows_, init_state
from grokscope.problem import Params, Problem
from grokscope.store import CHECKPOINT, METRICS_TABLE, SUMMARY, RunDir, write_json, write_tensors
from grokscope.threads import resume_thread_note

GradTransform = Callable[[int, Params, Params], Params]
# A transform holding state a resume needs also has `export(r) -> {name: tensor}` (run r's state, saved in its
# checkpoint; names start with `transform.`) and `restore(r, tensors)` (given the checkpoint's tensors).


@dataclass
class Probe:
    """A measurement taken inside the loop every `every` steps: `measure(problem, params, step)` returns
    rows (dicts with an int `r`, the run's index in the batch); they land in `<name>.parquet`."""

    name: str
    every: int
    measure: Callable[[Problem, Params, int], list[dict[str, Any]]]


@dataclass
class EvalInfo:
    """What the loop reports after each evaluation (host copies, for progress displays)."""

    step: int
    max_steps: int
    train_acc: np.ndarray  # [R, T]
    test_acc: np.ndarray  # [R, T]
    grok_step: np.ndarray  # [R, T], -1 = not yet
    stopped: np.ndarray  # [R] bool
    tasks: tuple[str, ...]


@dataclass
class RunResult:
    """One run's outcome: its summary (as in summary.json), metrics and final parameters."""

    config: RunConfig
    summary: dict[str, Any]
    metrics: pd.DataFrame
    params: Params
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    path: Path | None = None


class _Recorder:
    """Per-run host-side buffers: metric rows, probe rows, attention trajectory, snapshots."""

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []
        self.probe_rows: dict[str, list[dict[str, Any]]] = {}
        self.attn_steps: list[int] = []
        self.attn: dict[str, list[torch.Tensor]] = {}
        self.snap_steps: list[int] = []
        self.snaps: dict[str, list[torch.Tensor]] = {}

    def take_segment(self) -> dict[str, torch.Tensor] | None:
        """The attention matrices and snapshots recorded since the last call, as one trajectory segment
        (None if there are none); they leave memory."""
        if not self.attn_steps and not self.snap_steps:
            return None
        out = {"attn_steps": torch.tensor(self.attn_steps, dtype=torch.int64),
               "snap_steps": torch.tensor(self.snap_steps, dtype=torch.int64)}
        out.update({f"attn.{k}": torch.stack(v) for k, v in self.attn.items()})
        out.update({f"snap.{k}": torch.stack(v) for k, v in self.snaps.items()})
        self.attn_steps, self.attn, self.snap_steps, self.snaps = [], {}, [], {}
        return out

    def load(self, run: RunDir, upto: int, probe_names: list[str]) -> None:
        """Refill the tables from a run directory and cut its trajectory back, dropping anything written
        after checkpoint step `upto`."""
        if run.has_table(METRICS_TABLE):
            df = run.metrics()
            self.rows = df[df.step <= upto].to_dict("records")
        for name in probe_names:
            if run.has_table(name):
                df = run.table(name)
                self.probe_rows[name] = df[df.step <= upto].to_dict("records")
        run.truncate_trajectory(upto)


def _host_copy(t: torch.Tensor) -> torch.Tensor:
    """A CPU copy that never aliases the live parameters (`.cpu()` of a CPU tensor is the tensor itself)."""
    return t.detach().to("cpu", copy=True)


class GrokState(NamedTuple):
    """Per run and task [R, T]: consecutive evals at/above the grok accuracy, `grok_step` and
    `grok_step_90` (-1 until they fire)."""

    consec: torch.Tensor
    grok: torch.Tensor
    grok90: torch.Tensor


def update_grok(state: GrokState, test_acc: torch.Tensor, logged: torch.Tensor, step: int,
                cfg: RunConfig) -> GrokState:
    """The grok rules after one evaluation, on the device: `grok_step` is the step at which test accuracy
    has been >= `grok_acc` (98%) for `grok_patience` (3) consecutive evals; `grok_step_90` the first eval
    >= 90%. Runs not `logged` [R] this eval keep their state."""
    on = logged[:, None]
    consec = torch.where(test_acc >= cfg.grok_acc, state.consec + 1, torch.zeros_like(state.consec))
    consec = torch.where(on, consec, state.consec)
    fire = on & (consec >= cfg.grok_patience) & (state.grok < 0)
    grok = torch.where(fire, torch.full_like(state.grok, step), state.grok)
    fire90 = on & (test_acc >= cfg.grok_acc_90) & (state.grok90 < 0)
    grok90 = torch.where(fire90, torch.full_like(state.grok90, step), state.grok90)
    return GrokState(consec, grok, grok90)


def _hyper(cfgs: list[RunConfig], device: torch.device, dtype: torch.dtype = torch.float32) -> HyperParams:
    def col(name: str) -> torch.Tensor:
        return torch.tensor([float(getattr(c.optim, name)) for c in cfgs], device=device, dtype=dtype)

    return HyperParams(lr=col("lr"), wd=col("wd"), clip=col("clip"), beta1=col("beta1"), beta2=col("beta2"),
                       eps=col("eps"), momentum=col("momentum"))


def check_dirs(cfgs: list[RunConfig], out: Path, resume: bool = False, force: bool = False) -> list[RunDir]:
    """Check every run's directory, writing nothing: a directory holding another config is refused unless
    `resume` (continue from its checkpoint under the new config) or `force` (start over); a damaged file in a
    run that would be resumed is refused too."""
    names = [c.name for c in cfgs]
    dup = {n for n in names if names.count(n) > 1}
    if dup:
        raise ConfigError(f"two runs share the name {sorted(dup)[0]!r}; give them different seeds or settings")
    dirs = [RunDir(Path(out) / n) for n in names]
    for c, d in zip(cfgs, dirs):
        if d.path.exists() and not d.exists() and any(d.path.iterdir()):
            raise StoreError(f"{d.path} exists and is not a grokscope run; choose another --out")
        if d.exists() and not force and not resume and d.config() != c:
            raise StoreError(f"{d.path} holds a run with a different config; pass --resume to continue it "
                             "under the new config or --force to start over")
        if d.exists() and not force:
            d.check()  # a corrupt checkpoint, trajectory or table is refused now, before anything is written
    return dirs


def _summary_final(d: RunDir) -> bool:
    try:
        return d.has_summary() and d.summary().get("finished") is True
    except StoreError:
        return False


def prepare_dirs(cfgs: list[RunConfig], out: Path, resume: bool = False, force: bool = False) -> list[RunDir]:
    """`check_dirs`, remove temp files a killed writer left behind, then (with `force`) delete the runs that will
    start over."""
    dirs = check_dirs(cfgs, out, resume, force)
    for d in dirs:
        if d.path.is_dir():
            for tmp in d.path.rglob(".*.tmp"):
                tmp.unlink(missing_ok=True)
    if force:
        for d in dirs:
            if d.exists():
                shutil.rmtree(d.path)
    return dirs


def train(
    cfgs: list[RunConfig],
    out: str | Path | None = None,
    device: str = "cpu",
    *,
    resume: bool = False,
    force: bool = False,
    probes: tuple[Probe, ...] = (),
    grad_transform: GradTransform | None = None,
    on_eval: Callable[[EvalInfo], None] | None = None,
    compile: bool | None = None,
    dtype: torch.dtype = torch.float32,
) -> list[RunResult]:
    """Train `cfgs` as one batched program; with `out`, keep each run in `out/<run name>/` and resume
    from checkpoints found there. `compile`: torch.compile the training loss, forward and backward, and the
    evaluation's attention core (None: see `compiled.wanted`, on for long runs; it falls back to eager if compiling
    fails). `dtype`: torch.float64 runs the same arithmetic in double precision, where rounding differences
    between kernels stay far below any tolerance (the batched-equals-alone tests use it)."""
    problem = Problem(cfgs, device, dtype)
    dirs = prepare_dirs(cfgs, Path(out), resume, force) if out is not None else None
    return _Loop(problem, dirs, probes, grad_transform, on_eval, compile).run()


def stepper(cfgs: list[RunConfig], device: str | torch.device = "cpu",
            compile: bool | None = None, dtype: torch.dtype = torch.float32) -> Callable[[int], None]:
    """The trainer's own per-step update (minibatch, gradients, clipping, optimiser) for `cfgs`, with no
    evaluation, probes or I/O: what the throughput benchmark times."""
    loop = _Loop(Problem(cfgs, device, dtype), None, (), None, None, compile)
    step_fn = STEPS[loop.base.optim.name]
    return lambda s: loop._step(s, step_fn, s < loop.budget)


class _Loop:
    def __init__(self, problem: Problem, dirs: list[RunDir] | None, probes: tuple[Probe, ...],
                 grad_transform: GradTransform | None, on_eval: Callable[[EvalInfo], None] | None,
                 compile: bool | None = None) -> None:
        self.pb, self.dirs, self.probes = problem, dirs, probes
        self.grad_transform, self.on_eval = grad_transform, on_eval
        cfgs, dev, R, T = problem.cfgs, problem.device, problem.R, len(problem.tasks)
        self.base = cfgs[0]
        use = problem.model.kind != "mlp" and compiled.wanted(compile, max(c.steps for c in cfgs))
        self.attend = compiled.attend() if use else None  # evaluation's attention core
        self.total = compiled.total_loss(problem) if use else None  # the step's loss, forward and backward
        self.hp = _hyper(cfgs, dev, problem.dtype)
        self.env = environment(dev)  # this session's: a resumed run records the session that wrote it last
        # One flat [R, P] buffer per quantity; `params` / `state` are named views into it, so the optimiser
        # is a handful of fused elementwise ops whatever the number of parameter tensors.
        init = problem.init_params()
        self.flat = M.flatten(init)
        self.params = M.unflatten_views(self.flat, init)
        self.flat_state = init_state(self.base.optim.name, {"theta": self.flat})
        self.state = {f"{k.split('.')[0]}.{name}": v for k, flat in self.flat_state.items()
                      for name, v in M.unflatten_views(flat, init).items()}
        self.methods = MethodState([c.method for c in cfgs], self.flat.shape[1], M.param_slices(init), dev,
                                   problem.dtype)
        self.budget = torch.tensor([c.steps for c in cfgs], device=dev)
        self.max_steps = max(c.steps for c in cfgs)
        self.consec = torch.zeros(R, T, dtype=torch.int64, device=dev)
        self.grok = torch.full((R, T), -1, dtype=torch.int64, device=dev)
        self.grok90 = torch.full((R, T), -1, dtype=torch.int64, device=dev)
        self.stopped = torch.zeros(R, dtype=torch.bool, device=dev)
        self.stop_step = torch.full((R,), -1, dtype=torch.int64, device=dev)
        self.diverged = torch.zeros(R, dtype=torch.bool, device=dev)
        self.resumed_at = torch.full((R,), -1, dtype=torch.int64, device=dev)
        self.wall = [0.0] * R
        self.shapes: list[list[dict[str, Any]]] = [[] for _ in range(R)]  # see `_note_shapes`
        self.rec = [_Recorder() for _ in range(R)]
        self.attn_names = M.attention_names(problem.model)
        self.final_acc: list[dict[str, dict[str, float]]] = [{} for _ in range(R)]
        if dirs is not None:
            self._load()
        # A stopped run whose summary says finished has its final files (the summary is written last): never
        # rewrite them. One killed between its final checkpoint and its summary gets them written again.
        self.written_final = [bool(st) and (dirs is None or _summary_final(dirs[r]))
                              for r, st in enumerate(self.stopped.cpu().tolist())]

    # ---- persistence -------------------------------------------------------------------------
    def _load(self) -> None:
        self._note_thread_change()
        for r, d in enumerate(self.dirs):
            if not d.file(CHECKPOINT).exists():
                d.truncate_trajectory(-1)  # segments of a run killed before its first checkpoint
                continue
            tensors, meta = d.checkpoint()
            for k, v in self.params.items():
                v[r] = tensors[f"params.{k}"].to(v.device)
            for k, v in self.state.items():
                v[r] = tensors[f"state.{k}"].to(v.device)
            if self.pb.stream is not None and "sampler.key" in tensors and "sampler" in meta:
                self.pb.stream.load_state(r, tensors["sampler.key"], meta["sampler"])
            self.methods.restore(r, tensors)
            if hasattr(self.grad_transform, "restore"):
                self.grad_transform.restore(r, tensors)
            s = int(meta["step"])
            self.resumed_at[r] = s
            self.consec[r] = torch.tensor(meta["consec"])
            self.grok[r] = torch.tensor(meta["grok_step"])
            self.grok90[r] = torch.tensor(meta["grok_step_90"])
            self.diverged[r] = bool(meta["diverged"])
            self.final_acc[r] = meta.get("final_acc", {})
            self.wall[r] = float(meta.get("wall_time", 0.0))
            self.shapes[r] = list(meta.get("batch_shapes", []))
            cfg = self.pb.cfgs[r]
            done = bool(meta["diverged"]) or (cfg.stop_on_grok and bool((self.grok[r] >= 0).all())) or s >= cfg.steps
            self.stopped[r] = done
            self.stop_step[r] = int(meta["stop_step"]) if done and meta["stop_step"] >= 0 else (s if done else -1)
            self.rec[r].load(d, s, [p.name for p in self.probes])

    def _note_thread_change(self) -> None:
        """One line on stderr when a run resumes on CPU with another thread count than it last trained with."""
        if self.pb.device.type == "cpu":
            note = resume_thread_note([d.recorded_threads() for d in self.dirs], torch.get_num_threads())
            if note:
                sys.stderr.write(note + "\n")

    def _checkpoint(self, step: int) -> None:
        if self.dirs is None:
            return
        for r, d in enumerate(self.dirs):
            if step < int(self.resumed_at[r]) or self.written_final[r]:
                continue  # still ahead of the batch (its files are newer), or finished and already written
            self.written_final[r] = bool(self.stopped[r])
            rec = self.rec[r]
            d.write_config(self.pb.cfgs[r])
            segment = rec.take_segment()
            if segment is not None:
                d.append_trajectory(step, segment)
            d.write_table(METRICS_TABLE, pd.DataFrame(rec.rows))
            for name, rows in rec.probe_rows.items():
                d.write_table(name, pd.DataFrame(rows))
            tensors = {f"params.{k}": v[r] for k, v in self.params.items()}
            tensors.update({f"state.{k}": v[r] for k, v in self.state.items()})
            tensors.update(self.methods.export(r))
            if hasattr(self.grad_transform, "export"):
                tensors.update(self.grad_transform.export(r))
            meta = {"step": step, "consec": self.consec[r].tolist(), "grok_step": self.grok[r].tolist(),
                    "grok_step_90": self.grok90[r].tolist(), "diverged": bool(self.diverged[r]),
                    "stop_step": int(self.stop_step[r]), "final_acc": self.final_acc[r],
                    "wall_time": self.wall[r], "digest": self.pb.cfgs[r].digest(), "batch_shapes": self.shapes[r]}
            if self.pb.stream is not None:  # the numpy stream's position, so a resumed run draws on exactly
                tensors["sampler.key"], meta["sampler"] = self.pb.stream.state(r)
            write_tensors(d.file(CHECKPOINT), tensors, meta)
            write_json(d.file(SUMMARY), self._summary(r, step))  # last: a finished summary means final files

    def _summary(self, r: int, step: int) -> dict[str, Any]:
        cfg, tasks = self.pb.cfgs[r], self.pb.tasks

        def by_task(t: torch.Tensor) -> dict[str, int | None]:
            return {task: (int(v) if v >= 0 else None) for task, v in zip(tasks, t.tolist())}

        stop = int(self.stop_step[r])
        return {
            "name": cfg.name,
            "config": cfg.to_dict(),
            "grok_step": by_task(self.grok[r]),
            "grok_step_90": by_task(self.grok90[r]),
            "final_acc": self.final_acc[r],
            "steps_trained": stop if stop >= 0 else step,
            "finished": bool(self.stopped[r]),
            "diverged": bool(self.diverged[r]),
            "wall_time": round(self.wall[r], 3),
            "environment": self.env,
            "batch_shapes": self.shapes[r],
        }

    # ---- the loop ----------------------------------------------------------------------------
    def _evaluate(self, s: int) -> None:
        pb = self.pb
        logged = (~self.stopped) & (self.resumed_at < s)  # a resumed run's step is logged already
        ev = self._with_compiled(lambda att: pb.evaluate(self.params, attend_fn=att))
        (tr_loss, tr_acc), (te_loss, te_acc) = ev["train"], ev["test"]
        norm = M.weight_norm(self.params)
        self.consec, self.grok, self.grok90 = update_grok(
            GrokState(self.consec, self.grok, self.grok90), te_acc, logged, s, self.base)
        bad = ~torch.isfinite(tr_loss).all(1) | ~torch.isfinite(norm)
        self.diverged |= logged & bad
        stop_grok = torch.tensor([c.stop_on_grok for c in pb.cfgs], device=pb.device) & (self.grok >= 0).all(1)
        newly = logged & (stop_grok | self.diverged | (s >= self.budget))
        self.stop_step = torch.where(newly, torch.clamp(self.budget, max=s), self.stop_step)
        self.stopped |= newly

        host = {k: v.cpu().numpy() for k, v in
                dict(tr_loss=tr_loss, tr_acc=tr_acc, te_loss=te_loss, te_acc=te_acc, norm=norm, logged=logged,
                     newly=newly).items()}
        for r in np.flatnonzero(host["logged"]):
            rec, name = self.rec[r], pb.cfgs[r].name
            for ti, task in enumerate(pb.tasks):
                for split, lk, ak in (("train", "tr_loss", "tr_acc"), ("test", "te_loss", "te_acc")):
                    rec.rows.append({"run": name, "step": s, "task": task, "split": split,
                                     "loss": float(host[lk][r, ti]), "acc": float(host[ak][r, ti]),
                                     "weight_norm": float(host["norm"][r])})
            self.final_acc[r] = {task: {"train": float(host["tr_acc"][r, ti]), "test": float(host["te_acc"][r, ti])}
                                 for ti, task in enumerate(pb.tasks)}
            if s % self.base.attn_every == 0:
                rec.attn_steps.append(s)
                for k in self.attn_names:
                    rec.attn.setdefault(k, []).append(_host_copy(self.params[k][r]))
            if s % self.base.snapshot_every == 0 or host["newly"][r]:
                rec.snap_steps.append(s)
                for k, v in self.params.items():
                    rec.snaps.setdefault(k, []).append(_host_copy(v[r]))
        for probe in self.probes:
            if s % probe.every == 0 and host["logged"].any():
                for row in probe.measure(pb, self.params, s):
                    r = int(row.pop("r"))
                    if host["logged"][r]:
                        self.rec[r].probe_rows.setdefault(probe.name, []).append(
                            {"run": pb.cfgs[r].name, "step": s, **row})
        if self.on_eval is not None:
            self.on_eval(EvalInfo(s, self.max_steps, host["tr_acc"], host["te_acc"], self.grok.cpu().numpy(),
                                  self.stopped.cpu().numpy(), pb.tasks))

    def run(self) -> list[RunResult]:
        base = self.base
        step_fn = STEPS[base.optim.name]
        # go on from the earliest checkpoint of a run still training: a run stopped before it never steps again
        going = ~self.stopped
        start = int(self.resumed_at[going].clamp(min=0).min()) if bool(going.any()) else int(self.resumed_at.max())
        s, t0 = start, time.perf_counter()
        live: torch.Tensor | None = None
        while True:
            if s % base.eval_every == 0 or s == self.max_steps:
                running = (~self.stopped).tolist()
                self._evaluate(s)
                now = time.perf_counter()
                self.wall = [w + (now - t0) * on for w, on in zip(self.wall, running)]
                t0 = now
                done = bool(self.stopped.all()) or s >= self.max_steps
                if done or (s > start and s % base.checkpoint_every == 0):
                    self._checkpoint(s)
                if done:
                    break
                live = self._live_runs(s)
                self._note_shapes(s, live)
            active = (~self.stopped) & (self.resumed_at <= s) & (s < self.budget)
            if live is None:
                self._step(s, step_fn, active)
            else:
                self._compact_step(s, step_fn, active, live)
            s += 1
        return self._results(s)

    def _with_compiled(self, fn: Callable[[Callable | None], Any], which: str = "attend") -> Any:
        """fn(the compiled function `which`: "attend" or "total") while compiling works; fn(None), the eager
        model, for good once it fails (no C compiler, unsupported platform, compiler bug), for both compiled
        functions at once, after one line on stderr. `fn` must be pure: it may run twice."""
        if getattr(self, which) is not None:
            try:
                return fn(getattr(self, which))
            except Exception as err:
                compiled.notice_fallback(err)
                self.attend = self.total = None
        return fn(None)

    def _grads(self, theta: torch.Tensor, pairs: torch.Tensor, targets: torch.Tensor,
               runs: torch.Tensor | None = None) -> torch.Tensor:
        """Per-run flat gradients at `theta` (of `runs`, when the batch is compacted)."""
        return self._with_compiled(lambda total: self.pb.flat_grads(theta, self.params, pairs, targets, runs=runs,
                                                                    total_fn=total), "total")

    def _step(self, s: int, step_fn: Callable, active: torch.Tensor) -> None:
        """One optimiser step of every run (frozen runs are masked out by `active`)."""
        pb = self.pb
        pairs, targets = pb.minibatch(s)
        g = {"theta": self.methods.apply(clip_rows_(self._grads(self.flat, pairs, targets), self.hp.clip),
                                         self.flat, active)}
        if self.grad_transform is not None:
            g = {"theta": M.flatten(self.grad_transform(s, self.params, M.unflatten(g["theta"], self.params)))}
        step_fn({"theta": self.flat}, g, self.flat_state, self.hp, s + 1, active)

    def _live_runs(self, s: int) -> torch.Tensor | None:
        """Indices of the runs still training, when some have stopped: finished runs are compacted out of
        the batch so they cost nothing. A run resumed from a later checkpoint than step `s` (killed between two
        runs' checkpoint writes) or stopped after `s` stays in, masked, until the others catch up: the batch's
        steps keep the shapes they had uninterrupted, and with them every run's last bits. None when all train
        (or when a gradient transform, which may hold per-run tensors for the whole batch, is in use)."""
        live = ((~self.stopped) | (self.stop_step > s)).nonzero().flatten()
        if self.grad_transform is not None or len(live) == self.pb.R or len(live) == 0:
            return None
        return live

    def _note_shapes(self, s: int, live: torch.Tensor | None) -> None:
        """Record, for each run that trains from step `s`, the batch it is evaluated in and the one its steps take
        ([rows, its row] each), when they differ from its last record. Kernels are picked by shape, so two records
        of one run are bit-identical only where these agree; a resume that leaves a run behind the others (it trains
        alone until it catches up) or a sweep that packs its unfinished runs anew shows here."""
        R = self.pb.R
        rows = list(range(R)) if live is None else live.tolist()
        trains = ((~self.stopped) & (self.resumed_at <= s) & (s < self.budget)).tolist()
        for r in range(R):
            if not trains[r] or r not in rows:
                continue
            shape = {"from_step": s, "evaluated_in": [R, r], "trained_in": [len(rows), rows.index(r)]}
            last = self.shapes[r][-1] if self.shapes[r] else {}
            if (last.get("evaluated_in"), last.get("trained_in")) != (shape["evaluated_in"], shape["trained_in"]):
                self.shapes[r].append(shape)

    def _compact_step(self, s: int, step_fn: Callable, active: torch.Tensor, live: torch.Tensor) -> None:
        """`_step` on the live runs only: gather their parameters and state, step, scatter back."""
        pb = self.pb
        theta = self.flat.index_select(0, live)
        state = {k: v.index_select(0, live) for k, v in self.flat_state.items()}
        pairs, targets = pb.minibatch(s, runs=live)
        hp = self.hp.select(live)
        on = active.index_select(0, live)
        g = {"theta": self.methods.apply(clip_rows_(self._grads(theta, pairs, targets, live), hp.clip), theta, on,
                                         runs=live)}
        step_fn({"theta": theta}, g, state, hp, s + 1, on)
        self.flat.index_copy_(0, live, theta)
        for k, v in state.items():
            self.flat_state[k].index_copy_(0, live, v)

    def _results(self, step: int) -> list[RunResult]:
        out = []
        for r, cfg in enumerate(self.pb.cfgs):
            rec = self.rec[r]
            tables = {k: pd.DataFrame(v) for k, v in rec.probe_rows.items()}
            out.append(RunResult(cfg, self._summary(r, step), pd.DataFrame(rec.rows),
                                 {k: _host_copy(v[r]) for k, v in self.params.items()}, tables,
                                 self.dirs[r].path if self.dirs is not None else None))
        return out

