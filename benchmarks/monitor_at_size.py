"""The monitor at size: a GPT-2-style model of >= 10M parameters (built from a `transformers` config, never
downloaded) trained a few hundred steps on CPU through the HF `Trainer` and through Lightning, each with and
without grokscope's callback at the default cadence.

Each (framework, monitored) run is its own subprocess, so peak memory is that run's alone. Printed per run:
CPU seconds per training step (process time after step 1: the machine is shared, wall time would measure the
other tenants), the monitor's own seconds and overhead (`Monitor.overhead`: time inside the
monitor over the rest), resident memory sampled every 50 steps (flat in steps = bounded records) and peak
RSS; for monitored runs also the time of one defect measurement, of one watched-tensor record (sketched),
of one HVP and one Lanczos λ_min (whole model and restricted to one layer's attention), and what the store
holds (files and bytes). Then the ratio of wall seconds per step, monitored over plain.

    nice -n 5 python benchmarks/monitor_at_size.py                        # 300 steps per run, ~14M params
    nice -n 5 python benchmarks/monitor_at_size.py --steps 40 --framework hf --layers 2   # smoke
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import torch  # noqa: E402

from grokscope.runtime.perf import peak_rss_mb, rss_mb  # noqa: E402


def model_config(args: argparse.Namespace) -> Any:
    """The GPT-2 config of the measured model."""
    from transformers import GPT2Config
    return GPT2Config(vocab_size=args.vocab, n_positions=args.seq, n_embd=args.d_model, n_layer=args.layers,
                      n_head=args.heads)


def token_data(args: argparse.Namespace) -> torch.Tensor:
    """[N, seq] token ids: each row counts up by a per-row stride from a random start (learnable, synthetic)."""
    g = torch.Generator().manual_seed(0)
    start = torch.randint(0, args.vocab, (args.n_train, 1), generator=g)
    stride = torch.randint(1, 8, (args.n_train, 1), generator=g)
    return (start + stride * torch.arange(args.seq)) % args.vocab


def timing(fn: Any, repeats: int = 1) -> float:
    """CPU seconds of one call of `fn` (best of `repeats`)."""
    best = float("inf")
    for _ in range(repeats):
        t0 = time.process_time()
        fn()
        best = min(best, time.process_time() - t0)
    return best


def measure_costs(mon: Any, args: argparse.Namespace) -> dict[str, float]:
    """Seconds of one defect measurement, one watched-tensor record, one HVP and one Lanczos (whole model and
    one attention group), each at the monitor's settings."""
    from grokscope.monitor.rng import preserved_rng
    step = mon.last_step + 1  # fresh minibatches; nothing recorded
    out: dict[str, float] = {}
    with preserved_rng():
        out["defect_s"] = timing(lambda: mon.defects_at(step))
        out["watch_record_s"] = timing(lambda: [mon.sketches[n](mon.target.live[n]) if n in mon.sketches
                                                else mon.target.live[n].detach().cpu().clone()
                                                for n in mon.watched])
        batch = mon.source.fixed_sample(args.hessian_samples)
        theta = mon.target.theta()
        hvp = mon.target.hvp(theta, batch)
        v = torch.randn(1, theta.numel())
        out["hvp_s"] = timing(lambda: hvp(v))
        if hasattr(mon, "group_lambda_min_at"):
            out["lanczos_group_s"] = timing(lambda: mon.group_lambda_min_at(step, "*h.0.attn.*"))
        out["lanczos_s"] = timing(lambda: mon.lambda_min_at(step))
    return out


def store_contents(path: Path) -> dict[str, int]:
    """Files of a run store and their bytes."""
    return {str(p.relative_to(path)): p.stat().st_size for p in sorted(path.rglob("*")) if p.is_file()}


class Sampler:
    """RSS every `every` optimiser steps and the CPU clock at step 1 (called from the step-end hook)."""

    def __init__(self, every: int) -> None:
        self.every, self.samples, self.t0, self.first = every, [], None, None

    def at(self, step: int) -> None:
        if step == 1:
            self.first = time.process_time()
        if step % self.every == 0:
            self.samples.append((step, round(rss_mb(), 1)))


def run_hf(args: argparse.Namespace, out: Path | None, sampler: Sampler) -> tuple[Any, float, int]:
    """Train through the HF Trainer; returns (the callback or None, seconds after step 1, steps)."""
    from transformers import GPT2LMHeadModel, Trainer, TrainerCallback, TrainingArguments

    from grokscope.integrations.hf import GrokscopeCallback

    class Sample(TrainerCallback):
        def on_step_end(self, a: Any, state: Any, control: Any, **kw: Any) -> None:
            sampler.at(state.global_step)

    torch.manual_seed(0)
    model = GPT2LMHeadModel(model_config(args))
    ids = token_data(args)
    data = [{"input_ids": x, "labels": x.clone()} for x in ids]
    targs = TrainingArguments(output_dir=tempfile.mkdtemp(prefix="hf-bench-"), max_steps=args.steps,
                              per_device_train_batch_size=args.batch, learning_rate=3e-4, weight_decay=0.1,
                              logging_steps=50, save_strategy="no", report_to=[], use_cpu=True, seed=0,
                              disable_tqdm=True, dataloader_num_workers=0)
    cbs: list[Any] = [Sample()]
    cb = None
    if out is not None:
        cb = GrokscopeCallback(out, overwrite=True, hessian_samples=args.hessian_samples,
                               hessian_iters=args.hessian_iters, sketch_dim=args.sketch_dim)
        cbs.insert(0, cb)
    trainer = Trainer(model=model, args=targs, train_dataset=data, callbacks=cbs)
    trainer.train()
    return cb, time.process_time() - sampler.first, args.steps


