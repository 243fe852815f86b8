"""`grokscope runs list [STORE]` and `grokscope runs show RUN_DIR`: what a store holds."""

from __future__ import annotations

import argparse

from rich.console import Console
from rich.pretty import Pretty
from rich.table import Table

from grokscope.commands.common import print_json
from grokscope.errors import StoreError
from grokscope.store import RunDir, find_runs


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("runs", help="list or show stored runs")
    verbs = p.add_subparsers(dest="verb", metavar="VERB")
    ls = verbs.add_parser("list", help="one line per run below STORE")
    ls.add_argument("store", nargs="?", default="runs")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(func=list_runs)
    show = verbs.add_parser("show", help="a run's config, grok steps, final accuracies and files")
    show.add_argument("run_dir")
    show.add_argument("--json", action="store_true")
    show.set_defaults(func=show_run)
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
    t = Table(title=f"runs in {args.store}")
    for col in ("path", "tasks", "p", "model", "wd", "lr", "seed", "steps", "grok step"):
        t.add_column(col)
    for r in rows:
        grok = ", ".join(f"{k} {v if v is not None else '—'}" for k, v in r["grok_step"].items())
        t.add_row(r["path"], r["tasks"], str(r["p"]), r["model"], f"{r['wd']:g}", f"{r['lr']:g}", str(r["seed"]),
                  str(r["steps"]), grok)
    Console().print(t)
    return 0


def show_run(args: argparse.Namespace) -> int:
    runs = find_runs([args.run_dir])
    if not runs:
        raise StoreError(f"{args.run_dir} holds no grokscope run")
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
        con.print(f"  {t}: grok step {step if step is not None else '—'}, "
                  f"grok step (90%) {s.get('grok_step_90', {}).get(t)}, "
                  f"final train {acc.get('train', float('nan')):.3f} test {acc.get('test', float('nan')):.3f}")
    con.print(f"  steps trained {s.get('steps_trained')}, finished {s.get('finished')}, "
              f"wall {s.get('wall_time')} s; files: {', '.join(files)}")
    return 0
