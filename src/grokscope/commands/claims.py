"""`grokscope claims p1|p2|p3`: run (or reuse from the store) the experiments behind a paper's claims and
print claim, paper value, measured value, verdict, tolerance and the exact config of each."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from grokscope.claims import PAPERS, ClaimContext, ClaimRow, evaluate
from grokscope.claims.common import SCALES, default_store
from grokscope.commands.common import print_json
from grokscope.devices import check_device, resolve_device
from grokscope.errors import ConfigError
from grokscope.store import check_out

ROLES = ("dual", "dual0", "seeds", "tri", "single", "lr")


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
    p.add_argument("--progress", action="store_true", help="progress on stderr (now the default unless --json)")
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
    store = check_out(args.store or default_store(scale), "--store")
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
