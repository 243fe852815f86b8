"""Trajectory PCA (docs/papers.md §4): attention-matrix PCA, full-vector trajectory PCs, the execution basis B.

Two kinds of PCA, as the papers use them:
- *centred* PCA of vec(W_t − W_0) over the recorded steps of one matrix: PC1% = σ₁²/Σσ², the headline
  "one direction carries most of the motion" number, and the source of the execution basis B;
- *uncentred* SVD of Δθ(t) = θ(t) − θ(0) over full snapshots: the directions used to rebuild or delete
  motion (reconstruction threshold k*, orthogonal deletion).

Flat vectors follow `model.flatten`'s layout (the dict order of `init_params`); snapshots read from a
safetensors file come back in another key order, so everything here re-orders through `flat_layout`.
All SVDs run in float64 on the CPU; bases are returned as float32.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from grokscope.errors import ConfigError, StoreError, TooLittleData
from grokscope.geometry.checkpoints import select_snapshots
from grokscope.store import RunDir
from grokscope.training import model as M


@dataclass
class PCAResult:
    """Centred PCA of one trajectory: PC1 share in percent, top-k explained-variance fractions,
    unit principal directions [k, D] and the top-k singular values."""

    pc1_percent: float
    spectrum: np.ndarray  # [k] σᵢ²/Σσ²
    components: torch.Tensor  # [k, D] unit rows
    singular_values: np.ndarray  # [k]


@dataclass
class TrajectoryPCs:
    """Uncentred SVD of Δθ(t) = θ(t) − θ(0) over full snapshots (flat layout of `model.flatten`)."""

    theta0: torch.Tensor  # [P]
    basis: torch.Tensor  # [P, k] orthonormal columns v_i
    variance_fraction: np.ndarray  # [k] σᵢ²/Σσ²
    cumulative: np.ndarray  # [k]
    steps: np.ndarray  # [S] snapshot steps


@dataclass
class NullResult:
    """Observed PC1% against a random-walk null (`random_walk_null`): null mean, spread over walks and z."""

    observed: float
    null_mean: float
    null_std: float
    z: float


def _as_rows(traj: torch.Tensor) -> torch.Tensor:
    """[T, ...] -> [T, D] float64 on the CPU."""
    return traj.detach().reshape(traj.shape[0], -1).to("cpu", torch.float64)


def matrix_pca(traj: torch.Tensor, k: int = 10) -> PCAResult:
    """Centred PCA of vec(W_t − W_0) over the T recorded steps of one matrix [T, ...] (docs/papers.md §4)."""
    X = _as_rows(traj)
    if X.shape[0] < 2:
        raise TooLittleData(f"PCA needs at least 2 recorded steps, got {X.shape[0]}")
    if not bool(torch.isfinite(X).all()):
        raise TooLittleData("the trajectory holds non-finite values (the run diverged): PCA is undefined")
    X = X - X[0]
    X = X - X.mean(0)
    S, Vh = _svd_rows(X, k)
    var = S.pow(2)
    total = float(var.sum())
    frac = (var / total).numpy() if total > 0 else np.zeros(len(var))
    k = min(k, len(S))
    return PCAResult(pc1_percent=float(100 * frac[0]), spectrum=frac[:k], components=Vh[:k].float(),
                     singular_values=S[:k].numpy())


def _svd_rows(X: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """All singular values of X [T, D] and its top-k right singular vectors [k, D]. With T ≪ D (few
    snapshots of a large matrix) this goes through the T × T Gram matrix, which is much cheaper than a
    full SVD; it falls back to the SVD when a wanted direction is numerically degenerate."""
    T, D = X.shape
    if T < D:
        ev, U = torch.linalg.eigh(X @ X.T)
        ev, U = ev.flip(0).clamp(min=0), U.flip(1)
        S = ev.sqrt()
        k = min(k, T)
        if k and S[k - 1] > 1e-6 * S[0]:
            V = (U[:, :k].T @ X) / S[:k, None]
            return S, V / V.norm(dim=1, keepdim=True)
    _, S, Vh = torch.linalg.svd(X, full_matrices=False)
    return S, Vh[:k]


def _layer_of(name: str) -> int:
    parts = name.split(".")
    return int(parts[1]) if parts[0] == "layers" else -1


def watch_patterns(watch: str | Sequence[str]) -> list[str]:
    """One glob or several, as a list."""
    return [watch] if isinstance(watch, str) else list(watch)


def watched_trajectories(run: RunDir, watch: str | Sequence[str] | None = None
                         ) -> tuple[torch.Tensor, dict[str, torch.Tensor], str]:
    """(steps [T], {name: [T, ...]}, source) of the trajectories PCA reads. Default: every watched tensor (the
    attention matrices of grokscope's models, what a monitor's `watch` recorded). `watch` (globs) picks some; a
    pattern that matches no watched tensor is looked up among the full snapshots (fewer steps: an MLP's first
    layer, an embedding), and `source` says which ("watched" or "snapshots")."""
    steps, attn = run.attention_trajectory()
    if watch is None:
        return steps, attn, "watched"
    pats = watch_patterns(watch)
    chosen = {n: t for n, t in attn.items() if any(fnmatch.fnmatch(n, p) for p in pats)}
    if chosen:
        return steps, chosen, "watched"
    snap_steps, snaps = run.snapshots()
    chosen = {n: t for n, t in snaps.items() if any(fnmatch.fnmatch(n, p) for p in pats)}
    if chosen:
        return snap_steps, chosen, "snapshots"
    names = list(attn) + [n for n in snaps if n not in attn]
    raise ConfigError(f"watch={pats!r} matches no recorded tensor of {run.path.name}"
                      + (f"; names look like {names[0]!r}" if names else " (it records none)"))


def attention_pca(run: RunDir, k: int = 10, watch: str | Sequence[str] | None = None) -> pd.DataFrame:
    """PC1% and the top-k spectrum (`pc{i}_percent`) of each attention matrix's recorded trajectory (or of the
    tensors `watch` picks, `watched_trajectories`)."""
    steps, attn, _ = watched_trajectories(run, watch)
    rows = []
    for name, traj in attn.items():
        res = matrix_pca(traj, k)
        row = {"name": name, "layer": _layer_of(name), "matrix": name.rsplit(".", 1)[-1],
               "n_steps": int(traj.shape[0]), "last_step": int(steps[-1])}
        for i in range(k):
            row[f"pc{i + 1}_percent"] = float(100 * res.spectrum[i]) if i < len(res.spectrum) else np.nan
        rows.append(row)
    df = pd.DataFrame(rows)
    if len(df):
        df = df.sort_values(["layer", "name"], kind="stable", ignore_index=True)
    return df


# ---- full parameter vectors --------------------------------------------------------------------

def flat_layout(run: RunDir) -> dict[str, slice]:
    """Slices of each named parameter in the flat vector of `model.flatten` for this run's model."""
    cfg = run.config()
    return M.param_slices(M.init_params(cfg.model, cfg.data, cfg.seed), batched=False)


