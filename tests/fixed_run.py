"""A fixed small run built without training: a smooth synthetic trajectory written through the store.

Analyses read only what the store holds, so pinning their results on this run checks that a refactor
keeps the numbers, independently of changes to the trainer, the init or the sampler.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import torch

from grokscope.config import preset
from grokscope.store import CHECKPOINT, SUMMARY, TRAJECTORY, RunDir, write_json, write_tensors
from grokscope.training import model as M

STEPS = 400
SNAP_EVERY = 50
GROK = {"add": 250, "mul": 350}


def fixed_config():
    """Dual-task 1-layer trunk on p = 11 (tiny: the Hessian and fragility analyses take seconds)."""
    return preset("quick", steps=STEPS, eval_every=SNAP_EVERY, attn_every=SNAP_EVERY, checkpoint_every=STEPS,
                  defect_every=0, seed=3, data=dict(p=11, tasks=("add", "mul")),
                  model=dict(d_model=16, n_heads=2, d_ff=32, n_layers=1), optim=dict(batch=64))


def build_fixed_run(path: Path) -> RunDir:
    """θ(t) = θ₀ + u·A + u²·B (u = t / STEPS) from a seeded generator, snapshots and attention matrices
    every SNAP_EVERY steps, an inline defect series that rises tenfold at step 200, metrics and summary."""
    cfg = fixed_config()
    run = RunDir(path)
    run.write_config(cfg)
    shapes = {k: v.shape for k, v in M.init_params(cfg.model, cfg.data, 0).items()}
    g = torch.Generator().manual_seed(1234)
    theta0 = {k: 0.3 * torch.randn(s, generator=g) for k, s in shapes.items()}
    A = {k: 0.2 * torch.randn(s, generator=g) for k, s in shapes.items()}
    B = {k: 0.1 * torch.randn(s, generator=g) for k, s in shapes.items()}
    steps = list(range(0, STEPS + 1, SNAP_EVERY))

    def at(t: int) -> dict[str, torch.Tensor]:
        u = t / STEPS
        return {k: theta0[k] + u * A[k] + u * u * B[k] for k in shapes}

    snaps = [at(t) for t in steps]
    traj = {"attn_steps": torch.tensor(steps), "snap_steps": torch.tensor(steps)}
    for k in shapes:
        traj[f"snap.{k}"] = torch.stack([s[k] for s in snaps])
    for k in M.attention_names(cfg.model):
        traj[f"attn.{k}"] = torch.stack([s[k] for s in snaps])
    write_tensors(run.file(TRAJECTORY), traj)
    final = snaps[-1]
    write_tensors(run.file(CHECKPOINT), {f"params.{k}": v for k, v in final.items()}, {"step": STEPS})
    rows = []
    for i, t in enumerate(steps):
        for task in cfg.data.tasks:
            acc = min(1.0, 0.1 + t / GROK[task])
            for split, a in (("train", min(1.0, 2 * acc)), ("test", acc)):
                rows.append({"run": cfg.name, "step": t, "task": task, "split": split, "loss": 2.0 - a,
                             "acc": a, "weight_norm": 10.0 - 0.01 * i})
    run.write_table("metrics", pd.DataFrame(rows))
    defect = [1.0, 1.2, 0.9, 1.1, 30.0, 60.0, 80.0, 70.0, 65.0]
    run.write_table("defect", pd.DataFrame({"step": steps, "defect": defect,
                                            "defect_cross": [d * 0.5 for d in defect]}))
    write_json(run.file(SUMMARY), {"name": cfg.name, "config": cfg.to_dict(), "grok_step": dict(GROK),
                                   "grok_step_90": {t: s - 50 for t, s in GROK.items()},
                                   "final_acc": {t: {"train": 1.0, "test": 1.0} for t in GROK},
                                   "steps_trained": STEPS, "finished": True, "diverged": False,
                                   "wall_time": 1.0})
    return run
