"""`grokscope analyze RUN_DIR...`: post-hoc geometry of stored runs. Writes `pca.parquet`,
`defect_posthoc.parquet` and `hessian.parquet` next to each run, stores each result in the run's
analyses (`grokscope.analyses`), and prints a summary."""

from __future__ import annotations

import argparse
from typing import Any

from grokscope.analyses import run_analysis
from grokscope.commands.common import csv_list, print_json
from grokscope.errors import ConfigError, StoreError
from grokscope.formatting import fmt, short_name
from grokscope.runtime.devices import check_device, resolve_device
from grokscope.store import find_runs
from grokscope.training.progress_bars import working

WHAT = ("pca", "defect", "hessian")  # what `analyze` runs by default
CHOICES = (*WHAT, "progress", "llc")  # what it can run (and the order it prints them in); llc needs grokscope[llc]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("analyze", help="post-hoc geometry of stored runs: trajectory PCA, defects, Hessian")
    p.add_argument("runs", nargs="+", metavar="RUN_DIR", help="run directories or folders of runs")
    p.add_argument("--what", type=csv_list(str), default=list(WHAT),
                   help=f"comma-separated analyses from {','.join(CHOICES)} (default: {','.join(WHAT)})")
    p.add_argument("--device", default="cpu")
    p.add_argument("--draws", type=int, default=9, help="commutator draws per snapshot (default 9)")
    p.add_argument("--lanczos-iters", type=int, default=25,
                   help="Lanczos steps for the Hessian (default 25, the papers'); with --lanczos-tol: the cap")
    p.add_argument("--lanczos-tol", type=float, default=None,
                   help="run Lanczos until λ_min's and λ_max's Ritz residuals are <= TOL·|λ| (e.g. 1e-3; "
                        "docs/fidelity.md item 15: 25 steps need not converge)")
    p.add_argument("--hessian-draws", type=int, default=0, metavar="N",
                   help="also repeat the total loss's λ_min under N fresh training samples and start vectors (one "
                        "of each per draw) and report the depth's spread (default 0: the fixed sample only)")
    p.add_argument("--tasks", type=csv_list(str), default=None,
                   help="progress: only these tasks (default every task; each must be add, sub, mul or div; a "
                        "monitored run: the operations its task is)")
    p.add_argument("--watch", type=csv_list(str), default=None, metavar="GLOB[,GLOB]",
                   help="pca: the trajectories to read (globs over recorded parameter names, e.g. '*attn*' or an "
                        "MLP's first layer '0.weight'; default every watched tensor; a name that was not watched "
                        "is read from the full snapshots)")
    p.add_argument("--embedding", default=None, metavar="NAME",
                   help="progress on a monitored run: the recorded name of its token embedding (e.g. embed.W_E, "
                        "transformer.wte.weight); needs --modulus")
    p.add_argument("--modulus", type=int, default=None, metavar="P",
                   help="progress on a monitored run: the modulus p of its task (tokens 0..p-1 are the operands)")
    p.add_argument("--token-axis", type=int, default=0, choices=(0, 1),
                   help="progress: the embedding's axis that indexes tokens (0: an nn.Embedding [vocab, d], the "
                        "default; 1: a Linear on one-hot inputs [d, vocab])")
    p.add_argument("--llc-draws", type=int, default=None, metavar="N",
                   help="llc: SGLD draws per chain (default: the calibrated setting, docs/diagnostics.md)")
    p.add_argument("--llc-chains", type=int, default=None, metavar="N", help="llc: SGLD chains (default 4)")
    p.add_argument("--llc-lr", type=float, default=None, metavar="EPS",
                   help="llc: SGLD step size; with --llc-nbeta and --llc-localization, skips the calibration")
    p.add_argument("--llc-nbeta", type=float, default=None, help="llc: inverse temperature nβ")
    p.add_argument("--llc-localization", type=float, default=None, help="llc: localisation strength γ")
    p.add_argument("--json", action="store_true", help="print only JSON on stdout")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    what = list(args.what)
    for w in what:
        if w not in CHOICES:
            raise ConfigError(f"unknown analysis {w!r}; choose from {', '.join(CHOICES)}")
    if args.draws < 1:
        raise ConfigError(f"draws={args.draws} must be >= 1")
    if args.lanczos_iters < 1:
        raise ConfigError(f"--lanczos-iters={args.lanczos_iters} must be >= 1")
    if args.lanczos_tol is not None and not 0 < args.lanczos_tol < 1:
        raise ConfigError(f"--lanczos-tol={args.lanczos_tol} must be in (0, 1)")
    if args.hessian_draws < 0:
        raise ConfigError(f"--hessian-draws={args.hessian_draws} must be >= 0")
    options = {"defect": {"draws": args.draws},
               "hessian": {"iters": args.lanczos_iters, "tol": args.lanczos_tol, "draws": args.hessian_draws},
               "pca": {"watch": args.watch},
               "progress": {"tasks": args.tasks, "embedding": args.embedding, "modulus": args.modulus,
                            "token_axis": args.token_axis},
               "llc": {k: v for k, v in (("draws", args.llc_draws), ("chains", args.llc_chains), ("lr", args.llc_lr),
                                         ("n_beta", args.llc_nbeta), ("localization", args.llc_localization))
                       if v is not None}}
    fixed = [args.llc_lr, args.llc_nbeta, args.llc_localization]
    if any(v is not None for v in fixed):
        if any(v is None or v <= 0 for v in fixed):
            raise ConfigError("--llc-lr, --llc-nbeta and --llc-localization go together (each > 0): a fixed "
                              "setting; give none of them to calibrate")
        options["llc"]["calibrate"] = False
    if (args.tasks or args.embedding or args.modulus is not None) and "progress" not in what:
        raise ConfigError("--tasks, --embedding and --modulus are options of --what progress; add progress to --what")
    if args.watch and "pca" not in what:
        raise ConfigError("--watch picks the trajectories of --what pca; add pca to --what")
    device = resolve_device(check_device(args.device))
    runs = find_runs(args.runs)
    if not runs:
        raise StoreError(f"no grokscope runs under {', '.join(map(str, args.runs))}")
    for r in runs:  # every run's files are checked before any result is written
        r.check()
    results: dict[str, dict[str, Any]] = {}
    with working("[bold]analyze", not args.json) as say:
        for i, r in enumerate(runs):
            out: dict[str, Any] = {"path": str(r.path)}
            for w in CHOICES:
                if w in what:
                    say(f"run {i + 1}/{len(runs)} {r.path.name}: {w}")
                    out[w] = run_analysis(r, w, device, **options.get(w, {}))
            results[r.config().name] = out
    if args.json:
        print_json(results)
    else:
        _print(results)
    return 0


