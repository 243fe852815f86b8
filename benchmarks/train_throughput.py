"""Training throughput: grokscope's batched step vs the papers' plain per-run loop, in run-steps/s.

Batched: R runs of the P1 model (p=97, add+mul, batch 512) advance one step together, through the
trainer's own per-step code path (`Problem.minibatch` -> `Problem.flat_grads`, the loss compiled whole unless
--no-compile -> `optim.clip_rows_` -> `optim.STEPS[name]`, as in `loop._Loop.run`, without evaluation).
Per-run: the same R runs trained one after another, each with an nn.Module, torch.optim.AdamW, clip_grad_norm_
and minibatches sampled on the host and copied to the device every step (grokscope.training.reference). Both
are timed in this process after a warm-up; run-steps/s = runs x steps / seconds.

Every row is also put against the machine's limit: the FLOPs of one run-step are counted with torch's
FlopCounterMode on the trainer's own step (forward + backward matmuls), achieved GFLOP/s = run-steps/s x
FLOPs per run-step, and the fp32 GEMM rate of this process on the same threads (a 1024^3 matmul, timed
right before and right after each batched measurement) gives "% of GEMM". The step's own matmuls, each timed
alone at its own shapes, give "GEMM-bound": the rate of a step made of nothing but its GEMMs (eager path), so
"% of bound" says how much of the step is spent outside them (elementwise work, LayerNorm, softmax, AdamW).

    python benchmarks/train_throughput.py --device cpu --R 1,8,18,64
    python benchmarks/train_throughput.py --R 8 --threads 1 --clock thread --ab eager,attention,compiled
    python benchmarks/train_throughput.py --device cuda --steps 200 --json
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch

from grokscope.config import RunConfig, preset, with_overrides
from grokscope.runtime.perf import count_flops, gemm_bound_seconds, gemm_calls, gemm_gflops
from grokscope.training import compiled, stepper
from grokscope.training import reference as Ref
from grokscope.training.optim import STEPS, adamw_rows_

WDS = (1.0, 0.5, 0.3, 0.2, 0.1, 0.0)  # P1's sweep, so the runs of a batch differ as a sweep's do


def p1_configs(R: int, name: str = "p1-dual") -> list[RunConfig]:
    """R runs of a preset with different seeds and weight decays."""
    base = preset(name)
    return [with_overrides(base, seed=42 + r, wd=WDS[r % len(WDS)]) for r in range(R)]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


CLOCK = time.perf_counter  # --clock thread: CPU time of this thread (meaningful with --threads 1 only)


def _timed(fn: Callable[[int], None], start: int, n: int, device: torch.device) -> float:
    """Seconds for fn(start), ..., fn(start + n - 1), synchronised."""
    _sync(device)
    t0 = CLOCK()
    for s in range(start, start + n):
        fn(s)
    _sync(device)
    return CLOCK() - t0


def _auto_steps(seconds_per_step: float, budget_s: float, lo: int = 2) -> int:
    return max(lo, int(budget_s / max(seconds_per_step, 1e-9)))


def flops_per_run_step(cfgs: list[RunConfig], device: torch.device) -> float:
    """FLOPs of one run-step of the trainer's step, counted by FlopCounterMode (one step of all runs / R)."""
    step = stepper(cfgs, device, compile=False)  # the same matmuls as compiled, where torch can count them
    step(0)
    return count_flops(lambda: step(1)) / len(cfgs)


def step_gemm_bound(cfgs: list[RunConfig], device: torch.device) -> float:
    """GFLOP/s of the batched eager step's matmuls, each timed alone at its own shapes (see perf.gemm_bound_seconds)."""
    step = stepper(cfgs, device, compile=False)
    step(0)
    calls = gemm_calls(lambda: step(1))
    return count_flops(lambda: step(2)) / gemm_bound_seconds(calls, device, clock=CLOCK) / 1e9


