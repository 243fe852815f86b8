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

`intervention_scan` trains a whole scan over amounts (e.g. f ∈ 1..50%) as ONE batched program: R = number
of amounts, each run with the base run's config and seed, and a per-run amount tensor. Given a folder
(`scan_store.ScanDir`), each value's run is checkpointed there as a run folder, the basis is stored once,
and a killed scan resumes where its checkpoints stopped, to the same result bit for bit.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from grokscope import model as M
from grokscope.config import RunConfig, with_overrides
from grokscope.errors import ConfigError, StoreError
from grokscope.geometry import pca
from grokscope.geometry.commutator import commutator_defect
from grokscope.geometry.scan_store import ScanDir, describe_progress
from grokscope.problem import Problem
from grokscope.store import (
    INTERVENTION_JSON,
    INTERVENTION_METRICS,
    INTERVENTION_TABLE,
    RunDir,
    write_json,
    write_table,
)
from grokscope.train import EvalInfo, GradTransform, train

Params = M.Params
KINDS = ("deletion", "suppression", "random", "kick", "random-kick")
BASES = ("trajectory", "exec", "random")
DEFAULT_BASIS = {"deletion": "trajectory", "suppression": "exec", "random": "random"}
NO_GROK = "no grok within budget"


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


# ---- a scan over amounts, trained as one batch ------------------------------------------------------

@dataclass(frozen=True)
class ScanConfig:
    """One intervention scan over a base run: `values` are fractions f (deletion), strengths s (suppression)
    or kick amplitudes a; `basis` overrides the kind's default (trajectory PCs / exec basis / random)."""

    kind: str = "deletion"
    values: tuple[float, ...] = (0.01, 0.02, 0.03, 0.05, 0.07, 0.1, 0.15, 0.25, 0.5)
    steps: int | None = None  # None: the base run's budget
    start: int = 500
    k: int = 20
    basis: str | None = None
    every: int = 100
    draws: int = 3
    seed: int = 0


def validate_scan(scan: ScanConfig) -> ScanConfig:
    """Raise ConfigError on a scan that cannot run."""
    if scan.kind not in KINDS:
        raise ConfigError(f"unknown intervention kind {scan.kind!r}; choose from {', '.join(KINDS)}")
    if scan.basis is not None and scan.basis not in BASES:
        raise ConfigError(f"unknown basis {scan.basis!r}; choose from {', '.join(BASES)}")
    if not scan.values:
        raise ConfigError("an intervention scan needs at least one fraction")
    bad = [v for v in scan.values if not (np.isfinite(v) and v >= 0)]
    if bad:
        raise ConfigError(f"fraction {bad[0]!r} must be a finite number >= 0")
    if scan.steps is not None and scan.steps <= 0:
        raise ConfigError(f"steps={scan.steps} must be > 0")
    if scan.start < 0 or scan.k < 1 or scan.every < 1 or scan.draws < 1:
        raise ConfigError(f"start={scan.start} must be >= 0, and k={scan.k}, every={scan.every}, "
                          f"draws={scan.draws} must be >= 1")
    return scan


def scan_configs(base: RunConfig, scan: ScanConfig) -> list[RunConfig]:
    """One config per value: the base run's config (same seed) with a distinct preset and tag (its run folder's
    name) and no probes."""
    steps = scan.steps or base.steps
    label = [f"{scan.kind}-{v:.12g}" for v in scan.values]
    return [with_overrides(base, preset=lab, tag="-".join(filter(None, (base.tag, lab))), steps=steps,
                           defect_every=0) for lab in label]


def intervention_basis(run: RunDir, kind: str, k: int = 20, basis: str | None = None, seed: int = 0
                       ) -> torch.Tensor:
    """The basis [P, K] a projection scan uses: the base run's top-k uncentred trajectory PCs, its
    execution basis, or a random orthonormal basis of rank k."""
    which = basis or DEFAULT_BASIS[kind]
    if which == "trajectory":
        return pca.trajectory_pcs(run, k).basis
    if which == "exec":
        return pca.exec_basis(run)
    P = max(s.stop for s in pca.flat_layout(run).values())
    return pca.random_basis(P, k, seed)


