"""`grokscope fragility RUN_DIR`: how fragile is the final model, and how many trajectory PCs rebuild it?

Prints and stores, in the run directory, fragility.parquet (SVD rank / pruning / scaling / random
perturbation → accuracy per task) and reconstruction.parquet (k → accuracy per task), plus k* and the
trajectory variance captured at k* in fragility.json.
"""

from __future__ import annotations

import argparse
import math

from grokscope.analyses import run_analysis
from grokscope.commands.common import print_json
from grokscope.errors import ConfigError, StoreError
from grokscope.runtime.devices import resolve_device
from grokscope.store import FRAGILITY_TABLE, RECONSTRUCTION_TABLE, RunDir
from grokscope.training.progress_bars import working


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("fragility", help="compression/perturbation of the final model and the threshold k*")
    p.add_argument("run_dir", metavar="RUN_DIR", help="a run directory")
    p.add_argument("--k", type=int, default=20, help="largest number of trajectory PCs for k*")
    p.add_argument("--threshold", type=float, default=0.9, help="test accuracy every task must exceed for k*")
    p.add_argument("--seed", type=int, default=0, help="seed of the random perturbations")
    p.add_argument("--device", default="cpu")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    rd = RunDir(args.run_dir)
    if not rd.exists():
        raise StoreError(f"{rd.path} is not a grokscope run (no config.json)")
    if not rd.has_checkpoint() or not rd.has_trajectory():
        raise StoreError(f"{rd.path} has no checkpoint/trajectory yet; train it first")
    if not 0 < args.threshold <= 1:
        raise ConfigError(f"--threshold={args.threshold} must lie in (0, 1]")
    if args.k < 1:
        raise ConfigError(f"--k={args.k} must be >= 1")
    device = resolve_device(args.device)
    rd.check()
    with working("[bold]fragility", not args.json) as say:
        say(f"{rd.path.name}: SVD, pruning, scaling, perturbations and the k* scan")
        summary = run_analysis(rd, "fragility", device, k=args.k, threshold=args.threshold, seed=args.seed)
    frag, rec = rd.table(FRAGILITY_TABLE), rd.table(RECONSTRUCTION_TABLE)
    if args.json:
        print_json({"run": str(rd.path), **summary, "fragility": frag.to_dict("records"),
                    "reconstruction": rec.to_dict("records")})
        return 0
    tasks = list(dict.fromkeys(frag.task))
    print(f"fragility of {rd.path} (test accuracy per task)")
    print(f"{'edit':>8} {'value':>7} {'size':>6}" + "".join(f" {t:>8}" for t in tasks))
    for (kind, value, size), acc in _edit_rows(frag).items():
        print(f"{kind:>8} {value:>7g} {size:>6}" + "".join(f" {acc.get(t, math.nan):>8.3f}" for t in tasks))
    rt = rec.pivot_table(index=["k", "cumulative"], columns="task", values="test_acc").reset_index()
    print("\nreconstruction θ₀ + Σ_(i≤k) v_i v_iᵀ Δθ (test accuracy per task)")
    print(f"{'k':>3} {'cum var':>8}" + "".join(f" {t:>8}" for t in tasks))
    for _, r in rt.iterrows():
        print(f"{int(r['k']):>3} {r['cumulative']:>8.4f}" + "".join(f" {r[t]:>8.3f}" for t in tasks))
    if summary["k_star"] is None:
        print(f"k* > {rt.k.max() if len(rt) else 0}: no k reaches {args.threshold:.0%} on every task")
    else:
        print(f"k* = {summary['k_star']} (cumulative variance {summary['cumulative_at_k_star']:.4f})")
    return 0


def _edit_rows(frag) -> dict[tuple[str, float, str], dict[str, float]]:
    """Test accuracy per task of each edit the table holds, in its order (a pivot would cross every level)."""
    rows: dict[tuple[str, float, str], dict[str, float]] = {}
    for r in frag.itertuples(index=False):
        size = "" if math.isnan(r.size) else f"{r.size:g}"
        rows.setdefault((r.kind, float(r.value), size), {})[r.task] = float(r.test_acc)
    return rows