def flatten_snapshots(snaps: dict[str, torch.Tensor], slices: dict[str, slice]) -> torch.Tensor:
    """{name: [S, ...]} -> [S, P] in the order of `slices` (the flat layout)."""
    missing = [n for n in slices if n not in snaps]
    if missing:
        raise StoreError(f"snapshots lack parameter {missing[0]!r}")
    return torch.cat([snaps[n].reshape(snaps[n].shape[0], -1) for n in slices], 1)


TRAJECTORY_CHECKPOINTS = 100  # pca_threshold_scan.py, ortho_fine_scan.py: ≤ 100 checkpoints for the PCs


def snapshot_matrix(run: RunDir, max_points: int | None = None) -> tuple[np.ndarray, torch.Tensor]:
    """(steps [S], θ(t) [S, P]) of a run's full snapshots in the flat layout; with `max_points`, a paper-exact
    run's are the script's ≤ max_points checkpoints (`geometry.checkpoints`; other runs keep all)."""
    steps, snaps = run.snapshots()
    if len(steps) == 0:
        raise StoreError(f"{run.path} has no parameter snapshots")
    steps_np, theta = steps.numpy(), flatten_snapshots(snaps, flat_layout(run))
    if max_points is None:
        return steps_np, theta
    idx = select_snapshots(run.config(), steps_np, max_points)
    return steps_np[idx], theta[torch.from_numpy(idx)]


