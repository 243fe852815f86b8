"""Progress measures of a stored run (Nanda et al. 2023, arXiv 2301.05217), per snapshot and per task.

At each stored snapshot and for each task that is a group operation (`geometry.fourier.group_map`):
- the token embedding's Fourier norm per frequency over the task's group (Z_p for add/sub, Z_p^* for mul/div);
- the key frequencies, two sets, labelled: `causal` from that snapshot's embedding alone (usable in a live
  detector), and `final` from the run's last snapshot (the paper's choice: the key set of the trained model);
- restricted loss (logits keep the constant and the key frequencies' cos/sin(w_k(a ± b)) components) on all
  pairs, train and test, as the paper and its demo; excluded loss (those components removed) on the training
  pairs, as the paper;
- the Gini coefficient of the Fourier norms (frequencies 1..n//2, the constant excluded).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch

from grokscope.config import EXTERNAL, RunConfig
from grokscope.data.tasks import OPERATIONS, all_pairs, make_split
from grokscope.errors import ConfigError, NotApplicable
from grokscope.formatting import num
from grokscope.geometry.checkpoints import select_snapshots
from grokscope.geometry.fourier import (
    KEY_RATIO,
    cross_entropy,
    frequency_norms,
    gini,
    group_embedding,
    group_map,
    key_frequencies,
    restricted_excluded,
)
from grokscope.geometry.onset import posthoc_indices
from grokscope.store import RunDir
from grokscope.training import model as M

EVALUATED_ON = {"restricted_loss": "all pairs (train and test)", "excluded_loss": "training pairs"}
Logits = Callable[[M.Params, torch.Tensor], torch.Tensor]  # (params, pairs [N, 2]) -> logits [N, p]


@dataclass(frozen=True)
class Embedding:
    """Where a model that grokscope did not build keeps its token embedding (a run recorded by grokscope.Monitor):
    the parameter's name as the monitor recorded it, the modulus p (tokens 0..p-1 are the operands), and the
    axis of that tensor that indexes tokens (0: an `nn.Embedding` or W_E [vocab, d]; 1: a Linear acting on one-hot
    inputs [d, vocab], whose first p columns are the first operand's). With `logits` (params by recorded name,
    operand pairs [N, 2]) -> [N, p] and the training pairs, the restricted and excluded losses are measured too."""

    name: str
    p: int
    token_axis: int = 0
    logits: Logits | None = None
    train_pairs: torch.Tensor | None = None

    def rows(self, params: M.Params) -> torch.Tensor:
        """The p operand tokens' rows [p, d] of the recorded tensor."""
        W = params[self.name]
        return W.movedim(self.token_axis, 0).reshape(W.shape[self.token_axis], -1)[: self.p]


def token_embedding(params: M.Params, cfg: RunConfig) -> torch.Tensor:
    """The p token rows of the model's input embedding [p, d] (embed.W_E; the MLP's W_in acts on one-hots)."""
    for name in ("embed.W_E", "mlp.W_in"):
        if name in params:
            return params[name][: cfg.data.p]
    raise NotApplicable(f"model kind {cfg.model.kind!r} has no token embedding: progress measures do not apply")


def check_applicable(cfg: RunConfig, tasks: tuple[str, ...] | None = None,
                     embedding: Embedding | None = None) -> tuple[str, ...]:
    """The tasks progress measures describe in this run (all of `tasks`, default every task); else NotApplicable.
    A monitored run needs its token embedding named (`embedding`); its task names are the user's labels, so
    `tasks` there names the operations to read the embedding as."""
    if cfg.model.kind == EXTERNAL:
        if embedding is None:
            raise NotApplicable("a run recorded by grokscope.Monitor holds the user's model, whose token embedding "
                                "grokscope does not know: name it (embedding=, --embedding NAME) and the modulus "
                                "(modulus=, --modulus P)")
        tasks = tuple(tasks or cfg.data.tasks)
        for t in tasks:
            group_map(t, embedding.p)
        return tasks
    if cfg.model.kind not in ("trunk", "transformer1", "mlp"):
        raise NotApplicable(f"model kind {cfg.model.kind!r} has no token embedding: progress measures do not apply")
    tasks = tuple(tasks or cfg.data.tasks)
    for t in tasks:
        if t not in cfg.data.tasks:
            raise NotApplicable(f"task {t!r} is not one of this run's tasks ({', '.join(cfg.data.tasks)})")
        group_map(t, cfg.data.p)  # raises for a task that is not a group operation
    return tasks


def _loss(logits: torch.Tensor, targets: torch.Tensor, cfg: RunConfig) -> float:
    """The run's own loss (cross-entropy; the MLP's squared error) of logits [N, p]; a monitored run's:
    cross-entropy (the paper's)."""
    if cfg.model.kind == "mlp":
        return float(M.per_task_loss(logits[None, :, None], targets[None, :, None], cfg.model)[0, 0])
    return cross_entropy(logits, targets)


