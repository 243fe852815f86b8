"""A GPT-2 built from a `transformers` config (never downloaded) trained by the Hugging Face `Trainer` on
modular addition written as text, monitored by grokscope's HF callback.

Each example is the sequence `a b = c` (tokens 0..p-1 and `=` = p); the loss is on `c` only (labels -100
elsewhere), AdamW with weight decay 1. `GrokscopeCallback` records the run (defects every 100 steps, the
attention trajectory) and warns when the commutator defect's onset announces grokking.

    python examples/hf_trainer_gpt2.py                          # 3000 steps at p 31 (not timed here)
    python examples/hf_trainer_gpt2.py --p 11 --steps 60 --d-model 16 --eval-every 20  # tiny (tests)
    grokscope report runs/hf-gpt2-add
"""

from __future__ import annotations

import argparse
import os
import tempfile

import torch
from p1_transformer import modular_addition

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing here needs the Hub
from transformers import EvalPrediction, GPT2Config, GPT2LMHeadModel, Trainer, TrainingArguments  # noqa: E402

from grokscope.integrations.hf import GrokscopeCallback  # noqa: E402


def as_text(X: torch.Tensor, y: torch.Tensor, p: int) -> list[dict[str, torch.Tensor]]:
    """Pairs (a, b) and sums c as `a b = c` token sequences, the loss on c alone."""
    ids = torch.cat([X, torch.full((len(X), 1), p), y[:, None]], 1)
    labels = torch.full_like(ids, -100)
    labels[:, 3] = y
    return [{"input_ids": i, "labels": lab} for i, lab in zip(ids, labels)]


def accuracy(pred: EvalPrediction) -> dict[str, float]:
    """Accuracy of the answer token (the logits at `=` predict c)."""
    guess = pred.predictions  # argmax at `=` (see `answer_logits`)
    return {"accuracy": float((guess == pred.label_ids[:, 3]).mean())}


def answer_logits(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Keep only the prediction at `=` so evaluation holds one number per example."""
    return logits[:, 2].argmax(-1)


def main(argv: list[str] | None = None) -> GrokscopeCallback:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--p", type=int, default=31)
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--d-model", type=int, default=64)
    ap.add_argument("--eval-every", type=int, default=100, help="evaluate every N steps")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--wd", type=float, default=1.0)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--out", default="runs/hf-gpt2-add")
    args = ap.parse_args(argv)

    X, y, X_test, y_test = modular_addition(args.p, 0.7, args.seed)
    cfg = GPT2Config(vocab_size=args.p + 1, n_positions=4, n_embd=args.d_model, n_layer=1, n_head=4,
                     resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    torch.manual_seed(args.seed)
    model = GPT2LMHeadModel(cfg)
    targs = TrainingArguments(
        output_dir=tempfile.mkdtemp(prefix="hf-trainer-"), max_steps=args.steps, per_device_train_batch_size=256,
        per_device_eval_batch_size=1024, learning_rate=args.lr, weight_decay=args.wd, adam_beta2=0.98,
        lr_scheduler_type="constant", max_grad_norm=1.0, logging_steps=args.eval_every, eval_strategy="steps",
        eval_steps=args.eval_every, save_strategy="no", report_to=[], use_cpu=True, seed=args.seed,
        disable_tqdm=True, dataloader_num_workers=0)
    cb = GrokscopeCallback(args.out, tasks=("add",), overwrite=True, defect_every=100, watch_every=100)
    trainer = Trainer(model=model, args=targs, train_dataset=as_text(X, y, args.p),
                      eval_dataset=as_text(X_test, y_test, args.p), compute_metrics=accuracy,
                      preprocess_logits_for_metrics=answer_logits, callbacks=[cb])
    trainer.train()
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
