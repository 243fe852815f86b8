"""An intervention scan: a base run retrained with a gradient intervention (`geometry.interventions`) at each of
several amounts (e.g. f ∈ 1..50%), as ONE batched program: R = number of amounts, each run with the base run's
config and seed, and a per-run amount tensor. Given a folder (`store.scan_store.ScanDir`), each value's run is
checkpointed there as a run folder, the basis is stored once, and a killed scan resumes where its checkpoints
stopped, to the same result bit for bit.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from grokscope.config import RunConfig, with_overrides
from grokscope.errors import ConfigError, StoreError
from grokscope.geometry import pca
from grokscope.geometry.interventions import (
    commutator_direction,
    kick_transform,
    projection_transform,
    random_direction,
)
from grokscope.store import (
    INTERVENTION_JSON,
    INTERVENTION_METRICS,
    INTERVENTION_TABLE,
    RunDir,
    ScanDir,
    describe_progress,
    write_json,
    write_table,
)
from grokscope.training import EvalInfo, GradTransform, train
from grokscope.training.problem import Problem

KINDS = ("deletion", "suppression", "random", "kick", "random-kick")
BASES = ("trajectory", "exec", "random")
DEFAULT_BASIS = {"deletion": "trajectory", "suppression": "exec", "random": "random"}
NO_GROK = "no grok within budget"


@dataclass(frozen=True)
class ScanConfig:
    """One intervention scan over a base run: `values` are fractions f (deletion), strengths s (suppression)
    or kick amplitudes a; `basis` overrides the kind's default (trajectory PCs / exec basis / random)."""

    kind: str = "deletion"
    values: tuple[float, ...] = (0.01, 0.02, 0.03, 0.05, 0.07, 0.1, 0.15, 0.25, 0.5)
    steps: int | None = None  # None: the base run's budget
    start: int = 500
    k: int = 20
    basis: str | None = None
    every: int = 100
    draws: int = 3
    seed: int = 0


def validate_scan(scan: ScanConfig) -> ScanConfig:
    """Raise ConfigError on a scan that cannot run."""
    if scan.kind not in KINDS:
        raise ConfigError(f"unknown intervention kind {scan.kind!r}; choose from {', '.join(KINDS)}")
    if scan.basis is not None and scan.basis not in BASES:
        raise ConfigError(f"unknown basis {scan.basis!r}; choose from {', '.join(BASES)}")
    if not scan.values:
        raise ConfigError("an intervention scan needs at least one fraction")
    bad = [v for v in scan.values if not (np.isfinite(v) and v >= 0)]
    if bad:
        raise ConfigError(f"fraction {bad[0]!r} must be a finite number >= 0")
    if scan.steps is not None and scan.steps <= 0:
        raise ConfigError(f"steps={scan.steps} must be > 0")
    if scan.start < 0 or scan.k < 1 or scan.every < 1 or scan.draws < 1:
        raise ConfigError(f"start={scan.start} must be >= 0, and k={scan.k}, every={scan.every}, "
                          f"draws={scan.draws} must be >= 1")
    return scan


def scan_configs(base: RunConfig, scan: ScanConfig) -> list[RunConfig]:
    """One config per value: the base run's config (same seed) with a distinct preset and tag (its run folder's
    name) and no probes."""
    steps = scan.steps or base.steps
    label = [f"{scan.kind}-{v:.12g}" for v in scan.values]
    return [with_overrides(base, preset=lab, tag="-".join(filter(None, (base.tag, lab))), steps=steps,
                           defect_every=0) for lab in label]


def intervention_basis(run: RunDir, kind: str, k: int = 20, basis: str | None = None, seed: int = 0
                       ) -> torch.Tensor:
    """The basis [P, K] a projection scan uses: the base run's top-k uncentred trajectory PCs, its
    execution basis, or a random orthonormal basis of rank k."""
    which = basis or DEFAULT_BASIS[kind]
    if which == "trajectory":
        return pca.trajectory_pcs(run, k).basis
    if which == "exec":
        return pca.exec_basis(run)
    P = max(s.stop for s in pca.flat_layout(run).values())
    return pca.random_basis(P, k, seed)


