"""`grokscope intervene BASE_RUN --kind deletion --fractions 0.01,0.05,...`: a gradient-intervention scan.

All fractions train as one batched program from the base run's config and seed; the table gives, per
fraction, each task's grok step (or "no grok within budget") and the delay in % against the base run.
Results land in `--out` (default `BASE_RUN/intervene-<kind>/`) as intervention.parquet (the table),
intervention_metrics.parquet (per-fraction metrics, column `value`) and intervention.json. Each fraction's
run is checkpointed in `--out/runs/`, so the same command run again resumes a killed scan (as `grokscope
run` resumes its runs); `--resume` continues it under a new `--steps`, `--force` starts over.
"""

from __future__ import annotations

import argparse

from grokscope.commands.common import csv_list, print_json
from grokscope.config import check_axis
from grokscope.errors import StoreError
from grokscope.experiments.intervention_scan import (
    BASES,
    KINDS,
    NO_GROK,
    ScanConfig,
    intervention_scan,
    resume_note,
    validate_scan,
    write_scan,
)
from grokscope.runtime.devices import resolve_device
from grokscope.store import RunDir, check_out, jsonable
from grokscope.training.progress_bars import eval_bar


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("intervene", help="train a scan of gradient interventions from a base run")
    p.add_argument("base_run", metavar="BASE_RUN", help="run directory whose config, seed and basis the scan uses")
    p.add_argument("--kind", choices=KINDS, default="deletion",
                   help="deletion: g - f g_perp (trajectory PCs); suppression: same map, execution basis; "
                        "random: random basis of rank k; kick / random-kick: parameter kicks of amplitude a")
    p.add_argument("--fractions", type=csv_list(float), default=list(ScanConfig().values),
                   help="comma-separated fractions f / strengths s / kick amplitudes a")
    p.add_argument("--steps", type=int, default=None, help="step budget (default: the base run's)")
    p.add_argument("--start", type=int, default=500, help="first intervened step")
    p.add_argument("--k", type=int, default=20, help="rank of the trajectory-PC or random basis")
    p.add_argument("--basis", choices=BASES, default=None, help="override the kind's basis")
    p.add_argument("--every", type=int, default=100, help="kick period in steps")
    p.add_argument("--seed", type=int, default=0, help="seed of random bases / random kicks")
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", default=None, help="output folder (default BASE_RUN/intervene-<kind>)")
    p.add_argument("--resume", action="store_true",
                   help="continue the scan stored in --out under a new --steps (the same scan resumes without it)")
    p.add_argument("--force", action="store_true", help="delete the scan stored in --out and start over")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run)


def _delay(v: float | None) -> str:
    """A delay in percent, signed ('—' when there is none)."""
    return "—" if v is None else f"{v:+.1f}%"


def run(args: argparse.Namespace) -> int:
    base = RunDir(args.base_run)
    if not base.exists():
        raise StoreError(f"{base.path} is not a grokscope run (no config.json)")
    scan = validate_scan(ScanConfig(kind=args.kind, values=tuple(args.fractions), steps=args.steps,
                                    start=args.start, k=args.k, basis=args.basis, every=args.every, seed=args.seed))
    check_axis("fraction", scan.values)
    device = resolve_device(args.device)
    out = check_out(args.out or base.path / f"intervene-{args.kind}")
    base.check()
    note = "" if args.force else resume_note(base, scan, out)
    with eval_bar(f"[bold]{args.kind} scan", not args.json, note) as on_eval:
        res = intervention_scan(base, scan, device, on_eval=on_eval, out=out, resume=args.resume, force=args.force)
    out = write_scan(res, out)
    rows = jsonable(res.table.to_dict("records"))
    if args.json:
        print_json({"base_run": str(base.path), "kind": args.kind, "out": str(out), "baseline": res.baseline,
                    "rows": rows})
        return 0
    tasks = list(dict.fromkeys(r["task"] for r in rows))
    head = f"{'fraction':>9}" + "".join(f"  {t + ' grok':>22}  {'delay':>8}" for t in tasks)
    print(f"{args.kind} scan from {base.path} (baseline grok step: "
          + ", ".join(f"{t} {res.baseline.get(t)}" for t in tasks) + ")")
    print(head)
    for v in res.scan.values:
        line = f"{v:>9g}"
        for t in tasks:
            r = next(x for x in rows if x["value"] == float(v) and x["task"] == t)
            g = str(r["grok_step"]) if r["grok_step"] is not None else NO_GROK
            line += f"  {g:>22}  {_delay(r['delay_pct']):>8}"
        print(line)
    print(f"results in {out}")
    return 0
