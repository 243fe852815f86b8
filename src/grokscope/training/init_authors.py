"""θ₀ exactly as the papers' scripts build it, mapped onto grokscope's params dict.

The P1/P2 scripts seed torch with `torch.manual_seed(seed)` and then build, in this order:
`nn.Embedding(p, d)`, a positional table `torch.randn(2, d) / sqrt(d)`, ONE
`nn.TransformerEncoderLayer` (norm-first, GELU) that `nn.TransformerEncoder` deep-copies into every layer
(so all layers start identical), a final `nn.LayerNorm`, and one `nn.Linear(d, p)` head per task. This
module replays the same random draws, in the same order and with torch's own initialisers, from a private
generator (the caller's global RNG is left alone), and returns grokscope's names and layout (x @ W, so
every torch weight is transposed; the packed `in_proj_weight` is split into W_Q, W_K, W_V).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from grokscope.config import DataConfig, ModelConfig
from grokscope.errors import ConfigError
from grokscope.training import model as M

Params = M.Params


def _linear(gen: torch.Generator, fan_in: int, fan_out: int) -> tuple[torch.Tensor, torch.Tensor]:
    """`nn.Linear(fan_in, fan_out)`'s reset_parameters: weight [out, in] then bias, from `gen`."""
    w = torch.empty(fan_out, fan_in, device="cpu")
    nn.init.kaiming_uniform_(w, a=math.sqrt(5), generator=gen)
    bound = 1 / math.sqrt(fan_in)
    b = torch.empty(fan_out, device="cpu")
    nn.init.uniform_(b, -bound, bound, generator=gen)
    return w, b


def _encoder_layer(gen: torch.Generator, d: int, f: int) -> dict[str, torch.Tensor]:
    """One `nn.TransformerEncoderLayer(d, nhead, f)`'s parameters in its construction order: the attention's
    out_proj (a Linear: weight, then a bias that is drawn and then zeroed), the packed in_proj_weight
    (xavier_uniform), linear1, linear2; LayerNorms are ones/zeros and draw nothing."""
    out_w, _ = _linear(gen, d, d)  # out_proj.bias is drawn here and zeroed by MultiheadAttention
    in_proj = torch.empty(3 * d, d, device="cpu")
    nn.init.xavier_uniform_(in_proj, generator=gen)
    w1, b1 = _linear(gen, d, f)
    w2, b2 = _linear(gen, f, d)
    return {"in_proj": in_proj, "out_w": out_w, "w1": w1, "b1": b1, "w2": w2, "b2": b2}


def authors_init(model: ModelConfig, data: DataConfig, seed: int) -> Params:
    """One run's θ₀ (no run axis): the module the authors' script builds after torch.manual_seed(seed),
    bit for bit, under grokscope's names and in `model.init_params`' dict order (the flat layout)."""
    if model.kind != "trunk":
        raise ConfigError(f"init 'authors' exists for the shared trunk only (the scripts of P1/P2), "
                          f"not for model kind {model.kind!r}; use init 'independent'")
    gen = torch.Generator().manual_seed(int(seed))
    d, f, p = model.d_model, model.d_ff, data.p
    tok = torch.empty(p, d, device="cpu")
    nn.init.normal_(tok, generator=gen)
    pos = torch.randn(2, d, generator=gen, device="cpu") / math.sqrt(d)
    layer = _encoder_layer(gen, d, f)
    heads = {t: _linear(gen, d, p) for t in data.tasks}

    params: Params = {"embed.W_E": tok, "embed.W_pos": pos}
    for i in range(model.n_layers):  # nn.TransformerEncoder deep-copies the one layer: identical starts
        pre = f"layers.{i}"
        params[f"{pre}.ln1.w"], params[f"{pre}.ln1.b"] = torch.ones(d, device="cpu"), torch.zeros(d, device="cpu")
        for j, m in enumerate("QKV"):
            params[f"{pre}.attn.W_{m}"] = layer["in_proj"][j * d:(j + 1) * d].T.clone()
        params[f"{pre}.attn.W_O"] = layer["out_w"].T.clone()
        for m in "QKVO":
            params[f"{pre}.attn.b_{m}"] = torch.zeros(d, device="cpu")
        params[f"{pre}.ln2.w"], params[f"{pre}.ln2.b"] = torch.ones(d, device="cpu"), torch.zeros(d, device="cpu")
        params[f"{pre}.mlp.W_in"], params[f"{pre}.mlp.b_in"] = layer["w1"].T.clone(), layer["b1"].clone()
        params[f"{pre}.mlp.W_out"], params[f"{pre}.mlp.b_out"] = layer["w2"].T.clone(), layer["b2"].clone()
    params["ln_f.w"], params["ln_f.b"] = torch.ones(d, device="cpu"), torch.zeros(d, device="cpu")
    for t, (w, b) in heads.items():
        params[f"head.{t}.W"], params[f"head.{t}.b"] = w.T.clone(), b
    return {k: v.contiguous() for k, v in params.items()}


def initial_params(model: ModelConfig, data: DataConfig, seed: int, init: str) -> Params:
    """θ₀ of one run by the named scheme: 'authors' (the papers' scripts) or 'independent' (grokscope's
    own: every layer drawn separately from a counter-free CPU generator, `model.init_params`)."""
    if init == "authors":
        return authors_init(model, data, seed)
    if init == "independent":
        return M.init_params(model, data, seed)
    raise ConfigError(f"unknown init {init!r}; choose authors or independent")
