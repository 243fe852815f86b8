"""The P1/P2 shared-trunk transformer written as a researcher would, in plain PyTorch, and monitored.

Modular addition a + b mod p (a, b in 1..p-1, 70 % train), a pre-norm `nn.TransformerEncoder`, AdamW with
weight decay 1, minibatches drawn by the user's own generator: grokscope's quick preset, but none of
grokscope's training code. `grokscope.Monitor` records the run into a store and warns when its early-warning
detector (the weight norm's decline after the training set is fitted, docs/early-warning.md) announces grokking.

    python examples/p1_transformer.py                      # ~20 CPU-seconds (groks at ~1000); runs/p1-plain
    python examples/p1_transformer.py --p 11 --steps 60 --eval-every 20    # tiny (as in the tests)
    grokscope report runs/p1-plain
"""

from __future__ import annotations

import argparse
import math

import torch
import torch.nn.functional as F
from torch import nn

import grokscope as gs


class Trunk(nn.Module):
    """Token + position embedding, pre-norm encoder layers (GELU, no dropout), a final LayerNorm and a linear
    readout at position 0: the shared trunk of P1/P2 with one task head."""

    def __init__(self, p: int, d_model: int = 64, n_heads: int = 4, d_ff: int = 128, n_layers: int = 1) -> None:
        super().__init__()
        self.embed = nn.Embedding(p, d_model)
        self.pos = nn.Parameter(torch.randn(2, d_model) / math.sqrt(d_model))
        layer = nn.TransformerEncoderLayer(d_model, n_heads, d_ff, dropout=0.0, activation="gelu",
                                           batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, n_layers, enable_nested_tensor=False)
        self.ln_f = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, p)

    def forward(self, pairs: torch.Tensor) -> torch.Tensor:
        x = self.encoder(self.embed(pairs) + self.pos)
        return self.head(self.ln_f(x[:, 0]))


def modular_addition(p: int, train_frac: float, seed: int) -> tuple[torch.Tensor, ...]:
    """(X_train, y_train, X_test, y_test): all pairs (a, b) in 1..p-1, a seeded split."""
    a, b = torch.meshgrid(torch.arange(1, p), torch.arange(1, p), indexing="ij")
    X = torch.stack([a.flatten(), b.flatten()], 1)
    y = (X[:, 0] + X[:, 1]) % p
    perm = torch.randperm(len(X), generator=torch.Generator().manual_seed(seed))
    n = int(train_frac * len(X))
    return X[perm[:n]], y[perm[:n]], X[perm[n:]], y[perm[n:]]


@torch.no_grad()
def evaluate(model: nn.Module, X: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    out = model(X)
    return float(F.cross_entropy(out, y)), float((out.argmax(1) == y).float().mean())


def main(argv: list[str] | None = None) -> gs.Monitor:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--p", type=int, default=31)
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--d-model", type=int, default=64)
    ap.add_argument("--eval-every", type=int, default=100, help="evaluate and log metrics every N steps")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--wd", type=float, default=1.0)
    ap.add_argument("--lr", type=float, default=5e-3)
    ap.add_argument("--out", default="runs/p1-plain")
    args = ap.parse_args(argv)

    torch.manual_seed(args.seed)
    X, y, X_test, y_test = modular_addition(args.p, 0.7, args.seed)
    model = Trunk(args.p, d_model=args.d_model, n_heads=4, d_ff=2 * args.d_model)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=args.wd, betas=(0.9, 0.98))
    gen = torch.Generator().manual_seed(args.seed)
    mon = gs.Monitor(model, F.cross_entropy, (X, y), out=args.out, watch=["*self_attn*"], optimizer=opt,
                     tasks=("add",), batch_size=256, seed=args.seed, overwrite=True,
                     defect_every=100, watch_every=100)
    for step in range(1, args.steps + 1):
        idx = torch.randint(0, len(X), (256,), generator=gen)
        loss = F.cross_entropy(model(X[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        metrics = None
        if step % args.eval_every == 0:
            tr, te = evaluate(model, X, y), evaluate(model, X_test, y_test)
            metrics = {"train_loss": tr[0], "train_acc": tr[1], "test_loss": te[0], "test_acc": te[1]}
            print(f"step {step:5d}  train acc {tr[1]:.3f}  test acc {te[1]:.3f}", flush=True)
        mon.step(step, metrics)
        if mon.grok_step()["add"] is not None:
            break
    mon.close()
    s = mon.summary()
    warned = [e.step for e in mon.events]
    grok = s["grok_step"]["add"]
    print(f"grok step {grok if grok is not None else '— (not within the budget)'}, "
          f"early warning at {warned[0] if warned else '—'}, "
          f"monitor overhead {100 * s['monitor']['overhead']:.1f} % of training; store: {args.out}")
    return mon


if __name__ == "__main__":
    main()
