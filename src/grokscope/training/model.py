"""The models of docs/papers.md §2 as pure functions over a params dict whose tensors carry a leading run axis.

Every tensor in `params` has shape [R, ...]: R independent runs evaluated as one batched program.
Names are stable across the code base (`layers.0.attn.W_Q`, `embed.W_E`, `head.add.W`), so an
analysis that says "W_Q of layer 0" means one tensor everywhere. Matrices act on the right: x @ W.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

from grokscope.config import DataConfig, ModelConfig

Params = dict[str, torch.Tensor]
ATTN_MATRICES = ("W_Q", "W_K", "W_V", "W_O")


def attention_names(model: ModelConfig) -> list[str]:
    """Parameter names of the attention matrices, layer by layer (empty for the MLP)."""
    if model.kind == "mlp":
        return []
    return [f"layers.{i}.attn.{m}" for i in range(model.n_layers) for m in ATTN_MATRICES]


def vocab_size(model: ModelConfig, data: DataConfig) -> int:
    return data.p + 1 if model.kind == "transformer1" else data.p


def _uniform(gen: torch.Generator, shape: tuple[int, ...], bound: float) -> torch.Tensor:
    return (torch.rand(shape, generator=gen, device="cpu") * 2 - 1) * bound


def init_params(model: ModelConfig, data: DataConfig, seed: int) -> Params:
    """One run's parameters (no run axis), drawn on the CPU from `seed` so that a run's init is the
    same whatever batch it trains in. Initialisation follows PyTorch's defaults for the layers the
    papers used (nn.TransformerEncoderLayer, nn.Linear, nn.Embedding)."""
    g = torch.Generator().manual_seed(int(seed))
    p, tasks = data.p, data.tasks
    if model.kind == "mlp":
        w = model.width
        params = {"mlp.W_in": _uniform(g, (p, w), 1 / math.sqrt(p))}
        for t in tasks:
            params[f"head.{t}.W"] = _uniform(g, (w, p), 1 / math.sqrt(w))
        return params

    d, f, L = model.d_model, model.d_ff, model.n_layers
    trunk = model.kind == "trunk"
    n_ctx = 2 if trunk else 3
    params = {
        "embed.W_E": (torch.randn(vocab_size(model, data), d, generator=g, device="cpu")
                      * (1.0 if trunk else 1 / math.sqrt(d))),
        "embed.W_pos": torch.randn(n_ctx, d, generator=g, device="cpu") / math.sqrt(d),
    }
    xavier = math.sqrt(6 / (d + 3 * d))  # nn.MultiheadAttention: xavier_uniform on the packed [3d, d]
    for i in range(L):
        pre = f"layers.{i}"
        if trunk:
            params[f"{pre}.ln1.w"], params[f"{pre}.ln1.b"] = torch.ones(d, device="cpu"), torch.zeros(d, device="cpu")
        for m in ("W_Q", "W_K", "W_V"):
            params[f"{pre}.attn.{m}"] = _uniform(g, (d, d), xavier)
        params[f"{pre}.attn.W_O"] = _uniform(g, (d, d), 1 / math.sqrt(d))
        if trunk:
            for b in ("b_Q", "b_K", "b_V", "b_O"):
                params[f"{pre}.attn.{b}"] = torch.zeros(d, device="cpu")
            params[f"{pre}.ln2.w"], params[f"{pre}.ln2.b"] = torch.ones(d, device="cpu"), torch.zeros(d, device="cpu")
        params[f"{pre}.mlp.W_in"] = _uniform(g, (d, f), 1 / math.sqrt(d))
        params[f"{pre}.mlp.b_in"] = _uniform(g, (f,), 1 / math.sqrt(d))
        params[f"{pre}.mlp.W_out"] = _uniform(g, (f, d), 1 / math.sqrt(f))
        params[f"{pre}.mlp.b_out"] = _uniform(g, (d,), 1 / math.sqrt(f))
    if trunk:
        params["ln_f.w"], params["ln_f.b"] = torch.ones(d, device="cpu"), torch.zeros(d, device="cpu")
    for t in tasks:
        params[f"head.{t}.W"] = _uniform(g, (d, p), 1 / math.sqrt(d))
        if trunk:
            params[f"head.{t}.b"] = _uniform(g, (p,), 1 / math.sqrt(d))
    return params


def stack_params(runs: list[Params]) -> Params:
    """Stack single-run dicts into one dict with a leading run axis."""
    return {k: torch.stack([r[k] for r in runs]) for k in runs[0]}


def count_params(params: Params, batched: bool = True) -> int:
    """Parameters of one run."""
    return sum(v[0].numel() if batched else v.numel() for v in params.values())


def _linear(x: torch.Tensor, W: torch.Tensor, b: torch.Tensor | None = None) -> torch.Tensor:
    """x [R, N, i] @ W [R, i, o] (+ b [R, o]) as one batched GEMM over all runs. Eager, the bias rides in the
    GEMM (baddbmm); under torch.compile it is a separate add, which inductor fuses into the elementwise kernel
    that reads the GEMM's output next (baddbmm would cost a copy of the bias into the output first)."""
    if b is None:
        return torch.bmm(x, W)
    if torch.compiler.is_compiling():
        return torch.bmm(x, W) + b[:, None, :]
    return torch.baddbmm(b[:, None, :], x, W)