def run_lightning(args: argparse.Namespace, out: Path | None, sampler: Sampler) -> tuple[Any, float, int]:
    """Train through Lightning; returns (the callback or None, seconds after step 1, steps)."""
    import lightning.pytorch as L
    import torch.nn.functional as F
    from torch.utils.data import DataLoader, TensorDataset
    from transformers import GPT2LMHeadModel

    from grokscope.integrations.lightning import GrokscopeCallback

    def next_token_loss(logits: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1))

    class LM(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.gpt = GPT2LMHeadModel(model_config(args))
            self.loss_fn = next_token_loss

        def forward(self, ids: torch.Tensor) -> torch.Tensor:
            return self.gpt(input_ids=ids).logits

        def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
            x, y = batch
            return self.loss_fn(self(x), y)

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.AdamW(self.parameters(), lr=3e-4, weight_decay=0.1)

    class Sample(L.Callback):
        def on_train_batch_end(self, trainer: Any, *a: Any) -> None:
            sampler.at(trainer.global_step)

    L.seed_everything(0, verbose=False)
    model = LM()
    ids = token_data(args)
    cbs: list[Any] = [Sample()]
    cb = None
    if out is not None:
        cb = GrokscopeCallback(out, overwrite=True, hessian_samples=args.hessian_samples,
                               hessian_iters=args.hessian_iters, sketch_dim=args.sketch_dim)
        cbs.insert(0, cb)
    trainer = L.Trainer(max_steps=args.steps, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, callbacks=cbs)
    trainer.fit(model, DataLoader(TensorDataset(ids, ids), batch_size=args.batch, shuffle=True))
    return cb, time.process_time() - sampler.first, args.steps


def one(args: argparse.Namespace) -> dict[str, Any]:
    """One (framework, monitored) run in this process."""
    torch.set_num_threads(args.threads)
    sampler = Sampler(50)
    out = Path(tempfile.mkdtemp(prefix="gs-bench-")) / "run" if args.monitored else None
    fit = run_hf if args.framework == "hf" else run_lightning
    cb, seconds, steps = fit(args, out, sampler)
    row: dict[str, Any] = {"framework": args.framework, "monitored": args.monitored,
                           "cpu_s_per_step": round(seconds / (steps - 1), 4), "rss_mb_every_50": sampler.samples,
                           "peak_rss_mb": round(peak_rss_mb(), 1)}  # training only: before the cost timings
    if cb is not None:
        mon = cb.monitor
        row.update(n_params=mon.target.n_params, monitor_s=round(mon.spent, 2),
                   monitor_overhead=round(mon.overhead(), 4), watched=len(mon.watched), sketched=len(mon.sketches),
                   defects=len(mon.defect_rows), store=store_contents(out))
        if args.costs:
            row.update({k: round(v, 3) for k, v in measure_costs(mon, args).items()})
            row["peak_rss_mb_after_costs"] = round(peak_rss_mb(), 1)  # the full Lanczos basis is [iters, P]
    return row


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--framework", choices=["hf", "lightning", "both"], default="both")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--layers", type=int, default=6)
    ap.add_argument("--d-model", type=int, default=384)
    ap.add_argument("--heads", type=int, default=6)
    ap.add_argument("--vocab", type=int, default=8192)
    ap.add_argument("--seq", type=int, default=32)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--n-train", type=int, default=4096)
    ap.add_argument("--hessian-samples", type=int, default=8, help="examples in the λ_min sample (timing only)")
    ap.add_argument("--hessian-iters", type=int, default=10, help="Lanczos iterations (timing only)")
    ap.add_argument("--sketch-dim", type=int, default=4096)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--no-costs", dest="costs", action="store_false", help="skip the per-measurement timings")
    ap.add_argument("--one", choices=["plain", "monitored"], help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.one:
        args.monitored = args.one == "monitored"
        print(json.dumps(one(args)))
        return 0
    cpu = next((ln.split(":", 1)[1].strip() for ln in subprocess.run(["lscpu"], capture_output=True, text=True)
                .stdout.splitlines() if ln.startswith("Model name")), platform.processor())
    print(f"processor: {cpu}; torch {torch.__version__}; {args.threads} thread(s); load {os.getloadavg()[0]:.1f}")
    frameworks = ["hf", "lightning"] if args.framework == "both" else [args.framework]
    rows = []
    for fw in frameworks:
        for mode in ("plain", "monitored"):
            cmd = [sys.executable, __file__, *(argv if argv is not None else sys.argv[1:]), "--framework", fw,
                   "--one", mode]
            res = subprocess.run(cmd, capture_output=True, text=True)
            if res.returncode != 0:
                print(res.stderr[-3000:], file=sys.stderr)
                return 1
            row = json.loads(res.stdout.strip().splitlines()[-1])
            rows.append(row)
            print(json.dumps(row), flush=True)
        plain, mon = rows[-2], rows[-1]
        print(f"{fw}: {mon.get('n_params', 0) / 1e6:.1f}M params, {plain['cpu_s_per_step']} CPU-s/step plain, "
              f"{mon['cpu_s_per_step']} monitored (ratio {mon['cpu_s_per_step'] / plain['cpu_s_per_step']:.3f}); "
              f"monitor's own overhead {100 * mon['monitor_overhead']:.1f} %; peak RSS {plain['peak_rss_mb']} MB "
              f"plain, {mon['peak_rss_mb']} MB monitored; load {os.getloadavg()[0]:.1f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
