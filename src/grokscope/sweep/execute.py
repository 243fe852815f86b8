"""Running a sweep: check the store, train what is pending (in-process or on Ray), and tabulate the store.

Everything lands in one store (`out/<run name>/`); rerunning a sweep skips finished runs and resumes
partial ones from their checkpoints. `run_sweep` returns one row per run (`results_table`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from grokscope.config import RunConfig
from grokscope.errors import ConfigError
from grokscope.runtime.devices import resolve_device
from grokscope.store import RunDir, check_dirs
from grokscope.sweep.batch import analyses_to_run, finished, train_batch
from grokscope.sweep.packing import plan
from grokscope.sweep.ray_executor import BatchFn, execute_ray, import_ray
from grokscope.sweep.spec import SweepSpec, expand
from grokscope.training.progress_bars import BatchProgress

__all__ = ["sweep_status", "pending", "run_sweep", "results_table"]

SPEC_RESUME = "set `resume: true` in the spec to continue it under the sweep's config, or choose another out"


def sweep_status(spec: SweepSpec) -> pd.DataFrame:
    """Each run of the spec with its state in the store: new, partial, finished or conflict."""
    rows = []
    for c in expand(spec):
        d = RunDir(Path(spec.out) / c.name)
        if not d.exists():
            state = "new"
        elif d.config() != c:
            state = "resume" if spec.resume else "conflict"
        else:
            state = "finished" if finished(c, Path(spec.out)) else "partial"
        rows.append({"name": c.name, "state": state, "steps": c.steps,
                     "missing_analyses": analyses_to_run(c, Path(spec.out), spec.analyses) if d.exists()
                     else list(spec.analyses)})
    return pd.DataFrame(rows)


def pending(spec: SweepSpec, cfgs: Sequence[RunConfig] | None = None) -> list[RunConfig]:
    """The runs a sweep still has to train or analyse (finished ones with every analysis stored are not)."""
    out = Path(spec.out)
    return [c for c in (expand(spec) if cfgs is None else cfgs)
            if not finished(c, out) or analyses_to_run(c, out, spec.analyses)]


def run_sweep(spec: SweepSpec, executor: str = "local", address: str | None = None, progress: bool = True,
              *, max_runs: int | None = None, batch_fn: BatchFn | None = None) -> pd.DataFrame:
    """Train every unfinished run of the sweep (batched, in-process or on Ray), run its analyses, and
    return one row per run: name, path, status, grok step and final train/test accuracy per task."""
    if executor not in ("local", "ray"):
        raise ConfigError(f"unknown executor {executor!r}; choose local or ray")
    batch_fn = batch_fn or train_batch
    cfgs = expand(spec)
    out = Path(spec.out).resolve()
    check_dirs(cfgs, out, spec.resume, remedy=SPEC_RESUME)  # refused before anything trains
    before = {c.name for c in cfgs if finished(c, out)}
    todo = pending(spec, cfgs)
    max_runs = max_runs or spec.max_runs
    if executor == "ray":
        execute_ray(import_ray(), todo, spec, out, address, progress, batch_fn, max_runs)
    else:
        device = resolve_device(spec.device)
        batches = plan(todo, device, max_runs)
        with BatchProgress(batches, progress) as bar:
            for i, b in enumerate(batches):
                report = (lambda info, i=i: bar.update(i, info)) if progress else None
                trained = batch_fn(b, str(out), device, spec.resume, spec.analyses, report)
                bar.finish(i, len(trained))
    return results_table(cfgs, out, before)



def results_table(cfgs: Sequence[RunConfig], out: Path, before: set[str] = frozenset()) -> pd.DataFrame:
    """One row per run from the store: config axes, status, grok steps and final accuracies per task, and
    the scalar results of its analyses (`<analysis>.<key>`)."""
    rows = []
    for c in cfgs:
        d = RunDir(out / c.name)
        s = d.summary() if d.has_summary() else {}
        row: dict[str, Any] = {"name": c.name, "path": str(d.path), "tasks": "+".join(c.data.tasks),
                               "p": c.data.p, "model": c.model.kind, "wd": c.optim.wd, "lr": c.optim.lr,
                               "seed": c.seed, "steps": c.steps,
                               "status": "skipped" if c.name in before else ("trained" if s else "missing"),
                               "steps_trained": s.get("steps_trained"), "finished": s.get("finished"),
                               "diverged": s.get("diverged"), "wall_time": s.get("wall_time")}
        for t in c.data.tasks:
            row[f"grok_step.{t}"] = (s.get("grok_step") or {}).get(t)
            row[f"grok_step_90.{t}"] = (s.get("grok_step_90") or {}).get(t)
            acc = (s.get("final_acc") or {}).get(t, {})
            row[f"train_acc.{t}"] = acc.get("train")
            row[f"test_acc.{t}"] = acc.get("test")
        for name, res in d.analyses().items():
            row.update(_flat(res, name))
        rows.append(row)
    return pd.DataFrame(rows)


def _flat(d: Any, prefix: str) -> dict[str, Any]:
    """Scalars of a nested dict as `prefix.key.sub` columns (lists are left out)."""
    if not isinstance(d, dict):
        return {prefix: d} if d is None or isinstance(d, (int, float, str, bool)) else {}
    out: dict[str, Any] = {}
    for k, v in d.items():
        out.update(_flat(v, f"{prefix}.{k}"))
    return out
