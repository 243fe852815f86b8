"""One batch of a sweep, the unit an executor schedules: train its unfinished runs, then analyse them."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from grokscope.analyses import missing_analyses, run_analysis
from grokscope.config import RunConfig
from grokscope.errors import StoreError
from grokscope.runner import run_batch
from grokscope.store import RunDir
from grokscope.training.progress_bars import Report, eval_reporter

__all__ = ["finished", "analyses_to_run", "train_batch"]


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
        run_batch(todo, out_path, device, resume=resume, on_eval=hook)
    trained = {c.name for c in todo}
    for c in cfgs:
        run = RunDir(out_path / c.name)
        if c.name in trained and analyses:
            run.clear_analyses()  # results of an earlier training of this run no longer hold
        for a in analyses_to_run(c, out_path, analyses):
            run_analysis(run, a, device)
    return [c.name for c in todo]
