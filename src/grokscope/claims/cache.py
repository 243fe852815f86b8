"""The store as the claims' cache: intervention scans (`ScanNeed`, `stored_scan`) and whole experiments
(`ExperimentNeed`, `read_cached`) are reused when exactly the same one is stored, else computed there (a scan
resumes from the checkpoints a killed one left)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from grokscope.claims.context import ClaimContext
from grokscope.config import RunConfig
from grokscope.experiments.intervention_scan import ScanConfig, intervention_scan, resume_note, write_scan
from grokscope.store import INTERVENTION_JSON, RunDir, jsonable, read_json
from grokscope.training.progress_bars import eval_bar


@dataclass(frozen=True)
class ScanNeed:
    """An intervention scan a paper's claims train on a base run of one of its sweeps (`role`): the first run
    `pick` accepts that grokked every task, seed 42 first (the seed of the authors' scans)."""

    label: str
    role: str
    pick: Callable[[RunConfig], bool]
    scan: ScanConfig


@dataclass(frozen=True)
class ExperimentNeed:
    """A computation a claim caches whole as `<store>/p3/<name>.json` (not resumable step by step): `runs`
    seeds of `steps` steps each (None: not counted in steps)."""

    name: str
    config: dict[str, Any]
    runs: int
    steps: int | None


def scan_dir(store: Path, run_name: str, scan: ScanConfig) -> Path:
    """Where the scan `scan` of the base run `run_name` is stored under a claims store."""
    return Path(store) / "scans" / f"{scan.kind}-{scan.basis or 'default'}-{run_name}"


def read_stored_scan(store: Path, run_name: str, scan: ScanConfig) -> list[dict[str, Any]] | None:
    """The rows of that scan when exactly it is stored (None otherwise); reads only."""
    f = scan_dir(store, run_name, scan) / INTERVENTION_JSON
    if not f.exists():
        return None
    got = read_json(f)
    return got.get("rows") if got.get("scan") == jsonable(asdict(scan)) else None


def stored_scan(ctx: ClaimContext, run: RunDir, scan: ScanConfig) -> tuple[pd.DataFrame, str]:
    """An intervention scan of `run` (geometry.interventions), reused from `ctx.store/scans/...` when the
    same scan is stored there, else trained there, resuming from the checkpoints a killed one left (how far
    they got is shown with the progress); returns (its table: one row per (value, task)) and its folder."""
    out = scan_dir(ctx.store, run.path.name, scan)
    rows = read_stored_scan(ctx.store, run.path.name, scan)
    if rows is None:
        label = f"{scan.kind} scan of {run.path.name}"
        with eval_bar(label, ctx.progress, resume_note(run, scan, out)) as on_eval:
            write_scan(intervention_scan(run, scan, ctx.device, on_eval=on_eval, out=out), out)
        rows = read_json(out / INTERVENTION_JSON)["rows"]
    return pd.DataFrame(rows), str(out)


def cache_file(store: Path, name: str) -> Path:
    """Where a claim's whole-experiment result `name` is cached (`ExperimentNeed`)."""
    return Path(store) / "p3" / f"{name}.json"


def read_cached(store: Path, name: str, config: dict[str, Any]) -> Any | None:
    """The cached result of experiment `name` when it was computed with exactly `config` (else None)."""
    f = cache_file(store, name)
    if not f.exists():
        return None
    got = read_json(f)
    return got.get("result") if got.get("config") == jsonable(config) else None
