"""Monitor overhead: a user's plain PyTorch loop with and without `grokscope.Monitor`, in lockstep in one process.

The loop is examples/p1_transformer.py's model (the quick preset's trunk written with nn.TransformerEncoder:
p 31, d_model 64, 4 heads, batch 256, AdamW, clipping, an evaluation every 100 steps). Two copies train from the
same init on the same minibatches, one plain and one monitored at the monitor's default cadence (defects with
K = 3 every 200 steps, watched attention tensors every 100, snapshots every 500, store writes every 1000), one
step of each in turn (which goes first alternates), so that load from other jobs on a shared machine falls on
both alike; timing whole passes one after the other let load drift between passes swing the ratio by ±10 %.
Times are CPU seconds (`time.process_time`, one thread) per copy, including the monitor's construction (its
step-0 measurement) and `close()` (the final store write). Prints the ratio monitored/plain, the monitored copy's
own split (CPU inside the monitor's calls / outside them) and whether both copies ended bit for bit equal.

    python benchmarks/monitor_overhead.py --steps 2000 --repeats 2
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


class Loop:
    """One copy of the example's training loop, advanced a step at a time, monitored into `out` if given;
    `cpu` is the CPU seconds it has taken, `inside` those spent in the monitor's calls."""

    def __init__(self, out: Path | None, p: int = 31, d_model: int = 64, hessian_every: int = 0,
                 defect_every: int | None = None) -> None:
        ex = self.ex = _example()
        torch.manual_seed(42)
        self.X, self.y, self.X_test, self.y_test = ex.modular_addition(p, 0.7, 42)
        self.model = ex.Trunk(p, d_model=d_model, n_heads=4, d_ff=2 * d_model)
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=5e-3, weight_decay=1.0, betas=(0.9, 0.98))
        self.gen = torch.Generator().manual_seed(42)
        self.cpu = self.inside = self.wall = 0.0
        self.mon = None
        if out is not None:
            c, t = time.process_time(), time.perf_counter()
            self.mon = Monitor(self.model, F.cross_entropy, (self.X, self.y), out=out, watch=["*self_attn*"],
                               optimizer=self.opt, batch_size=256, seed=42, overwrite=True, verbose=False,
                               hessian_every=hessian_every,
                               defect_every=MonitorConfig().defect_every if defect_every is None else defect_every)
            self._add(c, t, inside=True)

    def _add(self, c: float, t: float, inside: bool = False) -> None:
        dc = time.process_time() - c
        self.cpu += dc
        self.wall += time.perf_counter() - t
        self.inside += dc if inside else 0.0

    def step(self, step: int) -> None:
        """One optimiser step (and the evaluation every 100 steps), then the monitor's call."""
        c, t = time.process_time(), time.perf_counter()
        idx = torch.randint(0, len(self.X), (256,), generator=self.gen)
        loss = F.cross_entropy(self.model(self.X[idx]), self.y[idx])
        self.opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        self.opt.step()
        metrics = None
        if step % 100 == 0:
            tr = self.ex.evaluate(self.model, self.X, self.y)
            te = self.ex.evaluate(self.model, self.X_test, self.y_test)
            metrics = {"train_loss": tr[0], "train_acc": tr[1], "test_loss": te[0], "test_acc": te[1]}
        self._add(c, t)
        if self.mon is not None:
            c, t = time.process_time(), time.perf_counter()
            self.mon.step(step, metrics)
            self._add(c, t, inside=True)

    def close(self) -> None:
        if self.mon is not None:
            c, t = time.process_time(), time.perf_counter()
            self.mon.close()
            self._add(c, t, inside=True)


def lockstep(steps: int, out: Path, hessian_every: int = 0, defect_every: int | None = None
             ) -> dict[str, float | bool]:
    """Train a plain and a monitored copy in turn, step by step; their CPU/wall seconds and the split."""
    plain, seen = Loop(None), Loop(out, hessian_every=hessian_every, defect_every=defect_every)
    for step in range(1, steps + 1):
        for loop in ((plain, seen) if step % 2 else (seen, plain)):
            loop.step(step)
    seen.close()
    same = all(torch.equal(a, b) for a, b in zip(plain.model.parameters(), seen.model.parameters(), strict=True))
    return {"plain_cpu": plain.cpu, "monitored_cpu": seen.cpu, "ratio": seen.cpu / plain.cpu,
            "inside_cpu": seen.inside, "inside_over_outside": seen.inside / (seen.cpu - seen.inside),
            "plain_wall": plain.wall, "monitored_wall": seen.wall, "bit_for_bit": same}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--hessian-every", type=int, default=0, help="also λ_min every N steps (default off)")
    ap.add_argument("--defect-every", type=int, default=None,
                    help="defects every N steps (default: the monitor's default cadence)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(1)
    warm = Loop(None)
    for step in range(1, 51):
        warm.step(step)
    with tempfile.TemporaryDirectory() as tmp:
        passes = [lockstep(args.steps, Path(tmp) / f"run{i}", args.hessian_every, args.defect_every)
                  for i in range(args.repeats)]
    best = min(passes, key=lambda r: r["ratio"])
    res = {"steps": args.steps, "repeats": args.repeats, "passes": passes, "ratio": best["ratio"],
           "overhead_percent": 100 * (best["ratio"] - 1), "median_ratio": sorted(r["ratio"] for r in passes)[
               (len(passes) - 1) // 2], "defaults": MonitorConfig().to_dict(), "hessian_every": args.hessian_every,
           "defect_every": args.defect_every or MonitorConfig().defect_every,
           "threads": torch.get_num_threads(), "torch": torch.__version__,
           "machine": platform.processor() or platform.machine()}
    if args.json:
        print(json.dumps(res, indent=2))
        return
    for i, r in enumerate(passes):
        print(f"pass {i}: {args.steps} steps, CPU plain {r['plain_cpu']:.2f} s, monitored {r['monitored_cpu']:.2f} s "
              f"-> ratio {r['ratio']:.3f}; inside the monitor {r['inside_cpu']:.2f} s = "
              f"{100 * r['inside_over_outside']:.1f} % of the rest; wall {r['plain_wall']:.1f} s vs "
              f"{r['monitored_wall']:.1f} s; parameters bit for bit equal: {r['bit_for_bit']}")
    print(f"best ratio {res['ratio']:.3f} (overhead {res['overhead_percent']:.1f} %; target <= 10 %), "
          f"median {res['median_ratio']:.3f}")


if __name__ == "__main__":
    main()
