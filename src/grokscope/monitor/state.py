"""Continuing a monitored run's record after its process stopped: a new `Monitor` on the same `out` picks it up.

Every write of the store ends with `monitor_state.json`: the record's id, its first step and the last step written in
full. A `Monitor(..., start_step=S)` on that folder continues the record when it was written in full through S, by the
same model (parameter names and shapes) with the same settings: it reads the records up to S back (what a process
that ran past the checkpoint at S wrote after it is dropped) and rebuilds what the monitor derives from them by
replaying them (the grok rule over the logged test accuracies, the detector over its recorded inputs), so everything it
measures and writes from then on is what an uninterrupted run would have. The monitor's minibatches, Lanczos starts
and sketches are pure functions of (seed, step, ...): there is no random stream to carry over. Each file is written
atomically and `monitor_state.json` last (first when it lowers the step), so a store read at any moment is whole.
"""

from __future__ import annotations

import json
import math
import shutil
import sys
import uuid
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch

from grokscope.config import EXTERNAL
from grokscope.errors import RecordExistsError, StoreError
from grokscope.monitor.choice import detector_kwargs
from grokscope.monitor.divergence import DivergenceEvent
from grokscope.monitor.logged import advance_grok
from grokscope.store import (
    DEFECT_GROUPS_TABLE,
    DEFECT_TABLE,
    DETECTOR_TABLE,
    HESSIAN_GROUPS_TABLE,
    HESSIAN_TABLE,
    LLC_TABLE,
    METRICS_TABLE,
    MONITOR,
    MONITOR_STATE,
    SCALARS_TABLE,
    TRAJECTORY,
    WARNINGS_TABLE,
    RunDir,
    read_json,
    read_tensors,
    write_json,
)

if TYPE_CHECKING:
    from grokscope.monitor.monitor import Monitor

VERSION = 1
# the monitor's lists of rows and the table each is written to
TABLES = {"rows": METRICS_TABLE, "scalars": SCALARS_TABLE, "defect_rows": DEFECT_TABLE,
          "hessian_rows": HESSIAN_TABLE, "defect_group_rows": DEFECT_GROUPS_TABLE,
          "hessian_group_rows": HESSIAN_GROUPS_TABLE, "llc_rows": LLC_TABLE, "detector_inputs": DETECTOR_TABLE}
FREE_SETTINGS = ("verbose", "flush_every")  # settings a continued record may change: they shape no measurement
RTOL, ATOL = 1e-5, 1e-6  # the model at start_step against the record's copy (sketches on GPU sum in any order)


@dataclass(frozen=True)
class Record:
    """What `monitor_state.json` says: the record's id, its first step and the last step written in full (None: its
    first write never finished)."""

    id: str
    first: int
    step: int | None

    @classmethod
    def new(cls, first: int) -> Record:
        return cls(uuid.uuid4().hex, int(first), None)


def write_record(run: RunDir, rec: Record) -> None:
    write_json(run.file(MONITOR_STATE), {"version": VERSION, "record": rec.id, "first_step": rec.first,
                                         "step": rec.step})


def read_record(run: RunDir) -> Record:
    f = run.file(MONITOR_STATE)
    raw = read_json(f)
    try:
        return Record(str(raw["record"]), int(raw["first_step"]), None if raw["step"] is None else int(raw["step"]))
    except (KeyError, TypeError, ValueError):
        raise StoreError(f"{f} is not a monitor state file") from None


def open_record(run: RunDir, start: int, overwrite: bool) -> Record | None:
    """The record at `run` to continue from step `start`, or None to start a new one (the folder then exists and is
    empty). Refuses, naming the values, a folder that is not a run, a run the monitor cannot continue, a `start`
    before the record's first step or after the last step written in full (a gap), and a new start at the first
    step of a record that went further (`RecordExistsError`). Writes nothing but the removal of a record it replaces."""
    p, where = run.path, f"out={str(run.path)!r}"
    if p.exists() and not p.is_dir():
        raise StoreError(f"{where} exists and is not a folder")
    if not p.exists() or not any(p.iterdir()):
        p.mkdir(parents=True, exist_ok=True)
        return None
    has_state = run.file(MONITOR_STATE).exists()
    if not (run.exists() or has_state):
        raise StoreError(f"{where} exists and is not a grokscope run; choose another folder")
    if overwrite:
        shutil.rmtree(p)
        p.mkdir(parents=True)
        return None
    if not has_state:
        what = ("a record written before monitors could resume" if run.config().model.kind == EXTERNAL
                else "a run trained by grokscope")
        raise RecordExistsError(f"{where} already holds {what}, which a Monitor cannot continue; pass overwrite=True "
                                "to replace it, or choose another folder")
    rec = read_record(run)
    if start < rec.first:
        raise StoreError(f"{where} holds a record that starts at step {rec.first}; start_step={start} is before it: "
                         "pass the step of the checkpoint you resume from, or overwrite=True to replace the record")
    if start == rec.first and (rec.step is None or rec.step == rec.first):
        shutil.rmtree(p)  # nothing recorded past the step this new start measures again: start afresh
        p.mkdir(parents=True)
        return None
    if start == rec.first:
        raise RecordExistsError(f"{where} already holds a run (steps {rec.first}–{rec.step}); start_step={start} "
                                "would start it over: pass the step of the checkpoint you resume from as start_step "
                                "to continue it, or overwrite=True to replace it")
    if rec.step is None or start > rec.step:
        held = "nothing written in full" if rec.step is None else f"the record up to step {rec.step} only"
        last = rec.first if rec.step is None else rec.step
        raise StoreError(f"{where} holds {held}, but start_step={start}: steps {last + 1}–{start} were never written "
                         f"(the process stopped before the monitor's next write): resume from a checkpoint at step "
                         f"{last} or earlier (and keep mon.state_dict() in every checkpoint so the record keeps up), "
                         f"or pass overwrite=True to start a new record at step {start}")
    return rec


