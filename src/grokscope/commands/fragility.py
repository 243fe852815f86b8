"""`grokscope fragility RUN_DIR`: how fragile is the final model, and how many trajectory PCs rebuild it?

Prints and stores, in the run directory, fragility.parquet (SVD rank / pruning / scaling / random
perturbation → accuracy per task) and reconstruction.parquet (k → accuracy per task), plus k* and the
trajectory variance captured at k* in fragility.json.
"""

from __future__ import annotations

import argparse
import math

from grokscope.cli import print_json
from grokscope.errors import StoreError
from grokscope.geometry.compress import FragilityConfig, fragility
from grokscope.geometry.reconstruct import reconstruction_threshold
from grokscope.store import RunDir, write_json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("fragility", help="compression/perturbation of the final model and the threshold k*")
    p.add_argument("run_dir")
    p.add_argument("--k", type=int, default=20, help="largest number of trajectory PCs for k*")
    p.add_argument("--threshold", type=float, default=0.9, help="test accuracy every task must exceed for k*")
    p.add_argument("--seed", type=int, default=0, help="seed of the random perturbations")
    p.add_argument("--device", default="cpu")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run)


def _clean(v: object) -> object:
    return None if isinstance(v, float) and math.isnan(v) else v


def run(args: argparse.Namespace) -> int:
    rd = RunDir(args.run_dir)
    if not rd.exists():
        raise StoreError(f"{rd.path} is not a grokscope run (no config.json)")
    if not rd.file("checkpoint.safetensors").exists() or not rd.file("trajectory.safetensors").exists():
        raise StoreError(f"{rd.path} has no checkpoint/trajectory yet; train it first")
    frag = fragility(rd, FragilityConfig(seed=args.seed), args.device)
    rec = reconstruction_threshold(rd, args.k, args.threshold, args.device)
    rd.write_table("fragility", frag)
    rd.write_table("reconstruction", rec.table)
    summary = {"k_star": rec.k_star, "cumulative_at_k_star": rec.cumulative_at_k_star,
               "threshold": rec.threshold}
    write_json(rd.file("fragility.json"), summary)
    if args.json:
        print_json({"run": str(rd.path), **summary,
                    "fragility": [{k: _clean(v) for k, v in r.items()} for r in frag.to_dict("records")],
                    "reconstruction": rec.table.to_dict("records")})
        return 0
    tasks = list(dict.fromkeys(frag.task))
    wide = frag.pivot_table(index=["kind", "value", "size"], columns="task", values="test_acc", dropna=False,
                            sort=False).reset_index()
    print(f"fragility of {rd.path} (test accuracy per task)")
    print(f"{'edit':>8} {'value':>7} {'size':>6}" + "".join(f" {t:>8}" for t in tasks))
    for _, r in wide.iterrows():
        size = "" if math.isnan(r["size"]) else f"{r['size']:g}"
        print(f"{r['kind']:>8} {r['value']:>7g} {size:>6}" + "".join(f" {r[t]:>8.3f}" for t in tasks))
    rt = rec.table.pivot_table(index=["k", "cumulative"], columns="task", values="test_acc").reset_index()
    print("\nreconstruction θ₀ + Σ_(i≤k) v_i v_iᵀ Δθ (test accuracy per task)")
    print(f"{'k':>3} {'cum var':>8}" + "".join(f" {t:>8}" for t in tasks))
    for _, r in rt.iterrows():
        print(f"{int(r['k']):>3} {r['cumulative']:>8.4f}" + "".join(f" {r[t]:>8.3f}" for t in tasks))
    if rec.k_star is None:
        print(f"k* > {rt.k.max() if len(rt) else 0}: no k reaches {args.threshold:.0%} on every task")
    else:
        print(f"k* = {rec.k_star} (cumulative variance {rec.cumulative_at_k_star:.4f})")
    return 0
