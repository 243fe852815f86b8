"""grokscope's memory model of a batched program: what one run of a shape costs on a device (parameters, optimiser
state, activations), how much memory a device offers, and the chunk sizes that follow (evaluation rows, commutator
draws per chunk; kept as measured on the CPU, sized from free memory on a GPU). The sweep packs batches by it; the
trainer and the geometry size their chunks by it."""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING

import torch

from grokscope.config import RunConfig
from grokscope.training import model as M

if TYPE_CHECKING:
    from grokscope.training.problem import Problem

__all__ = ["CPU_MAX_RUNS", "EVAL_CHUNK", "act_floats", "run_bytes", "device_budget", "memory_budget", "program_runs",
           "fit_runs", "eval_chunk", "defect_chunk", "host_budget", "host_bytes", "out_of_memory"]

CPU_MAX_RUNS = 64  # generous cap on CPU: beyond this a batch gains nothing but latency
GPU_FALLBACK_BYTES = 16 << 30  # device memory assumed when the driver cannot see the GPU (Ray clusters)
MEMORY_FRACTION = 0.8  # share of free device memory a batch may plan for
EVAL_CHUNK = 1 << 16  # pairs of evaluation activations a GPU batch reserves memory for (see eval_chunk)
EVAL_ROWS_CPU = 1 << 13  # rows per evaluation chunk on the CPU: activations stay in cache (1.5x faster than 65536)
DEFECT_ROWS_CPU = 4  # rows per commutator-defect chunk on the CPU (P1, 18 runs x 9 draws: 1.5x less CPU time)
ELEMENT_LIMIT = 2**31 - 1  # elements of one tensor: many CUDA kernels index with 32-bit offsets



_PARAM_COUNTS: dict[str, int] = {}


def _param_count(cfg: RunConfig) -> int:
    """Parameters of one run (built once per shape on the CPU)."""
    key = json.dumps([cfg.model.__dict__, cfg.data.tasks, cfg.data.p])
    if key not in _PARAM_COUNTS:
        _PARAM_COUNTS[key] = M.count_params(M.init_params(cfg.model, cfg.data, 0), batched=False)
    return _PARAM_COUNTS[key]


def _n_pairs(cfg: RunConfig) -> int:
    d = cfg.data
    n = d.p - 1 if d.zero_excluded else d.p
    return n * (n + 1) // 2 if d.unordered else n * n


def act_floats(cfg: RunConfig) -> int:
    """Floats of activations one example keeps for backward (a generous count: residual stream, layer
    norms, Q/K/V, attention scores, MLP hidden before/after GELU, per-task logits and softmax)."""
    m, d = cfg.model, cfg.data
    heads = len(d.tasks) * d.p * 3
    if m.kind == "mlp":
        return d.p + 2 * m.width + heads
    tokens = 3 if m.kind == "transformer1" else 2
    per_layer = tokens * (10 * m.d_model + 3 * m.d_ff + 2 * m.n_heads * tokens)
    return tokens * m.d_model * 2 + m.n_layers * per_layer + heads


def widest_floats(cfg: RunConfig) -> int:
    """Floats of the widest single activation tensor per example (hidden layer, Q/K/V, per-task logits)."""
    m, d = cfg.model, cfg.data
    logits = len(d.tasks) * d.p
    if m.kind == "mlp":
        return max(m.width, logits, d.p)
    tokens = 3 if m.kind == "transformer1" else 2
    return max(tokens * max(m.d_ff, 3 * m.d_model), logits, m.n_heads * tokens * tokens)


