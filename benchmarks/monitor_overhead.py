"""Monitor overhead: a user's plain PyTorch loop with and without `grokscope.Monitor`, same process.

The loop is examples/p1_transformer.py's model (the quick preset's trunk written with nn.TransformerEncoder:
p 31, d_model 64, 4 heads, batch 256, AdamW, clipping, an evaluation every 100 steps). Each pass trains
`--steps` steps from the same init, once plain and once monitored at the monitor's default cadence (defects
with K = 3 every 200 steps, watched attention tensors every 100, snapshots every 500, store writes every
1000); passes alternate so that machine load hits both alike. Times are the process's CPU seconds (the
loop runs on one thread here, so other jobs on a shared machine distort them far less than wall time) and
wall seconds. Prints both, the ratio monitored/plain and the overhead in percent (target: ≤ 10 %).

    python benchmarks/monitor_overhead.py --steps 1000 --repeats 2
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import platform
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from grokscope.monitor import Monitor, MonitorConfig

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "p1_transformer.py"


def _example():
    spec = importlib.util.spec_from_file_location("p1_transformer_example", EXAMPLE)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def train(steps: int, out: Path | None, p: int = 31, d_model: int = 64, hessian_every: int = 0
          ) -> tuple[float, float]:
    """(CPU seconds, wall seconds) to train `steps` steps of the example's loop, monitored into `out` if given."""
    ex = _example()
    torch.manual_seed(42)
    X, y, X_test, y_test = ex.modular_addition(p, 0.7, 42)
    model = ex.Trunk(p, d_model=d_model, n_heads=4, d_ff=2 * d_model)
    opt = torch.optim.AdamW(model.parameters(), lr=5e-3, weight_decay=1.0, betas=(0.9, 0.98))
    gen = torch.Generator().manual_seed(42)
    c0, t0 = time.process_time(), time.perf_counter()
    mon = None
    if out is not None:
        mon = Monitor(model, F.cross_entropy, (X, y), out=out, watch=["*self_attn*"], optimizer=opt,
                      batch_size=256, seed=42, overwrite=True, verbose=False, hessian_every=hessian_every)
    for step in range(1, steps + 1):
        idx = torch.randint(0, len(X), (256,), generator=gen)
        loss = F.cross_entropy(model(X[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        metrics = None
        if step % 100 == 0:
            tr, te = ex.evaluate(model, X, y), ex.evaluate(model, X_test, y_test)
            metrics = {"train_loss": tr[0], "train_acc": tr[1], "test_loss": te[0], "test_acc": te[1]}
        if mon is not None:
            mon.step(step, metrics)
    if mon is not None:
        mon.close()
    return time.process_time() - c0, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--hessian-every", type=int, default=0, help="also λ_min every N steps (default off)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(1)
    plain, monitored = [], []
    with tempfile.TemporaryDirectory() as tmp:
        train(50, None)  # warm-up
        for i in range(args.repeats):
            plain.append(train(args.steps, None))
            monitored.append(train(args.steps, Path(tmp) / f"run{i}", hessian_every=args.hessian_every))
    p, m = min(c for c, _ in plain), min(c for c, _ in monitored)
    pw, mw = min(w for _, w in plain), min(w for _, w in monitored)
    res = {"steps": args.steps, "repeats": args.repeats, "plain_cpu_wall_s": plain, "monitored_cpu_wall_s": monitored,
           "ratio": m / p, "overhead_percent": 100 * (m / p - 1), "wall_ratio": mw / pw,
           "defaults": MonitorConfig().to_dict(),
           "hessian_every": args.hessian_every, "threads": torch.get_num_threads(), "torch": torch.__version__,
           "machine": platform.processor() or platform.machine()}
    if args.json:
        print(json.dumps(res, indent=2))
        return
    print(f"{args.steps} steps, best of {args.repeats}, CPU time: plain {p:.2f} s, monitored {m:.2f} s -> ratio "
          f"{m / p:.3f} (overhead {100 * (m / p - 1):.1f} %; target <= 10 %); wall: {pw:.2f} s vs {mw:.2f} s")
    print(f"all passes (cpu, wall): plain {plain}, monitored {monitored}")


if __name__ == "__main__":
    main()
