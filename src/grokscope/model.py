"""The models of SPEC §2 as pure functions over a params dict whose tensors carry a leading run axis.

Every tensor in `params` has shape [R, ...]: R independent runs evaluated as one batched program.
Names are stable across the code base (`layers.0.attn.W_Q`, `embed.W_E`, `head.add.W`), so an
analysis that says "W_Q of layer 0" means one tensor everywhere. Matrices act on the right: x @ W.
"""

from __future__ import annotations

import math

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
    return (torch.rand(shape, generator=gen) * 2 - 1) * bound


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
        "embed.W_E": torch.randn(vocab_size(model, data), d, generator=g) * (1.0 if trunk else 1 / math.sqrt(d)),
        "embed.W_pos": torch.randn(n_ctx, d, generator=g) / math.sqrt(d),
    }
    xavier = math.sqrt(6 / (d + 3 * d))  # nn.MultiheadAttention: xavier_uniform on the packed [3d, d]
    for i in range(L):
        pre = f"layers.{i}"
        if trunk:
            params[f"{pre}.ln1.w"], params[f"{pre}.ln1.b"] = torch.ones(d), torch.zeros(d)
        for m in ("W_Q", "W_K", "W_V"):
            params[f"{pre}.attn.{m}"] = _uniform(g, (d, d), xavier)
        params[f"{pre}.attn.W_O"] = _uniform(g, (d, d), 1 / math.sqrt(d))
        if trunk:
            for b in ("b_Q", "b_K", "b_V", "b_O"):
                params[f"{pre}.attn.{b}"] = torch.zeros(d)
            params[f"{pre}.ln2.w"], params[f"{pre}.ln2.b"] = torch.ones(d), torch.zeros(d)
        params[f"{pre}.mlp.W_in"] = _uniform(g, (d, f), 1 / math.sqrt(d))
        params[f"{pre}.mlp.b_in"] = _uniform(g, (f,), 1 / math.sqrt(d))
        params[f"{pre}.mlp.W_out"] = _uniform(g, (f, d), 1 / math.sqrt(f))
        params[f"{pre}.mlp.b_out"] = _uniform(g, (d,), 1 / math.sqrt(f))
    if trunk:
        params["ln_f.w"], params["ln_f.b"] = torch.ones(d), torch.zeros(d)
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


def _layer_norm(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """LayerNorm with per-run affine parameters w, b of shape [R, d]; x is [R, ..., d]."""
    shape = (w.shape[0],) + (1,) * (x.dim() - 2) + (w.shape[-1],)
    return F.layer_norm(x, x.shape[-1:]) * w.view(shape) + b.view(shape)


def _linear(x: torch.Tensor, W: torch.Tensor, b: torch.Tensor | None = None) -> torch.Tensor:
    """x [R, B, S, i] @ W [R, i, o] (+ b [R, o])."""
    y = torch.einsum("rbsi,rio->rbso", x, W)
    return y if b is None else y + b[:, None, None, :]


def attention(params: Params, pre: str, x: torch.Tensor, n_heads: int) -> torch.Tensor:
    """Multi-head self-attention over all positions (encoder, no mask), written with plain matmuls
    so that it batches over runs."""
    R, B, S, d = x.shape
    dh = d // n_heads
    bias = f"{pre}.b_Q" in params

    def proj(m: str) -> torch.Tensor:
        b = params[f"{pre}.b_{m[-1]}"] if bias else None
        return _linear(x, params[f"{pre}.{m}"], b).view(R, B, S, n_heads, dh)

    q, k, v = proj("W_Q"), proj("W_K"), proj("W_V")
    scores = torch.einsum("rbqhd,rbkhd->rbhqk", q, k) / math.sqrt(dh)
    z = torch.einsum("rbhqk,rbkhd->rbqhd", scores.softmax(-1), v).reshape(R, B, S, d)
    return _linear(z, params[f"{pre}.W_O"], params[f"{pre}.b_O"] if bias else None)


def _embed_tokens(params: Params, tokens: torch.Tensor) -> torch.Tensor:
    """Token + positional embedding; one-hot matmul keeps the backward deterministic."""
    W_E = params["embed.W_E"]
    onehot = F.one_hot(tokens, W_E.shape[1]).to(W_E.dtype)
    return torch.einsum("rbsv,rvd->rbsd", onehot, W_E) + params["embed.W_pos"][:, None]


def forward(params: Params, pairs: torch.Tensor, model: ModelConfig, data: DataConfig) -> torch.Tensor:
    """Logits (or MLP outputs) [R, B, n_tasks, p] for operand pairs [R, B, 2]."""
    p = data.p
    if model.kind == "mlp":
        W_in = params["mlp.W_in"]
        x = F.one_hot(pairs, p).to(W_in.dtype).sum(2)  # e_a + e_b
        h = torch.relu(torch.einsum("rbi,rih->rbh", x, W_in))
        return torch.stack([torch.einsum("rbh,rho->rbo", h, params[f"head.{t}.W"]) for t in data.tasks], 2)

    trunk = model.kind == "trunk"
    tokens = pairs if trunk else torch.cat([pairs, torch.full_like(pairs[..., :1], p)], -1)
    x = _embed_tokens(params, tokens)
    for i in range(model.n_layers):
        pre = f"layers.{i}"
        h = _layer_norm(x, params[f"{pre}.ln1.w"], params[f"{pre}.ln1.b"]) if trunk else x
        x = x + attention(params, f"{pre}.attn", h, model.n_heads)
        h = _layer_norm(x, params[f"{pre}.ln2.w"], params[f"{pre}.ln2.b"]) if trunk else x
        act = F.gelu if trunk else torch.relu
        h = act(_linear(h, params[f"{pre}.mlp.W_in"], params[f"{pre}.mlp.b_in"]))
        x = x + _linear(h, params[f"{pre}.mlp.W_out"], params[f"{pre}.mlp.b_out"])
    if trunk:  # final LayerNorm on position 0
        w, b = params["ln_f.w"], params["ln_f.b"]
        out = F.layer_norm(x[:, :, 0], x.shape[-1:]) * w[:, None] + b[:, None]
    else:  # read out at the '=' token
        out = x[:, :, -1]
    logits = []
    for t in data.tasks:
        y = torch.einsum("rbd,rdo->rbo", out, params[f"head.{t}.W"])
        logits.append(y + params[f"head.{t}.b"][:, None] if trunk else y)
    return torch.stack(logits, 2)


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
         task_weights: torch.Tensor | None = None) -> torch.Tensor:
    """Per-run training loss [R]: the plain sum of per-task losses (SPEC §2), or a weighted sum
    (`task_weights` [T]) for analyses that need one task's loss alone."""
    per_task = per_task_loss(forward(params, pairs, model, data), targets, model)
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
