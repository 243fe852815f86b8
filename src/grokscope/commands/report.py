"""`grokscope report STORE [--out DIR]`: a static HTML page (index.html + PNG figures) of a store."""

from __future__ import annotations

import argparse
from pathlib import Path

from grokscope.commands.common import print_json
from grokscope.errors import ConfigError, StoreError
from grokscope.report import ReportConfig, build_report
from grokscope.runtime.devices import resolve_device
from grokscope.store import check_out, find_runs
from grokscope.training.progress_bars import working


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="static HTML report (index.html + PNG figures) of a store")
    p.add_argument("store", metavar="STORE", help="a store folder (or one run directory)")
    p.add_argument("--out", default=None, help="output folder (default STORE/report)")
    p.add_argument("--compute", action="store_true",
                   help="compute the geometry summary (ρ, PC1%%, defect onset) of runs that have none stored")
    p.add_argument("--null-runs", type=int, default=6, help="how many runs get the PC1%% random-walk null (default 6)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--json", action="store_true", help="print only JSON on stdout")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    null_runs = args.null_runs
    if null_runs < 0:
        raise ConfigError(f"--null-runs={null_runs} must be >= 0")
    store = Path(args.store)
    if not store.exists():
        raise StoreError(f"{store} does not exist")
    check_out(args.out or store / "report")
    for r in find_runs([store]):  # a damaged run is refused before the report folder is made
        r.check()
    cfg = ReportConfig(null_runs=null_runs, compute_summary=args.compute, device=resolve_device(args.device))
    with working("[bold]report", not args.json) as say:
        say("reading the store, computing the PC1% nulls, drawing figures")
        res = build_report(args.store, args.out, cfg)
    if args.json:
        print_json({"index": str(res.index), "figures": [str(f) for f in res.figures],
                    "missing": res.missing})
        return 0
    print(f"wrote {res.index} with {len(res.figures)} figure(s)")
    for title, why in res.missing.items():
        print(f"  skipped {title}: {why}")
    return 0
