"""TensorBoard event files from a run store (`grokscope runs tensorboard`) and live from the monitor.

Needs the optional extra `tensorboard` (`pip install "grokscope[tensorboard]"`); writing goes through
`torch.utils.tensorboard.SummaryWriter`. Tags: `<task>/<split>_loss`, `<task>/<split>_acc`, `weight_norm`,
`geometry/defect` (+ `geometry/defect_cross`), `geometry/lambda_min`, `geometry/lambda_max`,
`scalars/<name>` and, as text, the early-warning events and the run's summary.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import pandas as pd

from grokscope.errors import ConfigError
from grokscope.store import DEFECT_TABLE, HESSIAN_TABLE, METRICS_TABLE, SCALARS_TABLE, WARNINGS_TABLE, RunDir

EXTRA = 'TensorBoard output needs the optional extra: pip install "grokscope[tensorboard]"'


def require() -> None:
    """A one-line ConfigError naming the extra when the tensorboard package is missing."""
    try:
        import torch.utils.tensorboard  # noqa: F401
    except ImportError:
        raise ConfigError(EXTRA) from None


def open_writer(logdir: str | Path, purge_step: int | None = None) -> Any:
    """A `SummaryWriter` writing into `logdir` (the extra must be installed); with `purge_step`, TensorBoard hides
    the events earlier writers left there at that step and after (a run continued from a checkpoint)."""
    require()
    from torch.utils.tensorboard import SummaryWriter

    if purge_step is not None:
        _after_existing_files(Path(logdir))
    return SummaryWriter(log_dir=str(logdir), purge_step=purge_step)


def _after_existing_files(logdir: Path) -> None:
    """Wait until the clock's second is past every event file's in `logdir`. TensorBoard reads event files in name
    order and a name starts with its creation second, then the pid and a counter that sorts as text ("10" < "9"): a
    writer opened within the second of an earlier one may be read first, and its purge then hides the wrong
    events. Waits at most a second, and only for a resume that follows a writer at once."""
    stamps = [int(f.name.split(".")[3]) for f in logdir.glob("events.out.tfevents.*")
              if f.name.split(".")[3].isdigit()] if logdir.is_dir() else []
    while stamps and int(time.time()) <= max(stamps):
        time.sleep(0.05)


def _scalars(writer: Any, df: pd.DataFrame, column: str, tag: str) -> int:
    n = 0
    for step, v in zip(df["step"], df[column]):
        if pd.notna(v):
            writer.add_scalar(tag, float(v), int(step))
            n += 1
    return n


def write_run(run: RunDir, logdir: str | Path) -> dict[str, int]:
    """Write a run's stored metrics, defects, λ_min, scalars, warnings and summary as event files into
    `logdir` (replacing what is there; built in a temporary folder and renamed into place). Returns the
    number of points per tag group."""
    logdir = Path(logdir)
    logdir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=logdir.parent, prefix=f".{logdir.name}."))
    counts: dict[str, int] = {}
    try:
        w = open_writer(tmp)
        if run.has_table(METRICS_TABLE):
            m = run.metrics()
            for (task, split), g in m.groupby(["task", "split"], sort=True):
                counts["metrics"] = counts.get("metrics", 0) + _scalars(w, g, "loss", f"{task}/{split}_loss")
                counts["metrics"] += _scalars(w, g, "acc", f"{task}/{split}_acc")
            if "weight_norm" in m:
                counts["weight_norm"] = _scalars(w, m.drop_duplicates("step"), "weight_norm", "weight_norm")
        if run.has_table(DEFECT_TABLE):
            d = run.table(DEFECT_TABLE)
            counts["defect"] = _scalars(w, d, "defect", "geometry/defect")
            if "defect_cross" in d:
                _scalars(w, d, "defect_cross", "geometry/defect_cross")
        if run.has_table(HESSIAN_TABLE):
            h = run.table(HESSIAN_TABLE)
            h = h[h["loss"] == "total"] if "loss" in h else h
            counts["lambda_min"] = _scalars(w, h, "lambda_min", "geometry/lambda_min")
            _scalars(w, h, "lambda_max", "geometry/lambda_max")
        if run.has_table(SCALARS_TABLE):
            for name, g in run.table(SCALARS_TABLE).groupby("name", sort=True):
                counts["scalars"] = counts.get("scalars", 0) + _scalars(w, g, "value", f"scalars/{name}")
        if run.has_table(WARNINGS_TABLE):
            for _, e in run.table(WARNINGS_TABLE).iterrows():
                w.add_text("early_warning", json.dumps({k: str(v) for k, v in e.items()}), int(e["step"]))
                counts["warnings"] = counts.get("warnings", 0) + 1
        if run.has_summary():
            w.add_text("summary", "```\n" + json.dumps(run.summary(), indent=2, default=str) + "\n```", 0)
        w.close()
        if logdir.exists():
            shutil.rmtree(logdir)
        tmp.rename(logdir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return counts
