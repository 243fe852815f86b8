"""Krylov algorithms over batched symmetric operators: Lanczos for extreme eigenvalues, conjugate
gradients for linear solves, and restrictions of an operator to a subspace or its complement.

An operator is a function v [R, P] → A_r v_r: R independent symmetric operators applied at once (one per
run, checkpoint or loss), so every algorithm here is one batched program over the run axis. The operators
themselves (Hessian-vector products, J Jᵀ products) live with the quantities they come from.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

__all__ = ["MatVec", "LanczosResult", "lanczos", "conjugate_gradient", "subspace_curvature",
           "complement_projector", "complement_lanczos"]

MatVec = Callable[[torch.Tensor], torch.Tensor]


@dataclass
class LanczosResult:
    """Ritz values of an m-step Lanczos run per run: `ritz` [R, m] ascending; `bottom` [R, k] the k
    smallest (ascending), `top` [R, k] the k largest (descending); `residual` [R, m] and `*_residual`
    the residual norms ‖H y − θ y‖ = |β_m s_m| of the Ritz pairs (each Ritz value lies within its
    residual of a true eigenvalue); `iters` the steps taken (m); `converged` [R] whether λ_min and λ_max
    met the tolerance (None without one); `*_vectors` [R, k, P] when asked for."""

    ritz: torch.Tensor
    residual: torch.Tensor
    bottom: torch.Tensor
    top: torch.Tensor
    bottom_residual: torch.Tensor
    top_residual: torch.Tensor
    iters: int
    converged: torch.Tensor | None = None
    bottom_vectors: torch.Tensor | None = None
    top_vectors: torch.Tensor | None = None

    @property
    def lambda_min(self) -> torch.Tensor:
        return self.bottom[:, 0]

    @property
    def lambda_max(self) -> torch.Tensor:
        return self.top[:, 0]


def _orthogonalize(w: torch.Tensor, Q: torch.Tensor) -> torch.Tensor:
    """w [R, P] minus its projection on the rows of Q [R, j, P] (classical Gram–Schmidt, twice)."""
    for _ in range(2):
        w = w - torch.einsum("rj,rjp->rp", torch.einsum("rjp,rp->rj", Q, w), Q)
    return w


def _ritz(alpha: torch.Tensor, beta: torch.Tensor, m: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Ritz values [R, m] (ascending), eigenvectors S [R, m, m] of the tridiagonal T_m and residual
    norms |β_m s_m| [R, m] from the first m Lanczos coefficients."""
    a, off = alpha[:, :m], beta[:, : m - 1]
    T = torch.diag_embed(a) + torch.diag_embed(off, 1) + torch.diag_embed(off, -1)
    theta, S = torch.linalg.eigh(T)
    return theta, S, (beta[:, m - 1 : m] * S[:, m - 1, :]).abs()


def _extremes_converged(theta: torch.Tensor, resid: torch.Tensor, tol: float) -> torch.Tensor:
    """[R] whether λ_min's and λ_max's Ritz pairs have residual ≤ tol·|θ| (ARPACK's test; a pair whose
    θ is below 1e-6 of the spectrum's scale is judged against that scale instead)."""
    scale = theta.abs().amax(1, keepdim=True)
    ends = torch.stack([theta[:, 0], theta[:, -1]], 1)
    r = torch.stack([resid[:, 0], resid[:, -1]], 1)
    return (r <= tol * torch.maximum(ends.abs(), 1e-6 * scale)).all(1)


def lanczos(matvec: MatVec, v0: torch.Tensor, iters: int = 25, k: int = 5, vectors: bool = False,
            project: MatVec | None = None, seed: int = 0, tol: float | None = None,
            check_every: int = 5) -> LanczosResult:
    """Batched symmetric Lanczos with full re-orthogonalisation: `matvec` maps [R, P] -> [R, P] (one
    symmetric operator per run), `v0` [R, P] starts each run. Returns the k smallest and k largest
    Ritz values per run with their residual norms. Without `tol`: exactly `iters` steps (the papers: 25).
    With `tol`: up to `iters` steps, stopping (checked every `check_every` steps) once every run's λ_min
    and λ_max pairs have residual ≤ tol·|θ|; `converged` says which runs got there. On breakdown (an
    invariant subspace found) a run restarts from a random vector orthogonal to its basis (`project`
    maps it into the operator's domain, e.g. a subspace). Memory: the basis is [R, steps, P]."""
    R, P = v0.shape
    m = min(iters, P)
    k = min(k, m)
    dtype, eps = v0.dtype, torch.finfo(v0.dtype).eps
    gen = torch.Generator().manual_seed(seed)
    Q = v0.new_zeros(R, m if tol is None else min(m, 64), P)  # grows by doubling when converging to tol
    alpha = torch.zeros(R, m, dtype=torch.float64, device="cpu")
    beta = torch.zeros(R, m, dtype=torch.float64, device="cpu")
    q = v0 / v0.norm(dim=1, keepdim=True)
    scale = torch.zeros(R, dtype=torch.float64, device="cpu")
    for j in range(m):
        if j == Q.shape[1]:
            Q = torch.cat([Q, torch.zeros_like(Q[:, : min(Q.shape[1], m - j)])], 1)
        Q[:, j] = q
        w = matvec(q).to(dtype)
        a = (w * q).sum(1)
        w = w - a[:, None] * q
        if j > 0:
            w = w - beta[:, j - 1].to(dtype).to(w.device)[:, None] * Q[:, j - 1]
        w = _orthogonalize(w, Q[:, : j + 1])
        b = w.norm(dim=1)
        alpha[:, j], beta[:, j] = a.double().cpu(), b.double().cpu()
        scale = torch.maximum(scale, alpha[:, j].abs() + beta[:, j])
        if j == m - 1:
            break
        if tol is not None and j + 1 >= 2 * k and (j + 1) % check_every == 0:
            theta, _, resid = _ritz(alpha, beta, j + 1)
            if bool(_extremes_converged(theta, resid, tol).all()):
                m = j + 1
                break
        dead = (beta[:, j] <= 1e3 * eps * scale.clamp_min(1e-30)).to(w.device)
        if dead.any():  # invariant subspace: restart with a fresh direction, decoupled (β = 0)
            fresh = torch.randn(R, P, generator=gen, dtype=dtype).to(w.device)
            if project is not None:
                fresh = project(fresh)
            fresh = _orthogonalize(fresh, Q[:, : j + 1])
            w = torch.where(dead[:, None], fresh, w)
            beta[dead.cpu(), j] = 0.0
        q = w / w.norm(dim=1, keepdim=True)

    theta, S, resid = _ritz(alpha, beta, m)
    k = min(k, m)
    lo, hi = torch.arange(k, device="cpu"), torch.arange(m - 1, m - 1 - k, -1, device="cpu")
    res = LanczosResult(ritz=theta, residual=resid, bottom=theta[:, lo], top=theta[:, hi],
                        bottom_residual=resid[:, lo], top_residual=resid[:, hi], iters=m,
                        converged=None if tol is None else _extremes_converged(theta, resid, tol))
    if vectors:
        Sd = S.to(device=Q.device, dtype=dtype)
        res.bottom_vectors = torch.einsum("rjp,rjk->rkp", Q[:, :m], Sd[:, :, lo])
        res.top_vectors = torch.einsum("rjp,rjk->rkp", Q[:, :m], Sd[:, :, hi])
    return res


