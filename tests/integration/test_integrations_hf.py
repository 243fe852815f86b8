"""The Hugging Face callback: a real `Trainer` run of a GPT-2 built from a config (never downloaded) is
unchanged by it, and its store is read by the CLI."""

from __future__ import annotations

import os

import pytest
import torch

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
transformers = pytest.importorskip("transformers")

from grokscope.integrations.hf import GrokscopeCallback  # noqa: E402
from grokscope.store import RunDir  # noqa: E402

from store_checks import assert_cli_reads, assert_same_record  # noqa: E402


def _dataset(n: int, seq: int = 12, vocab: int = 32) -> list[dict[str, torch.Tensor]]:
    """Sequences counting up mod `vocab` from random starts: a next-token task a tiny GPT-2 learns."""
    g = torch.Generator().manual_seed(0)
    starts = torch.randint(0, vocab, (n, 1), generator=g)
    ids = (starts + torch.arange(seq)) % vocab
    return [{"input_ids": x, "labels": x.clone()} for x in ids]


def _fit(tmp_path, steps: int, callbacks: list) -> tuple[torch.nn.Module, list[float]]:
    transformers.set_seed(0)
    cfg = transformers.GPT2Config(vocab_size=32, n_positions=16, n_embd=16, n_layer=2, n_head=2)
    model = transformers.GPT2LMHeadModel(cfg)
    args = transformers.TrainingArguments(
        output_dir=str(tmp_path / "hf"), max_steps=steps, per_device_train_batch_size=8, learning_rate=3e-3,
        weight_decay=0.1, logging_steps=4, eval_strategy="steps", eval_steps=6, save_strategy="no",
        report_to=[], use_cpu=True, seed=0, disable_tqdm=True, dataloader_num_workers=0)
    trainer = transformers.Trainer(model=model, args=args, train_dataset=_dataset(64), eval_dataset=_dataset(16),
                                   callbacks=callbacks)
    trainer.train()
    return model, [h["loss"] for h in trainer.state.log_history if "loss" in h]


def test_run_with_the_callback_equals_one_without_bit_for_bit(tmp_path, capsys):
    plain, plain_losses = _fit(tmp_path, 12, [])
    cb = GrokscopeCallback(tmp_path / "store" / "gpt2", defect_every=4, draws=2, watch_every=2, hessian_every=6,
                           hessian_iters=5, hessian_samples=16, flush_every=10)
    seen, seen_losses = _fit(tmp_path, 12, [cb])
    assert plain_losses == seen_losses and len(plain_losses) == 3
    for (n, a), (_, b) in zip(plain.state_dict().items(), seen.state_dict().items(), strict=True):
        assert torch.equal(a, b), n
    run = RunDir(tmp_path / "store" / "gpt2")
    assert list(run.table("defect").step) == [0, 4, 8, 12] and (run.table("defect").defect > 0).all()
    assert len(run.table("hessian")) == 3
    steps, attn = run.attention_trajectory()
    assert steps.tolist() == list(range(0, 13, 2))
    assert set(attn) == {f"transformer.h.{i}.attn.{m}.weight" for i in (0, 1) for m in ("c_attn", "c_proj")}
    m = run.metrics()
    assert {(s, sp) for s, sp in zip(m.step, m.split)} >= {(4, "train"), (6, "test"), (12, "test")}
    assert run.summary()["finished"] and run.summary()["steps_trained"] == 12
    # eval_loss is the held-out loss: the default warning runs the validation detector, and says so
    assert run.summary()["monitor"]["detector"]["running"] == "multi-val"
    assert run.config().optim.name == "adamw"  # accelerate's wrapper unwrapped
    assert set(run.table("detector_inputs").clock_kind) == {"decoupled"}
    assert_cli_reads(tmp_path / "store", run, capsys)


