"""`grokscope runs list [STORE]`, `runs show RUN_DIR`: what a store holds; `runs tensorboard RUN...`: its
event files; `runs warnings RUN...`: what the early-warning detector says of stored runs."""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd
from rich.console import Console
from rich.pretty import Pretty
from rich.table import Table

from grokscope.commands.common import print_json
from grokscope.errors import ConfigError, StoreError
from grokscope.formatting import fmt
from grokscope.monitor.detector import MULTI_DETECTORS
from grokscope.monitor.evaluate import AUTO_MODES, fit_lead_model, warning_summary, warning_table
from grokscope.monitor.tensorboard import require, write_run
from grokscope.monitor.warning import DEFAULT_LEAD, DETECTORS
from grokscope.store import TENSORBOARD_DIR, RunDir, check_out, diverged_step, find_runs


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("runs", help="list, show, export (TensorBoard) or replay (early warning) stored runs")
    verbs = p.add_subparsers(dest="verb", metavar="VERB")
    ls = verbs.add_parser("list", help="one line per run below STORE")
    ls.add_argument("store", nargs="?", default="runs", metavar="STORE", help="a store folder (default runs)")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(func=list_runs)
    show = verbs.add_parser("show", help="a run's config, grok steps, final accuracies and files")
    show.add_argument("run_dir", metavar="RUN_DIR", help="a run directory")
    show.add_argument("--json", action="store_true")
    show.set_defaults(func=show_run)
    tb = verbs.add_parser("tensorboard", help="write TensorBoard event files from stored runs (extra: tensorboard)")
    tb.add_argument("runs", nargs="+", metavar="RUN", help="run directories or folders of runs")
    tb.add_argument("--out", default=None, help="log folder (default: each RUN/tensorboard); one subfolder per run")
    tb.set_defaults(func=tensorboard)
    wr = verbs.add_parser("warnings", help="replay the early-warning detector on stored runs' inline defects")
    wr.add_argument("runs", nargs="+", metavar="RUN", help="run directories or folders of runs")
    wr.add_argument("--detector", default="auto",
                    help="auto (the monitor's default: the validation detector where a held-out loss is logged, the "
                         "test-free transfer detector otherwise; docs/early-warning.md), transfer, multi (issue 24's "
                         "multi-signal detector), multi-val (its variant that also reads the test loss), threshold "
                         "(P2's defect onset) or envelope (P1's)")
    wr.add_argument("--calibrate", default=None, metavar="STORE",
                    help="fit the lead relation on the runs of STORE (default: the built-in calibration)")
    wr.add_argument("--every", type=int, default=None, metavar="N",
                    help="replay only the defects at multiples of N steps, as a monitor with defect_every=N "
                         "would have measured them (default: every stored measurement)")
    wr.add_argument("--json", action="store_true")
    wr.set_defaults(func=warnings)
    p.set_defaults(func=lambda a: (p.print_help(), 0)[1])


def _summary(run: RunDir) -> dict:
    """The run's summary.json (or its config when it has none yet); a damaged file is a one-line StoreError."""
    cfg = run.config()
    if run.has_summary():
        s = run.summary()
        if not isinstance(s, dict) or not isinstance(s.get("grok_step", {}), dict):
            raise StoreError(f"{run.file('summary.json')} is not a grokscope run summary")
        return {"name": cfg.name, "config": cfg.to_dict(), "grok_step": {}, "final_acc": {}, **s}
    return {"name": run.path.name, "config": run.config().to_dict(), "grok_step": {}, "final_acc": {},
            "steps_trained": None, "finished": False}


def list_runs(args: argparse.Namespace) -> int:
    rows = []
    for run in find_runs([args.store]):
        s = _summary(run)
        c = s["config"]
        rows.append({"path": str(run.path), "tasks": ",".join(c["data"]["tasks"]), "p": c["data"]["p"],
                     "model": c["model"]["kind"], "wd": c["optim"]["wd"], "lr": c["optim"]["lr"], "seed": c["seed"],
                     "steps": s.get("steps_trained"), "finished": s.get("finished"), "grok_step": s["grok_step"]})
    if args.json:
        print_json(rows)
        return 0
    if not rows:
        print(f"no grokscope runs under {args.store}")
        return 0
    t = Table(title=f"runs in {args.store}")
    for col in ("path", "tasks", "p", "model", "wd", "lr", "seed", "steps", "grok step"):
        t.add_column(col, overflow="fold" if col == "path" else "ellipsis")  # a path cut short names no run
    for r in rows:
        grok = ", ".join(f"{k} {fmt(v)}" for k, v in r["grok_step"].items())
        t.add_row(r["path"], r["tasks"], str(r["p"]), r["model"], f"{r['wd']:g}", f"{r['lr']:g}", str(r["seed"]),
                  fmt(r["steps"]), grok)
    Console().print(t)
    return 0


