"""One batched program: runs trained together with the inline measurements their config asks for
(`train_with_probes`: `grokscope.train`, what `grokscope run` calls), and a sweep's batch, the unit an executor
schedules: train its unfinished runs, then analyse them (`train_batch`). The trainer stays ignorant of analyses;
this is the one place that turns config fields into probes."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from grokscope.analyses import missing_analyses, run_analysis
from grokscope.config import RunConfig
from grokscope.errors import StoreError
from grokscope.geometry.commutator import defect_probe
from grokscope.store import RunDir
from grokscope.training import EvalInfo, GradTransform, Probe, RunResult, train
from grokscope.training.progress_bars import Report, eval_reporter

__all__ = ["probes_for", "train_with_probes", "finished", "analyses_to_run", "train_batch"]


def probes_for(cfg: RunConfig) -> tuple[Probe, ...]:
    """Inline measurements requested by the config (shared by every run of a batch)."""
    probes: list[Probe] = []
    if cfg.defect_every:
        probes.append(defect_probe(cfg.defect_every, draws=cfg.defect_draws, stream=cfg.defect_stream == "training"))
    return tuple(probes)


def train_with_probes(cfgs: list[RunConfig], out: str | Path | None = None, device: str = "cpu", *,
                      resume: bool = False, force: bool = False, probes: tuple[Probe, ...] = (),
                      grad_transform: GradTransform | None = None, on_eval: Callable[[EvalInfo], None] | None = None,
                      compile: bool | None = None, dtype: torch.dtype = torch.float32) -> list[RunResult]:
    """Train `cfgs` as one batched program with the inline measurements their config asks for (`defect_every`:
    the commutator defect every N steps, kept in each run's store), then any `probes` of your own. This is
    `grokscope.train` and what `grokscope run` calls; the arguments are the trainer's
    (`grokscope.training.train`: `out` keeps each run in `out/<run name>/` and resumes from checkpoints there,
    `compile` torch.compiles the step, `dtype` torch.float64 runs it in double precision)."""
    return train(cfgs, out, device, resume=resume, force=force, probes=probes_for(cfgs[0]) + tuple(probes),
                 grad_transform=grad_transform, on_eval=on_eval, compile=compile, dtype=dtype)


def finished(cfg: RunConfig, out: Path) -> bool:
    """A run is done when its directory holds this exact config and its summary says finished."""
    d = RunDir(out / cfg.name)
    if not (d.exists() and d.has_summary()):
        return False
    try:
        return d.config() == cfg and bool(d.summary().get("finished"))
    except (OSError, ValueError, TypeError, StoreError):
        return False


def analyses_to_run(cfg: RunConfig, out: Path, analyses: Sequence[str]) -> list[str]:
    """Those of `analyses` with no stored result for the run `cfg` names under `out`."""
    return missing_analyses(RunDir(out / cfg.name), analyses)


def train_batch(cfgs: list[RunConfig], out: str, device: str, resume: bool = False,
                analyses: Sequence[str] = (), report: Report | None = None) -> list[str]:
    """Train the unfinished runs of one batch into `out` (resuming from checkpoints), then run the missing
    analyses of every run; returns the names trained. This is the unit an executor schedules."""
    out_path = Path(out)
    todo = [c for c in cfgs if not finished(c, out_path)]
    if todo:
        hook = eval_reporter(report) if report is not None else None
        train_with_probes(todo, out_path, device, resume=resume, on_eval=hook)
    trained = {c.name for c in todo}
    for c in cfgs:
        run = RunDir(out_path / c.name)
        if c.name in trained and analyses:
            run.clear_analyses()  # results of an earlier training of this run no longer hold
        for a in analyses_to_run(c, out_path, analyses):
            run_analysis(run, a, device)
    return [c.name for c in todo]