def measures(embed: torch.Tensor, logits: torch.Tensor | None, cfg: RunConfig, task: str, p: int,
             pairs: torch.Tensor, targets: torch.Tensor, train: torch.Tensor, final_keys: list[int] | None,
             ratio: float = KEY_RATIO) -> dict[str, Any]:
    """One snapshot's progress measures for one task from its token rows `embed` [p, d] and, if given, its logits
    [N, p] on `pairs` [N, 2] with this task's `targets` [N] (`train` a bool mask of the training pairs): Fourier
    norms, Gini and the causal key set always; with logits the losses, restricted and excluded."""
    gm = group_map(task, p)
    norms = frequency_norms(group_embedding(embed, gm), gm.n)
    row: dict[str, Any] = {"task": task, "n_group": gm.n, "fourier_norms": norms.tolist(), "gini": gini(norms),
                           "key_causal": key_frequencies(norms, ratio), "key_final": final_keys}
    if logits is None:
        return row
    logits = logits.to(torch.float64)
    ia, ib = gm.index[pairs[:, 0]], gm.index[pairs[:, 1]]
    ok = (ia >= 0) & (ib >= 0)  # pairs inside the group (mul/div: neither operand 0)
    elements = (ia + gm.sign * ib) % gm.n
    row["train_loss"] = _loss(logits[train], targets[train], cfg)
    row["test_loss"] = _loss(logits[~train], targets[~train], cfg) if (~train).any() else None
    for label, keys in (("causal", row["key_causal"]), ("final", final_keys)):
        if keys is None:
            continue
        restricted, excluded = restricted_excluded(logits[ok], elements[ok], gm.n, keys)
        row[f"restricted_loss_{label}"] = _loss(restricted, targets[ok], cfg)
        tr = train[ok]
        row[f"excluded_loss_{label}"] = _loss(excluded[tr], targets[ok][tr], cfg)
    return row


def snapshot_measures(params: M.Params, cfg: RunConfig, task: str, pairs: torch.Tensor, targets: torch.Tensor,
                      train: torch.Tensor, final_keys: list[int] | None,
                      ratio: float = KEY_RATIO) -> dict[str, Any]:
    """One snapshot's progress measures for one task of a grokscope run: params without run axis, pairs [N, 2]
    and this task's targets [N] over the run's whole table, `train` a bool mask of the training pairs."""
    batched = {k: v[None] for k, v in params.items()}
    with torch.no_grad():
        logits = M.forward(batched, pairs[None], cfg.model, cfg.data)[0, :, cfg.data.tasks.index(task)]
    return measures(token_embedding(params, cfg), logits, cfg, task, cfg.data.p, pairs, targets, train, final_keys,
                    ratio)


@dataclass(frozen=True)
class _Reader:
    """How one run's snapshots turn into progress measures: p, the token rows and logits of a snapshot, the pairs
    the logits are taken on, each task's targets there and the training mask."""

    p: int
    embed: Callable[[M.Params], torch.Tensor]
    logits: Callable[[M.Params, str], torch.Tensor] | None
    pairs: torch.Tensor
    targets: Callable[[str], torch.Tensor]
    train: torch.Tensor


def _grokscope_reader(cfg: RunConfig) -> _Reader:
    d = cfg.data
    split = make_split(d.tasks, d.p, d.train_frac, cfg.split_seed, d.zero_excluded, d.unordered, d.split)
    train = torch.zeros(len(split.pairs), dtype=torch.bool, device="cpu")
    train[split.train_idx] = True

    def logits(params: M.Params, task: str) -> torch.Tensor:
        batched = {k: v[None] for k, v in params.items()}
        with torch.no_grad():
            return M.forward(batched, split.pairs[None], cfg.model, cfg.data)[0, :, d.tasks.index(task)]

    return _Reader(d.p, lambda params: token_embedding(params, cfg), logits, split.pairs,
                   lambda task: split.targets[:, d.tasks.index(task)], train)


