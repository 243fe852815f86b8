"""A user's plain monitored loop that resumes exactly from its own checkpoints, for the resume tests; run as a script
(`python tests/monitored_loop.py OUT CHECKPOINT STEPS EVERY`) it trains to STEPS, saving a checkpoint (model,
optimiser, the monitor's state_dict) atomically every EVERY steps, and resumes from CHECKPOINT when it exists."""

from __future__ import annotations

import copy
import importlib.util
import os
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from grokscope.monitor import DetectorConfig, Monitor, MultiSignalDetector

TB = importlib.util.find_spec("tensorboard") is not None
# every measurement on, thinning of both trajectories (watched records at 12 and 24, snapshots at 12 and 24), a
# write every 7 steps; the grok rule fires at 14, its 90 % variant at 4; the detector warns at 18 (train acc >= 0.81)
SETTINGS = dict(defect_every=3, draws=2, watch_every=2, max_records=6, snapshot_every=4, n_snapshots=3,
                hessian_every=6, hessian_iters=4, hessian_samples=32, hessian_groups=["0.*"], flush_every=7,
                grok_acc=0.75, grok_patience=2, grok_acc_90=0.7, verbose=False)
STEPS, CHECKPOINT = 28, 10


def data():
    g = torch.Generator().manual_seed(0)
    X = torch.randn(96, 6, generator=g)
    return X, (X[:, 0] + X[:, 1] > 0).long()


class Loop:
    """A user's plain loop that resumes exactly from its own checkpoints (its minibatches are drawn by step)."""

    def __init__(self, out, start: int = 0, ckpt: dict | None = None, tensorboard: bool = False, **settings):
        torch.manual_seed(3)
        self.X, self.y = data()
        self.model = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 2))
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=1e-2, weight_decay=0.1)
        if ckpt is not None:
            self.model.load_state_dict(ckpt["model"])
            self.opt.load_state_dict(ckpt["opt"])
        detector = MultiSignalDetector(DetectorConfig(bias=1.0, norm_weight=0.0, acc_gate=0.81, threshold=0.5))
        self.mon = Monitor(self.model, F.cross_entropy, (self.X[:64], self.y[:64]), out=out, optimizer=self.opt,
                           batch_size=16, seed=1, start_step=start, detector=detector, tensorboard=tensorboard,
                           **{**SETTINGS, **settings})
        if ckpt is not None:
            self.mon.load_state_dict(ckpt["monitor"])
        self.step = start

    def run(self, until: int) -> Loop:
        X, y = self.X, self.y
        while self.step < until:
            self.step += 1
            idx = torch.randint(0, 64, (16,), generator=torch.Generator().manual_seed(self.step))
            loss = F.cross_entropy(self.model(X[idx]), y[idx])
            self.opt.zero_grad()
            loss.backward()
            self.opt.step()
            metrics = None
            if self.step % 2 == 0:
                with torch.no_grad():
                    out = self.model(X)
                acc = (out.argmax(-1) == y).float()
                metrics = {"train_loss": loss.item(), "train_acc": acc[:64].mean().item(),
                           "test_acc": acc[64:].mean().item(), "lr": 1e-2}
            self.mon.step(self.step, metrics)
        return self

    def checkpoint(self) -> dict:
        """What the user saves: model, optimiser, the monitor's state_dict (which writes its store in full), step."""
        return {"model": copy.deepcopy(self.model.state_dict()), "opt": copy.deepcopy(self.opt.state_dict()),
                "monitor": self.mon.state_dict(), "step": self.step}

    def die(self) -> None:
        """The process ends without a word: nothing more is written (the TensorBoard writer's buffer aside)."""
        if self.mon._tb is not None:
            self.mon._tb.close()


def main(out: str, checkpoint: str, steps: int, every: int) -> None:
    torch.set_num_threads(1)
    path = Path(checkpoint)
    ckpt = torch.load(path, weights_only=True) if path.exists() else None
    loop = Loop(out, start=ckpt["step"] if ckpt else 0, ckpt=ckpt)
    while loop.step < steps:
        loop.run(min(steps, loop.step + every))
        tmp = path.with_name(path.name + ".tmp")
        torch.save(loop.checkpoint(), tmp)
        os.replace(tmp, path)
    loop.mon.close()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
