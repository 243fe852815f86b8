"""Gradient interventions during training (docs/papers.md §4) as gradient transforms for `train(grad_transform=...)`.

The trainer calls `transform(step, params, grads) -> grads` after clipping and before the optimiser step.
Gradients are flattened in `model.flatten`'s layout ([R, P]); a basis is shared [P, K] or per run
[R, P, K] with orthonormal columns. With g∥ = B Bᵀ g and g⊥ = g − g∥:

- suppression (P2): g → g∥ + (1 − s)·g⊥, with the execution basis (K = 16);
- orthogonal deletion (P1): g → g − f·g⊥, with the top-20 uncentred trajectory PCs of the base run.
  Both are the same map g − a·g⊥ (a = s or f), exactly as the authors' `project_gradient(B, strength)`;
  they differ in the basis and in the amounts scanned.
- random-basis controls: the same map with `pca.random_basis` of equal rank;
- kicks along the commutator direction δ̂ = δ/‖δ‖ (δ = θ_AB − θ_BA from `commutator.commutator_defect`) every
  N steps, and equal-size random kicks.

**Kicks are parameter displacements, not gradient edits.** Under AdamW a vector added to the gradient is
rescaled per coordinate by the moment estimates, so its displacement is neither along δ̂ nor of a known
size. The kick transform therefore moves the live parameters in place, θ ← θ + a·‖Δθ_step‖·δ̂ with
‖Δθ_step‖ the norm of the run's previous optimiser update, and returns the gradients unchanged. A frozen
run (grokked or out of budget) has a zero previous update, so it is never kicked.

A scan over amounts, trained as one batched program, is an experiment: `experiments.intervention_scan`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from grokscope.errors import ConfigError
from grokscope.geometry.commutator import commutator_defect
from grokscope.training import GradTransform
from grokscope.training import model as M
from grokscope.training.problem import Problem

Params = M.Params


# ---- projections (pure) --------------------------------------------------------------------------

def project_parallel(g: torch.Tensor, basis: torch.Tensor) -> torch.Tensor:
    """g∥ = B Bᵀ g per run: g [R, P], basis [P, K] (shared) or [R, P, K] (per run) -> [R, P]."""
    B = basis.to(g.device, g.dtype)
    if B.dim() == 2:
        return (g @ B) @ B.T
    return torch.einsum("rk,rpk->rp", torch.einsum("rp,rpk->rk", g, B), B)


def project_perp(g: torch.Tensor, basis: torch.Tensor) -> torch.Tensor:
    """g⊥ = g − B Bᵀ g: the part of g orthogonal to the span of the basis."""
    return g - project_parallel(g, basis)


def _per_run(amount: torch.Tensor | float | Sequence[float], R: int, like: torch.Tensor) -> torch.Tensor:
    a = torch.as_tensor(amount, dtype=like.dtype, device=like.device)
    return a.expand(R) if a.dim() == 0 else a


def remove_perp(g: torch.Tensor, basis: torch.Tensor, amount: torch.Tensor | float) -> torch.Tensor:
    """g − a·g⊥ per run (a [R] or scalar); runs with a = 0 get g back bit for bit."""
    a = _per_run(amount, g.shape[0], g)
    out = g - a[:, None] * project_perp(g, basis)
    return torch.where(a[:, None] == 0, g, out)


def suppress(g: torch.Tensor, basis: torch.Tensor, s: torch.Tensor | float) -> torch.Tensor:
    """Suppression g∥ + (1 − s)·g⊥ (P2; s = 1 keeps only the in-basis part)."""
    return remove_perp(g, basis, s)


def delete(g: torch.Tensor, basis: torch.Tensor, f: torch.Tensor | float) -> torch.Tensor:
    """Orthogonal deletion g − f·g⊥ (P1; f is the deleted fraction of the orthogonal component)."""
    return remove_perp(g, basis, f)


# ---- gradient transforms ------------------------------------------------------------------------

def projection_transform(basis: torch.Tensor, amount: torch.Tensor | Sequence[float] | float,
                         start: int = 500) -> GradTransform:
    """Transform applying g − a·g⊥ (suppression or deletion) from step `start` on (0-based trainer steps)."""
    cache: dict[tuple, torch.Tensor] = {}

    def transform(step: int, params: Params, grads: Params) -> Params:
        if step < start:
            return grads
        g = M.flatten(grads)
        key = (g.device, g.dtype)
        if key not in cache:
            cache[key] = basis.to(g.device, g.dtype)
        return M.unflatten(remove_perp(g, cache[key], _per_run(amount, g.shape[0], g)), grads)

    return transform


DirectionFn = Callable[[Problem, Params, int], torch.Tensor]


def commutator_direction(draws: int = 3) -> DirectionFn:
    """δ [R, P] = θ_AB − θ_BA from `commutator.commutator_defect` (its `delta`), at the current params."""

    def fn(problem: Problem, params: Params, step: int) -> torch.Tensor:
        return commutator_defect(problem, params, step, draws).delta  # the median draw's δ

    return fn


def random_direction(seed: int = 0) -> DirectionFn:
    """Gaussian directions [R, P], reproducible per (seed, step, row of the batch)."""

    def fn(problem: Problem, params: Params, step: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(int(seed) * 1_000_003 + int(step))
        first = next(iter(params.values()))
        return torch.randn(first.shape[0], M.count_params(params), generator=g).to(first.device)

    return fn


class KickTransform:
    """Every `every` steps from `start`: θ ← θ + a·‖θ_t − θ_{t−1}‖·d̂ (d̂ = direction / ‖direction‖ per run).
    Moves `params` in place and returns `grads` unchanged. Its one piece of state, θ_{t−1} before a kick
    step t, rides in the run's checkpoint (`export` / `restore`), so a scan resumed at a kick step kicks
    exactly as an uninterrupted one."""

    def __init__(self, problem: Problem, amplitude: torch.Tensor | Sequence[float] | float, every: int = 100,
                 start: int = 500, direction: DirectionFn | None = None) -> None:
        if every <= 0:
            raise ConfigError(f"kick every={every} must be > 0")
        self.problem, self.amplitude, self.every, self.start = problem, amplitude, every, start
        self.direction = direction or commutator_direction()
        self.prev: torch.Tensor | None = None  # θ [R, P] taken at step prev_for − 1
        self.prev_for = -1
        self.pinned: dict[int, tuple[int, torch.Tensor]] = {}  # run → (kick step, its θ_{step−1}) from a checkpoint

    def is_kick(self, s: int) -> bool:
        return s >= self.start and (s - self.start) % self.every == 0

    def _before(self, step: int, theta: torch.Tensor) -> torch.Tensor:
        """θ_{step−1} per run: recorded at the previous step, restored from a checkpoint (a run resumed at
        `step` while the batch catches up), or θ itself (no previous update known: no kick)."""
        before = self.prev if self.prev is not None and self.prev_for == step else theta.clone()
        for r, (s, t) in list(self.pinned.items()):
            if s == step:
                before[r] = t.to(theta.device, theta.dtype)
                del self.pinned[r]
        return before

    def __call__(self, step: int, params: Params, grads: Params) -> Params:
        if self.is_kick(step):
            theta = M.flatten(params)
            a = _per_run(self.amplitude, theta.shape[0], theta)
            size = a * (theta - self._before(step, theta)).norm(dim=1)  # a × ‖previous update‖, 0 when frozen
            self.prev = None
            if bool((size > 0).any()):
                d = self.direction(self.problem, params, step).to(theta.device, theta.dtype)
                d = d / d.norm(dim=1, keepdim=True).clamp_min(1e-30)
                for k, v in M.unflatten(size[:, None] * d, params).items():
                    params[k].add_(v)
        if self.is_kick(step + 1):
            self.prev, self.prev_for = M.flatten(params).clone(), step + 1
        return grads

    def export(self, r: int) -> dict[str, torch.Tensor]:
        """Run r's pending θ_{t−1} before kick step t (none when no kick is pending)."""
        if r in self.pinned:
            s, t = self.pinned[r]
        elif self.prev is not None:
            s, t = self.prev_for, self.prev[r]
        else:
            return {}
        return {"transform.prev": t.clone(), "transform.prev_step": torch.tensor([s], dtype=torch.int64, device="cpu")}

    def restore(self, r: int, tensors: dict[str, torch.Tensor]) -> None:
        """Take run r's pending θ_{t−1} from its checkpoint's tensors (written by `export`)."""
        if "transform.prev" in tensors:
            self.pinned[r] = (int(tensors["transform.prev_step"][0]), tensors["transform.prev"])


def kick_transform(problem: Problem, amplitude: torch.Tensor | Sequence[float] | float, every: int = 100,
                   start: int = 500, direction: DirectionFn | None = None) -> KickTransform:
    """Kicks along `direction` (default: the commutator δ) every `every` steps from `start` (`KickTransform`)."""
    return KickTransform(problem, amplitude, every, start, direction)