def bench_batched(cfgs: list[RunConfig], device: torch.device, steps: int | None, warmup: int,
                  budget_s: float, compile: bool = True) -> tuple[float, int]:
    """(run-steps/s, steps timed) of the batched step for these runs."""
    step = stepper(cfgs, device, compile=compile)
    _timed(step, 0, warmup, device)
    if steps is None:
        steps = _auto_steps(_timed(step, warmup, 1, device), budget_s)
        warmup += 1
    secs = _timed(step, warmup, steps, device)
    return len(cfgs) * steps / secs, steps


def bench_per_run(cfgs: list[RunConfig], device: torch.device, steps: int | None, warmup: int,
                  budget_s: float) -> tuple[float, int]:
    """(run-steps/s, steps per run) of the plain loop: the runs one after another, each `steps` steps;
    only the step loops are timed (module and optimiser construction are not)."""

    def make(cfg: RunConfig) -> Callable[[int], None]:
        module = Ref.init_module(cfg, device)
        opt, get, clip = Ref.make_optimizer(module, cfg), Ref.host_batches(cfg, device), cfg.optim.clip
        return lambda s: Ref.reference_step(module, opt, *get(s), clip)

    warm = make(cfgs[0])
    _timed(warm, 0, warmup, device)
    if steps is None:
        steps = _auto_steps(_timed(warm, warmup, 1, device) * len(cfgs), budget_s)
    total = 0.0
    for cfg in cfgs:
        total += _timed(make(cfg), 0, steps, device)
    return len(cfgs) * steps / total, steps


def variant_stepper(cfgs: list[RunConfig], device: torch.device, variant: str,
                    shared: dict[str, Callable[[int], None]] | None = None) -> Callable[[int], None]:
    """The batched step as the trainer runs it: "eager" (no compiling), "compiled" (the loss compiled whole,
    forward and backward: what runs of >= 10k steps use), or "attention" (the previous default: only the
    attention core compiled, obtained by withholding the whole-loss compile from the trainer). AdamW variants
    (issue 39) run on the very loop (buffers) of their mode's plain variant, kept in `shared`, so the A/B sees the
    optimiser and not where each variant's buffers happen to lie: "<eager|compiled>-before" with the update as it
    was before (`adamw_throughput.adamw_before`: host reads every step, then the fused kernel per run),
    "<eager|compiled>-batched" with the one-program update a GPU runs (`optim.adamw_rows_`, compiled in
    "compiled-batched"); plain "eager" / "compiled" use the trainer's own choice (on the CPU: the fused kernel per
    run, no host read)."""
    shared = {} if shared is None else shared
    mode, _, adamw = variant.partition("-")
    if adamw:
        if mode not in shared:
            shared[mode] = stepper(cfgs, device, compile=mode == "compiled")
        loop = shared[mode].loop
        if adamw == "before":
            from adamw_throughput import adamw_before  # this folder's AdamW A/B: the pre-issue-39 update

            return lambda s: loop._step(s, adamw_before, s < loop.budget)
        program = compiled.adamw() if mode == "compiled" else adamw_rows_

        def batched(s: int) -> None:
            loop.adamw = program
            try:
                loop._step(s, STEPS["adamw"], s < loop.budget)
            finally:
                loop.adamw = None

        return batched
    if variant == "attention":
        whole = compiled.total_loss
        compiled.total_loss = lambda problem: None
        try:
            return stepper(cfgs, device, compile=True)
        finally:
            compiled.total_loss = whole
    if variant not in shared:
        shared[variant] = stepper(cfgs, device, compile=variant == "compiled")
    return shared[variant]