@dataclass
class ScanResult:
    """`table`: one row per (value, task) with grok steps, the base run's grok step and the delay in %;
    `metrics`: the scan runs' long metrics with a `value` column; `baseline`: base grok step per task."""

    scan: ScanConfig
    table: pd.DataFrame
    metrics: pd.DataFrame
    baseline: dict[str, int | None]


def intervention_scan(run: RunDir, scan: ScanConfig, device: str = "cpu",
                      on_eval: Callable[[EvalInfo], None] | None = None, out: str | Path | None = None, *,
                      resume: bool = False, force: bool = False) -> ScanResult:
    """Train `scan.values` as one batched program from the base run's config with the intervention on. With
    `out` (a scan folder, `scan_store.ScanDir`), checkpoint every value's run there and resume the scan it
    holds; `resume`: continue it under a new step budget; `force`: start over. Nothing is written before
    every check has passed."""
    validate_scan(scan)
    if not run.exists():
        raise StoreError(f"{run.path} is not a grokscope run")
    base = run.config()
    cfgs = scan_configs(base, scan)
    folder = ScanDir(out) if out is not None else None
    if folder is not None:
        folder.check(scan, run.path.name, cfgs, resume, force)
    amounts = torch.tensor(scan.values, dtype=torch.float32, device="cpu")
    B = None
    if scan.kind in ("kick", "random-kick"):
        problem = Problem(cfgs, device)
        d = commutator_direction(scan.draws) if scan.kind == "kick" else random_direction(scan.seed)
        transform: GradTransform = kick_transform(problem, amounts.to(device), scan.every, scan.start, d)
    else:
        # computed once: a resumed scan projects on the basis it started with, whatever the base run became
        B = folder.basis() if folder is not None and not force and folder.state() is not None else None
        B = intervention_basis(run, scan.kind, scan.k, scan.basis, scan.seed) if B is None else B
        transform = projection_transform(B.to(device), amounts.to(device), scan.start)
    if folder is not None:
        folder.begin(scan, run.path.name, B, force)
    results = train(cfgs, folder.runs if folder is not None else None, device, resume=resume,
                    grad_transform=transform, on_eval=on_eval)
    baseline = run.grok_steps()
    return ScanResult(scan, scan_table(scan, results, baseline), _scan_metrics(scan, results), baseline)


def resume_note(run: RunDir, scan: ScanConfig, out: str | Path) -> str:
    """How far the scan folder `out` got with `scan` of `run` ('' when it holds nothing of it): the line a
    command shows before the scan resumes."""
    folder = ScanDir(out)
    if not folder.holds(scan, run.path.name):
        return ""
    return describe_progress(folder.progress(scan_configs(run.config(), scan)))


def scan_table(scan: ScanConfig, results: list[Any], baseline: dict[str, int | None]) -> pd.DataFrame:
    """value → grok step per task (None: no grok within budget), delay % against the base run."""
    rows = []
    for v, res in zip(scan.values, results, strict=True):
        s = res.summary
        for task, g in s["grok_step"].items():
            b = baseline.get(task)
            delay = 100.0 * (g - b) / b if g is not None and b else float("nan")
            rows.append({"kind": scan.kind, "value": float(v), "task": task, "grok_step": g,
                         "grok_step_90": s["grok_step_90"].get(task), "baseline_grok_step": b,
                         "delay_pct": delay, "grokked": g is not None,
                         "final_test_acc": s["final_acc"].get(task, {}).get("test"),
                         "steps_trained": s["steps_trained"]})
    df = pd.DataFrame(rows)
    for col in ("grok_step", "grok_step_90", "baseline_grok_step", "steps_trained"):
        df[col] = df[col].astype("Int64")  # nullable: None = no grok within budget
    return df


def _scan_metrics(scan: ScanConfig, results: list[Any]) -> pd.DataFrame:
    frames = [r.metrics.assign(kind=scan.kind, value=float(v))
              for v, r in zip(scan.values, results, strict=True)]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def write_scan(result: ScanResult, out: str | Path) -> Path:
    """`out/intervention.parquet`, `out/intervention_metrics.parquet` and `out/intervention.json`."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_table(out / INTERVENTION_TABLE, result.table)
    write_table(out / INTERVENTION_METRICS, result.metrics)
    write_json(out / INTERVENTION_JSON, {"scan": asdict(result.scan), "baseline": result.baseline,
                                           "rows": json.loads(result.table.to_json(orient="records"))})
    return out
