"""The batched training loop: step, evaluate, detect grokking, record the trajectory, checkpoint, resume.

R runs train as one program. Each run keeps its own seed, data order, lr, weight decay, clip norm and
step budget; a run whose tasks have all grokked, that hit its budget, or that diverged is frozen while
the others go on. The loop knows nothing of analyses: it takes *probes* (measurements every N steps,
e.g. inline commutator defects) and a *gradient transform* (interventions) as plain callables.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from grokscope.config import RunConfig
from grokscope.runtime.environment import environment
from grokscope.runtime.threads import resume_thread_note
from grokscope.store import CHECKPOINT, METRICS_TABLE, SUMMARY, RunDir, prepare_dirs, write_json, write_tensors
from grokscope.training import compiled
from grokscope.training import model as M
from grokscope.training.contract import EvalInfo, GradTransform, Probe, RunResult
from grokscope.training.grok import GrokState, update_grok
from grokscope.training.memory import out_of_memory
from grokscope.training.methods import MethodState
from grokscope.training.optim import STEPS, HyperParams, clip_rows_, hyper_params, init_state
from grokscope.training.problem import Params, Problem
from grokscope.training.recorder import Recorder, finished_summary, note_batch_shapes


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
    evaluation, probes or I/O: what the throughput benchmark times (its `loop` attribute is the trainer's loop)."""
    loop = _Loop(Problem(cfgs, device, dtype), None, (), None, None, compile)
    step_fn = STEPS[loop.base.optim.name]

    def step(s: int) -> None:
        loop._step(s, step_fn, s < loop.budget)

    step.loop = loop  # type: ignore[attr-defined]
    return step


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
        self.hp = hyper_params(cfgs, dev, problem.dtype)
        if dev.type == "cpu":
            self.hp.host_rows()  # the CPU's AdamW kernel takes host floats: read once, here, not in a step
        # AdamW's update compiled into one loop off the CPU (on the CPU the fused per-run kernel is faster)
        self.adamw = compiled.adamw() if use and dev.type != "cpu" and self.base.optim.name == "adamw" else None
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
        self.stop_on_grok = torch.tensor([c.stop_on_grok for c in cfgs], device=dev)
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
        self.rec = [Recorder() for _ in range(R)]
        self.attn_names = M.attention_names(problem.model)
        self.final_acc: list[dict[str, dict[str, float]]] = [{} for _ in range(R)]
        if dirs is not None:
            self._load()
        # A stopped run whose summary says finished has its final files (the summary is written last): never
        # rewrite them. One killed between its final checkpoint and its summary gets them written again.
        stopped = self.stopped.tolist() if dirs is not None else [False] * R  # only a resumed run starts stopped
        self.written_final = [bool(st) and (dirs is None or finished_summary(dirs[r])) for r, st in enumerate(stopped)]

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
            self.consec[r] = torch.tensor(meta["consec"], device=self.pb.device)
            self.grok[r] = torch.tensor(meta["grok_step"], device=self.pb.device)
            self.grok90[r] = torch.tensor(meta["grok_step_90"], device=self.pb.device)
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
        stop_grok = self.stop_on_grok & (self.grok >= 0).all(1)
        newly = logged & (stop_grok | self.diverged | (s >= self.budget))
        self.stop_step = torch.where(newly, torch.clamp(self.budget, max=s), self.stop_step)
        self.stopped |= newly

        host = {k: v.cpu().numpy() for k, v in
                dict(tr_loss=tr_loss, tr_acc=tr_acc, te_loss=te_loss, te_acc=te_acc, norm=norm, logged=logged,
                     newly=newly).items()}
        rows = np.flatnonzero(host["logged"])
        attn = self._host_records(self.attn_names, rows) if s % self.base.attn_every == 0 else {}
        snap_rows = rows if s % self.base.snapshot_every == 0 else np.flatnonzero(host["newly"])
        snaps = self._host_records(list(self.params), snap_rows)
        for r in rows:
            rec, name = self.rec[r], pb.cfgs[r].name
            for ti, task in enumerate(pb.tasks):
                for split, lk, ak in (("train", "tr_loss", "tr_acc"), ("test", "te_loss", "te_acc")):
                    rec.rows.append({"run": name, "step": s, "task": task, "split": split,
                                     "loss": float(host[lk][r, ti]), "acc": float(host[ak][r, ti]),
                                     "weight_norm": float(host["norm"][r])})
            self.final_acc[r] = {task: {"train": float(host["tr_acc"][r, ti]), "test": float(host["te_acc"][r, ti])}
                                 for ti, task in enumerate(pb.tasks)}
            if attn:
                rec.attn_steps.append(s)
                for k in self.attn_names:
                    rec.attn.setdefault(k, []).append(attn[k][r])
            if r in snaps.get("rows", ()):
                rec.snap_steps.append(s)
                for k in self.params:
                    rec.snaps.setdefault(k, []).append(snaps[k][r])
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

    def _host_records(self, names: list[str], rows: np.ndarray) -> dict[str, Any]:
        """Host copies of the parameters `names` of runs `rows`: one device-to-host copy per batched tensor (not one
        per run), split into per-run tensors that own their memory; {"rows": set of rows, name: {row: tensor}}."""
        if len(rows) == 0:
            return {}
        out: dict[str, Any] = {"rows": {int(r) for r in rows}}
        for k in names:
            host = self.params[k].detach().to("cpu")  # on a CPU batch: the live tensor, cloned row by row below
            out[k] = {int(r): host[r].clone() for r in rows}
        return out

    def run(self) -> list[RunResult]:
        try:
            return self._run()
        except torch.OutOfMemoryError as err:
            raise out_of_memory(err, self.pb) from err

    def _run(self) -> list[RunResult]:
        base = self.base
        step_fn = STEPS[base.optim.name]
        # go on from the earliest checkpoint of a run still training: a run stopped before it never steps again
        going = ~self.stopped
        start = int(self.resumed_at[going].clamp(min=0).min()) if bool(going.any()) else int(self.resumed_at.max())
        s, t0 = start, time.perf_counter()
        live: tuple[torch.Tensor, list[int]] | None = None
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
        """fn(the compiled function `which`: "attend", "total" or "adamw") while compiling works; fn(None), the
        eager code, for good once it fails (no C compiler, unsupported platform, compiler bug), for all compiled
        functions at once, after one line on stderr. `fn` must be pure, or fail before writing: it may run twice.
        An out-of-memory or device error is re-raised: the step failed, not the compiler."""
        if getattr(self, which) is not None:
            try:
                return fn(getattr(self, which))
            except compiled.NOT_A_COMPILE_FAILURE:
                raise  # out of memory, a device error: the step itself failed, and eager would fail the same way
            except Exception as err:
                compiled.notice_fallback(err)
                self.attend = self.total = self.adamw = None
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
        self._optimise(step_fn, self.flat, g, self.flat_state, self.hp, s + 1, active)

    def _optimise(self, step_fn: Callable, theta: torch.Tensor, g: Params, state: Params, hp: HyperParams, t: int,
                  active: torch.Tensor) -> None:
        """step_fn on the flat rows, with AdamW's elementwise update compiled when the trainer compiles it (a
        compile failure, raised before anything is written, falls back to the eager update)."""

        def update(fn: Callable | None) -> None:
            hp.update = fn
            step_fn({"theta": theta}, g, state, hp, t, active)

        self._with_compiled(update, "adamw")

    def _live_runs(self, s: int) -> tuple[torch.Tensor, list[int]] | None:
        """Indices of the runs still training (on the device and on the host), when some have stopped: finished
        runs are compacted out of the batch so they cost nothing. A run resumed from a later checkpoint than step
        `s` (killed between two runs' checkpoint writes) or stopped after `s` stays in, masked, until the others
        catch up: the batch's steps keep the shapes they had uninterrupted, and with them every run's last bits.
        None when all train (or when a gradient transform, which may hold per-run tensors for the whole batch, is
        in use). Called at evaluation steps only: reading the stop flags back is one of the syncs an evaluation
        makes."""
        rows = ((~self.stopped) | (self.stop_step > s)).nonzero().flatten().tolist()
        if self.grad_transform is not None or len(rows) == self.pb.R or len(rows) == 0:
            return None
        return torch.tensor(rows, dtype=torch.int64, device=self.pb.device), rows

    def _note_shapes(self, s: int, live: tuple[torch.Tensor, list[int]] | None) -> None:
        """`note_batch_shapes` for the runs that train from step `s` (an evaluation step: the flags are read back)."""
        rows = list(range(self.pb.R)) if live is None else live[1]
        trains = ((~self.stopped) & (self.resumed_at <= s) & (s < self.budget)).tolist()
        note_batch_shapes(self.shapes, s, rows, trains)

    def _compact_step(self, s: int, step_fn: Callable, active: torch.Tensor,
                      live_rows: tuple[torch.Tensor, list[int]]) -> None:
        """`_step` on the live runs only: gather their parameters and state, step, scatter back."""
        pb = self.pb
        live, rows = live_rows
        theta = self.flat.index_select(0, live)
        state = {k: v.index_select(0, live) for k, v in self.flat_state.items()}
        pairs, targets = pb.minibatch(s, runs=live)
        hp = self.hp.select(live, rows)
        on = active.index_select(0, live)
        g = {"theta": self.methods.apply(clip_rows_(self._grads(theta, pairs, targets, live), hp.clip), theta, on,
                                         runs=live)}
        self._optimise(step_fn, theta, g, state, hp, s + 1, on)
        self.flat.index_copy_(0, live, theta)
        for k, v in state.items():
            self.flat_state[k].index_copy_(0, live, v)

    def _results(self, step: int) -> list[RunResult]:
        out = []
        final = self._host_records(list(self.params), np.arange(self.pb.R))
        for r, cfg in enumerate(self.pb.cfgs):
            rec = self.rec[r]
            tables = {k: pd.DataFrame(v) for k, v in rec.probe_rows.items()}
            out.append(RunResult(cfg, self._summary(r, step), pd.DataFrame(rec.rows),
                                 {k: final[k][r] for k in self.params}, tables,
                                 self.dirs[r].path if self.dirs is not None else None))
        return out

