"""Sweeps: a YAML spec → a grid of runs → batched programs that fit the device → an executor.

A sweep is a table of runs. `load_spec` reads and validates a spec (`spec`), `expand` turns it into run
configs, `plan` packs runs that share a `batch_key` into batched programs no larger than the device holds
(`packing`), and `run_sweep` trains them in-process (default) or as Ray tasks (`ray_executor`), each batch
with the inline probes its configs ask for, runs the analyses the spec names (`batch`, through
`grokscope.analyses`), and returns one row per run (`execute`). The configs come from the one path every
command takes (`grokscope.config.build_configs`).
"""

from grokscope.sweep.batch import probes_for, train_batch, train_with_probes
from grokscope.sweep.execute import pending, results_table, run_sweep, sweep_status
from grokscope.sweep.packing import CPU_MAX_RUNS, EVAL_CHUNK, act_floats, capacity, plan, run_bytes
from grokscope.sweep.spec import SweepSpec, expand, load_spec, spec_from_dict

__all__ = ["SweepSpec", "load_spec", "spec_from_dict", "expand", "plan", "capacity", "run_bytes", "act_floats",
           "CPU_MAX_RUNS", "EVAL_CHUNK", "run_sweep", "pending", "train_batch", "sweep_status", "results_table",
           "probes_for", "train_with_probes"]