def program_runs(cfg: RunConfig) -> int:
    """Runs one batched program can hold whatever the memory: its largest tensors (the flat [R, P] parameter,
    gradient and moment buffers, the minibatch's widest activation [R, B, ...]) stay within `ELEMENT_LIMIT`."""
    n_train = max(1, round(_n_pairs(cfg) * cfg.data.train_frac))
    per_run = max(_param_count(cfg), (cfg.optim.batch or n_train) * widest_floats(cfg))
    return max(1, ELEMENT_LIMIT // per_run)


def run_bytes(cfg: RunConfig) -> int:
    """Device bytes one run adds to a batch: parameters, gradients, two Adam moments, a Grokfast filter's
    buffer (EMA: one vector, MA: `window` of them), and the minibatch's activations (×2 for their gradients),
    in float32."""
    n_train = max(1, round(_n_pairs(cfg) * cfg.data.train_frac))
    batch = cfg.optim.batch or n_train
    filt = {"ema": 1, "ma": cfg.method.window}.get(cfg.method.grad_filter or "", 0)
    return 4 * ((4 + filt) * _param_count(cfg) + 2 * batch * act_floats(cfg))


def host_bytes(cfg: RunConfig) -> int:
    """Host bytes one run holds while training: the full snapshots and attention matrices recorded since its
    last checkpoint (a sweep stores its runs, and the trainer writes those records out as one trajectory
    segment at every checkpoint), so a long budget costs no more than `checkpoint_every` steps of records."""
    P = _param_count(cfg)
    attn = 0
    if cfg.model.kind != "mlp":
        attn = len(M.attention_names(cfg.model)) * cfg.model.d_model ** 2
    window = min(cfg.steps, cfg.checkpoint_every)
    snaps = min(cfg.max_snapshots, window // cfg.snapshot_every + 2)
    return 4 * (snaps * P + (window // cfg.attn_every + 1) * attn)


def device_budget(device: str) -> tuple[int | None, int]:
    """(bytes a batch may use on the device, or None for the CPU; the run cap before `program_runs`)."""
    if device.startswith("cuda"):
        if torch.cuda.is_available():
            free, _ = torch.cuda.mem_get_info(torch.device(device))
            return int(free * MEMORY_FRACTION), 1 << 30
        return int(GPU_FALLBACK_BYTES * MEMORY_FRACTION), 1 << 30
    return None, CPU_MAX_RUNS


def memory_budget(device: str | torch.device) -> int | None:
    """Bytes of free device memory one program may plan for now (`MEMORY_FRACTION` of the free memory); None on the
    CPU (and the meta device), where chunks keep their cache-sized defaults."""
    d = torch.device(device)
    if d.type == "cuda" and torch.cuda.is_available():
        free, _ = torch.cuda.mem_get_info(d)
        return int(free * MEMORY_FRACTION)
    return None


def eval_chunk(cfg: RunConfig, device: str | torch.device, itemsize: int = 4) -> int:
    """Rows (examples of all runs together) per evaluation chunk: `EVAL_ROWS_CPU` on the CPU; on a GPU as many as
    the free memory holds activations for (`act_floats` per row), at least that, at most `ELEMENT_LIMIT` floats in
    the widest activation."""
    mem = memory_budget(device)
    if mem is None:
        return EVAL_ROWS_CPU
    rows = mem // (itemsize * act_floats(cfg))
    return int(max(EVAL_ROWS_CPU, min(rows, ELEMENT_LIMIT // widest_floats(cfg))))


def defect_chunk(cfg: RunConfig, device: str | torch.device, batch: int, itemsize: int = 4) -> int:
    """Rows (runs x draws) per chunk of the batched commutator defect: `DEFECT_ROWS_CPU` on the CPU; on a GPU as many
    as the free memory holds, each row costing two gradient calls' activations (and their gradients) over 2 x `batch`
    examples plus a few parameter-sized buffers."""
    mem = memory_budget(device)
    if mem is None:
        return DEFECT_ROWS_CPU
    per_row = itemsize * 2 * (2 * batch * act_floats(cfg) + 6 * _param_count(cfg))
    return int(max(DEFECT_ROWS_CPU, min(mem // per_row, ELEMENT_LIMIT // (2 * batch * widest_floats(cfg)))))


def fit_runs(cfg: RunConfig, device: str | torch.device) -> int | None:
    """Runs shaped like `cfg` that fit the whole device by this module's memory model (total memory, not what is
    free now: what an out-of-memory message suggests); None off CUDA."""
    d = torch.device(device)
    if d.type != "cuda" or not torch.cuda.is_available():
        return None
    total = torch.cuda.get_device_properties(d).total_memory
    fixed = 4 * EVAL_CHUNK * act_floats(cfg)
    return int(max(1, min(program_runs(cfg), (total * MEMORY_FRACTION - fixed) // run_bytes(cfg))))


def host_budget() -> int:
    try:
        return int(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") * 0.5)
    except (ValueError, OSError, AttributeError):
        return 1 << 62


def out_of_memory(err: BaseException, problem: Problem) -> torch.OutOfMemoryError:
    """The device's out-of-memory error, said as one: what the batch held and how many runs of this shape
    grokscope's memory model says fit the whole device (`training.memory.fit_runs`)."""
    cfg = problem.cfgs[0]
    fit = fit_runs(cfg, str(problem.device))
    hint = f"about {fit} runs of this shape fit per batch" if fit is not None else "try fewer runs per batch"
    first = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
    return torch.OutOfMemoryError(
        f"out of memory on {problem.device} training {problem.R} runs per batch (minibatch {problem.batch}, "
        f"{problem.n_train} training pairs): {hint} (sweep --max-runs, or fewer runs / a smaller --batch); {first}")
