"""The monitor's store writer: everything a `Monitor` recorded, in the trainer's run-store format (config.json,
monitor.json, the trajectory, metrics and measurement tables, warnings, summary.json), each file atomically and
the state file last (`state.write_state`), so the store read at any moment is whole."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import pandas as pd

from grokscope.monitor.detector_inputs import describe_detector
from grokscope.monitor.sketch import sketch_seed
from grokscope.monitor.state import write_state
from grokscope.monitor.trajectory import trajectory_tensors
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
    WARNINGS_TABLE,
    write_json,
)

if TYPE_CHECKING:
    from grokscope.monitor.monitor import Monitor

__all__ = ["METRICS_COLUMNS", "description_of", "summary_of", "write_store", "write_summary"]

METRICS_COLUMNS = ["run", "step", "task", "split", "loss", "acc", "weight_norm"]
# the monitor's lists of measurement rows and the table each is written to, when it holds any
OPTIONAL_TABLES = {"scalars": SCALARS_TABLE, "defect_rows": DEFECT_TABLE, "hessian_rows": HESSIAN_TABLE,
                   "defect_group_rows": DEFECT_GROUPS_TABLE, "hessian_group_rows": HESSIAN_GROUPS_TABLE,
                   "llc_rows": LLC_TABLE}


def summary_of(mon: Monitor) -> dict[str, Any]:
    """As the trainer's summary.json, plus the monitor's own time and the warnings."""
    wall = time.perf_counter() - mon._started
    div = mon.divergence
    return {
        "name": mon.run_cfg.name, "config": mon.config().to_dict(),
        "grok_step": mon.grok_step("grok"), "grok_step_90": mon.grok_step("grok90"),
        "final_acc": mon.final_acc, "steps_trained": mon.last_step, "finished": mon.closed,
        "diverged": div.diverged, "diverged_step": div.step, "wall_time": round(wall, 3),
        "monitor": {"seconds": round(mon.spent, 3), "overhead": round(mon.overhead(), 4),
                    "warnings": [e.to_row() for e in mon.events], "detector": describe_detector(mon.detector),
                    "divergence": div.event.to_dict() if div.event else None},
    }


def description_of(mon: Monitor) -> dict[str, Any]:
    """monitor.json: the settings, the model's parameter names and shapes, the watched tensors and sketches."""
    target = mon.target
    return {
        "settings": mon.cfg.to_dict(), "watch": mon.watched, "n_params": target.n_params,
        "parameters": {n: list(s) for n, s in target.shapes.items()},
        "model": type(target.module).__name__ if target.module is not None else "params dict",
        "batch_source": type(mon.source).__name__,
        "sketch": {n: {"kind": "countsketch", "dim": sk.k, "numel": sk.n, "seed": sketch_seed(mon.seed, n)}
                   for n, sk in mon.sketches.items()}}


def write_summary(mon: Monitor) -> None:
    """Only summary.json (what a write after no new record changes: the time, `finished`)."""
    write_json(mon.run.file(SUMMARY), mon.summary())


def write_store(mon: Monitor) -> None:
    """Write everything `mon` recorded; its TensorBoard events are flushed too."""
    run = mon.run
    run.write_config(mon.config())
    write_json(run.file(MONITOR), mon.description())
    run.write_trajectory(trajectory_tensors(mon.watch_steps, mon.watch_records, mon.snap_steps, mon.snaps),
                         {"watch_stride": mon._watch_stride, "snap_stride": mon._snap_stride})
    run.write_table(METRICS_TABLE, pd.DataFrame(mon.rows, columns=METRICS_COLUMNS))
    for attr, table in OPTIONAL_TABLES.items():
        if getattr(mon, attr):
            run.write_table(table, pd.DataFrame(getattr(mon, attr)))
    if mon.events:
        run.write_table(WARNINGS_TABLE, pd.DataFrame([e.to_row() for e in mon.events]))
    write_summary(mon)
    mon._out.flush()
    write_state(mon)  # last: the store now holds everything up to last_step