def conjugate_gradient(matvec: MatVec, b: torch.Tensor, iters: int = 100, tol: float = 1e-6
                       ) -> tuple[torch.Tensor, torch.Tensor]:
    """Solve A_r x_r = b_r for each run by conjugate gradients (A symmetric positive semi-definite, b [R, M]):
    returns (x [R, M], iterations each run took [R]). A run stops once ‖r‖ ≤ tol·‖b‖; a direction of
    non-positive curvature adds nothing (x stays in the range of A for a singular A)."""
    bnorm = b.norm(dim=1).clamp_min(1e-30)
    x = torch.zeros_like(b)
    r = b.clone()
    d = r.clone()
    rs = (r * r).sum(1)
    done = torch.zeros(b.shape[0], dtype=torch.bool, device=b.device)
    n_it = torch.zeros(b.shape[0], dtype=torch.int64, device=b.device)
    for _ in range(iters):
        done = done | (rs.sqrt() <= tol * bnorm)
        if bool(done.all()):
            break
        Ad = matvec(d)
        dAd = (d * Ad).sum(1)
        alpha = torch.where(done | (dAd <= 0), torch.zeros_like(rs), rs / dAd.clamp_min(1e-300))
        x = x + alpha[:, None] * d
        r = r - alpha[:, None] * Ad
        rs_new = (r * r).sum(1)
        beta = torch.where(done, torch.zeros_like(rs), rs_new / rs.clamp_min(1e-300))
        d = r + beta[:, None] * d
        rs = rs_new
        n_it += (~done).long()
    return x, n_it


def _batched_basis(basis: torch.Tensor, R: int) -> torch.Tensor:
    return basis.expand(R, *basis.shape) if basis.dim() == 2 else basis


def subspace_curvature(matvec: MatVec, basis: torch.Tensor, R: int) -> torch.Tensor:
    """Eigenvalues [R, K] (ascending) of Bᵀ H_r B for an orthonormal basis B [P, K] (or [R, P, K]):
    the extreme Rayleigh quotients of each run's Hessian over span(B). K HVPs."""
    B = _batched_basis(basis, R)
    HB = torch.stack([matvec(B[:, :, i].contiguous()) for i in range(B.shape[2])], 2)  # [R, P, K]
    C = torch.einsum("rpk,rpl->rkl", B, HB).double()
    return torch.linalg.eigvalsh((C + C.transpose(1, 2)) / 2)


def complement_projector(basis: torch.Tensor, R: int) -> MatVec:
    """x [R, P] -> (I − B Bᵀ) x for an orthonormal B [P, K] (or [R, P, K])."""
    B = _batched_basis(basis, R)

    def proj(x: torch.Tensor) -> torch.Tensor:
        x = x.to(B)
        return x - torch.einsum("rpk,rk->rp", B, torch.einsum("rpk,rp->rk", B, x))

    return proj


def complement_lanczos(matvec: MatVec, basis: torch.Tensor, v0: torch.Tensor, iters: int = 25,
                       k: int = 5, tol: float | None = None) -> LanczosResult:
    """Lanczos on P⊥ H P⊥ (P⊥ = I − B Bᵀ) started in the complement of span(B): Ritz values of H
    restricted to the orthogonal complement of the subspace (`iters`, `tol` as `lanczos`)."""
    proj = complement_projector(basis, v0.shape[0])
    return lanczos(lambda v: proj(matvec(proj(v))), proj(v0), iters, k, project=proj, tol=tol)