def test_the_monitors_loss_and_gradient_are_the_models_own_tied_weights_included(tmp_path):
    from grokscope.integrations.adapters import KwargsModule, output_loss
    from grokscope.monitor.functional import Target

    torch.manual_seed(0)
    cfg = transformers.GPT2Config(vocab_size=32, n_positions=16, n_embd=16, n_layer=2, n_head=2)
    model = transformers.GPT2LMHeadModel(cfg).double().eval()
    assert model.lm_head.weight is model.transformer.wte.weight  # tied: one parameter, used twice
    batch = {k: torch.stack([d[k] for d in _dataset(4)]) for k in ("input_ids", "labels")}
    target = Target(KwargsModule(model), output_loss)
    assert target.names == [n for n, _ in model.named_parameters()]
    theta = target.theta()
    loss = model(**batch).loss
    loss.backward()
    own = torch.cat([p.grad.reshape(-1) for p in model.parameters()])
    assert torch.equal(target.loss(target.unflatten(theta), (batch, batch)), loss.detach())
    assert torch.allclose(target.grad(theta, (batch, batch)), own, rtol=1e-10, atol=1e-13)
    shifted = theta + 1e-3 * torch.randn_like(theta)  # θ is substituted everywhere, the tied head included
    substituted = target.loss(target.unflatten(shifted), (batch, batch)).detach()
    with torch.no_grad():
        torch.nn.utils.vector_to_parameters(shifted, model.parameters())
        assert torch.equal(substituted, model(**batch).loss)


class Crash(transformers.TrainerCallback):
    """The process dies at step `at` (after the monitor recorded it): no hook of the Trainer runs after."""

    def __init__(self, at: int) -> None:
        self.at = at

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.at:
            raise RuntimeError("killed")


def _saving_trainer(folder, steps: int, callbacks: list) -> transformers.Trainer:
    """The tiny GPT-2 run logging, evaluating and saving a checkpoint every 6 steps into `folder`."""
    transformers.set_seed(0)
    cfg = transformers.GPT2Config(vocab_size=32, n_positions=16, n_embd=16, n_layer=2, n_head=2)
    args = transformers.TrainingArguments(
        output_dir=str(folder), max_steps=steps, per_device_train_batch_size=8, learning_rate=3e-3,
        weight_decay=0.1, logging_steps=6, eval_strategy="steps", eval_steps=6, save_strategy="steps",
        save_steps=6, report_to=[], use_cpu=True, seed=0, disable_tqdm=True, dataloader_num_workers=0)
    return transformers.Trainer(model=transformers.GPT2LMHeadModel(cfg), args=args, train_dataset=_dataset(64),
                                eval_dataset=_dataset(16), callbacks=callbacks)


SETTINGS = dict(defect_every=4, draws=2, watch_every=2, hessian_every=6, hessian_iters=5, hessian_samples=16,
                flush_every=4)
TIMINGS = ("runtime", "per_second")  # the Trainer's own timings, logged as scalars


def test_train_resumed_from_checkpoint_continues_the_record(tmp_path, capsys):
    ref = _saving_trainer(tmp_path / "ref-ckpts", 12, [GrokscopeCallback(tmp_path / "ref" / "gpt2", **SETTINGS)])
    ref.train()
    first = _saving_trainer(tmp_path / "ckpts", 12, [GrokscopeCallback(tmp_path / "got" / "gpt2", **SETTINGS),
                                                     Crash(9)])
    with pytest.raises(RuntimeError, match="killed"):
        first.train()
    got = RunDir(tmp_path / "got" / "gpt2")
    assert got.metrics().step.max() == 6 and got.table("defect").step.max() == 8  # written past the checkpoint
    assert (tmp_path / "ckpts" / "checkpoint-6" / "grokscope_monitor.json").is_file()
    again = _saving_trainer(tmp_path / "ckpts", 12, [GrokscopeCallback(tmp_path / "got" / "gpt2", **SETTINGS)])
    again.train(resume_from_checkpoint=str(tmp_path / "ckpts" / "checkpoint-6"))
    for (n, a), (_, b) in zip(ref.model.state_dict().items(), again.model.state_dict().items(), strict=True):
        assert torch.equal(a, b), n  # the Trainer resumed exactly: the record can be compared bit for bit
    assert_same_record(tmp_path / "ref" / "gpt2", got.path, timings=TIMINGS)
    assert list(got.table("defect").step) == [0, 4, 8, 12]
    capsys.readouterr()
    fresh = _saving_trainer(tmp_path / "ckpts2", 2, [GrokscopeCallback(got.path, **SETTINGS)])
    fresh.train()  # a fresh start on the folder says so in one line and trains on
    err = [line for line in capsys.readouterr().err.splitlines() if "grokscope" in line]
    assert len(err) == 1 and "not monitored" in err[0] and "already holds a run (steps 0–12)" in err[0]
    assert fresh.state.global_step == 2 and got.summary()["steps_trained"] == 12