def trajectory_pcs(run: RunDir, k: int = 20, max_points: int = TRAJECTORY_CHECKPOINTS) -> TrajectoryPCs:
    """Uncentred SVD of Δθ(t) = θ(t) − θ(0) over a run's snapshots (a paper-exact run: the script's ≤ 100
    checkpoints): the top-k directions v_i (docs/papers.md §4)."""
    steps, theta = snapshot_matrix(run, max_points)
    return trajectory_pcs_from_matrix(theta, k, steps)


def trajectory_pcs_from_matrix(theta: torch.Tensor, k: int = 20,
                               steps: np.ndarray | None = None) -> TrajectoryPCs:
    """Pure version of `trajectory_pcs` over θ(t) [S, P] (first row = θ₀)."""
    if theta.shape[0] < 2:
        raise TooLittleData(f"trajectory PCs need at least 2 snapshots, got {theta.shape[0]}")
    X = theta.detach().to("cpu", torch.float64)
    if not bool(torch.isfinite(X).all()):
        raise TooLittleData("the snapshots hold non-finite values (the run diverged): trajectory PCs are undefined")
    delta = X[1:] - X[0]  # the first row of Δθ is zero
    _, S, Vh = torch.linalg.svd(delta, full_matrices=False)
    var = S.pow(2)
    frac = (var / var.sum()).numpy() if float(var.sum()) > 0 else np.zeros(len(var))
    k = min(k, len(S))
    return TrajectoryPCs(theta0=theta[0].detach().clone(), basis=Vh[:k].T.float().contiguous(),
                         variance_fraction=frac[:k], cumulative=np.cumsum(frac)[:k],
                         steps=np.arange(theta.shape[0]) if steps is None else np.asarray(steps))


# ---- PC1% over time and against a random walk ----------------------------------------------------

def _pc1_from_gram(K: torch.Tensor) -> float:
    """PC1% of centred rows from their (uncentred) Gram matrix K = X Xᵀ [t, t]."""
    t = K.shape[0]
    H = torch.eye(t, dtype=K.dtype, device=K.device) - 1.0 / t
    C = H @ K @ H
    ev = torch.linalg.eigvalsh((C + C.T) / 2).clamp(min=0)
    total = float(ev.sum())
    return float(100 * ev[-1] / total) if total > 0 else float("nan")


