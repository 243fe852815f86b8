"""The P1 trunk trained by PyTorch Lightning, monitored by grokscope's Lightning callback.

The model, data and optimiser of `p1_transformer.py` (modular addition, AdamW, weight decay 1) wrapped in a
`LightningModule`; `GrokscopeCallback` records the run into a store (defects every 100 steps, the attention
trajectory) and warns when the commutator defect's onset announces grokking.

    python examples/lightning_modular_addition.py                  # 3000 steps at p 31 (not timed here)
    python examples/lightning_modular_addition.py --p 11 --steps 60 --d-model 16 --eval-every 20  # tiny (tests)
    grokscope report runs/lightning-add
"""

from __future__ import annotations

import argparse

import lightning.pytorch as L
import torch
import torch.nn.functional as F
from p1_transformer import Trunk, modular_addition
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from grokscope.integrations.lightning import GrokscopeCallback


class AdditionModule(L.LightningModule):
    """`Trunk` with its loss (`loss_fn`, which the callback finds) and AdamW."""

    def __init__(self, p: int, d_model: int, lr: float, wd: float) -> None:
        super().__init__()
        self.trunk = Trunk(p, d_model=d_model, n_heads=4, d_ff=2 * d_model)
        self.loss_fn = nn.CrossEntropyLoss()
        self.lr, self.wd = lr, wd

    def forward(self, pairs: torch.Tensor) -> torch.Tensor:
        return self.trunk(pairs)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        out = self(x)
        loss = self.loss_fn(out, y)
        self.log("train_loss", loss)
        self.log("train_acc", (out.argmax(1) == y).float().mean())
        return loss

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        x, y = batch
        out = self(x)
        self.log("val_loss", F.cross_entropy(out, y))
        self.log("val_acc", (out.argmax(1) == y).float().mean())

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.AdamW(self.parameters(), lr=self.lr, weight_decay=self.wd, betas=(0.9, 0.98))


def main(argv: list[str] | None = None) -> GrokscopeCallback:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--p", type=int, default=31)
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--d-model", type=int, default=64)
    ap.add_argument("--eval-every", type=int, default=100, help="validate every N steps")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--wd", type=float, default=1.0)
    ap.add_argument("--lr", type=float, default=5e-3)
    ap.add_argument("--out", default="runs/lightning-add")
    args = ap.parse_args(argv)

    L.seed_everything(args.seed, verbose=False)
    X, y, X_test, y_test = modular_addition(args.p, 0.7, args.seed)
    model = AdditionModule(args.p, args.d_model, args.lr, args.wd)
    cb = GrokscopeCallback(args.out, watch=["*self_attn*"], tasks=("add",), batch_size=256, seed=args.seed,
                           overwrite=True, defect_every=100, watch_every=100)
    trainer = L.Trainer(max_steps=args.steps, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, val_check_interval=args.eval_every,
                        check_val_every_n_epoch=None, num_sanity_val_steps=0, gradient_clip_val=1.0,
                        callbacks=[cb])
    trainer.fit(model, DataLoader(TensorDataset(X, y), batch_size=256, shuffle=True),
                DataLoader(TensorDataset(X_test, y_test), batch_size=len(X_test)))
    mon = cb.monitor
    s = mon.summary()
    warned = [e.step for e in mon.events]
    grok = s["grok_step"]["add"]
    print(f"grok step {grok if grok is not None else '— (not within the budget)'}, "
          f"early warning at {warned[0] if warned else '—'}, "
          f"monitor overhead {100 * s['monitor']['overhead']:.1f} % of training; store: {args.out}")
    return cb


if __name__ == "__main__":
    main()
