"""`grokscope run`: train one preset (default `quick`) over a grid of seeds / weight decays / lrs as one
batched program, with a live progress bar and a summary of grok steps and geometry."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from grokscope.analyses import run_analysis
from grokscope.commands.common import csv_list, print_json
from grokscope.config import PRESETS, Grid, MethodConfig, RunConfig, build_configs, method_config
from grokscope.data.tasks import OPERATIONS
from grokscope.errors import ConfigError
from grokscope.formatting import fmt, short_name
from grokscope.runtime.devices import check_device, resolve_device
from grokscope.store import RunDir, check_dirs, check_store
from grokscope.sweep.batch import train_with_probes
from grokscope.training import EvalInfo, RunResult
from grokscope.training.progress_bars import describe_eval, progress_bar, working


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="train runs (default: the quick CPU preset) and summarise them")
    p.add_argument("--preset", default="quick", help=f"one of {', '.join(PRESETS)} (default quick)")
    p.add_argument("--tasks", type=csv_list(str),
                   help=f"task(s) of one run, from {', '.join(OPERATIONS)}; e.g. add,mul")
    p.add_argument("--p", type=int, help="modulus p (prime when a task multiplies, divides or squares)")
    p.add_argument("--train-frac", type=float, help="fraction of the pairs used for training")
    p.add_argument("--wd", type=csv_list(float), help="weight decay(s), e.g. 0.1,0.3,1")
    p.add_argument("--lr", type=csv_list(float), help="learning rate(s)")
    p.add_argument("--seeds", type=csv_list(int), help="seed(s), e.g. 42,137,2024")
    p.add_argument("--steps", type=int, help="step budget per run")
    p.add_argument("--batch", type=_batch, help="minibatch size, or 'full'")
    p.add_argument("--d-model", type=int, help="model width")
    p.add_argument("--heads", type=int, help="attention heads")
    p.add_argument("--layers", type=int, help="transformer layers")
    p.add_argument("--eval-every", type=int, help="train/test accuracy every N steps (the grok step's resolution)")
    p.add_argument("--checkpoint-every", type=int, help="checkpoint (what a killed run resumes from) every N steps")
    p.add_argument("--defect-every", type=int, help="inline commutator defect every N steps (0: off)")
    p.add_argument("--init", choices=("authors", "independent"),
                   help="θ₀: the papers' script module (layers copied; paper presets) or independent layers")
    p.add_argument("--sampler", choices=("authors", "counter"),
                   help="minibatches: the papers' numpy stream (paper presets) or grokscope's counter hash")
    p.add_argument("--split", choices=("authors", "randperm"),
                   help="train/test split: the papers' random.Random(seed).shuffle or torch.randperm")
    p.add_argument("--snapshot-spacing", type=int, help="full snapshot every N steps (0: spread over the budget)")
    p.add_argument("--method", type=csv_list(str),
                   help="grokking method(s), one batch: baseline, grokfast-ema, grokfast-ma, stablemax, orthograd "
                        "(⊥Grad), or '+'-joined, e.g. baseline,grokfast-ema,stablemax+orthograd")
    p.add_argument("--alpha", type=float, help="Grokfast-EMA momentum (default 0.98)")
    p.add_argument("--lamb", type=float, help="Grokfast amplification (default 2 for EMA, 5 for MA)")
    p.add_argument("--window", type=int, help="Grokfast-MA window (default 100)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", default="runs", help="store directory (default ./runs)")
    p.add_argument("--resume", action="store_true", help="continue runs found in --out even if their config changed")
    p.add_argument("--force", action="store_true", help="delete runs of the same name in --out and start over")
    c = p.add_mutually_exclusive_group()
    c.add_argument("--compile", dest="compile", action="store_const", const=True, default=None,
                   help="torch.compile the training loss, forward and backward (default: only for runs of >= 10k "
                        "steps, or as $GROKSCOPE_COMPILE=0/1 says; falls back to eager if compiling fails)")
    c.add_argument("--no-compile", dest="compile", action="store_const", const=False, help="never compile")
    p.add_argument("--no-geometry", action="store_true", help="skip the geometry summary")
    p.add_argument("--json", action="store_true", help="print only JSON on stdout")
    p.set_defaults(func=run)


def _batch(text: str) -> int | str:
    if text == "full":
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"batch {text!r} is not an integer or 'full'") from None


def configs_from_args(args: argparse.Namespace) -> list[RunConfig]:
    """The run grid the arguments describe, validated (`config.grid.build_configs`: the path sweeps take too)."""
    over: dict[str, Any] = {}
    for field, value in (("tasks", args.tasks), ("p", args.p), ("train_frac", args.train_frac), ("steps", args.steps),
                         ("eval_every", args.eval_every), ("checkpoint_every", args.checkpoint_every),
                         ("defect_every", args.defect_every), ("d_model", args.d_model), ("n_heads", args.heads),
                         ("n_layers", args.layers), ("init", args.init), ("sampler", args.sampler),
                         ("split", args.split), ("snapshot_spacing", args.snapshot_spacing), ("batch", args.batch)):
        if value is not None:
            over[field] = value
    grid = Grid.of(seeds=args.seeds or (), wd=args.wd or (), lr=args.lr or (), method=methods_from_args(args))
    return build_configs(args.preset, over, grid)


def methods_from_args(args: argparse.Namespace) -> list[MethodConfig]:
    """The methods named by --method, the Grokfast ones with the filter hyper-parameters given (no --method:
    the preset's method)."""
    kw = {k: v for k, v in (("alpha", getattr(args, "alpha", None)), ("lamb", getattr(args, "lamb", None)),
                            ("window", getattr(args, "window", None))) if v is not None}
    names = getattr(args, "method", None) or ([] if not kw else ["baseline"])
    if kw and not any("grokfast" in n for n in names):
        raise ConfigError("--alpha, --lamb and --window set Grokfast filters; add --method grokfast-ema or grokfast-ma")
    return [method_config(n, **(kw if "grokfast" in n else {})) for n in names]


def run(args: argparse.Namespace) -> int:
    device = resolve_device(check_device(args.device))
    cfgs = configs_from_args(args)
    out = check_store(args.out)
    check_dirs(cfgs, out, args.resume, args.force)  # refused stores fail before the progress bar appears
    quiet = args.json
    t0 = time.perf_counter()
    if quiet:
        results = train_with_probes(cfgs, out, device, resume=args.resume, force=args.force, compile=args.compile)
    else:
        results = _run_with_progress(cfgs, out, device, args)
    wall = time.perf_counter() - t0
    with working("[bold]geometry", not args.json and not args.no_geometry) as say:
        say("PC1%, ρ and the defect onset of each run")
        geometry = {} if args.no_geometry else _geometry(results, device)
    if args.json:
        print_json([_json_row(r, geometry.get(r.config.name)) for r in results])
    else:
        _print_summary(results, geometry, wall)
    return 0


def _json_row(r: RunResult, geom: dict | None) -> dict:
    s = r.summary
    row = {"name": s["name"], "path": str(r.path), "config": s["config"], "grok_step": s["grok_step"],
           "grok_step_90": s["grok_step_90"], "final_acc": s["final_acc"], "steps_trained": s["steps_trained"],
           "diverged": s["diverged"], "wall_time": s["wall_time"]}
    if geom is not None:
        row["geometry"] = geom
    return row


def _geometry(results: list[RunResult], device: str) -> dict[str, dict]:
    """Each run's `summary` analysis (PC1%, ρ, defect onset, lead), stored with its other analyses."""
    return {r.config.name: run_analysis(RunDir(r.path), "summary", device) for r in results if r.path is not None}


def _run_with_progress(cfgs: list[RunConfig], out: Path, device: str, args: argparse.Namespace
                       ) -> list[RunResult]:
    with progress_bar("[bold]train") as bar:
        task = bar.add_task("", total=max(c.steps for c in cfgs))

        def on_eval(e: EvalInfo) -> None:
            bar.update(task, completed=e.step, description=describe_eval(e))

        return train_with_probes(cfgs, out, device, resume=args.resume, force=args.force, on_eval=on_eval,
                         compile=args.compile)


def _print_summary(results: list[RunResult], geometry: dict[str, dict], wall: float) -> None:
    console = Console()
    single = len(results) == 1
    table = Table(title=results[0].config.name if single else "grokscope run")
    cols = ("task", "grok step", "grok step (90%)", "train acc", "test acc", "defect onset", "lead")
    for col in cols if single else ("run", *cols):
        table.add_column(col, overflow="fold")
    for r in results:
        s, g = r.summary, geometry.get(r.config.name, {})
        for t in r.config.data.tasks:
            acc = s["final_acc"].get(t, {})
            grok = "diverged" if s["diverged"] else fmt(s["grok_step"][t])
            row = [t, grok, fmt(s["grok_step_90"][t]), fmt(acc.get("train"), ".3f"),
                   fmt(acc.get("test"), ".3f"), fmt(g.get("onset")), fmt((g.get("lead") or {}).get(t))]
            table.add_row(*row if single else (s["name"], *row))
    console.print(table)
    for r in results:
        if r.summary["diverged"]:
            console.print(f"{r.config.name}: DIVERGED at step {r.summary['steps_trained']} (non-finite loss or "
                          "weights); it stopped there, the other runs of the batch trained on unchanged")
        g = geometry.get(r.config.name)
        if not g:
            continue
        pc1 = g.get("pc1_percent") or {}
        if pc1:
            per = ", ".join(f"{short_name(k)} {v:.0f}" for k, v in pc1.items() if v is not None)
            console.print(f"{r.config.name}: PC1% of attention trajectories mean {fmt(g.get('pc1_mean'), '.1f')} "
                          f"({per}); rho {fmt(g.get('rho'), '.3f')}")
        for why in g.get("missing", []):
            console.print(f"{r.config.name}: not measured: {why}")
    console.print(f"wall time {wall:.1f} s; runs stored under {results[0].path.parent if results[0].path else '-'}")
