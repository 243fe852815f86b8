"""Memory of a long run: resident memory while a P1 run trains, and the trajectory it writes.

The trainer appends the attention matrices and snapshots recorded since the last checkpoint to the run
store as one segment per checkpoint and lets them go, so memory should stay flat in the number of steps
while the trajectory on disk grows. This prints, at every checkpoint, the step, the resident and peak
memory of the process, and the trajectory's bytes on disk.

    nice -n 10 python benchmarks/memory_long_run.py --steps 30000            # the P1 run as configured
    nice -n 10 python benchmarks/memory_long_run.py --steps 10000 --checkpoint-every 1000   # ~8 CPU-min

The last line before the JSON compares the resident memory at the first checkpoint where a segment is on
disk (allocator and caches warm) with the end: flat means the trajectory is not held in memory.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

from grokscope.config import preset, with_overrides
from grokscope.runtime.perf import peak_rss_mb, rss_mb
from grokscope.training import EvalInfo, train


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="p1-dual")
    ap.add_argument("--runs", type=int, default=1, help="runs trained together (seeds 42, 43, ...)")
    ap.add_argument("--steps", type=int, default=30_000)
    ap.add_argument("--record-every", type=int, default=100,
                    help="evaluation and attention-matrix cadence (smaller: more records per step)")
    ap.add_argument("--checkpoint-every", type=int, default=2000)
    ap.add_argument("--batch", type=int, default=None,
                    help="minibatch size (default: the preset's); smaller = cheaper steps, same records per step")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=None, help="run store (default: a temporary directory)")
    ap.add_argument("--compile", action="store_true", help="torch.compile the attention core")
    args = ap.parse_args(argv)

    torch.set_num_threads(args.threads)
    base = preset(args.preset, steps=args.steps, eval_every=args.record_every, attn_every=args.record_every,
                  checkpoint_every=args.checkpoint_every, stop_on_grok=False, defect_every=0,
                  **({"optim": {"batch": args.batch}} if args.batch else {}))
    cfgs = [with_overrides(base, seed=42 + r) for r in range(args.runs)]
    out = Path(args.out or tempfile.mkdtemp(prefix="grokscope-mem-"))
    rows: list[dict] = []
    print(f"{'step':>7} {'RSS MiB':>9} {'peak MiB':>9} {'trajectory MiB':>15}", flush=True)

    def on_eval(e: EvalInfo) -> None:
        if e.step % args.checkpoint_every and e.step != e.max_steps:
            return
        traj = sum(p.stat().st_size for p in out.rglob("trajectory/*.safetensors")) / 2**20
        row = {"step": e.step, "rss_mb": rss_mb(), "peak_rss_mb": peak_rss_mb(), "trajectory_mb": traj}
        rows.append(row)
        print(f"{e.step:>7} {row['rss_mb']:>9.1f} {row['peak_rss_mb']:>9.1f} {traj:>15.1f}", flush=True)

    cpu = time.process_time()
    train(cfgs, out, force=True, on_eval=on_eval, compile=args.compile)
    cpu = time.process_time() - cpu
    written = [r for r in rows[:-1] if r["trajectory_mb"] > 0]
    if written:
        a, b = written[0], rows[-1]
        per_k = (b["rss_mb"] - a["rss_mb"]) / ((b["step"] - a["step"]) / 1000)
        print(f"# RSS {a['rss_mb']:.1f} MiB at step {a['step']} -> {b['rss_mb']:.1f} MiB at step {b['step']} "
              f"({per_k:+.2f} MiB per 1k steps) while the trajectory on disk grew "
              f"{a['trajectory_mb']:.1f} -> {b['trajectory_mb']:.1f} MiB; peak {peak_rss_mb():.1f} MiB; "
              f"{cpu:.0f} CPU s; load average {os.getloadavg()[0]:.1f}", flush=True)
    print(json.dumps({"preset": args.preset, "runs": args.runs, "steps": args.steps, "cpu_s": cpu,
                      "record_every": args.record_every, "peak_rss_mb": peak_rss_mb(), "rows": rows}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