def _fold_affine(W: torch.Tensor, bias: torch.Tensor | None, w: torch.Tensor | None,
                 b: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """A LayerNorm's per-run affine (w, b) [R, i] folded into the linear map after it:
    (n * w + b) @ W + bias = n @ (w * W) + (b @ W + bias). The affine then costs work on the weights
    [R, i, o] instead of two passes over the activations [R, N, i], forward and backward."""
    if w is None:
        return W, bias
    folded = torch.bmm(b[:, None, :], W)[:, 0]
    return w[:, :, None] * W, folded if bias is None else folded + bias


def _cat(params: Params, names: list[str]) -> torch.Tensor | None:
    """Parameters concatenated on their last axis (None if the first is absent): one GEMM for several maps."""
    if names[0] not in params:
        return None
    return params[names[0]] if len(names) == 1 else torch.cat([params[n] for n in names], -1)


def attend(qkv: torch.Tensor, n_heads: int, query: int | None = None) -> torch.Tensor:
    """Softmax attention of every position (or only position `query`) over all positions (encoder, no mask)
    for short sequences: packed queries, keys and values qkv [R, B, S, 3, d] -> [R, B, S, d] ([R, B, 1, d]
    with `query`). Broadcast products and sums vectorise better than S x S matmuls for S = 2-3; taking q, k, v
    packed lets a compiled version write their gradient in one buffer."""
    R, B, S, _, d = qkv.shape
    dh = d // n_heads
    q, k, v = (t.reshape(R, B, S, n_heads, dh) for t in qkv.unbind(3))
    if query is not None:
        q = q[:, :, query:query + 1]
    scores = (q.unsqueeze(3) * k.unsqueeze(2)).sum(-1) / math.sqrt(dh)  # [R, B, S_q, S_k, H]
    z = (scores.softmax(3).unsqueeze(-1) * v.unsqueeze(2)).sum(3)  # [R, B, S_q, H, dh]
    return z.reshape(R, B, z.shape[2], d)


def attention(params: Params, pre: str, h: torch.Tensor, S: int, n_heads: int,
              ln: tuple[torch.Tensor, torch.Tensor] | None = None,
              attend_fn: Callable | None = None, query: int | None = None) -> torch.Tensor:
    """Multi-head self-attention on the (normalised) residual stream h [R, B*S, d] -> [R, B*S, d] (only
    position `query` of each sequence, [R, B, d], when given): Q, K, V from one GEMM (with the preceding
    LayerNorm's affine `ln` folded in), `attend_fn` (default `attend`), output projection."""
    R, N, d = h.shape
    W = _cat(params, [f"{pre}.{m}" for m in ("W_Q", "W_K", "W_V")])
    b = _cat(params, [f"{pre}.{m}" for m in ("b_Q", "b_K", "b_V")])
    W, b = _fold_affine(W, b, *(ln or (None, None)))
    qkv = _linear(h, W, b).view(R, N // S, S, 3, d)
    attend_fn = attend_fn or attend
    z = (attend_fn(qkv, n_heads) if query is None else attend_fn(qkv, n_heads, query)).reshape(R, -1, d)
    return _linear(z, params[f"{pre}.W_O"], params.get(f"{pre}.b_O"))


def _embed_tokens(params: Params, tokens: torch.Tensor) -> torch.Tensor:
    """Token + positional embedding [R, B, S, d]; one-hot matmul keeps the backward deterministic."""
    W_E = params["embed.W_E"]
    R, B, S = tokens.shape
    onehot = F.one_hot(tokens.reshape(R, B * S), W_E.shape[1]).to(W_E.dtype)
    return torch.bmm(onehot, W_E).view(R, B, S, -1) + params["embed.W_pos"][:, None]


def forward(params: Params, pairs: torch.Tensor, model: ModelConfig, data: DataConfig,
            attend_fn: Callable | None = None) -> torch.Tensor:
    """Logits (or MLP outputs) [R, B, n_tasks, p] for operand pairs [R, B, 2]. `attend_fn` replaces the
    attention core (the trainer passes a compiled one)."""
    p = data.p
    if model.kind == "mlp":
        W_in = params["mlp.W_in"]
        x = F.one_hot(pairs, p).to(W_in.dtype).sum(2)  # e_a + e_b
        h = torch.relu(torch.bmm(x, W_in))
        return _linear(h, _cat(params, [f"head.{t}.W" for t in data.tasks])).view(*h.shape[:2], len(data.tasks), p)

    trunk = model.kind == "trunk"
    tokens = pairs if trunk else torch.cat([pairs, torch.full_like(pairs[..., :1], p)], -1)
    R, B, S = tokens.shape
    x = _embed_tokens(params, tokens)
    d = x.shape[-1]
    x = x.view(R, B * S, d)
    read = 0 if trunk else S - 1  # the position the heads read out
    for i in range(model.n_layers):
        pre = f"layers.{i}"
        # The last layer only has to produce the read-out position: its queries, output projection and MLP
        # run on that position alone (keys and values still span the sequence); the same function, fewer FLOPs.
        query = read if i == model.n_layers - 1 else None
        ln1 = (params[f"{pre}.ln1.w"], params[f"{pre}.ln1.b"]) if trunk else None
        h = F.layer_norm(x, (d,)) if trunk else x
        a = attention(params, f"{pre}.attn", h, S, model.n_heads, ln1, attend_fn, query)
        x = x + a if query is None else x.view(R, B, S, d)[:, :, query] + a
        h = F.layer_norm(x, (d,)) if trunk else x
        W_in, b_in = params[f"{pre}.mlp.W_in"], params[f"{pre}.mlp.b_in"]
        if trunk:
            W_in, b_in = _fold_affine(W_in, b_in, params[f"{pre}.ln2.w"], params[f"{pre}.ln2.b"])
        h = (F.gelu if trunk else torch.relu)(_linear(h, W_in, b_in))
        x = x + _linear(h, params[f"{pre}.mlp.W_out"], params[f"{pre}.mlp.b_out"])
    out = x.view(R, B, d)  # the read-out position, after the last layer
    W = _cat(params, [f"head.{t}.W" for t in data.tasks])
    b = _cat(params, [f"head.{t}.b" for t in data.tasks])
    if trunk:  # final LayerNorm on position 0
        out = F.layer_norm(out, (d,))
        W, b = _fold_affine(W, b, params["ln_f.w"], params["ln_f.b"])
    return _linear(out, W, b).view(R, B, len(data.tasks), p)


def per_task_loss(outputs: torch.Tensor, targets: torch.Tensor, model: ModelConfig) -> torch.Tensor:
    """Per-run, per-task mean loss [R, T]: cross-entropy, or squared error against one-hot targets for
    the MLP (mean over examples and outputs, as nn.MSELoss)."""
    if model.kind == "mlp":
        onehot = F.one_hot(targets, outputs.shape[-1]).to(outputs.dtype)
        return (outputs - onehot).pow(2).mean(dim=(1, 3))
    logp = (outputs.float() if outputs.dtype in (torch.float16, torch.bfloat16) else outputs).log_softmax(-1)
    return -logp.gather(-1, targets.unsqueeze(-1)).squeeze(-1).mean(1)


def per_task_correct(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Correct-prediction counts per run and task [R, T] (argmax of outputs)."""
    return (outputs.argmax(-1) == targets).sum(1)


def loss(params: Params, pairs: torch.Tensor, targets: torch.Tensor, model: ModelConfig, data: DataConfig,
         task_weights: torch.Tensor | None = None, attend_fn: Callable | None = None) -> torch.Tensor:
    """Per-run training loss [R]: the plain sum of per-task losses (docs/papers.md §2), or a weighted sum
    (`task_weights` [T]) for analyses that need one task's loss alone."""
    per_task = per_task_loss(forward(params, pairs, model, data, attend_fn), targets, model)
    return per_task.sum(-1) if task_weights is None else per_task @ task_weights.to(per_task.dtype)


def weight_norm(params: Params) -> torch.Tensor:
    """Total L2 norm of all parameters, per run [R]."""
    return torch.sqrt(sum(v.flatten(1).pow(2).sum(1) for v in params.values()))


def flatten(params: Params) -> torch.Tensor:
    """Concatenate every parameter of each run into one vector [R, P], in the dict's (init) order.
    This order is THE flat layout: bases, Δθ and PCs over full parameter vectors all use it."""
    return torch.cat([v.flatten(1) for v in params.values()], dim=1)


def unflatten(vec: torch.Tensor, like: Params) -> Params:
    """Inverse of `flatten`: [R, P] back to a dict shaped like `like` (which has a run axis)."""
    return unflatten_views(vec.contiguous(), like)


def unflatten_views(vec: torch.Tensor, like: Params) -> Params:
    """Like `unflatten`, but every tensor is a view into `vec` (writes to `vec` show through)."""
    out, i = {}, 0
    for k, v in like.items():
        n = v[0].numel()
        out[k] = vec[:, i:i + n].view((vec.shape[0],) + v.shape[1:])
        i += n
    return out


def param_slices(params: Params, batched: bool = True) -> dict[str, slice]:
    """Where each named parameter lives in the flat vector of `flatten`."""
    out, i = {}, 0
    for k, v in params.items():
        n = v[0].numel() if batched else v.numel()
        out[k] = slice(i, i + n)
        i += n
    return out