def interleaved(cfgs: list[RunConfig], device: torch.device, variants: list[str], rounds: int,
                warmup: int) -> tuple[dict[str, float], float, float]:
    """In-process A/B: one batched step of each variant (their order rotated every round), then one step of each of
    the R per-run loops, in turn, `rounds` times (so load from other processes falls on all alike). Returns the
    median seconds of a batched step per variant, the median seconds of one step of all R per-run loops, and the
    best GEMM rate seen."""
    shared: dict[str, Callable[[int], None]] = {}
    steps = {v: variant_stepper(cfgs, device, v, shared) for v in variants}
    loops = []
    for cfg in cfgs:
        module = Ref.init_module(cfg, device)
        opt, get, clip = Ref.make_optimizer(module, cfg), Ref.host_batches(cfg, device), cfg.optim.clip
        loops.append(lambda s, m=module, o=opt, g=get, c=clip: Ref.reference_step(m, o, *g(s), c))
    for fn in [*steps.values(), *loops]:
        _timed(fn, 0, warmup, device)  # compiles here
    gemm = gemm_gflops(device=device, clock=CLOCK)
    times: dict[str, list[float]] = {v: [] for v in [*variants, "per-run"]}
    order = list(steps)
    for i in range(rounds):
        for v in order[i % len(order):] + order[:i % len(order)]:  # rotated: the step after the per-run loops
            times[v].append(_timed(steps[v], warmup + i, 1, device))  # (cold caches) is each variant in turn
        times["per-run"].append(sum(_timed(fn, warmup + i, 1, device) for fn in loops))
        if i == rounds // 2:
            gemm = max(gemm, gemm_gflops(device=device, clock=CLOCK))
    gemm = max(gemm, gemm_gflops(device=device, clock=CLOCK))
    med = {k: statistics.median(v) for k, v in times.items()}
    return {v: med[v] for v in variants}, med["per-run"], gemm


def main_interleaved(args: argparse.Namespace, device: torch.device, warmup: int, env: dict) -> int:
    """`--ab`: per R, one row per variant from `interleaved` (medians), with the same columns as the default mode."""
    variants = args.ab.split(",")
    if not args.json:
        print(f"# {env} rounds={args.rounds}", flush=True)
        print(f"{'R':>4} {'variant':>10} {'ms/step':>8} {'per-run ms':>10} {'ratio':>6} {'GFLOP/s':>8} "
              f"{'GEMM GFLOP/s':>13} {'% of GEMM':>10} {'GEMM-bound':>11} {'% of bound':>11}", flush=True)
    rows = []
    for R in [int(r) for r in args.R.split(",")]:
        cfgs = p1_configs(R, args.preset)
        flops = flops_per_run_step(cfgs, device)
        bound = step_gemm_bound(cfgs, device)
        med, per_run, gemm = interleaved(cfgs, device, variants, args.rounds, warmup)
        for v in variants:
            gf = R * flops / med[v] / 1e9
            row = {"R": R, "variant": v, "ms_per_step": 1e3 * med[v], "per_run_ms": 1e3 * per_run,
                   "ratio": per_run / med[v], "gflops": gf, "gemm_gflops": gemm, "pct_of_gemm": 100 * gf / gemm,
                   "bound_gflops": bound, "pct_of_bound": 100 * gf / bound, "flops_per_run_step": flops}
            rows.append(row)
            if not args.json:
                print(f"{R:>4} {v:>10} {row['ms_per_step']:>8.1f} {row['per_run_ms']:>10.1f} {row['ratio']:>5.2f}x "
                      f"{gf:>8.1f} {gemm:>13.1f} {row['pct_of_gemm']:>9.1f}% {bound:>11.1f} "
                      f"{row['pct_of_bound']:>10.1f}%", flush=True)
    if args.json:
        print(json.dumps({**env, "rounds": args.rounds, "rows": rows}, indent=1))
    return 0


