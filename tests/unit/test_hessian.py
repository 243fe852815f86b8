"""Curvature depth: HVPs against dense Hessians, batched Lanczos against eigvalsh, and the run analysis."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from grokscope.config import preset
from grokscope.geometry.hessian import (
    DRAW_SALT,
    analyze_hessian,
    checkpoint_indices,
    depth_over_samples,
    summarize_depth_draws,
    summarize_hessian,
)
from grokscope.geometry.hvp import hessian_sample, loss_weights, make_hvp
from grokscope.geometry.krylov import complement_lanczos, lanczos, subspace_curvature
from grokscope.store import RunDir
from grokscope.training import model as M
from grokscope.training import train
from grokscope.training.problem import Problem

from conftest import tiny_config

TASKS = ("add", "mul")


def _cfg(seed: int):
    return preset("quick", seed=seed, data=dict(p=7, tasks=TASKS),
                  model=dict(d_model=4, n_heads=1, d_ff=8, n_layers=1), optim=dict(batch=64))


@pytest.fixture(scope="module")
def tiny():
    """Two runs of a dual-task trunk (p=7, d=4) in float64, their Hessian sample and dense Hessians
    (torch.func.hessian, one run at a time) of the total loss."""
    problem = Problem([_cfg(0), _cfg(3)])
    params = {k: v.double() for k, v in problem.init_params().items()}
    pairs, targets = hessian_sample(problem, 512)
    theta = M.flatten(params)
    H = []
    for r in range(problem.R):
        like = {k: v[r:r + 1] for k, v in params.items()}

        def f(th, r=r, like=like):
            return problem.loss(M.unflatten(th[None], like), pairs[r:r + 1], targets[r:r + 1])[0]

        H.append(torch.func.hessian(f)(theta[r]))
    H = torch.stack(H)  # symmetric up to the float32 log_softmax inside model.per_task_loss (~1e-7)
    return problem, params, pairs, targets, (H + H.transpose(1, 2)) / 2


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _dense_matvec(H: torch.Tensor):
    return lambda v: torch.einsum("rpq,rq->rp", H, v)


@pytest.mark.parametrize("mode", ["rev", "fwd"])
def test_hvp_equals_dense_hessian_times_v(tiny, mode):
    problem, params, pairs, targets, H = tiny
    v = torch.randn(M.flatten(params).shape, generator=_gen(1), dtype=torch.float64)
    hv = make_hvp(problem, params, pairs, targets, mode=mode)(v)
    want = torch.einsum("rpq,rq->rp", H, v)
    assert hv.shape == v.shape and hv.dtype == torch.float64
    torch.testing.assert_close(hv, want, rtol=1e-6, atol=1e-6 * want.abs().max().item())


def test_lanczos_full_krylov_equals_eigvalsh(tiny):
    """With as many steps as dimensions, every reported Ritz value is an eigenvalue (full re-orth)."""
    *_, H = tiny
    ev = torch.linalg.eigvalsh(H)
    v0 = torch.randn(H.shape[:2], generator=_gen(2), dtype=torch.float64)
    res = lanczos(_dense_matvec(H), v0, iters=H.shape[1], k=5)
    torch.testing.assert_close(res.bottom, ev[:, :5], rtol=1e-4, atol=0)
    torch.testing.assert_close(res.top, ev[:, -5:].flip(1), rtol=1e-4, atol=0)


def test_lanczos_25_hvps_find_extreme_eigenvalues(tiny):
    """25 steps of batched Lanczos on real HVPs: λ_min and λ_max within 1e-4 (relative) of eigvalsh, and
    every Ritz value within its residual norm of a true eigenvalue (the a-posteriori bound)."""
    problem, params, pairs, targets, H = tiny
    ev = torch.linalg.eigvalsh(H)
    v0 = torch.randn(H.shape[:2], generator=_gen(3), dtype=torch.float64)
    res = lanczos(make_hvp(problem, params, pairs, targets), v0, iters=25, k=5)
    assert res.bottom.shape == res.top.shape == (2, 5)
    assert (res.bottom[:, :-1] <= res.bottom[:, 1:]).all() and (res.top[:, :-1] >= res.top[:, 1:]).all()
    torch.testing.assert_close(res.lambda_min, ev[:, 0], rtol=1e-4, atol=0)
    torch.testing.assert_close(res.lambda_max, ev[:, -1], rtol=1e-4, atol=0)
    for ritz, resid in ((res.bottom, res.bottom_residual), (res.top, res.top_residual)):
        gap = (ritz[:, :, None] - ev[:, None, :]).abs().min(-1).values
        assert (gap <= resid + 1e-7 * ev.abs().max()).all()


def test_lanczos_batched_equals_per_run(tiny):
    *_, H = tiny
    v0 = torch.randn(H.shape[:2], generator=_gen(4), dtype=torch.float64)
    both = lanczos(_dense_matvec(H), v0, iters=20, k=4)
    for r in range(H.shape[0]):
        one = lanczos(_dense_matvec(H[r:r + 1]), v0[r:r + 1], iters=20, k=4)
        torch.testing.assert_close(both.bottom[r], one.bottom[0], rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(both.top[r], one.top[0], rtol=1e-10, atol=1e-12)


def test_lanczos_restarts_on_breakdown():
    """A spectrum with 3 distinct values makes the Krylov space invariant after 3 steps: Lanczos must
    restart, not divide by zero, and report only true eigenvalues."""
    vals = torch.tensor([1.0] * 10 + [2.0] * 10 + [5.0] * 10 + [-3.0] * 2, dtype=torch.float64)
    Qm, _ = torch.linalg.qr(torch.randn(32, 32, generator=_gen(5), dtype=torch.float64))
    A = (Qm * vals) @ Qm.T
    res = lanczos(lambda v: v @ A, torch.randn(1, 32, dtype=torch.float64), iters=12, k=4)
    assert torch.isfinite(res.ritz).all() and torch.isfinite(res.residual).all()
    gap = (res.ritz[..., None] - vals.unique()).abs().min(-1).values
    assert (gap <= res.residual + 1e-8).all()
    assert (res.residual < 1e-8).sum() >= 8  # the completed blocks found exact eigenvalues
    assert res.lambda_min.item() == pytest.approx(-3.0) and res.lambda_max.item() == pytest.approx(5.0)


def test_task_hessians_sum_to_total(tiny):
    problem, params, pairs, targets, H = tiny
    v = torch.randn(H.shape[:2], generator=_gen(6), dtype=torch.float64)
    per_task = [make_hvp(problem, params, pairs, targets, loss_weights(TASKS, t))(v) for t in TASKS]
    total = make_hvp(problem, params, pairs, targets, loss_weights(TASKS, "total"))(v)
    torch.testing.assert_close(per_task[0] + per_task[1], total, rtol=1e-7, atol=1e-9)
    dense = torch.einsum("rpq,rq->rp", H, v)
    torch.testing.assert_close(total, dense, rtol=1e-6, atol=1e-6 * dense.abs().max().item())
    assert (per_task[0] - per_task[1]).abs().max() > 1e-3 * total.abs().max()  # the tasks really differ
    # per-run weights [R, T]: run 0 add's loss, run 1 mul's loss, in one batched HVP
    mixed = make_hvp(problem, params, pairs, targets, torch.eye(2, dtype=torch.float64))(v)
    torch.testing.assert_close(mixed, torch.stack([per_task[0][0], per_task[1][1]]), rtol=1e-7, atol=1e-9)


def test_subspace_and_complement_curvature(tiny):
    """exec: eigenvalues of BᵀHB exactly; perp: Lanczos on (I−BBᵀ)H(I−BBᵀ) gives the complement's
    extreme eigenvalues (dense reference: H expressed in an orthonormal basis of the complement)."""
    *_, H = tiny
    H = H[:, :64, :64]  # a principal block: still symmetric and indefinite, and cheap to run to convergence
    R, P = H.shape[:2]
    Qm, _ = torch.linalg.qr(torch.randn(P, P, generator=_gen(7), dtype=torch.float64))
    B, C = Qm[:, :6], Qm[:, 6:]
    sub = subspace_curvature(_dense_matvec(H), B, R)
    torch.testing.assert_close(sub, torch.linalg.eigvalsh(B.T @ H @ B), rtol=1e-10, atol=1e-10)
    v0 = torch.randn(R, P, generator=_gen(8), dtype=torch.float64)
    perp = complement_lanczos(_dense_matvec(H), B, v0, iters=P - 6, k=3)
    ev = torch.linalg.eigvalsh(C.T @ H @ C)
    torch.testing.assert_close(perp.bottom, ev[:, :3], rtol=1e-8, atol=1e-10)
    torch.testing.assert_close(perp.top, ev[:, -3:].flip(1), rtol=1e-8, atol=1e-10)
    # the complement spectrum is not the full one (B carries curvature), so the projection matters
    assert (ev[:, 0] - torch.linalg.eigvalsh(H)[:, 0]).abs().max() > 1e-6


def test_checkpoint_indices_even_and_include_ends():
    assert checkpoint_indices(5, 30) == [0, 1, 2, 3, 4]
    idx = checkpoint_indices(100, 30)
    assert len(idx) == 30 and idx[0] == 0 and idx[-1] == 99 and np.all(np.diff(idx) >= 3)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    cfg = tiny_config(data=dict(tasks=TASKS), steps=100, n_snapshots=3)
    out = tmp_path_factory.mktemp("hess")
    train([cfg], out)
    return RunDir(out / cfg.name)


def test_analyze_hessian_on_a_real_run(tiny_run):
    df = analyze_hessian(tiny_run, n_checkpoints=3, k=3, iters=6, n_samples=32, batch_checkpoints=2)
    want = {"step", "loss", "lambda_min", "lambda_max", "bottom", "top", "exec_curv", "perp_curv"}
    assert want <= set(df.columns)
    steps, _ = tiny_run.snapshots()
    assert len(df) == 3 * 3 and set(df["loss"]) == {"total", *TASKS}
    assert int(steps[-1]) in set(df["step"]) and int(steps[0]) in set(df["step"])
    num = df[["lambda_min", "lambda_max", "exec_curv", "perp_curv", "exec_max", "perp_max"]].to_numpy()
    assert np.isfinite(num).all()
    assert (df["lambda_min"] <= df["lambda_max"]).all()
    for b, t in zip(df["bottom"], df["top"], strict=True):
        assert len(b) == len(t) == 3 and b[0] <= b[-1] and t[0] >= t[-1]
    # one checkpoint at a time (first and last) gives the numbers of the batched checkpoints (float32)
    one = analyze_hessian(tiny_run, n_checkpoints=2, k=3, iters=6, n_samples=32, batch_checkpoints=1)
    same = df[df["step"].isin(set(one["step"]))].reset_index(drop=True)
    assert len(one) == len(same) == 2 * 3 and (one["loss"] == same["loss"]).all()
    scale = df["lambda_max"].abs().max()
    for col in ("lambda_min", "lambda_max", "exec_curv", "perp_curv", "loss_value"):
        np.testing.assert_allclose(one[col], same[col], rtol=1e-4, atol=1e-5 * scale)

    s = summarize_hessian(df)
    tot = df[df["loss"] == "total"]
    assert s["depth"] == s["total"]["lambda_min"] == tot["lambda_min"].min()
    assert s["total"]["step"] == int(tot.loc[tot["lambda_min"].idxmin(), "step"])
    assert set(TASKS) <= set(s) and all(math.isfinite(s[t]["exec_curv"]) for t in TASKS)


def test_analyze_hessian_residuals_and_convergence(tiny_run):
    """Every row carries its Ritz residuals; with `tol` the iteration runs on until λ_min and λ_max meet it,
    and the converged λ_min is never above the 6-step one from the same start (interlacing)."""
    short = analyze_hessian(tiny_run, n_checkpoints=2, k=3, iters=6, n_samples=32, subspace=False)
    assert {"lambda_min_residual", "lambda_max_residual", "bottom_residual", "lanczos_iters"} <= set(short.columns)
    assert (short["lanczos_iters"] == 6).all() and "converged" not in short.columns
    assert (short["lambda_min_residual"] > 0).all()
    tol = 1e-4
    conv = analyze_hessian(tiny_run, n_checkpoints=2, k=3, iters=300, n_samples=32, subspace=False, tol=tol)
    assert conv["converged"].all() and (conv["lanczos_iters"] > 6).all()
    assert (conv["lambda_min_residual"] <= tol * conv["lambda_min"].abs()).all()
    scale = conv["lambda_max"].abs().max()
    assert (conv["lambda_min"] <= short["lambda_min"] + 1e-5 * scale).all()


def test_depth_over_samples_redraws_the_sample(tiny_run):
    """Each draw is the total loss's λ_min on its own training sample and start vectors, the same numbers as
    `analyze_hessian` called with that salt and seed; fresh samples move λ_min away from the fixed sample's,
    and the summary's depth per draw is that draw's minimum over checkpoints."""
    df = depth_over_samples(tiny_run, 3, n_checkpoints=3, iters=6, n_samples=32)
    assert sorted(df["draw"].unique()) == [0, 1, 2] and len(df) == 3 * 3
    one = analyze_hessian(tiny_run, 3, iters=6, n_samples=32, subspace=False, seed=2, sample_salt=DRAW_SALT + 1,
                          losses=["total"])
    assert list(one["loss"]) == ["total"] * 3
    np.testing.assert_allclose(df[df["draw"] == 1]["lambda_min"], one["lambda_min"], rtol=1e-6)
    fixed = analyze_hessian(tiny_run, 3, iters=6, n_samples=32, subspace=False, losses=["total"])
    for d in range(3):
        assert not np.allclose(df[df["draw"] == d]["lambda_min"].iloc[1:], fixed["lambda_min"].iloc[1:], rtol=1e-3)
    s = summarize_depth_draws(df)
    assert s["draws"] == 3 and s["depths"] == [df[df["draw"] == d]["lambda_min"].min() for d in range(3)]
    assert s["mean"] == pytest.approx(np.mean(s["depths"])) and s["sd"] == pytest.approx(np.std(s["depths"], ddof=1))


def _dense_spectrum(P: int = 1500) -> tuple[torch.Tensor, torch.Tensor]:
    """A symmetric matrix whose bottom end is the edge of a dense continuum (no gap below λ_min, as a trained
    model's Hessian bulk): P − 10 eigenvalues evenly in [−2, 40], 10 outliers in [45, 100];
    returns (A, eigenvalues ascending)."""
    vals = torch.cat([torch.linspace(-2, 40, P - 10), torch.linspace(45, 100, 10)])
    Qm, _ = torch.linalg.qr(torch.randn(P, P, generator=_gen(11), dtype=torch.float64))
    return (Qm * vals.double()) @ Qm.T, vals.double().sort().values


def test_lanczos_25_steps_vs_converged_on_a_dense_spectrum():
    """The papers' 25 steps leave λ_min of a dense spectrum far from the truth, and say so through the
    residual (not converged by the tolerance test); run to tol it converges, each Ritz value within its
    residual of an eigenvalue, and the reported residuals equal ‖A y − θ y‖ computed from the vectors."""
    A, ev = _dense_spectrum()
    v0 = torch.randn(2, A.shape[0], generator=_gen(12), dtype=torch.float64)
    mv = lambda v: v @ A  # noqa: E731
    tol = 1e-3
    short = lanczos(mv, v0, iters=25, k=5, tol=None)
    assert short.iters == 25 and short.converged is None
    assert (short.lambda_min - ev[0] > 0.1).all()  # 25 steps: λ_min off by > 5 % of the true −2
    assert (short.bottom_residual[:, 0] > tol * short.lambda_min.abs()).all()  # ... and the residual shows it
    assert (short.lambda_max - ev[-1]).abs().max() < 1e-3  # the isolated top converged
    conv = lanczos(mv, v0, iters=600, k=5, tol=tol, vectors=True)
    assert conv.converged.all() and 25 < conv.iters < 600
    assert (conv.bottom_residual[:, 0] <= tol * conv.lambda_min.abs()).all()
    assert ((conv.lambda_min - ev[0]).abs() <= conv.bottom_residual[:, 0] + 1e-10).all()
    assert ((conv.lambda_min - ev[0]).abs() < 1e-4).all()
    for ritz, vec, resid in ((conv.bottom, conv.bottom_vectors, conv.bottom_residual),
                             (conv.top, conv.top_vectors, conv.top_residual)):
        true = (vec @ A - ritz[..., None] * vec).norm(dim=-1)
        torch.testing.assert_close(true, resid, rtol=1e-4, atol=1e-9)
        gap = (ritz[..., None] - ev).abs().min(-1).values
        assert (gap <= resid + 1e-10).all()


def test_lanczos_tol_stops_early_on_an_easy_spectrum():
    """Well-separated extremes converge in few steps: `tol` stops there, with the same λ_min as a long run."""
    vals = torch.cat([torch.tensor([-10.0, 40.0]), torch.linspace(0, 1, 398)]).double()
    Qm, _ = torch.linalg.qr(torch.randn(400, 400, generator=_gen(13), dtype=torch.float64))
    A = (Qm * vals) @ Qm.T
    v0 = torch.randn(1, 400, generator=_gen(14), dtype=torch.float64)
    res = lanczos(lambda v: v @ A, v0, iters=200, k=3, tol=1e-8)
    assert res.converged.all() and res.iters < 60
    assert res.lambda_min.item() == pytest.approx(-10.0, rel=1e-8)
    assert res.lambda_max.item() == pytest.approx(40.0, rel=1e-8)
