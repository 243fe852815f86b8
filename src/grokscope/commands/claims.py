"""`grokscope claims p1|p2|p3`: run (or reuse from the store) the experiments behind a paper's claims and
print claim, paper value, measured value, verdict, tolerance and the exact config of each."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import torch
import yaml
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from grokscope.claims import PAPERS, ClaimContext, ClaimRow, evaluate, p1, p2
from grokscope.claims.context import SCALES, default_store
from grokscope.claims.plan import claims_plan, plan_totals
from grokscope.claims.probe import PROBE_NOTE, RateProbe
from grokscope.commands.common import print_json
from grokscope.errors import ConfigError
from grokscope.runtime.devices import check_device, resolve_device
from grokscope.runtime.threads import load_average, usable_cores
from grokscope.store import check_store, not_a_run

ROLES = tuple(role for paper in (p1, p2) for role, _ in paper.SWEEPS)  # the sweep roles --specs may replace


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("claims", help="check a paper's claims: measured vs claimed, with verdicts")
    p.add_argument("paper", help="p1, p2 or p3")
    p.add_argument(
        "--scale", default="quick",
        help="quick (minutes; smaller p/models/seeds), cpu (the papers' models and hyper-parameters, a grid "
        "cut to ~2 h per paper on 2 cores) or paper (the papers' full grids)"
    )
    p.add_argument(
        "--store", default=None,
        help="run store (default runs/claims-quick; ~/.cache/grokscope/claims-<scale> for cpu and paper, "
        "or $GROKSCOPE_CACHE/claims-<scale>); finished runs and analyses are reused"
    )
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto")
    p.add_argument("--only", default=None, help="comma-separated substrings of claim function names")
    p.add_argument(
        "--specs",
        default=None,
        help=f"YAML mapping role ({', '.join(ROLES)}) → sweep spec, replacing the scale's sweeps",
    )
    p.add_argument(
        "--plan", action="store_true",
        help="train nothing into the store: list every run, scan and experiment the scale needs (all of them: "
        "--only does not narrow it), the last step stored vs its budget, and the run-steps left (upper bounds) with "
        "the time they take at the rate the stored runs measured or, for items with none (a new store, which need "
        "not exist), at a rate probed now by timing a few update steps of each batched program in memory",
    )
    p.add_argument("--no-probe", action="store_true",
                   help="with --plan: do not time update steps; items with no stored rate show no time")
    p.add_argument("--progress", action="store_true",
                   help="no effect, kept for old scripts: progress is on stderr unless --json")
    p.add_argument("--json", action="store_true", help="print only JSON on stdout")
    p.set_defaults(func=run)


def _specs(path: str | None) -> dict[str, dict[str, Any]]:
    if not path:
        return {}
    f = Path(path)
    if not f.is_file():
        raise ConfigError(f"--specs file {path!r} does not exist")
    raw = yaml.safe_load(f.read_text()) or {}
    if not isinstance(raw, dict) or not all(isinstance(v, dict) and "name" in v for v in raw.values()):
        raise ConfigError(f"{path}: expected a mapping role → sweep spec (each with a name)")
    bad = sorted(set(raw) - set(ROLES))
    if bad:
        raise ConfigError(f"{path}: unknown role {bad[0]!r}; choose from {', '.join(ROLES)}")
    return raw


def run(args: argparse.Namespace) -> int:
    paper = str(args.paper).lower()
    if paper not in PAPERS:
        raise ConfigError(f"unknown paper {args.paper!r}; choose from {', '.join(PAPERS)}")
    scale = args.scale
    if scale not in SCALES:
        raise ConfigError(f"unknown scale {scale!r}; choose from {', '.join(SCALES)}")
    if args.plan:
        store = not_a_run(args.store or default_store(scale), "--store")
        if args.only:
            print(f"grokscope: --plan lists everything the {scale} scale needs; --only {args.only} is not applied",
                  file=sys.stderr)
        probe = None if args.no_probe else RateProbe(resolve_device(check_device(args.device)))
        return _plan(paper, scale, store, _specs(args.specs), args.json, probe)
    store = check_store(args.store or default_store(scale), "--store")
    ctx = ClaimContext(
        scale=scale,
        store=store,
        device=resolve_device(check_device(args.device)),
        progress=not args.json,
        specs=_specs(args.specs),
    )
    only = tuple(s.strip() for s in (args.only or "").split(",") if s.strip())
    rows = evaluate(paper, ctx, only)
    if args.json:
        print_json([r.to_dict() for r in rows])
    else:
        _print(paper, scale, store, rows)
    return 0


def _print(paper: str, scale: str, store: Path, rows: list[ClaimRow]) -> None:
    colour = {
        "reproduced": "green",
        "partly": "yellow",
        "not reproduced": "red",
        "inconclusive": "magenta",
        "not run": "dim",
    }
    t = Table(title=f"{paper.upper()} claims — scale {scale} — store {store}", show_lines=True)
    for col in ("claim", "paper", "measured", "verdict", "tolerance"):
        t.add_column(col, overflow="fold")
    for r in rows:
        verdict = f"[{colour.get(r.verdict, 'white')}]{escape(r.verdict)}[/]"
        t.add_row(escape(r.claim), escape(r.paper), escape(r.measured), verdict, escape(r.tolerance))
    console = Console(width=200)
    console.print(t)
    for r in rows:
        console.print(
            f"{r.key}: config {r.config}" + (f" — note: {r.note}" if r.note else ""),
            highlight=False,
            markup=False,
        )


def _plan(paper: str, scale: str, store: Path, specs: dict[str, dict[str, Any]], as_json: bool,
          probe: RateProbe | None) -> int:
    """`--plan`: what the scale still needs, read from the store (nothing is written; with `probe`, items without
    a stored rate get one timed now in memory)."""
    items = claims_plan(paper, ClaimContext(scale=scale, store=store, specs=specs), probe)
    totals = plan_totals(items)
    if as_json:
        print_json({"paper": paper, "scale": scale, "store": str(store), "store_exists": store.is_dir(),
                    "items": [i.to_dict() for i in items], "total": totals})
        return 0
    console = Console(width=200)
    where = f"plan from {store}" if store.is_dir() else f"plan for {store} (does not exist yet: nothing stored)"
    t = Table(title=f"{paper.upper()} claims — scale {scale} — {where}")
    for col in ("item", "run", "last step / budget", "state", "to go", "wall h", "steps/s", "analyses to do"):
        t.add_column(col, overflow="fold")
    for i in items:
        for r in i.runs:
            steps = f"{r.last_step} / {r.budget}" if r.budget else "—"
            state = f"{r.state} ({r.reason})" if r.reason else r.state
            wall = f"{r.wall_time / 3600:.2f}" if r.wall_time else "—"
            rate = f"{r.last_step / r.wall_time:.2f}" if r.wall_time else "—"
            t.add_row(escape(f"{i.kind} {i.role}"), escape(r.name), steps, state, str(r.to_go), wall, rate,
                      escape(", ".join(r.missing)))
    console.print(t)
    s = Table(title="run-steps per item (budgets are upper bounds: runs stop once every task has grokked)")
    for col in ("item", "name", "runs stopped", "stored / budget", "to go", "rate (run-steps/s)",
                "time left (h)", "note"):
        s.add_column(col, overflow="fold")
    for i in items:
        d = i.to_dict()
        eta = "—" if i.eta_s is None else f"{i.eta_s / 3600:.2f}"
        s.add_row(escape(f"{i.kind} {i.role}"), escape(i.name), f"{d['stopped']}/{len(i.runs)}",
                  f"{i.done} / {i.budget}", str(i.to_go), "—" if i.rate is None else f"{i.rate:.1f} ({i.rate_source})",
                  eta,
                  escape(i.note))
    eta = f"{totals['eta_s'] / 3600:.2f}" + ("" if totals["eta_complete"] else " + items without a rate")
    s.add_row("total", "", f"{totals['stopped']}/{totals['runs']}", f"{totals['done']} / {totals['budget']}",
              str(totals["to_go"]), "", eta, "")
    console.print(s)
    console.print("rates: (stored) the stored runs' own wall time (their batched program's, under whatever load the "
                  f"machine had); (probe) {PROBE_NOTE}; time left = run-steps to go / that rate",
                  highlight=False, markup=False)
    if probe is not None and probe.timings:
        load = load_average()
        console.print(f"probed on {probe.device}, {torch.get_num_threads()} torch threads, load average "
                      + ("unknown" if load is None else f"{load:.1f}") + f" on {usable_cores()} cores",
                      highlight=False, markup=False)
    return 0