@dataclass
class Row:
    R: int
    batched: float  # run-steps/s
    per_run: float  # run-steps/s
    ratio: float
    batched_steps: int
    per_run_steps: int
    flops_per_run_step: float  # counted (FlopCounterMode)
    batched_gflops: float  # achieved by the batched step
    per_run_gflops: float
    gemm_gflops: float  # fp32 GEMM of this process, same threads (best measurement around the batched ones)
    pct_of_gemm: float  # batched_gflops / gemm_gflops, in %
    bound_gflops: float  # the step's own GEMMs timed alone at their shapes
    pct_of_bound: float  # batched_gflops / bound_gflops, in %


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--steps", type=int, default=None,
                    help="timed steps per measurement (default: as many as fit in --seconds)")
    ap.add_argument("--seconds", type=float, default=15.0,
                    help="target seconds per measurement when --steps is not given")
    ap.add_argument("--warmup", type=int, default=None,
                    help="untimed steps first (default 2 on CPU, 20 on GPU)")
    ap.add_argument("--R", default="1,8,18,64", help="comma-separated numbers of runs")
    ap.add_argument("--repeats", type=int, default=1,
                    help="alternate batched / per-run measurements this many times and keep each one's best")
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    ap.add_argument("--preset", default="p1-dual")
    ap.add_argument("--no-compile", action="store_true", help="time the eager step (no torch.compile)")
    ap.add_argument("--clock", choices=("wall", "thread"), default="wall",
                    help="thread: time CPU seconds of the calling thread (with --threads 1), for a loaded machine")
    ap.add_argument("--json", action="store_true", help="print only JSON")
    ap.add_argument("--ab", default=None, metavar="VARIANTS",
                    help="in-process A/B instead: alternate single steps of these batched variants (eager, "
                         "attention, compiled; eager-before, compiled-before, eager-batched, compiled-batched for "
                         "the AdamW of issue 39) and of the per-run loops, and print medians")
    ap.add_argument("--rounds", type=int, default=20, help="with --ab: steps of each variant (median over them)")
    args = ap.parse_args(argv)

    torch.set_num_threads(args.threads)
    if args.clock == "thread":
        if args.threads != 1:
            ap.error("--clock thread needs --threads 1 (other threads' CPU time would not be counted)")
        global CLOCK
        CLOCK = time.thread_time
    device = torch.device(args.device)
    if device.type == "cuda":  # fp32 matmuls as in the papers' scripts for both loops
        torch.backends.cuda.matmul.allow_tf32 = False
    warmup = args.warmup if args.warmup is not None else (20 if device.type == "cuda" else 2)
    Rs = [int(r) for r in args.R.split(",")]
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    env = {"device": str(device), "device_name": name, "threads": torch.get_num_threads(), "clock": args.clock,
           "torch": torch.__version__, "preset": args.preset}
    if args.ab:
        return main_interleaved(args, device, warmup, env)
    if not args.json:
        print(f"# {env}", flush=True)
        print(f"{'R':>4} {'batched':>9} {'per-run':>9} {'ratio':>6} {'GFLOP/run-step':>15} {'GFLOP/s':>8}"
              f" {'per-run GFLOP/s':>16} {'GEMM GFLOP/s':>13} {'% of GEMM':>10} {'GEMM-bound':>11} {'% of bound':>11}"
              "  steps (batched/per-run)")
    rows = []
    for R in Rs:
        cfgs = p1_configs(R, args.preset)
        flops = flops_per_run_step(cfgs, device)
        b = p = gemm = 0.0
        for _ in range(max(1, args.repeats)):  # interleaved, so a change in machine load hits all three
            gemm = max(gemm, gemm_gflops(device=device, clock=CLOCK))
            b1, nb = bench_batched(cfgs, device, args.steps, warmup, args.seconds, not args.no_compile)
            gemm = max(gemm, gemm_gflops(device=device, clock=CLOCK))
            p1, npr = bench_per_run(cfgs, device, args.steps, warmup, args.seconds)
            b, p = max(b, b1), max(p, p1)
        gf, bound = b * flops / 1e9, step_gemm_bound(cfgs, device)
        row = Row(R, b, p, b / p, nb, npr, flops, gf, p * flops / 1e9, gemm, 100 * gf / gemm, bound, 100 * gf / bound)
        rows.append(row)
        if not args.json:
            print(f"{R:>4} {b:>9.2f} {p:>9.2f} {b / p:>5.2f}x {flops / 1e9:>15.3f} {gf:>8.1f} "
                  f"{row.per_run_gflops:>16.1f} {gemm:>13.1f} {row.pct_of_gemm:>9.1f}% {bound:>11.1f} "
                  f"{row.pct_of_bound:>10.1f}%  {nb}/{npr}", flush=True)
    if args.json:
        print(json.dumps({**env, "rows": [asdict(r) for r in rows]}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