@dataclass
class ScanResult:
    """`table`: one row per (value, task) with grok steps, the base run's grok step and the delay in %;
    `metrics`: the scan runs' long metrics with a `value` column; `baseline`: base grok step per task."""

    scan: ScanConfig
    table: pd.DataFrame
    metrics: pd.DataFrame
    baseline: dict[str, int | None]


def intervention_scan(run: RunDir, scan: ScanConfig, device: str = "cpu",
                      on_eval: Callable[[EvalInfo], None] | None = None, out: str | Path | None = None, *,
                      resume: bool = False, force: bool = False) -> ScanResult:
    """Train `scan.values` as one batched program from the base run's config with the intervention on. With
    `out` (a scan folder, `scan_store.ScanDir`), checkpoint every value's run there and resume the scan it
    holds; `resume`: continue it under a new step budget; `force`: start over. Nothing is written before
    every check has passed."""
    validate_scan(scan)
    if not run.exists():
        raise StoreError(f"{run.path} is not a grokscope run")
    base = run.config()
    cfgs = scan_configs(base, scan)
    folder = ScanDir(out) if out is not None else None
    if folder is not None:
        folder.check(scan, run.path.name, cfgs, resume, force)
    amounts = torch.tensor(scan.values, dtype=torch.float32, device="cpu")
    B = None
    if scan.kind in ("kick", "random-kick"):
        problem = Problem(cfgs, device)
        d = commutator_direction(scan.draws) if scan.kind == "kick" else random_direction(scan.seed)
        transform: GradTransform = kick_transform(problem, amounts.to(device), scan.every, scan.start, d)
    else:
        # computed once: a resumed scan projects on the basis it started with, whatever the base run became
        B = folder.basis() if folder is not None and not force and folder.state() is not None else None
        B = intervention_basis(run, scan.kind, scan.k, scan.basis, scan.seed) if B is None else B
        transform = projection_transform(B.to(device), amounts.to(device), scan.start)
    if folder is not None:
        folder.begin(scan, run.path.name, B, force)
    results = train(cfgs, folder.runs if folder is not None else None, device, resume=resume,
                    grad_transform=transform, on_eval=on_eval)
    baseline = run.grok_steps()
    return ScanResult(scan, scan_table(scan, results, baseline), _scan_metrics(scan, results), baseline)


def resume_note(run: RunDir, scan: ScanConfig, out: str | Path) -> str:
    """How far the scan folder `out` got with `scan` of `run` ('' when it holds nothing of it): the line a
    command shows before the scan resumes."""
    folder = ScanDir(out)
    if not folder.holds(scan, run.path.name):
        return ""
    return describe_progress(folder.progress(scan_configs(run.config(), scan)))


def scan_table(scan: ScanConfig, results: list[Any], baseline: dict[str, int | None]) -> pd.DataFrame:
    """value → grok step per task (None: no grok within budget), delay % against the base run."""
    rows = []
    for v, res in zip(scan.values, results, strict=True):
        s = res.summary
        for task, g in s["grok_step"].items():
            b = baseline.get(task)
            delay = 100.0 * (g - b) / b if g is not None and b else float("nan")
            rows.append({"kind": scan.kind, "value": float(v), "task": task, "grok_step": g,
                         "grok_step_90": s["grok_step_90"].get(task), "baseline_grok_step": b,
                         "delay_pct": delay, "grokked": g is not None,
                         "final_test_acc": s["final_acc"].get(task, {}).get("test"),
                         "steps_trained": s["steps_trained"]})
    df = pd.DataFrame(rows)
    for col in ("grok_step", "grok_step_90", "baseline_grok_step", "steps_trained"):
        df[col] = df[col].astype("Int64")  # nullable: None = no grok within budget
    return df


def _scan_metrics(scan: ScanConfig, results: list[Any]) -> pd.DataFrame:
    frames = [r.metrics.assign(kind=scan.kind, value=float(v))
              for v, r in zip(scan.values, results, strict=True)]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def write_scan(result: ScanResult, out: str | Path) -> Path:
    """`out/intervention.parquet`, `out/intervention_metrics.parquet` and `out/intervention.json`."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_table(out / INTERVENTION_TABLE, result.table)
    write_table(out / INTERVENTION_METRICS, result.metrics)
    write_json(out / INTERVENTION_JSON, {"scan": asdict(result.scan), "baseline": result.baseline,
                                           "rows": json.loads(result.table.to_json(orient="records"))})
    return out
