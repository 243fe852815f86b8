"""Geometry throughput: batched (runs/checkpoints on the run axis) vs one-at-a-time analyses.

(a) Commutator defect, K = 9 draws, for R runs of the P1 model (p=97, add+mul, minibatch 512):
    `commutator_defect(problem, params, step=0, draws=9)` once over all R runs vs R calls with
    `problem.subset([r])` (one run each, still K draws batched, as a per-run script would).
(b) Lanczos curvature (25 iterations, bottom 5, full re-orthogonalisation, 512 training samples) on the
    P1 model's total loss: `lanczos(make_hvp(...))` over C checkpoints on the run axis vs C calls of one
    checkpoint each. The "checkpoints" are inits from different seeds: cost does not depend on values.

Each measurement runs once untimed (warm-up), then is timed; times are wall-clock seconds.

    python benchmarks/geometry_throughput.py --device cpu --quick
    python benchmarks/geometry_throughput.py --device cuda
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace

import torch

from grokscope import model as M
from grokscope.config import RunConfig, preset
from grokscope.geometry.commutator import commutator_defect
from grokscope.geometry.hvp import hessian_sample, make_hvp
from grokscope.geometry.krylov import lanczos
from grokscope.problem import Params, Problem


@dataclass
class Row:
    what: str
    n: int  # runs (a) or checkpoints (b)
    batched_s: float
    loop_s: float

    @property
    def ratio(self) -> float:
        return self.loop_s / self.batched_s


def configs(R: int, quick: bool) -> list[RunConfig]:
    """R runs of the P1 dual-task model (quick: a p=23, d=32, 1-layer trunk) with different seeds."""
    if quick:
        base = preset("p1-dual", data=dict(p=23), model=dict(d_model=32, n_heads=2, d_ff=64, n_layers=1),
                      optim=dict(batch=128))
    else:
        base = preset("p1-dual")
    return [replace(base, seed=42 + r) for r in range(R)]


def timed(fn: Callable[[], object], device: torch.device) -> float:
    """Seconds for one call of `fn` after one untimed warm-up call."""

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    fn()
    sync()
    t = time.perf_counter()
    fn()
    sync()
    return time.perf_counter() - t


def bench_defect(cfgs: list[RunConfig], device: torch.device, draws: int) -> Row:
    problem = Problem(cfgs, device)
    params = problem.init_params()
    subs = [(problem.subset([r]), {k: v[r:r + 1] for k, v in params.items()}) for r in range(problem.R)]
    batched = timed(lambda: commutator_defect(problem, params, step=0, draws=draws), device)
    loop = timed(lambda: [commutator_defect(pb, p, step=0, draws=draws) for pb, p in subs], device)
    return Row(f"defect K={draws}", problem.R, batched, loop)


def bench_lanczos(cfgs: list[RunConfig], device: torch.device, iters: int, k: int, n_samples: int,
                  mode: str) -> Row:
    problem = Problem(cfgs, device)
    params = problem.init_params()
    pairs, targets = hessian_sample(problem.subset([0]), n_samples)
    C = problem.R
    v0 = torch.randn(C, M.flatten(params).shape[1], generator=torch.Generator().manual_seed(0)).to(device)

    def run(p: Params, v: torch.Tensor) -> torch.Tensor:
        R = v.shape[0]
        hvp = make_hvp(problem, p, pairs.expand(R, -1, -1), targets.expand(R, -1, -1), mode=mode)
        return lanczos(hvp, v, iters, k).bottom

    one = [({n: v[c:c + 1] for n, v in params.items()}, v0[c:c + 1]) for c in range(C)]
    batched = timed(lambda: run(params, v0), device)
    loop = timed(lambda: [run(p, v) for p, v in one], device)
    return Row(f"lanczos {iters}it {mode}", C, batched, loop)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--quick", action="store_true", help="small model and sizes (< 1 min on 2 CPU cores)")
    ap.add_argument("--runs", type=int, default=None, help="runs for (a) (default 18; quick 4)")
    ap.add_argument("--draws", type=int, default=9)
    ap.add_argument("--checkpoints", type=int, default=None, help="checkpoints for (b) (default 8; quick 4)")
    ap.add_argument("--iters", type=int, default=None, help="Lanczos iterations (default 25; quick 10)")
    ap.add_argument("--k", type=int, default=5)
    ap.add_argument("--samples", type=int, default=None, help="Hessian sample size (default 512; quick 128)")
    ap.add_argument("--modes", default="rev", help="HVP modes: rev (grad of grad·v), fwd (jvp of grad)")
    ap.add_argument("--skip", default="", help="comma-separated parts to skip: defect, lanczos")
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    ap.add_argument("--json", action="store_true", help="print only JSON")
    a = ap.parse_args(argv)
    q = a.quick
    runs = a.runs or (4 if q else 18)
    ckpts = a.checkpoints or (4 if q else 8)
    iters = a.iters or (10 if q else 25)
    samples = a.samples or (128 if q else 512)
    skip = set(filter(None, a.skip.split(",")))
    torch.set_num_threads(a.threads)
    device = torch.device(a.device)
    env = {"device": str(device), "torch": torch.__version__, "python": platform.python_version(),
           "threads": torch.get_num_threads(), "quick": q, "samples": samples,
           "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None}
    if not a.json:
        print(f"# {env}", flush=True)
        print(f"{'measurement':<22} {'n':>3} {'batched s':>10} {'loop s':>10} {'loop/batched':>13} "
              f"{'batched s/item':>15} {'loop s/item':>12}", flush=True)
    rows = []

    def report(row: Row) -> None:
        rows.append(row)
        if not a.json:
            print(f"{row.what:<22} {row.n:>3} {row.batched_s:>10.3f} {row.loop_s:>10.3f} {row.ratio:>12.2f}x "
                  f"{row.batched_s / row.n:>15.3f} {row.loop_s / row.n:>12.3f}", flush=True)

    if "defect" not in skip:
        report(bench_defect(configs(runs, q), device, a.draws))
    if "lanczos" not in skip:
        for mode in a.modes.split(","):
            report(bench_lanczos(configs(ckpts, q), device, iters, a.k, samples, mode))
    if a.json:
        print(json.dumps({**env, "rows": [{**asdict(r), "ratio": r.ratio} for r in rows]}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
