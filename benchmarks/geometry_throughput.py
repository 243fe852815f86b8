"""Geometry throughput: each analysis's CPU time against its counted FLOPs and this process's GEMM rate.

Analyses of the P1 model (p = 97, add + mul, shared 2-layer trunk, d_model 128, 303k parameters) and P3:
- `hvp`: one Hessian-vector product of the total loss over the 512-example Hessian sample
  (`geometry.hvp.make_hvp`, the gradient's graph already built), per product;
- `lanczos`: `lanczos(make_hvp(...), v0, 25, k=5)` (bottom 5, full re-orthogonalisation) as
  `analyze_hessian` runs it, graph building included, per checkpoint (C checkpoints on the run axis);
- `defect`: `commutator_defect(problem, params, draws=9)` for R runs of the P1 model at once;
- `decoupled`: P3's decoupled dynamics (`simulate_decoupled`, 5 seeds, p 37, width 512, float64 as
  configured) for `--p3-steps` steps, with the 5000-step figure extrapolated per step.

Each row: CPU seconds (`time.process_time`; the machine is shared, so wall time mostly measures the other
tenants; wall seconds are printed too), the FLOPs of the same call counted by `torch.utils.flop_counter.
FlopCounterMode` (`grokscope.runtime.perf.count_flops`: matmuls only; Cholesky factorisations and elementwise work
are not counted), achieved GFLOP/s = GFLOP / CPU s, and the GEMM rate of this process on the same threads
and clock (`grokscope.runtime.perf.gemm_gflops`, best of the measurements right before and after the row; fp64 for
the float64 P3 row, fp32 for the others): "% of GEMM" = achieved / GEMM and "x bound" = CPU s / (GFLOP /
GEMM), the time over what the counted FLOPs need at the GEMM rate. "GEMMs s" is the CPU time of the call's own
matmuls, each timed alone at its shapes (`grokscope.runtime.perf.gemm_bound_seconds`; small or thin GEMMs run below the
1024^3 rate), and "x GEMMs" = CPU s / that: what the non-GEMM work costs on top. Each measurement is preceded by an
untimed warm-up on a small instance of the same code; the load average is printed before and after.

    nice -n 10 python benchmarks/geometry_throughput.py                      # P1 size, 1 thread (~3 CPU-min)
    python benchmarks/geometry_throughput.py --quick                         # small model, seconds
    python benchmarks/geometry_throughput.py --only lanczos --checkpoints 8 --loop
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch

from grokscope.config import RunConfig, preset
from grokscope.geometry.commutator import commutator_defect
from grokscope.geometry.hvp import hessian_sample, make_hvp
from grokscope.geometry.krylov import lanczos
from grokscope.geometry.normmin.decoupled import DecoupledConfig, simulate_decoupled
from grokscope.runtime.perf import count_flops, gemm_bound_seconds, gemm_calls, gemm_gflops
from grokscope.training import model as M
from grokscope.training.problem import Problem

PARTS = ("hvp", "lanczos", "defect", "decoupled")


@dataclass
class Row:
    what: str
    n: int  # items the time covers: products, checkpoints, runs, steps
    item: str
    cpu_s: float
    wall_s: float
    gflop: float
    gemm_gflops: float  # GEMM rate of the row's dtype, this process, same threads and clock
    gemms_alone_s: float  # the call's own matmuls, each timed alone at its shapes (perf.gemm_bound_seconds)
    dtype: str
    loop_cpu_s: float | None = None  # --loop: the same items one at a time

    @property
    def gflops(self) -> float:
        return self.gflop / self.cpu_s

    @property
    def pct_of_gemm(self) -> float:
        return 100 * self.gflops / self.gemm_gflops

    @property
    def bound_ratio(self) -> float:
        return self.cpu_s / (self.gflop / self.gemm_gflops)

    @property
    def gemms_ratio(self) -> float:
        return self.cpu_s / self.gemms_alone_s


@dataclass
class Job:
    """One measurement: `run` is timed and FLOP-counted, `warm` runs first (a small instance, untimed)."""

    what: str
    n: int
    item: str
    run: Callable[[], object]
    warm: Callable[[], object]
    dtype: torch.dtype = torch.float32
    loop: Callable[[], object] | None = None


def p1_configs(R: int, quick: bool) -> list[RunConfig]:
    """R runs of the P1 dual-task model (quick: p 23, d 32, one layer) with different seeds."""
    base = preset("p1-dual")
    if quick:
        base = preset("p1-dual", data=dict(p=23), model=dict(d_model=32, n_heads=2, d_ff=64, n_layers=1),
                      optim=dict(batch=128))
    return [replace(base, seed=42 + r) for r in range(R)]


def hessian_operator(cfgs: list[RunConfig], n_samples: int):
    """(problem, params [C, ...], a function params -> HVP over the shared sample, start vectors [C, P])."""
    problem = Problem(cfgs)
    params = problem.init_params()
    pairs, targets = hessian_sample(problem.subset([0]), n_samples)

    def hvp_of(p: M.Params):
        R = next(iter(p.values())).shape[0]
        return make_hvp(problem, p, pairs.expand(R, -1, -1), targets.expand(R, -1, -1))

    v0 = torch.randn(len(cfgs), M.flatten(params).shape[1], generator=torch.Generator().manual_seed(0))
    return problem, params, hvp_of, v0


def job_hvp(a: argparse.Namespace) -> Job:
    _, params, hvp_of, v0 = hessian_operator(p1_configs(1, a.quick), a.samples)
    hvp = hvp_of(params)
    n = a.products

    def run() -> None:
        for _ in range(n):
            hvp(v0)

    return Job("hvp", n, "product", run, lambda: hvp(v0))


def job_lanczos(a: argparse.Namespace) -> Job:
    _, params, hvp_of, v0 = hessian_operator(p1_configs(a.checkpoints, a.quick), a.samples)
    C = a.checkpoints
    one = [({k: v[c:c + 1] for k, v in params.items()}, v0[c:c + 1]) for c in range(C)]

    def run() -> None:
        lanczos(hvp_of(params), v0, a.iters, a.k)

    def loop() -> None:
        for p, v in one:
            lanczos(hvp_of(p), v, a.iters, a.k)

    def warm() -> None:
        lanczos(hvp_of(one[0][0]), one[0][1], 2, 2)

    return Job(f"lanczos {a.iters} it, bottom {a.k}", C, "checkpoint", run, warm,
               loop=loop if a.loop and C > 1 else None)


def job_defect(a: argparse.Namespace) -> Job:
    problem = Problem(p1_configs(a.runs, a.quick))
    params = problem.init_params()
    subs = [(problem.subset([r]), {k: v[r:r + 1] for k, v in params.items()}) for r in range(problem.R)]

    def loop() -> None:
        for pb, p in subs:
            commutator_defect(pb, p, step=0, draws=a.draws)

    return Job(f"defect K={a.draws}", problem.R, "run",
               lambda: commutator_defect(problem, params, step=0, draws=a.draws),
               lambda: commutator_defect(subs[0][0], subs[0][1], step=0, draws=2),
               loop=loop if a.loop and problem.R > 1 else None)


def job_decoupled(a: argparse.Namespace) -> Job:
    cfg = DecoupledConfig(steps=a.p3_steps)
    if a.quick:
        cfg = replace(cfg, p=13, width=96)
    return Job(f"P3 decoupled, {len(cfg.seeds)} seeds", cfg.steps, "step",
               lambda: simulate_decoupled(cfg), lambda: simulate_decoupled(replace(cfg, steps=2)),
               dtype=getattr(torch, cfg.dtype))


JOBS = {"hvp": job_hvp, "lanczos": job_lanczos, "defect": job_defect, "decoupled": job_decoupled}


def measure(job: Job) -> Row:
    """Warm up, time one call in CPU and wall seconds between two GEMM measurements, count its FLOPs."""
    job.warm()
    gemm = gemm_gflops(clock=time.process_time, dtype=job.dtype)
    c, w = time.process_time(), time.perf_counter()
    job.run()
    cpu, wall = time.process_time() - c, time.perf_counter() - w
    gemm = max(gemm, gemm_gflops(clock=time.process_time, dtype=job.dtype))
    loop = None
    if job.loop is not None:
        c = time.process_time()
        job.loop()
        loop = time.process_time() - c
    calls: list = []
    flops = count_flops(lambda: calls.extend(gemm_calls(job.run)))
    alone = gemm_bound_seconds(calls, clock=time.process_time, repeats=3, dtype=job.dtype)
    return Row(job.what, job.n, job.item, cpu, wall, flops / 1e9, gemm, alone, str(job.dtype).removeprefix("torch."),
               loop)


def commit() -> str:
    """The git commit of the code measured (with '+' if the work tree has changes), or '?'."""
    here = Path(__file__).resolve().parent
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=here, capture_output=True, text=True,
                             check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                               capture_output=True, text=True, check=True).stdout.strip()
        return rev + ("+" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "?"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small models and sizes (seconds)")
    ap.add_argument("--only", default=",".join(PARTS), help=f"comma-separated subset of {', '.join(PARTS)}")
    ap.add_argument("--samples", type=int, default=None, help="Hessian sample size (default 512; quick 128)")
    ap.add_argument("--products", type=int, default=10, help="HVPs timed in the hvp row")
    ap.add_argument("--checkpoints", type=int, default=1, help="checkpoints on Lanczos's run axis")
    ap.add_argument("--iters", type=int, default=25, help="Lanczos iterations")
    ap.add_argument("--k", type=int, default=5)
    ap.add_argument("--runs", type=int, default=None, help="runs for the defect (default 18; quick 4)")
    ap.add_argument("--draws", type=int, default=9)
    ap.add_argument("--p3-steps", type=int, default=None,
                    help="decoupled-dynamics steps timed (default 300, 5000-step time extrapolated; quick 50)")
    ap.add_argument("--loop", action="store_true",
                    help="also time Lanczos checkpoints / defect runs one at a time (CPU s of the loop)")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (CPU time counts all of them)")
    ap.add_argument("--json", action="store_true", help="print only JSON")
    a = ap.parse_args(argv)
    parts = [p for p in a.only.split(",") if p]
    bad = [p for p in parts if p not in JOBS]
    if bad:
        ap.error(f"--only {bad[0]!r}: choose from {', '.join(PARTS)}")
    a.samples = a.samples or (128 if a.quick else 512)
    a.runs = a.runs or (4 if a.quick else 18)
    a.p3_steps = a.p3_steps or (50 if a.quick else 300)
    torch.set_num_threads(a.threads)
    env = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "commit": commit(),
           "torch": torch.__version__, "python": platform.python_version(), "threads": torch.get_num_threads(),
           "quick": a.quick, "samples": a.samples, "clock": "process_time",
           "load_before": [round(x, 2) for x in os.getloadavg()]}
    if not a.json:
        print(f"# {env}", flush=True)
        print(f"{'analysis':<26} {'n':>5} {'CPU s':>8} {'wall s':>8} {'CPU s/item':>11} {'GFLOP':>8} "
              f"{'GFLOP/s':>8} {'GEMM':>7} {'% GEMM':>7} {'x bound':>8} {'GEMMs s':>8} {'x GEMMs':>8}", flush=True)
    rows = []
    for part in parts:
        row = measure(JOBS[part](a))
        rows.append(row)
        if not a.json:
            print(f"{row.what:<26} {row.n:>5} {row.cpu_s:>8.2f} {row.wall_s:>8.2f} {row.cpu_s / row.n:>11.4f} "
                  f"{row.gflop:>8.1f} {row.gflops:>8.1f} {row.gemm_gflops:>7.1f} {row.pct_of_gemm:>6.1f}% "
                  f"{row.bound_ratio:>7.2f}x {row.gemms_alone_s:>8.3f} {row.gemms_ratio:>7.2f}x  "
                  f"({row.item}s, {row.dtype})", flush=True)
            if row.loop_cpu_s is not None:
                print(f"{'':<26} one {row.item} at a time: {row.loop_cpu_s:.2f} CPU s "
                      f"({row.loop_cpu_s / row.cpu_s:.2f}x the batched call)", flush=True)
            if part == "decoupled" and row.n != 5000:
                print(f"{'':<26} 5000 steps at this rate: {5000 * row.cpu_s / row.n:.0f} CPU s", flush=True)
    env["load_after"] = [round(x, 2) for x in os.getloadavg()]
    if a.json:
        print(json.dumps({**env, "rows": [{**asdict(r), "gflops": r.gflops, "pct_of_gemm": r.pct_of_gemm,
                                           "bound_ratio": r.bound_ratio, "gemms_ratio": r.gemms_ratio}
                                          for r in rows]}, indent=1))
    else:
        print(f"# load average after: {env['load_after']}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