def _print(results: dict[str, dict[str, Any]]) -> None:
    for name, res in results.items():
        print(f"{name}  ({res['path']})")
        if "pca" in res:
            p = res["pca"]
            if "skipped" in p:
                print(f"  pca: skipped, {p['skipped']}")
            else:
                per = ", ".join(f"{short_name(k)} {fmt(v, '.0f')}" for k, v in p["pc1_percent"].items())
                print(f"  pca: PC1% mean {fmt(p['pc1_mean'], '.1f')} ({per})  -> pca.parquet")
        for key in ("defect", "hessian", "llc"):
            if "skipped" in res.get(key, {}):
                print(f"  {key}: skipped, {res[key]['skipped']}")
        if "defect" in res and "skipped" not in res["defect"]:
            d = res["defect"]
            leads = ", ".join(f"{t} {fmt(v, '.1f')}" for t, v in d["lead"].items())
            where = "defect.parquet (inline, Monitor)" if "source" in d else "defect_posthoc.parquet"
            if isinstance(d.get("rho"), str):
                where += f"; ρ {d['rho']}"
            print(f"  defect: onset {fmt(d['onset'], '.1f')}, peak/baseline {fmt(d['defect_peak_ratio'], '.1f')}, "
                  f"rho final {fmt(d.get('rho_final'), '.4f')} (random {fmt(d.get('rho_random_median'), '.4f')}), "
                  f"lead {leads or '—'}  -> {where}")
        if "hessian" in res and "skipped" not in res["hessian"]:
            losses = {k: v for k, v in res["hessian"].items() if isinstance(v, dict) and "lambda_min" in v}
            h = "; ".join(f"{loss} loss λ_min {fmt(v['lambda_min'], '.3f')} at step {v['step']}, λ_max peak "
                          f"{fmt(v['lambda_max_peak'], '.1f')}" for loss, v in losses.items())
            n = max((v["n_checkpoints"] for v in losses.values()), default=0)
            print(f"  hessian: {h or 'no checkpoints'} ({n} checkpoints)  -> hessian.parquet")
            if "depth_draws" in res["hessian"]:
                d = res["hessian"]["depth_draws"]
                each = ", ".join(fmt(x, ".1f") for x in d["depths"])
                print(f"  hessian depth over {d['draws']} fresh samples: {fmt(d['mean'], '.1f')} ± "
                      f"{fmt(d['sd'], '.1f')} ({each})  -> hessian_draws.parquet")
        if "progress" in res:
            for task, t in res["progress"]["tasks"].items():
                losses = (f"excluded loss (train) peaks at step {t['excluded_loss_peak_step']}, restricted loss "
                          f"(all pairs) lowest at step {t['restricted_loss_min_step']}"
                          if t["excluded_loss_peak_step"] is not None else "losses not measured (need the model)")
                print(f"  progress {task}: key frequencies (end of run) {t['key_final'] or '—'}, Gini "
                      f"{fmt(t['gini_first'], '.2f')} -> {fmt(t['gini_last'], '.2f')}, {losses}  -> progress.parquet")
        if "llc" in res and "skipped" not in res["llc"]:
            c = res["llc"]
            print(f"  llc: {fmt(c['llc_first'], '.1f')} -> {fmt(c['llc_last'], '.1f')} over {c['n_snapshots']} "
                  f"snapshots (SGLD lr {c['sampler'].get('lr')}, localization {c['sampler'].get('localization')}, "
                  f"{c['sampler'].get('chains', '?')} chains × {c['sampler'].get('draws', '?')} draws)  -> llc.parquet")