def _external_reader(run: RunDir, snaps: dict[str, torch.Tensor], emb: Embedding) -> _Reader:
    if emb.name not in snaps:
        raise ConfigError(f"embedding={emb.name!r} is not among the parameters {run.path.name} recorded "
                          f"({', '.join(list(snaps)[:4])}{', ...' if len(snaps) > 4 else ''})")
    shape = tuple(snaps[emb.name].shape[1:])
    if not -len(shape) <= emb.token_axis < len(shape) or shape[emb.token_axis] < emb.p:
        raise ConfigError(f"embedding={emb.name!r} of shape {list(shape)} has no axis {emb.token_axis} of >= "
                          f"modulus {emb.p} tokens (token_axis, --token-axis: 0 rows, 1 columns)")
    pairs = all_pairs(emb.p, exclude_zero=False)
    train = torch.zeros(len(pairs), dtype=torch.bool)
    if emb.train_pairs is not None:
        tp = torch.as_tensor(emb.train_pairs, dtype=torch.int64)
        train[tp[:, 0] * emb.p + tp[:, 1]] = True  # all_pairs(p) is row-major: (a, b) at a·p + b

    def targets(task: str) -> torch.Tensor:
        return OPERATIONS[task].fn(pairs[:, 0], pairs[:, 1], emb.p)

    def logits(params: M.Params, task: str) -> torch.Tensor:
        with torch.no_grad():
            return emb.logits(params, pairs)

    has_losses = emb.logits is not None and emb.train_pairs is not None
    return _Reader(emb.p, emb.rows, logits if has_losses else None, pairs, targets, train)


def progress_table(run: RunDir, tasks: tuple[str, ...] | None = None, max_points: int = 120,
                   ratio: float = KEY_RATIO, embedding: Embedding | None = None) -> pd.DataFrame:
    """Progress measures at ≤ `max_points` stored snapshots (as the defect analysis picks them), one row per
    snapshot and task; both key sets (`key_causal`, `key_final`) with their restricted and excluded losses. A run
    recorded by grokscope.Monitor needs `embedding` (`Embedding`); without its logits and training pairs only the
    embedding's measures (Fourier norms, Gini, key sets) are there."""
    cfg = run.config()
    tasks = check_applicable(cfg, tasks, embedding)
    steps, snaps = run.snapshots()
    if len(steps) == 0:
        raise NotApplicable(f"{run.path} has no parameter snapshots")
    if cfg.model.kind == EXTERNAL:
        reader = _external_reader(run, snaps, embedding)
    else:
        token_embedding({k: v[0] for k, v in snaps.items()}, cfg)
        reader = _grokscope_reader(cfg)
    which = select_snapshots(cfg, steps.numpy(), max_points, posthoc_indices)
    last = {k: v[-1].double() for k, v in snaps.items()}
    rows = []
    for task in tasks:
        gm = group_map(task, reader.p)
        final = key_frequencies(frequency_norms(group_embedding(reader.embed(last), gm), gm.n), ratio)
        for i in which:
            params = {k: v[int(i)].double() for k, v in snaps.items()}
            logits = reader.logits(params, task) if reader.logits is not None else None
            row = measures(reader.embed(params), logits, cfg, task, reader.p, reader.pairs, reader.targets(task),
                           reader.train, final, ratio)
            rows.append({"step": int(steps[int(i)]), **row})
    return pd.DataFrame(rows)


def _first_step(steps: np.ndarray, hit: np.ndarray) -> int | None:
    """The first step where `hit` holds (None if never)."""
    idx = np.flatnonzero(hit)
    return int(steps[idx[0]]) if len(idx) else None


def summarize_progress(df: pd.DataFrame) -> dict[str, Any]:
    """Per task: the final key set, Gini first/last/max, the excluded loss's peak step and the restricted loss's
    minimum (both with the end-of-run key set), and where each is evaluated. Measures without logits (a monitored
    run analysed without its model) have no losses: `losses` says so and their fields are None."""
    losses = "excluded_loss_final" in df
    out: dict[str, Any] = {"evaluated_on": EVALUATED_ON, "key_ratio": KEY_RATIO, "tasks": {}}
    if not losses:
        out["losses"] = ("not measured: the restricted and excluded losses need the model's logits and the training "
                         "pairs (Python API: embedding=Embedding(..., logits=, train_pairs=))")
    for task, g in df.groupby("task", sort=False):
        g = g.sort_values("step")
        steps = g["step"].to_numpy()
        row: dict[str, Any] = {
            "key_final": [int(k) for k in g["key_final"].iloc[-1]],
            "key_causal_last": [int(k) for k in g["key_causal"].iloc[-1]],
            "gini_first": num(g["gini"].iloc[0]), "gini_last": num(g["gini"].iloc[-1]),
            "excluded_loss_peak_step": None, "restricted_loss_min_step": None,
            "restricted_loss_last": None, "excluded_loss_last": None,
            "n_snapshots": len(g),
            "first_causal_key_step": _first_step(steps, np.array([len(k) > 0 for k in g["key_causal"]]))}
        if losses:
            exc, res = g["excluded_loss_final"].to_numpy(float), g["restricted_loss_final"].to_numpy(float)
            row.update(excluded_loss_peak_step=int(steps[np.nanargmax(exc)]),
                       restricted_loss_min_step=int(steps[np.nanargmin(res)]),
                       restricted_loss_last=num(res[-1]), excluded_loss_last=num(exc[-1]))
        out["tasks"][task] = row
    return out
