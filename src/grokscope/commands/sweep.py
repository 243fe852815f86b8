"""`grokscope sweep SPEC.yaml`: train a sweep spec's grid as batched programs (in-process, or one Ray task
per batch with `--executor ray`), run its analyses, and print one row per run. Rerunning skips finished
runs and resumes partial ones; `--dry-run` prints the batch plan without training."""

from __future__ import annotations

import argparse
import time
from dataclasses import replace
from pathlib import Path

import pandas as pd
from rich.console import Console
from rich.table import Table

from grokscope.commands.common import print_json
from grokscope.config import RunConfig
from grokscope.errors import ConfigError
from grokscope.formatting import fmt
from grokscope.runtime.devices import check_device, resolve_device
from grokscope.store import check_store
from grokscope.sweep import SweepSpec, load_spec, pending, plan, run_bytes, run_sweep, sweep_status


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sweep", help="train a YAML sweep spec as batched programs (local or Ray)")
    p.add_argument("spec", metavar="SPEC.yaml", help="sweep spec (see docs/sweeps.md and configs/)")
    p.add_argument("--executor", choices=("local", "ray"), default="local",
                   help="local: in this process (default); ray: one Ray task per batch")
    p.add_argument("--address", help="Ray cluster address (default: start a local Ray instance)")
    p.add_argument("--device", help="override the spec's device (auto, cpu, cuda, cuda:N)")
    p.add_argument("--out", help="override the spec's store directory")
    p.add_argument("--max-runs", type=int, help="at most this many runs per batched program")
    p.add_argument("--dry-run", action="store_true",
                   help="print the batch plan and the store state; train nothing")
    p.add_argument("--json", action="store_true", help="print only JSON on stdout")
    p.set_defaults(func=run)


def spec_from_args(args: argparse.Namespace) -> SweepSpec:
    """The spec file with the command line's overrides applied, validated."""
    spec = load_spec(args.spec)
    if args.device:
        spec = replace(spec, device=check_device(args.device))
    if args.out:
        spec = replace(spec, out=Path(args.out))
    max_runs = args.max_runs
    if max_runs is not None:
        if max_runs < 1:
            raise ConfigError(f"--max-runs={max_runs} must be >= 1")
        spec = replace(spec, max_runs=max_runs)
    check_store(spec.out, "out")
    return spec


def run(args: argparse.Namespace) -> int:
    spec = spec_from_args(args)
    if args.dry_run:
        status = sweep_status(spec)
        device = resolve_device("auto") if spec.device == "auto" else spec.device
        batches = plan(pending(spec), device, spec.max_runs)
        _print_plan(spec, status, batches, device, args.executor, args.json)
        return 0
    t0 = time.perf_counter()
    table = run_sweep(spec, executor=args.executor, address=args.address, progress=not args.json)
    wall = time.perf_counter() - t0
    if args.json:
        print_json(table.to_dict("records"))
    else:
        _print_table(spec, table, wall)
    return 0


def _print_plan(spec: SweepSpec, status: pd.DataFrame, batches: list[list[RunConfig]], device: str,
                executor: str, as_json: bool) -> None:
    counts = status["state"].value_counts().to_dict()
    if as_json:
        print_json({"name": spec.name, "out": str(spec.out), "device": device, "executor": executor,
                    "runs": len(status), "states": counts,
                    "batches": [{"runs": [c.name for c in b], "max_steps": max(c.steps for c in b),
                                 "bytes_per_run": run_bytes(b[0])} for b in batches]})
        return
    console = Console()
    states = ", ".join(f"{n} {k}" for k, n in sorted(counts.items()))
    console.print(f"sweep {spec.name!r}: {len(status)} runs ({states}) → {spec.out} on {device} ({executor})")
    if not batches:
        console.print("nothing to train or analyse: every run is finished")
        return
    table = Table(title=f"{len(batches)} batched program(s)")
    for col in ("batch", "runs", "tasks", "model", "max steps", "MB/run", "first … last"):
        table.add_column(col)
    for i, b in enumerate(batches):
        c = b[0]
        table.add_row(str(i + 1), str(len(b)), "+".join(c.data.tasks), f"{c.model.kind} p{c.data.p}",
                      str(max(x.steps for x in b)), f"{run_bytes(c) / 2**20:.1f}",
                      b[0].name if len(b) == 1 else f"{b[0].name} … {b[-1].name}")
    console.print(table)
    conflict = status[status.state == "conflict"]
    if len(conflict):
        console.print(f"[red]{len(conflict)} run(s) in the store hold another config "
                      f"(e.g. {conflict.name.iloc[0]}); set `resume: true` in the spec to continue them "
                      "under this config")


def _print_table(spec: SweepSpec, table: pd.DataFrame, wall: float) -> None:
    console = Console()
    tasks = [c[len("grok_step."):] for c in table.columns if c.startswith("grok_step.")]
    t = Table(title=f"sweep {spec.name}")
    for col in ("run", "status", "steps", *[f"grok {x}" for x in tasks], *[f"test {x}" for x in tasks]):
        t.add_column(col)
    for _, r in table.iterrows():
        grok = [fmt(r.get(f"grok_step.{x}")) for x in tasks]
        acc = [fmt(r.get(f"test_acc.{x}"), ".3f") for x in tasks]
        status = f"{r['status']}, diverged" if r.get("diverged") is True else r["status"]
        t.add_row(r["name"], status, fmt(r["steps_trained"]), *grok, *acc)
    console.print(t)
    trained = int((table.status == "trained").sum())
    diverged = table[table.get("diverged", pd.Series(False, index=table.index)).eq(True)]
    console.print(f"{trained} run(s) trained, {int((table.status == 'skipped').sum())} already done"
                  + (f", {len(diverged)} diverged (non-finite loss; stopped there, the others trained on)"
                     if len(diverged) else "") + f"; wall time {wall:.1f} s; store {spec.out}")
