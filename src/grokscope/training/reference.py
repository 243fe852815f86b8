"""The papers' way of doing it: one run, one `nn.Module`, `torch.optim`, host-sampled minibatches.

This is the yardstick the batched trainer is checked against (tests/unit/test_reference.py: same forward,
same AdamW / SGD updates, run r of a batch = run r alone) and timed against
(benchmarks/train_throughput.py). The P1 shared trunk is built from `nn.TransformerEncoderLayer`
exactly as docs/papers.md §2 describes; P3's MLP from bias-free `nn.Linear`s. `load_from_params` / `to_params`
convert between a module and grokscope's params dict of one run (no run axis). grokscope's matrices
act on the right (x @ W), so W_Q is the transpose of the q-rows of `in_proj_weight` and W_O is
`out_proj.weight.T`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from grokscope.config import DataConfig, ModelConfig, RunConfig, validate
from grokscope.data.tasks import make_split
from grokscope.errors import ConfigError
from grokscope.training import model as M
from grokscope.training.init_authors import initial_params

Params = M.Params
Batches = Callable[[int], tuple[torch.Tensor, torch.Tensor]]


class TrunkModel(nn.Module):
    """P1/P2 shared trunk: token + positional embedding, pre-norm `nn.TransformerEncoder`, final
    LayerNorm on position 0, one `nn.Linear(d, p)` head per task."""

    def __init__(self, model: ModelConfig, data: DataConfig) -> None:
        super().__init__()
        d, p = model.d_model, data.p
        self.tasks = data.tasks
        self.embed = nn.Embedding(p, d)
        self.pos = nn.Parameter(torch.randn(2, d, device="cpu") / math.sqrt(d))
        layer = nn.TransformerEncoderLayer(d, model.n_heads, model.d_ff, dropout=0.0, activation="gelu",
                                           norm_first=True, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, model.n_layers, enable_nested_tensor=False)
        self.ln_f = nn.LayerNorm(d)
        self.heads = nn.ModuleDict({t: nn.Linear(d, p) for t in data.tasks})

    def forward(self, pairs: torch.Tensor) -> torch.Tensor:
        """Logits [B, T, p] for operand pairs [B, 2]."""
        x = self.encoder(self.embed(pairs) + self.pos)
        out = self.ln_f(x[:, 0])
        return torch.stack([self.heads[t](out) for t in self.tasks], 1)


class MLPModel(nn.Module):
    """P3's two-layer ReLU MLP without biases on one-hot-sum inputs e_a + e_b, one output layer per task."""

    def __init__(self, model: ModelConfig, data: DataConfig) -> None:
        super().__init__()
        self.p, self.tasks = data.p, data.tasks
        self.W_in = nn.Linear(data.p, model.width, bias=False)
        self.heads = nn.ModuleDict({t: nn.Linear(model.width, data.p, bias=False) for t in data.tasks})

    def forward(self, pairs: torch.Tensor) -> torch.Tensor:
        """Outputs [B, T, p] for operand pairs [B, 2]."""
        x = F.one_hot(pairs, self.p).to(self.W_in.weight.dtype).sum(1)
        h = torch.relu(self.W_in(x))
        return torch.stack([self.heads[t](h) for t in self.tasks], 1)


def build_module(model: ModelConfig, data: DataConfig) -> nn.Module:
    """The nn.Module for `model` with PyTorch's default initialisation (seed it with torch.manual_seed)."""
    if model.kind == "trunk":
        return TrunkModel(model, data)
    if model.kind == "mlp":
        return MLPModel(model, data)
    raise ConfigError(f"no nn.Module reference for model kind {model.kind!r}; use trunk or mlp")