def expanding_pc1(traj: torch.Tensor, min_snapshots: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """PC1% of the first t snapshots for t = min_snapshots..T: (index of the last snapshot used, PC1%)."""
    X = _as_rows(traj)
    X = X - X[0]
    K = X @ X.T
    T = X.shape[0]
    idx = np.arange(max(min_snapshots, 2) - 1, T)
    return idx, np.array([_pc1_from_gram(K[: i + 1, : i + 1]) for i in idx])


NULL_STEPS = ("equal", "matched")


def random_walk_null(traj: torch.Tensor, n_null: int = 20, seed: int = 0, steps: str = "equal") -> NullResult:
    """Observed PC1% vs random walks with the same number of snapshots in random directions.

    `steps="equal"` (default): every step has the same norm, the classic isotropic-walk null (PC1% ≈ 61–62 %
    for 10–12 snapshots, → 6/π² ≈ 60.8 % for many; Antognini & Sohl-Dickstein 2018). `"matched"`: step i has
    the norm of the trajectory's step i; this ties the null to the optimiser's speed profile (AdamW's large
    first step from θ₀ alone moves it by ±10 points between matrices of one run), which is why it is not the
    default. `null_std` is the spread over walks in the matrix's dimension D; it shrinks like 1/√D, so z
    grows with D and is no significance test: compare `observed − null_mean` in points."""
    if steps not in NULL_STEPS:
        raise ValueError(f"steps={steps!r}: choose from {', '.join(NULL_STEPS)}")
    X = _as_rows(traj)
    if X.shape[0] < 3:
        raise TooLittleData("the random-walk null needs at least 3 snapshots")
    observed = _pc1_from_gram((X - X[0]) @ (X - X[0]).T)
    norms = (X[1:] - X[:-1]).norm(dim=1)
    if steps == "equal":
        norms = torch.ones_like(norms)
    g = torch.Generator().manual_seed(int(seed))
    null = []
    for _ in range(n_null):
        inc = torch.randn(X.shape[0] - 1, X.shape[1], generator=g, dtype=torch.float64, device="cpu")
        inc = inc / inc.norm(dim=1, keepdim=True) * norms[:, None]
        walk = torch.cat([torch.zeros(1, X.shape[1], dtype=torch.float64, device="cpu"), inc.cumsum(0)])
        null.append(_pc1_from_gram(walk @ walk.T))
    mean, std = float(np.mean(null)), float(np.std(null, ddof=1)) if n_null > 1 else float("nan")
    z = (observed - mean) / std if std and np.isfinite(std) and std > 0 else float("nan")
    return NullResult(observed=observed, null_mean=mean, null_std=std, z=z)


# ---- the execution basis B and random controls --------------------------------------------------

def exec_basis_from_traj(attn: dict[str, torch.Tensor], slices: dict[str, slice], P: int,
                         per_matrix: int = 2) -> torch.Tensor:
    """Top `per_matrix` centred directions of each attention matrix [T, d, d], embedded at that matrix's
    slice of the flat vector [P] and QR-orthonormalised: B [P, K] (K = 16 for 2 layers × 4 matrices)."""
    cols = []
    for name, traj in attn.items():
        if name not in slices:
            raise ValueError(f"{name!r} has no slice in the flat layout")
        sl = slices[name]
        comps = matrix_pca(traj, per_matrix).components.double()  # [k, d*d]
        if comps.shape[1] != sl.stop - sl.start:
            raise ValueError(f"{name!r}: trajectory has {comps.shape[1]} entries, slice {sl.stop - sl.start}")
        for c in comps:
            v = torch.zeros(P, dtype=torch.float64, device="cpu")
            v[sl] = c
            cols.append(v)
    if not cols:
        raise ValueError("no attention matrices to build an execution basis from")
    Q, _ = torch.linalg.qr(torch.stack(cols, 1))
    return Q.float().contiguous()


def weight_svd_basis(mats: dict[str, torch.Tensor], slices: dict[str, slice], P: int, k: int = 3
                     ) -> torch.Tensor:
    """P2's control basis (grok_integrability_controls.py, k = 3 → K = 24 for 2 layers × 4 matrices): for
    each attention matrix W [d, d] at one checkpoint, the rank-one directions vec(u_i v_iᵀ) of its top-k
    singular pairs, embedded at the matrix's slice of [P] and QR-orthonormalised: B [P, K]. Unlike
    `exec_basis` it is built from the weights themselves, so it is rebuilt at every checkpoint."""
    cols = []
    for name, W in mats.items():
        if name not in slices:
            raise ValueError(f"{name!r} has no slice in the flat layout")
        U, _, Vh = torch.linalg.svd(W.detach().to("cpu", torch.float64), full_matrices=False)
        sl = slices[name]
        for i in range(min(k, U.shape[1])):
            v = torch.zeros(P, dtype=torch.float64, device="cpu")
            v[sl] = torch.outer(U[:, i], Vh[i]).flatten()
            cols.append(v)
    if not cols:
        raise ValueError("no attention matrices to build a weight-SVD basis from")
    Q, _ = torch.linalg.qr(torch.stack(cols, 1))
    return Q.float().contiguous()


def exec_basis(run: RunDir, per_matrix: int = 2, upto: int | None = None) -> torch.Tensor:
    """The execution basis B [P, K] of a run from its recorded attention trajectory (steps ≤ `upto` if
    given, e.g. a phase-1 basis)."""
    steps, attn = run.attention_trajectory()
    if upto is not None:
        keep = steps <= upto
        attn = {k: v[keep] for k, v in attn.items()}
    if not attn:
        raise StoreError(f"{run.path} records no attention matrices (an MLP has no execution basis)")
    if int(next(iter(attn.values())).shape[0]) < 2:
        raise TooLittleData(f"the execution basis needs attention matrices at 2 or more steps; {run.path.name} "
                            f"has {int(next(iter(attn.values())).shape[0])} (train past attn_every)")
    slices = flat_layout(run)
    P = max(s.stop for s in slices.values())
    return exec_basis_from_traj(attn, slices, P, per_matrix)


def random_basis(P: int, K: int, seed: int = 0) -> torch.Tensor:
    """A random orthonormal basis [P, K] (QR of a Gaussian matrix): the control for B."""
    g = torch.Generator().manual_seed(int(seed))
    Q, _ = torch.linalg.qr(torch.randn(P, K, generator=g, dtype=torch.float64, device="cpu"))
    return Q.float().contiguous()
