"""The store: a folder of run directories, written atomically and read without pickle.

`run_dir` is the run-directory format (every file name a run holds, `RunDir`), `files` its atomic JSON /
safetensors / parquet I/O, `paths` the checks of `--out` / `--store`, `discovery` finds the runs of a store,
`admission` is the one guard that decides which runs a command may train into, `scan_store` an intervention
scan's folder. Every name is importable from here.
"""

from grokscope.store.admission import check_dirs, prepare_dirs
from grokscope.store.discovery import find_runs, load_metrics, load_summaries
from grokscope.store.files import (
    atomic_write,
    jsonable,
    read_json,
    read_table,
    read_tensors,
    write_json,
    write_table,
    write_tensors,
)
from grokscope.store.paths import check_out, check_store, not_a_run
from grokscope.store.run_dir import (
    ANALYSES_FILE,
    CHECKPOINT,
    CONFIG,
    DEFECT_GROUPS_TABLE,
    DEFECT_TABLE,
    DETECTOR_TABLE,
    FRAGILITY,
    FRAGILITY_TABLE,
    HESSIAN_DRAWS_TABLE,
    HESSIAN_GROUPS_TABLE,
    HESSIAN_TABLE,
    INTERVENTION_JSON,
    INTERVENTION_METRICS,
    INTERVENTION_TABLE,
    LLC_TABLE,
    METRICS_TABLE,
    MONITOR,
    MONITOR_STATE,
    PCA_TABLE,
    POSTHOC_TABLE,
    PROGRESS_TABLE,
    RECONSTRUCTION_TABLE,
    SCALARS_TABLE,
    SCAN_BASIS,
    SCAN_RUNS,
    SCAN_STATE,
    SUMMARY,
    TANGENT_TABLE,
    TENSORBOARD_DIR,
    TRAJECTORY,
    TRAJECTORY_SEGMENTS,
    WARNINGS_TABLE,
    RunDir,
    diverged_step,
)
from grokscope.store.scan_store import ScanDir, ValueProgress, describe_progress

__all__ = ["ANALYSES_FILE", "CHECKPOINT", "CONFIG", "DEFECT_GROUPS_TABLE", "DEFECT_TABLE", "DETECTOR_TABLE",
           "FRAGILITY", "FRAGILITY_TABLE", "HESSIAN_DRAWS_TABLE", "HESSIAN_GROUPS_TABLE", "HESSIAN_TABLE",
           "INTERVENTION_JSON", "INTERVENTION_METRICS", "INTERVENTION_TABLE", "LLC_TABLE", "METRICS_TABLE", "MONITOR",
           "MONITOR_STATE", "PCA_TABLE", "POSTHOC_TABLE", "PROGRESS_TABLE", "RECONSTRUCTION_TABLE", "SCALARS_TABLE",
           "SCAN_BASIS", "SCAN_RUNS", "SCAN_STATE", "SUMMARY", "TANGENT_TABLE", "TENSORBOARD_DIR", "TRAJECTORY",
           "TRAJECTORY_SEGMENTS", "WARNINGS_TABLE", "RunDir", "atomic_write", "check_out", "check_store",
           "diverged_step", "find_runs", "jsonable", "load_metrics", "load_summaries", "not_a_run", "read_json",
           "read_table", "read_tensors", "write_json", "write_table", "write_tensors", "check_dirs", "prepare_dirs",
           "ScanDir", "ValueProgress", "describe_progress"]
