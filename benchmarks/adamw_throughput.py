"""AdamW alone: the trainer's update of R runs' flat [R, P] parameters, before and after issue 39, in one process.

Variants, timed in turn round after round (so load from other processes falls on all alike), medians reported:

- before: the update as it was before issue 39 (`adamw_before` below, kept here for this A/B only): the active
  runs found by `nonzero().tolist()`, the hyper-parameters read back with `.tolist()` every step, a step tensor
  made from host data, then torch's fused kernel once per run.
- cpu: `optim.adamw_step` on the CPU (the trainer's default there): torch's fused kernel per run, hyper-parameters
  read once, inactive runs skipped by the kernel's flag (no host read in the step).
- batched: the one-program update a GPU runs (`optim.adamw_rows_`, per-run constants as [R, 1] columns), eager.
- batched-compiled: the same, torch.compile'd into one loop (what a GPU runs when the trainer compiles).
- torch-loop: the plain per-run PyTorch loop, one `torch.optim.AdamW` per run (its default implementation).

Each row also gives the achieved memory traffic (an update reads p, g, m, v and writes p, m, v: 7 R P floats) as GB/s
and as % of the same process's elementwise roofline: `a.add_(b)` over R P floats (2 read, 1 written in place, so no
write-allocate traffic, as in the update), timed in the same rounds.

    python benchmarks/adamw_throughput.py --R 1,8,18,64 --threads 1 --rounds 30
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable

import torch

from grokscope.training.model import Params
from grokscope.training.optim import HyperParams, adamw_rows_, adamw_step

P1_PARAMS = 303_370  # the P1 model's parameters per run (p1-dual)
CLOCK = time.perf_counter  # --clock thread: CPU time of this thread (with --threads 1), for a shared machine


def adamw_before(params: Params, grads: Params, state: Params, hp: HyperParams, t: int,
                 active: torch.Tensor) -> None:
    """`optim.adamw_step` as it was before issue 39 (commit 6ef3ba4), verbatim: the reference of this A/B."""
    runs = active.nonzero().flatten().tolist()
    if not runs:
        return
    host = {f: getattr(hp, f).tolist() for f in ("lr", "wd", "beta1", "beta2", "eps")}
    steps = [torch.tensor(float(t), device=next(iter(params.values())).device)]
    for k, p in params.items():
        g, m, v = grads[k], state[f"m.{k}"], state[f"v.{k}"]
        for r in runs:
            torch._fused_adamw_([p[r]], [g[r]], [m[r]], [v[r]], [], steps, lr=host["lr"][r],
                                beta1=host["beta1"][r], beta2=host["beta2"][r], weight_decay=host["wd"][r],
                                eps=host["eps"][r], amsgrad=False, maximize=False)


def _hyper(R: int) -> HyperParams:
    """A sweep's runs: P1's lr and betas, weight decays 1 ... 0."""
    wd = torch.linspace(1.0, 0.0, R)
    full = torch.full((R,), 1.0)
    return HyperParams(lr=full * 1e-3, wd=wd, clip=full, beta1=full * 0.9, beta2=full * 0.98, eps=full * 1e-8,
                       momentum=full * 0)


def _buffers(R: int, P: int, seed: int = 0) -> tuple[Params, Params, Params]:
    g = torch.Generator().manual_seed(seed)
    theta = {"theta": torch.randn(R, P, generator=g)}
    grads = {"theta": torch.randn(R, P, generator=g) * 1e-3}
    state = {"m.theta": torch.zeros(R, P), "v.theta": torch.zeros(R, P)}
    return theta, grads, state


def variants(R: int, P: int, compile: bool) -> dict[str, Callable[[int], None]]:
    """name -> update(t) of R runs of P parameters, each on its own buffers."""
    active = torch.ones(R, dtype=torch.bool)
    out: dict[str, Callable[[int], None]] = {}

    def make(step: Callable, update: Callable | None = None) -> Callable[[int], None]:
        theta, grads, state = _buffers(R, P)
        hp = _hyper(R)
        hp.update = update
        return lambda t: step(theta, grads, state, hp, t, active)

    out["before"] = make(adamw_before)
    out["cpu"] = make(adamw_step)
    out["batched"] = make(adamw_step, adamw_rows_)
    if compile:
        out["batched-compiled"] = make(adamw_step, torch.compile(adamw_rows_))
    modules = [torch.nn.Parameter(torch.randn(P)) for _ in range(R)]
    for p in modules:
        p.grad = torch.randn(P) * 1e-3
    opts = [torch.optim.AdamW([p], lr=1e-3, betas=(0.9, 0.98), weight_decay=float(wd))
            for p, wd in zip(modules, _hyper(R).wd.tolist())]
    out["torch-loop"] = lambda t: [o.step() for o in opts]
    return out


def measure(R: int, P: int, rounds: int, warmup: int, compile: bool) -> list[dict]:
    fns = variants(R, P, compile)
    a, b = torch.randn(R * P), torch.randn(R * P) * 1e-30
    fns["roofline"] = lambda t: a.add_(b)  # the elementwise roofline: 2 R P floats read, R P written in place
    for fn in fns.values():
        for t in range(1, warmup + 1):
            fn(t)  # compiles here
    times: dict[str, list[float]] = {k: [] for k in fns}
    for i in range(rounds):
        for k, fn in fns.items():
            t0 = CLOCK()
            fn(warmup + 1 + i)
            times[k].append(CLOCK() - t0)
    med = {k: statistics.median(v) for k, v in times.items()}
    bw = 3 * 4 * R * P / med.pop("roofline") / 1e9
    rows = []
    for k, sec in med.items():
        gbs = 7 * 4 * R * P / sec / 1e9
        rows.append({"R": R, "variant": k, "ms": 1e3 * sec, "vs_before": med["before"] / sec,
                     "vs_torch_loop": med["torch-loop"] / sec, "gb_s": gbs, "roofline_gb_s": bw,
                     "pct_of_roofline": 100 * gbs / bw})
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--R", default="1,8,18,64", help="comma-separated numbers of runs")
    ap.add_argument("--P", type=int, default=P1_PARAMS, help="parameters per run (default: the P1 model's)")
    ap.add_argument("--rounds", type=int, default=30, help="timed updates of each variant (median over them)")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    ap.add_argument("--no-compile", action="store_true", help="leave out the compiled batched program")
    ap.add_argument("--clock", choices=("wall", "thread"), default="wall",
                    help="thread: CPU seconds of this thread (needs --threads 1), for a machine shared with other jobs")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.clock == "thread":
        if args.threads != 1:
            ap.error("--clock thread needs --threads 1")
        global CLOCK
        CLOCK = time.thread_time
    env = {"processor": platform.processor() or "cpu", "threads": torch.get_num_threads(), "torch": torch.__version__,
           "P": args.P, "rounds": args.rounds, "clock": args.clock}
    rows = []
    if not args.json:
        print(f"# {env}", flush=True)
        print(f"{'R':>4} {'variant':>17} {'ms/update':>10} {'vs before':>10} {'vs torch loop':>14} {'GB/s':>7} "
              f"{'a.add_(b) GB/s':>14} {'% of it':>8}", flush=True)
    for R in [int(r) for r in args.R.split(",")]:
        for row in measure(R, args.P, args.rounds, args.warmup, not args.no_compile):
            rows.append(row)
            if not args.json:
                print(f"{R:>4} {row['variant']:>17} {row['ms']:>10.2f} {row['vs_before']:>9.2f}x "
                      f"{row['vs_torch_loop']:>13.2f}x {row['gb_s']:>7.1f} {row['roofline_gb_s']:>14.1f} "
                      f"{row['pct_of_roofline']:>7.1f}%", flush=True)
    if args.json:
        print(json.dumps({**env, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
