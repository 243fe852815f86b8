"""Cost per snapshot of each grokking diagnostic next to the commutator defect's, at the P1 size.

One snapshot of the P1 model (`p1-dual`: p 97, add + mul, 2-layer trunk, d_model 128, 303k parameters; its θ₀,
the cost does not depend on training) or, with `--preset quick`, of the quick model. Per diagnostic, the CPU and
wall seconds of one snapshot (best of `--repeats`; the machine is shared, so CPU seconds are the figure to read):
- `defect`: `commutator_defect(problem, params, draws=9)` (P1's K = 9);
- `lambda_min`: 25 Lanczos steps of the total loss's Hessian on the 512-example sample (bottom 5);
- `progress`: every progress measure of both tasks (`progress_measures.snapshot_measures`: forward over all
  p² pairs, Fourier norms, both key sets' restricted and excluded losses);
- `llc`: devinterp's LLC (`grokscope.geometry.llc.estimate_llc`) with `--llc-chains` × `--llc-draws` SGLD steps.
The processor (lscpu's model name), torch and devinterp versions are printed with the table.

    OMP_NUM_THREADS=1 nice -n 10 python benchmarks/diagnostics_cost.py            # P1 size
    python benchmarks/diagnostics_cost.py --preset quick --repeats 1               # seconds
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from importlib.metadata import PackageNotFoundError, version

import torch

from grokscope.analyses.progress_measures import snapshot_measures
from grokscope.config import preset
from grokscope.geometry.commutator import commutator_defect
from grokscope.geometry.hvp import hessian_sample, make_hvp
from grokscope.geometry.krylov import lanczos
from grokscope.geometry.llc import LLCSettings, ParamsModule, estimate_llc, module_loss, per_example_loss
from grokscope.runtime.environment import processor
from grokscope.training import model as M
from grokscope.training.problem import Problem


def timed(fn: Callable[[], object], repeats: int) -> tuple[float, float]:
    """(best CPU seconds, best wall seconds) of `fn` over `repeats` calls."""
    cpu, wall = [], []
    for _ in range(repeats):
        c, w = time.process_time(), time.perf_counter()
        fn()
        cpu.append(time.process_time() - c)
        wall.append(time.perf_counter() - w)
    return min(cpu), min(wall)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="p1-dual")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--llc-chains", type=int, default=4)
    ap.add_argument("--llc-draws", type=int, default=100)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    torch.manual_seed(0)
    cfg = preset(args.preset)
    problem = Problem([cfg])
    params = problem.init_params()
    one = {k: v[0] for k, v in params.items()}
    split = problem.pairs, problem.targets
    train = torch.zeros(len(split[0]), dtype=torch.bool)
    train[problem.train_idx[0]] = True
    tasks = [t for t in cfg.data.tasks if t in ("add", "sub", "mul", "div")]

    def defect() -> None:
        commutator_defect(problem, params, step=0, draws=9)

    def lambda_min() -> None:
        pairs, targets = hessian_sample(problem, 512)
        theta = M.flatten(params)
        hvp = make_hvp(problem, params, pairs, targets)
        lanczos(hvp, torch.randn_like(theta), 25, k=5)

    def progress() -> None:
        for t in tasks:
            snapshot_measures(one, cfg, t, split[0], split[1][:, cfg.data.tasks.index(t)], train, [1, 2, 3])

    settings = LLCSettings(lr=1e-6, n_beta=None, chains=args.llc_chains, draws=args.llc_draws)

    def llc() -> None:
        module = ParamsModule(one, per_example_loss(cfg, *split))
        estimate_llc(module, module_loss, problem.train_idx[0].tolist(), settings)

    rows = []
    for name, fn in (("defect", defect), ("lambda_min", lambda_min), ("progress", progress), ("llc", llc)):
        fn_cpu, fn_wall = timed(fn, args.repeats)
        rows.append({"diagnostic": name, "cpu_s": round(fn_cpu, 3), "wall_s": round(fn_wall, 3)})
    base = rows[0]["cpu_s"]
    for r in rows:
        r["x_defect"] = round(r["cpu_s"] / base, 2) if base > 0 else None
    try:
        devinterp = version("devinterp")
    except PackageNotFoundError:
        devinterp = None
    meta = {"preset": args.preset, "n_params": M.count_params(params), "cpu": processor(), "torch": torch.__version__,
            "devinterp": devinterp, "threads": torch.get_num_threads(),
            "llc": f"{args.llc_chains} chains x {args.llc_draws} draws, batch {settings.batch}"}
    if args.json:
        print(json.dumps({"meta": meta, "rows": rows}))
        return
    print(" · ".join(f"{k} {v}" for k, v in meta.items()))
    print("| diagnostic | CPU s / snapshot | wall s | × defect |\n|---|---|---|---|")
    for r in rows:
        print(f"| {r['diagnostic']} | {r['cpu_s']} | {r['wall_s']} | {r['x_defect']} |")


if __name__ == "__main__":
    main()