def reference_loss(module: nn.Module, pairs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Plain sum over tasks of the per-task loss: cross-entropy (trunk) or mean squared error against
    one-hot targets (MLP), as the papers' scripts compute it."""
    out = module(pairs)
    if isinstance(module, MLPModel):
        onehot = F.one_hot(targets, out.shape[-1]).to(out.dtype)
        return sum(F.mse_loss(out[:, i], onehot[:, i]) for i in range(out.shape[1]))
    return sum(F.cross_entropy(out[:, i], targets[:, i]) for i in range(out.shape[1]))


def _views(module: nn.Module) -> dict[str, tuple[torch.Tensor, bool]]:
    """grokscope name -> (view of the module's tensor, stored transposed?), in `init_params` order."""
    if isinstance(module, MLPModel):
        out = {"mlp.W_in": (module.W_in.weight, True)}
        out.update({f"head.{t}.W": (module.heads[t].weight, True) for t in module.tasks})
        return out
    if not isinstance(module, TrunkModel):
        raise ConfigError(f"not a grokscope reference module: {type(module).__name__}")
    out = {"embed.W_E": (module.embed.weight, False), "embed.W_pos": (module.pos, False)}
    for i, layer in enumerate(module.encoder.layers):
        pre, attn = f"layers.{i}", layer.self_attn
        d = attn.embed_dim
        out[f"{pre}.ln1.w"], out[f"{pre}.ln1.b"] = (layer.norm1.weight, False), (layer.norm1.bias, False)
        for j, m in enumerate("QKV"):
            out[f"{pre}.attn.W_{m}"] = (attn.in_proj_weight[j * d:(j + 1) * d], True)
        out[f"{pre}.attn.W_O"] = (attn.out_proj.weight, True)
        for j, m in enumerate("QKV"):
            out[f"{pre}.attn.b_{m}"] = (attn.in_proj_bias[j * d:(j + 1) * d], False)
        out[f"{pre}.attn.b_O"] = (attn.out_proj.bias, False)
        out[f"{pre}.ln2.w"], out[f"{pre}.ln2.b"] = (layer.norm2.weight, False), (layer.norm2.bias, False)
        for w, b, lin in (("W_in", "b_in", layer.linear1), ("W_out", "b_out", layer.linear2)):
            out[f"{pre}.mlp.{w}"], out[f"{pre}.mlp.{b}"] = (lin.weight, True), (lin.bias, False)
    out["ln_f.w"], out["ln_f.b"] = (module.ln_f.weight, False), (module.ln_f.bias, False)
    for t in module.tasks:
        out[f"head.{t}.W"], out[f"head.{t}.b"] = (module.heads[t].weight, True), (module.heads[t].bias, False)
    return out


def to_params(module: nn.Module) -> Params:
    """The module's weights as grokscope's params dict of one run (no run axis), detached copies."""
    return {k: (v.T if tr else v).detach().clone() for k, (v, tr) in _views(module).items()}


@torch.no_grad()
def load_from_params(module: nn.Module, params: Params) -> nn.Module:
    """Copy grokscope's params of one run (no run axis) into `module`, in place; returns the module."""
    views = _views(module)
    if set(views) != set(params):
        missing, extra = sorted(set(views) - set(params)), sorted(set(params) - set(views))
        raise ConfigError(f"params do not fit the module: missing {missing[:3]}, unexpected {extra[:3]}")
    for k, (v, tr) in views.items():
        src = params[k].T if tr else params[k]
        if src.shape != v.shape:
            raise ConfigError(f"{k}: shape {tuple(params[k].shape)} does not fit the module")
        v.copy_(src)
    return module


def init_module(cfg: RunConfig, device: str | torch.device = "cpu", init: str = "grokscope") -> nn.Module:
    """The run's module on `device`, starting where the batched trainer's run does (init="grokscope": θ₀ by
    the config's own `init` scheme) or from torch's defaults after torch.manual_seed(cfg.seed) (init="torch",
    as the papers' scripts)."""
    if init not in ("grokscope", "torch"):
        raise ConfigError(f"init={init!r}: choose grokscope or torch")
    with torch.random.fork_rng(devices=[]):  # the papers seed the global RNG; keep the caller's intact
        torch.manual_seed(cfg.seed)
        module = build_module(cfg.model, cfg.data)
    if init == "grokscope":
        load_from_params(module, initial_params(cfg.model, cfg.data, cfg.seed, cfg.init))
    return module.to(device)


def make_optimizer(module: nn.Module, cfg: RunConfig) -> torch.optim.Optimizer:
    """torch.optim.AdamW (weight decay on all parameters) or torch.optim.SGD, from `cfg.optim`."""
    o = cfg.optim
    if o.name == "adamw":
        return torch.optim.AdamW(module.parameters(), lr=o.lr, betas=(o.beta1, o.beta2), eps=o.eps,
                                 weight_decay=o.wd)
    return torch.optim.SGD(module.parameters(), lr=o.lr, momentum=o.momentum, weight_decay=o.wd)


def reference_step(module: nn.Module, opt: torch.optim.Optimizer, pairs: torch.Tensor, targets: torch.Tensor,
                   clip: float) -> torch.Tensor:
    """One plain training step: backward, `clip_grad_norm_` (clip > 0), optimiser step; returns the loss."""
    opt.zero_grad(set_to_none=True)
    loss = reference_loss(module, pairs, targets)
    loss.backward()
    if clip > 0:
        nn.utils.clip_grad_norm_(module.parameters(), clip)
    opt.step()
    return loss.detach()


def host_batches(cfg: RunConfig, device: str | torch.device = "cpu") -> Batches:
    """The papers' data feed: `batch` training indices drawn with replacement on the host (sampler "authors":
    the scripts' numpy stream, `np.random.seed(cfg.seed)` + `np.random.randint`; otherwise a CPU torch
    generator seeded with `cfg.seed`), gathered and copied to `device` every step (full batch: the training
    set, copied once). Returns `get(step) -> (pairs [B, 2], targets [B, T])`; draws follow call order."""
    d, device = cfg.data, torch.device(device)
    split = make_split(d.tasks, d.p, d.train_frac, cfg.split_seed, d.zero_excluded, d.unordered, d.split)
    pairs, targets = split.pairs[split.train_idx], split.targets[split.train_idx]
    if cfg.optim.batch is None:
        full = (pairs.to(device), targets.to(device))
        return lambda step: full
    gen = torch.Generator().manual_seed(int(cfg.seed))
    n, batch = len(pairs), cfg.optim.batch
    rng = np.random.RandomState(cfg.seed) if cfg.sampler == "authors" else None

    def get(step: int) -> tuple[torch.Tensor, torch.Tensor]:
        if rng is not None:
            idx = torch.from_numpy(rng.randint(0, n, size=batch).astype(np.int64))
        else:
            idx = torch.randint(n, (batch,), generator=gen, device="cpu")
        return pairs[idx].to(device), targets[idx].to(device)

    return get


@dataclass
class ReferenceResult:
    """One reference run: metrics as grokscope's long table, the loss of every step, final params."""

    config: RunConfig
    metrics: pd.DataFrame
    losses: np.ndarray
    params: Params
    wall_time: float


@torch.no_grad()
def _evaluate(module: nn.Module, pairs: torch.Tensor, targets: torch.Tensor,
              model: ModelConfig) -> tuple[np.ndarray, np.ndarray]:
    """Per-task (loss [T], acc [T]) over a whole split."""
    out = module(pairs)
    loss = M.per_task_loss(out[None], targets[None], model)[0]
    acc = (out.argmax(-1) == targets).double().mean(0)
    return loss.cpu().numpy(), acc.cpu().numpy()


def reference_train(cfg: RunConfig, steps: int | None = None, device: str | torch.device = "cpu", *,
                    eval_every: int | None = None, batches: Batches | None = None,
                    init: str = "grokscope") -> ReferenceResult:
    """Train one run the plain per-run way: nn.Module + torch.optim + clip_grad_norm_, minibatches drawn
    with replacement on the host (a CPU generator seeded by `cfg.seed`) and moved to `device` each step.

    `steps` defaults to `cfg.steps`; `eval_every` (default `cfg.eval_every`, 0 = only at the end) sets how
    often the train/test metrics are computed; `batches(step) -> (pairs [B, 2], targets [B, T])` replaces
    the host sampler (tests feed it grokscope's own minibatches); `init` is "grokscope" (start from
    `model.init_params(..., cfg.seed)`) or "torch" (torch.manual_seed(cfg.seed) and the modules' defaults).
    """
    validate(cfg)
    steps = cfg.steps if steps is None else steps
    eval_every = cfg.eval_every if eval_every is None else eval_every
    device = torch.device(device)
    d = cfg.data
    module = init_module(cfg, device, init)
    opt = make_optimizer(module, cfg)

    split = make_split(d.tasks, d.p, d.train_frac, cfg.split_seed, d.zero_excluded, d.unordered, d.split)
    evals = {name: (split.pairs[idx].to(device), split.targets[idx].to(device))
             for name, idx in (("train", split.train_idx), ("test", split.test_idx))}
    get = batches or host_batches(cfg, device)
    rows: list[dict] = []

    def log(step: int) -> None:
        norm = float(torch.sqrt(sum(p.detach().pow(2).sum() for p in module.parameters())))
        for split_name, (x, y) in evals.items():
            loss, acc = _evaluate(module, x, y, cfg.model)
            for ti, task in enumerate(d.tasks):
                rows.append({"run": cfg.name, "step": step, "task": task, "split": split_name,
                             "loss": float(loss[ti]), "acc": float(acc[ti]), "weight_norm": norm})

    losses = []
    t0 = time.perf_counter()
    for step in range(steps):
        if eval_every and step % eval_every == 0:
            log(step)
        pairs, targets = get(step)
        losses.append(reference_step(module, opt, pairs, targets, cfg.optim.clip))
    log(steps)
    wall = time.perf_counter() - t0
    loss_arr = torch.stack(losses).cpu().numpy() if losses else np.zeros(0)
    params = {k: v.cpu() for k, v in to_params(module).items()}
    return ReferenceResult(cfg, pd.DataFrame(rows), loss_arr, params, wall)
