"""`grokscope sweep SPEC.yaml`: train a sweep spec's grid as batched programs (in-process, or one Ray task
per batch with `--executor ray`), run its analyses, and print one row per run. Rerunning skips finished
runs and resumes partial ones; `--dry-run` prints the batch plan without training."""

from __future__ import annotations

import argparse
import math
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from grokscope.errors import ConfigError


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


def spec_from_args(args: argparse.Namespace) -> Any:
    """The spec file with the command line's overrides applied, validated."""
    from grokscope.sweep import _device, load_spec

    spec = load_spec(args.spec)
    if getattr(args, "device", None):
        spec = replace(spec, device=_device(args.device))
    if getattr(args, "out", None):
        spec = replace(spec, out=Path(args.out))
    max_runs = getattr(args, "max_runs", None)
    if max_runs is not None:
        if max_runs < 1:
            raise ConfigError(f"--max-runs={max_runs} must be >= 1")
        spec = replace(spec, max_runs=max_runs)
    return spec


def run(args: argparse.Namespace) -> int:
    from grokscope.sweep import pending, plan, run_sweep, sweep_status

    spec = spec_from_args(args)
    executor = getattr(args, "executor", "local") or "local"
    if getattr(args, "dry_run", False):
        status = sweep_status(spec)
        device = spec.device
        if device == "auto":
            import torch

            device = "cuda" if torch.cuda.is_available() else "cpu"
        batches = plan(pending(spec), device, spec.max_runs)
        _print_plan(spec, status, batches, device, executor, getattr(args, "json", False))
        return 0
    t0 = time.perf_counter()
    quiet = getattr(args, "json", False)
    table = run_sweep(spec, executor=executor, address=getattr(args, "address", None), progress=not quiet)
    wall = time.perf_counter() - t0
    if quiet:
        from grokscope.cli import print_json

        print_json([{k: _clean(v) for k, v in row.items()} for row in table.to_dict("records")])
    else:
        _print_table(spec, table, wall)
    return 0


def _clean(v: Any) -> Any:
    return None if isinstance(v, float) and math.isnan(v) else v


def _print_plan(spec: Any, status: Any, batches: list, device: str, executor: str, as_json: bool) -> None:
    from grokscope.sweep import run_bytes

    counts = status["state"].value_counts().to_dict()
    if as_json:
        from grokscope.cli import print_json

        print_json({"name": spec.name, "out": str(spec.out), "device": device, "executor": executor,
                    "runs": len(status), "states": counts,
                    "batches": [{"runs": [c.name for c in b], "max_steps": max(c.steps for c in b),
                                 "bytes_per_run": run_bytes(b[0])} for b in batches]})
        return
    from rich.console import Console
    from rich.table import Table

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


def _print_table(spec: Any, table: Any, wall: float) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    tasks = [c[len("grok_step."):] for c in table.columns if c.startswith("grok_step.")]
    t = Table(title=f"sweep {spec.name}")
    for col in ("run", "status", "steps", *[f"grok {x}" for x in tasks], *[f"test {x}" for x in tasks]):
        t.add_column(col)
    for _, r in table.iterrows():
        grok = [_fmt(r.get(f"grok_step.{x}")) for x in tasks]
        acc = [_fmt(r.get(f"test_acc.{x}"), 3) for x in tasks]
        t.add_row(r["name"], r["status"], _fmt(r["steps_trained"]), *grok, *acc)
    console.print(t)
    trained = int((table.status == "trained").sum())
    console.print(f"{trained} run(s) trained, {int((table.status == 'skipped').sum())} already done; "
                  f"wall time {wall:.1f} s; store {spec.out}")


def _fmt(v: Any, digits: int | None = None) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "—"
    if digits is not None:
        return f"{float(v):.{digits}f}"
    return str(int(v)) if isinstance(v, float) and v.is_integer() else str(v)
