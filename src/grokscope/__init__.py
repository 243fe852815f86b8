"""grokscope: train whole grokking sweeps at once and measure the geometry of training.

From Python: `train` a list of `RunConfig`s (with the inline measurements they ask for, e.g. `defect_every`),
open a stored run with `RunDir` (or every run below a folder with `find_runs`), and run any registered analysis
on it with `run_analysis(run, name)` (`analysis_names()` lists them; `stored_analysis(run, name)` reads a stored
result back). The functions behind the analyses are exported too, for use on their own.
"""

from grokscope.analyses import (
    analysis_names,
    analyze_defect,
    analyze_fragility,
    analyze_hessian_run,
    analyze_pca,
    analyze_summary,
    register,
    run_analysis,
    stored_analysis,
)
from grokscope.analyses.phase import phase_runs, phase_table
from grokscope.config import DataConfig, ModelConfig, OptimConfig, RunConfig, preset
from grokscope.geometry.onset import defect_timing, fit_power_law, onset_threshold
from grokscope.geometry.pca import attention_pca, exec_basis, trajectory_pcs
from grokscope.geometry.summary import geometry_summary
from grokscope.monitor import LeadModel, Monitor, MonitorConfig, OnsetDetector, UserModel, WarningEvent
from grokscope.store import RunDir, find_runs, load_metrics, load_summaries
from grokscope.sweep.batch import train_with_probes as train

__all__ = ["DataConfig", "ModelConfig", "OptimConfig", "RunConfig", "RunDir", "find_runs", "load_metrics",
           "load_summaries", "preset", "train", "run_analysis", "stored_analysis", "analysis_names", "register",
           "analyze_summary", "analyze_pca", "analyze_defect", "analyze_hessian_run", "analyze_fragility",
           "geometry_summary", "attention_pca", "exec_basis", "trajectory_pcs", "defect_timing", "onset_threshold",
           "fit_power_law", "phase_runs", "phase_table", "Monitor", "MonitorConfig", "OnsetDetector", "WarningEvent",
           "LeadModel", "UserModel"]
__version__ = "0.1.0"