def show_run(args: argparse.Namespace) -> int:
    runs = find_runs([args.run_dir])
    if not runs:
        raise StoreError(f"{args.run_dir} holds no grokscope run")
    if len(runs) > 1:
        raise ConfigError(f"{args.run_dir} holds {len(runs)} runs; give one run directory, e.g. {runs[0].path} "
                          f"(`grokscope runs list {args.run_dir}` lists them)")
    run = runs[0].check()
    s = _summary(run)
    files = sorted(f.name for f in run.path.iterdir() if not f.name.startswith("."))
    if args.json:
        print_json({**s, "path": str(run.path), "files": files})
        return 0
    con = Console()
    con.print(f"[bold]{s['name']}[/bold]  ({run.path})")
    con.print(Pretty(s["config"]))
    for t, step in s["grok_step"].items():
        acc = s["final_acc"].get(t, {})
        con.print(f"  {t}: grok step {fmt(step)}, grok step (90%) {fmt(s.get('grok_step_90', {}).get(t))}, "
                  f"final train {fmt(acc.get('train'), '.3f')} test {fmt(acc.get('test'), '.3f')}")
    con.print(f"  steps trained {fmt(s.get('steps_trained'))}, finished {s.get('finished')}, "
              f"wall {fmt(s.get('wall_time'), '.1f')} s; files: {', '.join(files)}")
    if (step := diverged_step(s)) is not None:
        con.print(f"  DIVERGED at step {step} (a non-finite loss, weight or gradient)")
    return 0


def tensorboard(args: argparse.Namespace) -> int:
    if args.out:
        check_out(args.out)
    require()  # a missing extra fails before anything is written
    runs = find_runs(args.runs)
    if not runs:
        raise StoreError(f"no grokscope runs under {', '.join(args.runs)}")
    for run in runs:
        logdir = Path(args.out) / run.path.name if args.out else run.path / TENSORBOARD_DIR
        counts = write_run(run, logdir)
        print(f"{run.path} -> {logdir} ({', '.join(f'{k} {v}' for k, v in counts.items()) or 'nothing to write'})")
    return 0


def warnings(args: argparse.Namespace) -> int:
    if args.detector not in DETECTORS and args.detector not in MULTI_DETECTORS and args.detector not in AUTO_MODES:
        raise ConfigError(f"unknown detector {args.detector!r}; choose from "
                          f"{', '.join([*AUTO_MODES, *MULTI_DETECTORS, *DETECTORS])}")
    lead = fit_lead_model(find_runs([args.calibrate]), source=str(args.calibrate)) if args.calibrate else DEFAULT_LEAD
    runs = find_runs(args.runs)
    if not runs:
        raise StoreError(f"no grokscope runs under {', '.join(args.runs)}")
    if args.every is not None and args.every <= 0:
        raise ConfigError(f"--every {args.every} must be a positive number of steps")
    table = warning_table(runs, args.detector, lead, every=args.every)
    summary = warning_summary(table)
    if args.json:
        print_json({"lead_model": lead.__dict__, "summary": summary, "runs": table.to_dict("records")})
        return 0
    cols = {"run": None, "grok_step": ".0f", "warning_step": ".0f", "lead": ".0f", "predicted": ".0f",
            "window_lo": ".0f", "window_hi": ".0f", "peak_ratio": ".1f"}  # steps as whole numbers, — when absent
    shown = pd.DataFrame({c: table[c].map(lambda v, spec=spec: fmt(v, spec)) for c, spec in cols.items()})
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(shown.to_string(index=False) if len(table) else "no runs with an inline defect table")
    if args.detector in AUTO_MODES:
        print(f"detector {args.detector}: the monitor's default (monitor.choice); forecasts by the norm-delay law")
    elif args.detector in MULTI_DETECTORS:
        c = MULTI_DETECTORS[args.detector]
        print(f"detector {args.detector}: threshold {c.threshold:g}, window {c.ratio_lo:g}–{c.ratio_hi:g} x the "
              "warning step")
    else:
        print(f"lead model: alpha {lead.alpha:.3f}, intercept {lead.intercept:.3f}, residual sd {lead.resid_sd:.3f} "
              f"({lead.source})")
    print(", ".join(f"{k} {fmt(v, '.3g')}" for k, v in summary.items()))
    return 0
