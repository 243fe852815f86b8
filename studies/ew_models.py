"""The user-code models of the early-warning corpus and the data each trains on, as a researcher would write
them: examples/'s MLP and transformer, an embedding MLP, a TransformerLens 4 bridge built offline by
`boot_native`, and a GPT-2 from a `transformers` config (never downloaded)."""

from __future__ import annotations

import importlib.util
import sys
import warnings
from functools import cache
from pathlib import Path
from typing import Any

import torch
from ew_data import Split, modular, symmetric_group, with_equals
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
VOCAB = {"s4": 24, "s5": 120}  # group orders


@cache
def example(name: str) -> Any:
    """An example script as a module (its data and model code: what a user would have written); the examples
    import each other as top-level modules, so their folder goes on the path."""
    if str(ROOT / "examples") not in sys.path:
        sys.path.append(str(ROOT / "examples"))
    spec = importlib.util.spec_from_file_location(f"example_{name}", ROOT / "examples" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


class EmbedMLP(nn.Module):
    """A learned embedding of each operand, concatenated, through one hidden ReLU layer to the classes."""

    def __init__(self, vocab: int, d: int = 64, width: int = 256) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, d)
        self.net = nn.Sequential(nn.Linear(2 * d, width), nn.ReLU(), nn.Linear(width, vocab))

    def forward(self, pairs: torch.Tensor) -> torch.Tensor:
        return self.net(self.embed(pairs).flatten(1))


class LastToken(nn.Module):
    """A sequence model's logits at the last position (the answer), so the loss is a plain cross-entropy."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.model(tokens)[:, -1]


def tl_bridge(p: int, d_model: int, seed: int) -> nn.Module:
    """Nanda et al.'s grokking transformer (1 layer, ReLU MLP of 4 d_model, no LayerNorm, tokens a b =) as a
    TransformerLens 4 `TransformerBridge` from `boot_native` (no download)."""
    from transformer_lens.config import TransformerBridgeConfig
    from transformer_lens.model_bridge import TransformerBridge

    cfg = dict(n_layers=1, d_model=d_model, n_heads=4, d_head=d_model // 4, d_mlp=4 * d_model, act_fn="relu",
               normalization_type=None, d_vocab=p + 1, d_vocab_out=p, n_ctx=3, seed=seed,
               positional_embedding_type="standard")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return LastToken(TransformerBridge.boot_native(TransformerBridgeConfig.from_dict(cfg)))


def gpt2(p: int, d_model: int, seed: int) -> nn.Module:
    """A one-layer GPT-2 LM head model for `a b = c` sequences over p + 1 tokens, no dropout."""
    from transformers import GPT2Config, GPT2LMHeadModel

    cfg = GPT2Config(vocab_size=p + 1, n_positions=4, n_embd=d_model, n_layer=1, n_head=4, resid_pdrop=0.0,
                     embd_pdrop=0.0, attn_pdrop=0.0)
    torch.manual_seed(seed)
    return GPT2LMHeadModel(cfg)


def setup(model: str, task: str, p: int, train_frac: float, seed: int) -> tuple[nn.Module, Split]:
    """A plain-PyTorch run's model (seeded) and data."""
    torch.manual_seed(seed)
    if task == "parity":
        data = example("sparse_parity").sparse_parity(30, 3, 1000, 2000, seed)
        net: nn.Module = nn.Sequential(nn.Linear(30, 256), nn.ReLU(), nn.Linear(256, 2))
        return net, data
    data = symmetric_group(int(task[1]), train_frac, seed) if task in VOCAB else modular(task, p, train_frac, seed)
    vocab = VOCAB.get(task, p)
    if model in ("plain-trunk", "lightning-trunk"):
        return example("p1_transformer").Trunk(vocab, d_model=64, n_heads=4, d_ff=128), data
    if model == "plain-embed-mlp":
        return EmbedMLP(vocab), data
    if model == "tl-bridge":
        return tl_bridge(p, 128, seed), with_equals(data, p)
    raise ValueError(f"no plain-PyTorch model {model!r} for task {task!r}")
