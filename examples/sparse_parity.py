"""An MLP on sparse parity (a task known to grok), trained in plain PyTorch and monitored by grokscope.

The label is the parity of k = 3 of n = 30 random ±1 bits; 1000 training examples, a one-hidden-layer ReLU
MLP (width 256), AdamW with weight decay 1. The net fits the training set after about 1000 steps and
generalises only later (test accuracy ≥ 98 % around step 3000 on the CPU we ran it on). `grokscope.Monitor`
records the commutator defect every 100 steps and prints the early warning when its detector fires (the default
multi-signal one, docs/early-warning.md), with a predicted grokking window; at the end the script says whether the
warning came first.

    python examples/sparse_parity.py                  # about 1–3 CPU minutes; store in runs/sparse-parity
    python examples/sparse_parity.py --steps 60 --n-train 200 --width 32 --eval-every 20  # tiny (as in the tests)
    grokscope report runs/sparse-parity
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F
from torch import nn

import grokscope as gs


def sparse_parity(n: int, k: int, n_train: int, n_test: int, seed: int) -> tuple[torch.Tensor, ...]:
    """(X_train, y_train, X_test, y_test): uniform ±1 bits, label = parity of the first k bits."""
    g = torch.Generator().manual_seed(seed)
    X = torch.randint(0, 2, (n_train + n_test, n), generator=g).float() * 2 - 1
    y = (X[:, :k].prod(1) < 0).long()
    return X[:n_train], y[:n_train], X[n_train:], y[n_train:]


@torch.no_grad()
def evaluate(model: nn.Module, X: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    out = model(X)
    return float(F.cross_entropy(out, y)), float((out.argmax(1) == y).float().mean())


def main(argv: list[str] | None = None) -> gs.Monitor:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=30)
    ap.add_argument("--k", type=int, default=3)
    ap.add_argument("--n-train", type=int, default=1000)
    ap.add_argument("--width", type=int, default=256)
    ap.add_argument("--steps", type=int, default=6000)
    ap.add_argument("--wd", type=float, default=1.0)
    ap.add_argument("--eval-every", type=int, default=100, help="evaluate and log metrics every N steps")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="runs/sparse-parity")
    args = ap.parse_args(argv)

    X, y, X_test, y_test = sparse_parity(args.n, args.k, args.n_train, 2000, args.seed)
    torch.manual_seed(args.seed)
    model = nn.Sequential(nn.Linear(args.n, args.width), nn.ReLU(), nn.Linear(args.width, 2))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=args.wd)
    gen = torch.Generator().manual_seed(args.seed + 1)
    mon = gs.Monitor(model, F.cross_entropy, (X, y), out=args.out, watch=["*.weight"], optimizer=opt,
                     tasks=("parity",), batch_size=128, seed=args.seed, overwrite=True,
                     defect_every=100, watch_every=100, hessian_every=1000, hessian_iters=20)
    for step in range(1, args.steps + 1):
        idx = torch.randint(0, len(X), (128,), generator=gen)
        loss = F.cross_entropy(model(X[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        metrics = None
        if step % args.eval_every == 0:
            tr, te = evaluate(model, X, y), evaluate(model, X_test, y_test)
            metrics = {"train_loss": tr[0], "train_acc": tr[1], "test_loss": te[0], "test_acc": te[1]}
            print(f"step {step:5d}  train acc {tr[1]:.3f}  test acc {te[1]:.3f}", flush=True)
        mon.step(step, metrics)
        if mon.grok_step()["parity"] is not None:
            break
    mon.close()
    grok = mon.grok_step()["parity"]
    warn = mon.events[0] if mon.events else None
    if warn is None:
        verdict = "no early warning fired"
    elif grok is None:
        verdict = f"warned at step {warn.step} but the run did not grok within {args.steps} steps"
    else:
        verdict = (f"warned at step {warn.step}, {grok - warn.step} steps before grokking" if warn.step < grok
                   else f"warned at step {warn.step}, {warn.step - grok} steps after grokking (too late)")
    shown = grok if grok is not None else "— (not within the budget)"
    print(f"grok step {shown}; {verdict}; monitor overhead {100 * mon.overhead():.1f} % of training; "
          f"store: {args.out}")
    return mon


if __name__ == "__main__":
    main()
