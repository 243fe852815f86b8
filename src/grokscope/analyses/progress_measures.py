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

from typing import Any

import numpy as np
import pandas as pd
import torch

from grokscope.config import EXTERNAL, RunConfig
from grokscope.data.tasks import make_split
from grokscope.errors import NotApplicable
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


def token_embedding(params: M.Params, cfg: RunConfig) -> torch.Tensor:
    """The p token rows of the model's input embedding [p, d] (embed.W_E; the MLP's W_in acts on one-hots)."""
    for name in ("embed.W_E", "mlp.W_in"):
        if name in params:
            return params[name][: cfg.data.p]
    raise NotApplicable(f"model kind {cfg.model.kind!r} has no token embedding: progress measures do not apply")


def check_applicable(cfg: RunConfig, tasks: tuple[str, ...] | None = None) -> tuple[str, ...]:
    """The tasks progress measures describe in this run (all of `tasks`, default every task); else NotApplicable."""
    if cfg.model.kind == EXTERNAL:
        raise NotApplicable("a run recorded by grokscope.Monitor holds the user's model, which grokscope cannot "
                            "run and whose token embedding it does not know: progress measures do not apply")
    if cfg.model.kind not in ("trunk", "transformer1", "mlp"):
        raise NotApplicable(f"model kind {cfg.model.kind!r} has no token embedding: progress measures do not apply")
    tasks = tuple(tasks or cfg.data.tasks)
    for t in tasks:
        if t not in cfg.data.tasks:
            raise NotApplicable(f"task {t!r} is not one of this run's tasks ({', '.join(cfg.data.tasks)})")
        group_map(t, cfg.data.p)  # raises for a task that is not a group operation
    return tasks


def _loss(logits: torch.Tensor, targets: torch.Tensor, cfg: RunConfig) -> float:
    """The run's own loss (cross-entropy; the MLP's squared error) of logits [N, p]."""
    if cfg.model.kind == "mlp":
        return float(M.per_task_loss(logits[None, :, None], targets[None, :, None], cfg.model)[0, 0])
    return cross_entropy(logits, targets)


def snapshot_measures(params: M.Params, cfg: RunConfig, task: str, pairs: torch.Tensor, targets: torch.Tensor,
                      train: torch.Tensor, final_keys: list[int] | None,
                      ratio: float = KEY_RATIO) -> dict[str, Any]:
    """One snapshot's progress measures for one task: params without run axis, pairs [N, 2] and this task's
    targets [N] over the run's whole table, `train` a bool mask of the training pairs."""
    p = cfg.data.p
    gm = group_map(task, p)
    ti = cfg.data.tasks.index(task)
    norms = frequency_norms(group_embedding(token_embedding(params, cfg), gm), gm.n)
    causal = key_frequencies(norms, ratio)
    batched = {k: v[None] for k, v in params.items()}
    with torch.no_grad():
        logits = M.forward(batched, pairs[None], cfg.model, cfg.data)[0, :, ti].to(torch.float64)
    ia, ib = gm.index[pairs[:, 0]], gm.index[pairs[:, 1]]
    ok = (ia >= 0) & (ib >= 0)  # pairs inside the group (mul/div: neither operand 0)
    elements = (ia + gm.sign * ib) % gm.n
    row: dict[str, Any] = {"task": task, "n_group": gm.n, "fourier_norms": norms.tolist(), "gini": gini(norms),
                           "key_causal": causal, "key_final": final_keys,
                           "train_loss": _loss(logits[train], targets[train], cfg),
                           "test_loss": _loss(logits[~train], targets[~train], cfg) if (~train).any() else None}
    for label, keys in (("causal", causal), ("final", final_keys)):
        if keys is None:
            continue
        restricted, excluded = restricted_excluded(logits[ok], elements[ok], gm.n, keys)
        row[f"restricted_loss_{label}"] = _loss(restricted, targets[ok], cfg)
        tr = train[ok]
        row[f"excluded_loss_{label}"] = _loss(excluded[tr], targets[ok][tr], cfg)
    return row


def progress_table(run: RunDir, tasks: tuple[str, ...] | None = None, max_points: int = 120,
                   ratio: float = KEY_RATIO) -> pd.DataFrame:
    """Progress measures at ≤ `max_points` stored snapshots (as the defect analysis picks them), one row per
    snapshot and task; both key sets (`key_causal`, `key_final`) with their restricted and excluded losses."""
    cfg = run.config()
    tasks = check_applicable(cfg, tasks)
    steps, snaps = run.snapshots()
    if len(steps) == 0:
        raise NotApplicable(f"{run.path} has no parameter snapshots")
    token_embedding({k: v[0] for k, v in snaps.items()}, cfg)
    which = select_snapshots(cfg, steps.numpy(), max_points, posthoc_indices)
    d = cfg.data
    split = make_split(d.tasks, d.p, d.train_frac, cfg.split_seed, d.zero_excluded, d.unordered, d.split)
    train = torch.zeros(len(split.pairs), dtype=torch.bool, device="cpu")
    train[split.train_idx] = True
    last = {k: v[-1].double() for k, v in snaps.items()}
    rows = []
    for task in tasks:
        gm = group_map(task, d.p)
        final = key_frequencies(frequency_norms(group_embedding(token_embedding(last, cfg), gm), gm.n), ratio)
        targets = split.targets[:, d.tasks.index(task)]
        for i in which:
            params = {k: v[int(i)].double() for k, v in snaps.items()}
            row = snapshot_measures(params, cfg, task, split.pairs, targets, train, final, ratio)
            rows.append({"step": int(steps[int(i)]), **row})
    return pd.DataFrame(rows)


def _first_step(steps: np.ndarray, hit: np.ndarray) -> int | None:
    """The first step where `hit` holds (None if never)."""
    idx = np.flatnonzero(hit)
    return int(steps[idx[0]]) if len(idx) else None


def summarize_progress(df: pd.DataFrame) -> dict[str, Any]:
    """Per task: the final key set, Gini first/last/max, the excluded loss's peak step and the restricted loss's
    minimum (both with the end-of-run key set), and where each is evaluated."""
    out: dict[str, Any] = {"evaluated_on": EVALUATED_ON, "key_ratio": KEY_RATIO, "tasks": {}}
    for task, g in df.groupby("task", sort=False):
        g = g.sort_values("step")
        steps = g["step"].to_numpy()
        exc, res = g["excluded_loss_final"].to_numpy(float), g["restricted_loss_final"].to_numpy(float)
        out["tasks"][task] = {
            "key_final": [int(k) for k in g["key_final"].iloc[-1]],
            "key_causal_last": [int(k) for k in g["key_causal"].iloc[-1]],
            "gini_first": num(g["gini"].iloc[0]), "gini_last": num(g["gini"].iloc[-1]),
            "excluded_loss_peak_step": int(steps[np.nanargmax(exc)]),
            "restricted_loss_min_step": int(steps[np.nanargmin(res)]),
            "restricted_loss_last": num(res[-1]), "excluded_loss_last": num(exc[-1]),
            "n_snapshots": len(g),
            "first_causal_key_step": _first_step(steps, np.array([len(k) > 0 for k in g["key_causal"]]))}
    return out
