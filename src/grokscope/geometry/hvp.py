"""Hessian-vector products of the training loss: the operator the curvature algorithms act on.

A Hessian-vector product of the *summed* loss over R independent runs is each run's own HVP, so many
checkpoints of one run, many runs, or one checkpoint under several losses (total, each task) become one
batched operator on the run axis (see `grokscope.geometry.krylov` for the algorithms).
"""

from __future__ import annotations

import torch

from grokscope.geometry.krylov import MatVec
from grokscope.training import model as M
from grokscope.training.problem import Params, Problem

__all__ = ["SAMPLE_SALT", "hessian_sample", "loss_weights", "weighted_loss", "make_hvp"]

SAMPLE_SALT = 7  # the fixed draw of training examples the curvature is measured on


def hessian_sample(problem: Problem, n_samples: int = 512,
                   salt: int = SAMPLE_SALT) -> tuple[torch.Tensor, torch.Tensor]:
    """The fixed training sample the curvature is measured on: pairs [R, n, 2], targets [R, n, T].
    The whole training split when it has at most `n_samples` examples, else the seeded draw
    `problem.minibatch(step=0, salt=salt, batch=n_samples)` (with replacement, as training batches);
    another `salt` (> 0) gives another, independent sample."""
    if n_samples >= problem.n_train:
        return problem.split("train")
    return problem.minibatch(step=0, salt=salt, batch=n_samples)


def loss_weights(tasks: tuple[str, ...], loss: str) -> torch.Tensor:
    """Task weights [T] that select a loss: 'total' = plain sum of task losses, a task name = that
    task's loss alone (one-hot)."""
    if loss == "total":
        return torch.ones(len(tasks), device="cpu")
    if loss not in tasks:
        raise ValueError(f"unknown loss {loss!r}; choose 'total' or one of {', '.join(tasks)}")
    return torch.eye(len(tasks), device="cpu")[tasks.index(loss)]


def weighted_loss(problem: Problem, params: Params, pairs: torch.Tensor, targets: torch.Tensor,
                  task_weights: torch.Tensor | None = None) -> torch.Tensor:
    """Per-run loss [R]; `task_weights` is None (sum of tasks), [T] (as `Problem.loss`) or [R, T]
    (each run its own weighting, so several losses of one checkpoint batch on the run axis)."""
    if task_weights is None or task_weights.dim() == 1:
        return problem.loss(params, pairs, targets, task_weights)
    per_task = problem.per_task_loss(M.forward(params, pairs, problem.model, problem.data), targets)
    return (per_task * task_weights.to(per_task)).sum(-1)


def make_hvp(problem: Problem, params: Params, pairs: torch.Tensor, targets: torch.Tensor,
             task_weights: torch.Tensor | None = None, mode: str = "rev") -> MatVec:
    """Flat Hessian-vector product v [R, P] -> H_r v_r of each run's loss at `params` (layout of
    `model.flatten`). mode 'rev' = reverse over reverse: the gradient's graph is built once (forward and
    first backward, kept) and each product is one backward pass through it, (∂g/∂θ)ᵀ v = H v;
    'fwd' = jvp of grad (same numbers, the whole graph per product; ~2.4x slower on CPU for the P1 trunk)."""
    if mode not in ("rev", "fwd"):
        raise ValueError(f"mode must be 'rev' or 'fwd', not {mode!r}")
    params = {k: v.detach() for k, v in params.items()}
    dtype = next(iter(params.values())).dtype

    def total(p: Params) -> torch.Tensor:
        return weighted_loss(problem, p, pairs, targets, task_weights).sum()

    if mode == "fwd":
        grad = torch.func.grad(total)

        def forward_over_reverse(v: torch.Tensor) -> torch.Tensor:
            vd = M.unflatten(v.to(dtype), params)
            return M.flatten(torch.func.jvp(grad, (params,), (vd,))[1]).detach()

        return forward_over_reverse

    leaves = {k: v.clone().requires_grad_() for k, v in params.items()}
    with torch.enable_grad():
        g = torch.autograd.grad(total(leaves), list(leaves.values()), create_graph=True, materialize_grads=True)
    live = [i for i, gi in enumerate(g) if gi.requires_grad]  # a constant gradient adds nothing to H v

    def reverse_over_reverse(v: torch.Tensor) -> torch.Tensor:
        vd = list(M.unflatten(v.to(dtype), params).values())
        with torch.enable_grad():
            hv = torch.autograd.grad([g[i] for i in live], list(leaves.values()), grad_outputs=[vd[i] for i in live],
                                     retain_graph=True, materialize_grads=True)  # unreached parameters: 0
        return torch.cat([h.flatten(1) for h in hv], 1)

    return reverse_over_reverse