def continue_record(mon: Monitor, rec: Record, start: int) -> None:
    """Make `mon` the monitor of record `rec` after step `start`: check the model and settings against it, read its
    records up to `start` back, check the model's parameters against the record's at `start`, then cut the store
    back to `start` (the state file first, so a kill in between leaves a store that says what it holds)."""
    check_same(mon)
    restore(mon, start)
    check_parameters(mon, start)
    mon.record = replace(rec, step=start)
    write_record(mon.run, mon.record)
    for attr, name in {**TABLES, "events": WARNINGS_TABLE}.items():
        if not getattr(mon, attr):
            mon.run.file(f"{name}.parquet").unlink(missing_ok=True)
    for tmp in mon.run.path.glob(".*.tmp"):  # a killed writer's temporary file: never read, now removed
        tmp.unlink(missing_ok=True)
    if rec.step is not None and rec.step > start and mon.cfg.verbose:
        print(f"grokscope: continuing the record at {mon.run.path} from step {start} (dropped what steps "
              f"{start + 1}–{rec.step} had written after that checkpoint)", file=sys.stderr, flush=True)


def _normal(obj: Any) -> Any:
    """`obj` as it reads back from JSON (tuples as lists)."""
    return json.loads(json.dumps(obj))


def check_same(mon: Monitor) -> None:
    """The record at `mon.run` was written for a model with the same parameters (names and shapes), the same
    watched tensors, settings and seed; else a StoreError naming the first difference."""
    run, where = mon.run, f"out={str(mon.run.path)!r}"
    old, new = read_json(run.file(MONITOR)), _normal(mon.description())
    have, want = old.get("parameters", {}), new["parameters"]
    missing = [n for n in want if n not in have] + [n for n in have if n not in want]
    if missing:
        side = "the record has no parameter" if missing[0] in want else "this model has no parameter"
        raise StoreError(f"{where} holds a record of another model: {side} {missing[0]!r}; pass overwrite=True to "
                         "replace it, or choose another folder")
    for n in want:
        if have[n] != want[n]:
            raise StoreError(f"{where} holds a record of another model: {n!r} has shape {tuple(have[n])} there and "
                             f"{tuple(want[n])} here; pass overwrite=True to replace it, or choose another folder")
    was = {**old.get("settings", {}), "watch": old.get("watch"), "seed": run.config().seed}
    now = {**new["settings"], "watch": new["watch"], "seed": mon.seed}
    for k in sorted(set(was) | set(now)):
        if k not in FREE_SETTINGS and was.get(k) != now.get(k):
            raise StoreError(f"{where} was recorded with {k}={was.get(k)!r}, this Monitor has {k}={now.get(k)!r}: "
                             "pass the same settings to continue the record, or overwrite=True to replace it")


def _native(v: Any) -> Any:
    if isinstance(v, np.ndarray):
        return v.tolist()
    return v.item() if isinstance(v, np.generic) else v


def read_rows(run: RunDir, name: str, upto: int) -> list[dict[str, Any]]:
    """The rows of table `name` at steps <= upto, as the monitor keeps them (plain Python values)."""
    if not run.has_table(name):
        return []
    df = run.table(name)
    df = df[df["step"] <= upto] if len(df) else df
    return [{k: _native(v) for k, v in r.items()} for r in df.to_dict("records")]


def _missing(v: Any) -> Any:
    return None if v is None or (isinstance(v, float) and math.isnan(v)) else v


