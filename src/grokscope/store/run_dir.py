"""The run-directory format: every file name a run directory holds (config.json, metrics.parquet, trajectory/
segments, checkpoint.safetensors, the analyses' files) and `RunDir`, which reads and writes them through the
store's atomic, pickle-free I/O (`store.files`)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from safetensors import SafetensorError, safe_open

from grokscope.config import EXTERNAL, RunConfig, validate
from grokscope.errors import ConfigError, StoreError
from grokscope.store.files import (
    jsonable,
    last_trajectory_step,
    read_json,
    read_table,
    read_tensors,
    records_upto,
    write_json,
    write_table,
    write_tensors,
)

CONFIG = "config.json"
TRAJECTORY = "trajectory.safetensors"  # the whole trajectory in one file (stores written before segments)
TRAJECTORY_SEGMENTS = "trajectory"  # trajectory/<last step>.safetensors: one segment per checkpoint
CHECKPOINT = "checkpoint.safetensors"
SUMMARY = "summary.json"
ANALYSES_FILE = "analyses.json"  # {analysis name: its JSON result}, written by `RunDir.write_analysis`
FRAGILITY = "fragility.json"  # k* summary of the fragility analysis (also in analyses.json)
# Tables beside a run: `<name>.parquet`, read with `RunDir.table(name)`.
METRICS_TABLE = "metrics"  # the long table run, step, task, split, loss, acc, weight_norm
DEFECT_TABLE = "defect"  # the inline commutator-defect probe (train with defect_every > 0)
POSTHOC_TABLE = "defect_posthoc"  # defects at the stored snapshots (the `defect` analysis)
PCA_TABLE = "pca"
HESSIAN_TABLE = "hessian"
HESSIAN_DRAWS_TABLE = "hessian_draws"  # λ_min under fresh Hessian samples (`analyze --hessian-draws`)
FRAGILITY_TABLE = "fragility"
RECONSTRUCTION_TABLE = "reconstruction"
PROGRESS_TABLE = "progress"  # Nanda et al.'s progress measures per snapshot and task (the `progress` analysis)
LLC_TABLE = "llc"  # the local learning coefficient per snapshot (the `llc` analysis, devinterp)
TANGENT_TABLE = "normmin"  # P3's in-loop tangent-cosine probe
# An intervention scan's folder (`grokscope intervene`).
INTERVENTION_TABLE = "intervention.parquet"
INTERVENTION_METRICS = "intervention_metrics.parquet"
INTERVENTION_JSON = "intervention.json"
SCAN_STATE = "scan.json"  # the scan being trained there and its base run (written before training starts)
SCAN_BASIS = "basis.safetensors"  # the projection basis it uses, computed once from the base run
SCAN_RUNS = "runs"  # one run folder per scanned value, with checkpoints: a killed scan resumes from them
MONITOR = "monitor.json"  # grokscope.Monitor's settings and the user's model description
MONITOR_STATE = "monitor_state.json"  # the monitor's record id and the last step written in full (resuming)
DETECTOR_TABLE = "detector_inputs"  # the monitor's early-warning detector's inputs per defect measurement
WARNINGS_TABLE = "warnings"  # the monitor's early-warning events
SCALARS_TABLE = "scalars"  # the monitor's other logged scalars (step, name, value)
DEFECT_GROUPS_TABLE = "defect_groups"  # the monitor's defect per parameter group (layer)
HESSIAN_GROUPS_TABLE = "hessian_groups"  # the monitor's λ_min/λ_max of Hessian blocks of parameter groups
TENSORBOARD_DIR = "tensorboard"  # event files beside a run (`grokscope runs tensorboard`, Monitor(tensorboard=True))


class RunDir:
    """One run's directory and what lives in it.

    Args:
        path: the run's folder (it need not exist yet: `exists()` says whether it does).
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    def file(self, name: str) -> Path:
        return self.path / name

    def exists(self) -> bool:
        return self.file(CONFIG).exists()

    def config(self) -> RunConfig:
        """The run's config, validated: a hand-edited or foreign config.json is a StoreError naming it. A run
        recorded by grokscope.Monitor (model kind 'external') is read as written: grokscope never trains it."""
        f = self.file(CONFIG)
        raw = read_json(f)
        try:
            cfg = RunConfig.from_dict(raw)
            return cfg if cfg.model.kind == EXTERNAL else validate(cfg)
        except ConfigError as e:
            raise StoreError(f"{f}: {e}") from None
        except (TypeError, ValueError, AttributeError) as e:
            raise StoreError(f"{f} is not a grokscope run config ({e})") from None

    def write_config(self, cfg: RunConfig) -> None:
        write_json(self.file(CONFIG), cfg.to_dict())

    def metrics(self) -> pd.DataFrame:
        """Long table: run, step, task, split, loss, acc, weight_norm."""
        return self.table(METRICS_TABLE)

    def table(self, name: str) -> pd.DataFrame:
        return read_table(self.file(f"{name}.parquet"))

    def has_table(self, name: str) -> bool:
        return self.file(f"{name}.parquet").exists()

    def write_table(self, name: str, df: pd.DataFrame) -> None:
        write_table(self.file(f"{name}.parquet"), df)

    def recorded_threads(self) -> int | None:
        """The CPU thread count the run last trained with (summary.json's environment), if it has a checkpoint."""
        try:
            if not (self.file(CHECKPOINT).exists() and self.has_summary()):
                return None
            threads = self.summary().get("environment", {}).get("threads")
        except StoreError:
            return None
        return threads if isinstance(threads, int) else None

    def has_summary(self) -> bool:
        return self.file(SUMMARY).exists()

    def summary(self) -> dict[str, Any]:
        return read_json(self.file(SUMMARY))

    def grok_steps(self) -> dict[str, int | None]:
        """Grok step per task from summary.json ({} for a run without one)."""
        return dict(self.summary().get("grok_step") or {}) if self.has_summary() else {}

    def analyses(self) -> dict[str, Any]:
        """Every stored analysis result of the run ({} when none is stored)."""
        f = self.file(ANALYSES_FILE)
        got = read_json(f) if f.exists() else {}
        return got if isinstance(got, dict) else {}

    def write_analysis(self, name: str, result: Any) -> Any:
        """Store one analysis result (as strict JSON) beside the others; returns what was stored."""
        stored = jsonable(result)
        write_json(self.file(ANALYSES_FILE), {**self.analyses(), name: stored})
        return stored

    def clear_analyses(self) -> None:
        """Forget every stored analysis result (the run was retrained: they describe an older run)."""
        self.file(ANALYSES_FILE).unlink(missing_ok=True)

    def has_trajectory(self) -> bool:
        return bool(self._trajectory_files())

    def _trajectory_files(self) -> list[Path]:
        """The single-file trajectory of older stores (if any), then the segments in step order."""
        legacy = [self.file(TRAJECTORY)] if self.file(TRAJECTORY).exists() else []
        seg = self.file(TRAJECTORY_SEGMENTS)
        return legacy + (sorted(seg.glob("*.safetensors")) if seg.is_dir() else [])

    def append_trajectory(self, step: int, tensors: dict[str, torch.Tensor]) -> None:
        """Write the records taken since the last segment, up to `step`, as a new segment: a long run's
        trajectory is never held whole in memory nor rewritten."""
        write_tensors(self.file(TRAJECTORY_SEGMENTS) / f"{step:010d}.safetensors", tensors)

    def truncate_trajectory(self, upto: int) -> None:
        """Drop every record after step `upto` (all of them for upto < 0): what a resume from the checkpoint
        at `upto` needs, since segments are written just before their checkpoint."""
        for path in self._trajectory_files():
            if last_trajectory_step(path) <= upto:
                continue
            t, _ = read_tensors(path)
            kept = records_upto(t, upto)
            target = path if path.name == TRAJECTORY else path.with_name(f"{upto:010d}.safetensors")
            if kept["attn_steps"].numel() or kept["snap_steps"].numel():
                write_tensors(target, kept)  # first the kept records (atomic), then the old file goes:
            if target != path or not (kept["attn_steps"].numel() or kept["snap_steps"].numel()):
                path.unlink()  # a kill in between leaves both, and the next resume cuts again (idempotent)

    def has_checkpoint(self) -> bool:
        return self.file(CHECKPOINT).exists()

    def trajectory(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """Attention matrices `attn.<name>` [T, ...] at `attn_steps`, full snapshots `snap.<name>` [S, ...]
        at `snap_steps`: the segments (and an older store's single file) read as one trajectory."""
        files = self._trajectory_files()
        if not files:
            raise StoreError(f"{self.file(TRAJECTORY_SEGMENTS)} does not exist")
        parts = [read_tensors(f)[0] for f in files]
        keys = list(dict.fromkeys(k for t in parts for k in t))
        return {k: torch.cat([t[k] for t in parts if k in t]) for k in keys}, {}

    def write_trajectory(self, tensors: dict[str, torch.Tensor], meta: dict[str, Any] | None = None) -> None:
        """Write the whole trajectory (keys as `trajectory` returns them) as one file, replacing it: for a
        recorder that thins its records (grokscope.Monitor), so it cannot append segments. `meta` goes into the
        file's header (the monitor's thinning strides, read back when it resumes)."""
        write_tensors(self.file(TRAJECTORY), tensors, meta)

    def attention_trajectory(self) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """(steps [T], {param name: [T, ...]}) of the attention matrices."""
        t, _ = self.trajectory()
        return t["attn_steps"], {k[5:]: v for k, v in t.items() if k.startswith("attn.")}

    def snapshots(self) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """(steps [S], {param name: [S, ...]}) of the full parameter snapshots; the first is θ₀."""
        t, _ = self.trajectory()
        return t["snap_steps"], {k[5:]: v for k, v in t.items() if k.startswith("snap.")}

    def checkpoint(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        return read_tensors(self.file(CHECKPOINT))

    def check(self) -> RunDir:
        """Read the config and every stored table's and tensor file's header (cheap): a damaged file is a
        StoreError naming it, found before a command writes anything."""
        self.config()
        for f in [*sorted(self.path.iterdir()), *self._trajectory_files()]:
            try:
                if f.suffix == ".parquet":
                    pq.read_metadata(str(f))
                elif f.suffix == ".safetensors":
                    with safe_open(str(f), framework="pt") as h:
                        h.keys()
                elif f.suffix == ".json" and not f.name.startswith("."):
                    read_json(f)
            except (OSError, pa.ArrowException, SafetensorError, ValueError, RuntimeError) as e:
                raise StoreError(f"{f} is corrupt or truncated ({str(e).splitlines()[0]})") from None
        return self

    def final_params(self) -> dict[str, torch.Tensor]:
        """Parameters (no run axis) at the end of training, from the checkpoint."""
        t, _ = self.checkpoint()
        return {k[7:]: v for k, v in t.items() if k.startswith("params.")}


def diverged_step(summary: dict[str, Any]) -> int | None:
    """The step a diverged run was flagged at (a monitored run's `diverged_step`, else the trainer's stop step), None
    for a run that did not diverge."""
    if not summary.get("diverged"):
        return None
    step = summary.get("diverged_step")
    return step if step is not None else summary.get("steps_trained")