def restore(mon: Monitor, upto: int) -> None:
    """Everything `mon` keeps, as it was after step `upto`: the stored rows and trajectory records up to it, the
    thinning strides, and by replay the tasks, last accuracies, grok rule, detector and its events."""
    run = mon.run
    mon.run_cfg = replace(mon.run_cfg, optim=run.config().optim)  # as the record began (a scheduler moved the lr since)
    for attr, name in TABLES.items():
        setattr(mon, attr, read_rows(run, name, upto))
    t, meta = read_tensors(run.file(TRAJECTORY))
    for kind, names, steps_attr, rec_attr in (("attn", mon.watched, "watch_steps", "watch_records"),
                                               ("snap", mon.target.names, "snap_steps", "snaps")):
        keep = t[f"{kind}_steps"] <= upto
        setattr(mon, steps_attr, t[f"{kind}_steps"][keep].tolist())
        setattr(mon, rec_attr, {n: list(t[f"{kind}.{n}"][keep].unbind(0)) if f"{kind}.{n}" in t else []
                                for n in names})
    mon._watch_stride, mon._snap_stride = int(meta.get("watch_stride", 1)), int(meta.get("snap_stride", 1))
    for r in mon.rows:  # as `Monitor._log_metrics` saw them; an accuracy is never NaN, so a NaN one was not logged
        if r["task"] not in mon.tasks:
            mon.tasks = mon.tasks + (r["task"],)
        if not math.isnan(r["acc"]):
            mon.final_acc.setdefault(r["task"], {})[r["split"]] = r["acc"]
            if r["split"] == "test":
                mon.grok[r["task"]] = advance_grok(mon.grok.get(r["task"]), r["step"], r["acc"], mon.run_cfg)
    if mon.detector is not None:
        for r in mon.detector_inputs:  # every input recorded (older records hold fewer: the rest count as missing)
            inputs = {k: _missing(v) for k, v in r.items() if k not in ("step", "defect")}
            event = mon.detector.observe(r["step"], r["defect"], **detector_kwargs(mon.detector, inputs))
            if event is not None:
                mon.events.append(event)
    try:
        before = run.summary() if run.has_summary() else {}
    except StoreError:
        before = {}
    div = (before.get("monitor") or {}).get("divergence")
    if div and int(div["step"]) <= upto:  # a run that had diverged by the checkpoint stays diverged
        mon.divergence.event = DivergenceEvent(int(div["step"]), str(div["source"]), float(div["value"]))
    try:
        mon.spent += float(before["monitor"]["seconds"])
        mon._started -= float(before["wall_time"])
    except (KeyError, TypeError, ValueError, StoreError):
        pass  # the time spent before is a report, not a measurement
    mon.last_step = upto
    mon._written = None


def check_parameters(mon: Monitor, step: int) -> None:
    """The model's parameters now equal the record's copies at `step` (watched tensors, or their sketches, and
    snapshots, where the record holds them): else a StoreError, since the model was not loaded from that step."""
    live = mon.target.live
    now: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    if step in mon.watch_steps:
        i = mon.watch_steps.index(step)
        for n in mon.watched:
            x = mon.sketches[n](live[n]) if n in mon.sketches else live[n].detach()
            now[n] = (x.cpu(), mon.watch_records[n][i])
    if step in mon.snap_steps:
        j = mon.snap_steps.index(step)
        now.update({n: (live[n].detach().cpu(), mon.snaps[n][j]) for n in mon.target.names})
    for n, (x, rec) in now.items():
        if x.shape != rec.shape or not torch.allclose(x.double(), rec.double(), RTOL, ATOL, equal_nan=True):
            gap = float((x.double() - rec.double()).abs().max()) if x.shape == rec.shape else math.inf
            raise StoreError(f"the model's {n!r} differs from what out={str(mon.run.path)!r} recorded at step {step} "
                             f"(max |Δ| {gap:.3g}): load the checkpoint of step {step} into the model before creating "
                             "the Monitor")


def write_state(mon: Monitor) -> None:
    """The end of every write of the store: the detector's inputs, then the state file saying the store now holds
    everything up to the monitor's last step."""
    if mon.detector_inputs:
        mon.run.write_table(DETECTOR_TABLE, pd.DataFrame(mon.detector_inputs))
    mon.record = replace(mon.record, step=mon.last_step)
    write_record(mon.run, mon.record)


def state_of(mon: Monitor) -> dict[str, Any]:
    """What a checkpoint keeps of the monitor (after `mon` wrote its store in full): the folder, record id, step."""
    return {"out": str(mon.run.path), "record": mon.record.id, "step": mon.last_step}


def check_state(mon: Monitor, state: dict[str, Any]) -> None:
    """A checkpoint's `state_dict` describes the record `mon` continues, at the step it continues from."""
    try:
        rec, step = str(state["record"]), state["step"]
    except (KeyError, TypeError):
        raise StoreError(f"not a Monitor state_dict: {state!r}") from None
    where = f"out={str(mon.run.path)!r}"
    if rec != mon.record.id:
        raise StoreError(f"the checkpoint's monitor state belongs to another record than the one at {where} "
                         f"(record {rec[:8]}, the folder holds {mon.record.id[:8]}): it was replaced since; resume "
                         "into the folder the checkpoint was recorded in")
    if step != mon.last_step:
        raise StoreError(f"the checkpoint's monitor state is at step {step}, but the Monitor at {where} continues "
                         f"from step {mon.last_step}: pass start_step={step}")
