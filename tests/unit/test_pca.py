"""Trajectory PCA, expanding PC1%, random-walk null and the execution basis."""

import numpy as np
import pytest
import torch

from grokscope.config import preset
from grokscope.geometry.pca import (
    exec_basis_from_traj,
    expanding_pc1,
    flatten_snapshots,
    matrix_pca,
    random_basis,
    random_walk_null,
    trajectory_pcs_from_matrix,
    weight_svd_basis,
)
from grokscope.training import model as M


def _traj(T=12, shape=(5, 5), seed=0, drift=3.0):
    g = torch.Generator().manual_seed(seed)
    t = torch.linspace(0, 1, T).view(T, *[1] * len(shape))
    direction = torch.randn(*shape, generator=g)
    return drift * t * direction + 0.1 * torch.randn(T, *shape, generator=g).cumsum(0)


@pytest.mark.parametrize("T,shape", [(12, (5, 5)), (30, (3, 3))])  # T < D (Gram route) and T > D (SVD)
def test_matrix_pca_matches_numpy_svd(T, shape):
    traj = _traj(T=T, shape=shape)
    res = matrix_pca(traj, k=4)
    X = traj.reshape(len(traj), -1).double().numpy()
    X = X - X[0]
    X = X - X.mean(0)
    _, s, vt = np.linalg.svd(X, full_matrices=False)
    frac = s**2 / (s**2).sum()
    assert res.pc1_percent == pytest.approx(100 * frac[0], rel=1e-10)
    np.testing.assert_allclose(res.spectrum, frac[:4], rtol=1e-10)
    np.testing.assert_allclose(res.singular_values, s[:4], rtol=1e-10)
    for i in range(4):  # unit rows, equal to numpy's up to sign
        c = res.components[i].double().numpy()
        assert abs(abs(c @ vt[i]) - 1) < 1e-5
    assert 50 < res.pc1_percent < 100  # a drifting walk is dominated by its drift


def test_matrix_pca_ignores_the_offset_w0():
    traj = _traj()
    a, b = matrix_pca(traj.double(), 3), matrix_pca(traj.double() + 7.0, 3)
    assert a.pc1_percent == pytest.approx(b.pc1_percent, rel=1e-9)


def test_trajectory_pcs_uncentred_svd():
    theta = (torch.randn(1, 40).repeat(8, 1) + _traj(T=8, shape=(40,), seed=1)).double()
    pcs = trajectory_pcs_from_matrix(theta, k=5, steps=np.arange(8) * 100)
    delta = (theta - theta[0]).double().numpy()
    _, s, vt = np.linalg.svd(delta, full_matrices=False)  # uncentred: no mean removal
    np.testing.assert_allclose(pcs.variance_fraction, (s**2 / (s**2).sum())[:5], rtol=1e-9)
    np.testing.assert_allclose(pcs.cumulative, np.cumsum(pcs.variance_fraction), rtol=1e-12)
    B = pcs.basis.double()
    assert B.shape == (40, 5)
    torch.testing.assert_close(B.T @ B, torch.eye(5, dtype=torch.float64), atol=1e-5, rtol=0)
    assert abs(abs(B[:, 0].numpy() @ vt[0]) - 1) < 1e-5
    # with all k directions the trajectory is rebuilt exactly: θ₀ + V Vᵀ Δθ = θ
    full = trajectory_pcs_from_matrix(theta, k=40)
    V = full.basis.double()
    rebuilt = theta[0].double() + (theta.double() - theta[0].double()) @ V @ V.T
    torch.testing.assert_close(rebuilt, theta.double(), atol=1e-4, rtol=0)


def test_expanding_pc1_matches_direct_pca():
    traj = _traj(T=10)
    idx, pc1 = expanding_pc1(traj, min_snapshots=3)
    assert idx[0] == 2 and idx[-1] == 9 and len(pc1) == 8
    for i in (2, 5, 9):
        j = list(idx).index(i)
        assert pc1[j] == pytest.approx(matrix_pca(traj[: i + 1]).pc1_percent, rel=1e-8)


def test_random_walk_null_separates_a_line_from_a_walk():
    T, D = 30, 200
    line = torch.linspace(0, 1, T)[:, None] * torch.randn(1, D)
    res = random_walk_null(line, n_null=10, seed=1)
    assert res.observed == pytest.approx(100.0, abs=1e-6)
    assert 40 < res.null_mean < 95 and res.null_std > 0  # Brownian PC1 share is ~60%
    assert res.z > 3
    walk = torch.randn(T, D, generator=torch.Generator().manual_seed(5)).cumsum(0)
    res_walk = random_walk_null(walk, n_null=10, seed=2)
    assert abs(res_walk.z) < 3
    assert res_walk.observed < res.observed


def _mc_walk_pc1(T, D, n, rng, norms=None):
    """PC1% of centred random walks (numpy, SVD of the centred points), written independently."""
    out = []
    for _ in range(n):
        inc = rng.standard_normal((T - 1, D))
        inc /= np.linalg.norm(inc, axis=1, keepdims=True)
        if norms is not None:
            inc *= np.asarray(norms)[:, None]
        pts = np.vstack([np.zeros(D), np.cumsum(inc, 0)])
        pts -= pts.mean(0)
        s2 = np.linalg.svd(pts, compute_uv=False) ** 2
        out.append(100 * s2[0] / s2.sum())
    return float(np.mean(out))


@pytest.mark.slow
def test_random_walk_null_equal_steps_matches_monte_carlo():
    rng = np.random.default_rng(0)
    for T in (10, 12):
        # the observed trajectory's own step profile must not matter for the equal-step null
        traj = torch.randn(T, 40, 40, dtype=torch.float64).cumsum(0) * torch.linspace(5, 1, T)[:, None, None]
        res = random_walk_null(traj, n_null=40, seed=3)
        mc = _mc_walk_pc1(T, 1600, 200, rng)
        assert res.null_mean == pytest.approx(mc, abs=1.0)
        assert 60.0 < res.null_mean < 63.5  # ≈ 61–62 % for 10–12 snapshots
    long = random_walk_null(torch.randn(200, 30, 30).cumsum(0), n_null=10, seed=0)
    assert long.null_mean == pytest.approx(600 / np.pi**2, abs=2.0)  # 6/π², the many-snapshot limit


def test_random_walk_null_matched_steps_follows_the_step_profile():
    rng = np.random.default_rng(1)
    norms = np.array([5.5, 2.1, 1.3, 1.2, 1.1, 1.3, 1.8, 1.7, 2.3, 1.1])  # a quick run's W_K steps
    inc = rng.standard_normal((10, 1600))
    inc *= (norms / np.linalg.norm(inc, axis=1))[:, None]
    traj = torch.from_numpy(np.vstack([np.zeros(1600), np.cumsum(inc, 0)])).reshape(11, 40, 40)
    res = random_walk_null(traj, n_null=40, seed=0, steps="matched")
    mc = _mc_walk_pc1(11, 1600, 200, rng, norms)
    assert res.null_mean == pytest.approx(mc, abs=1.0)
    assert res.null_mean < 57  # the big first step pulls the matched null ~7 points below the equal-step one
    with pytest.raises(ValueError, match="steps"):
        random_walk_null(traj, steps="other")


def test_random_basis_orthonormal_and_seeded():
    Q = random_basis(300, 7, seed=3)
    assert Q.shape == (300, 7)
    torch.testing.assert_close(Q.T @ Q, torch.eye(7), atol=1e-5, rtol=0)
    assert torch.equal(Q, random_basis(300, 7, seed=3))
    assert not torch.allclose(Q, random_basis(300, 7, seed=4))


def test_exec_basis_orthonormal_rank_and_support():
    cfg = preset("quick", data=dict(p=7), model=dict(d_model=8, n_heads=2, d_ff=16, n_layers=2))
    params = M.init_params(cfg.model, cfg.data, 0)
    slices = M.param_slices(params, batched=False)
    P = M.count_params(params, batched=False)
    names = M.attention_names(cfg.model)
    attn = {n: _traj(T=9, shape=(8, 8), seed=i) for i, n in enumerate(names)}
    B = exec_basis_from_traj(attn, slices, P, per_matrix=2)
    assert B.shape == (P, 16)  # 2 directions × 4 matrices × 2 layers
    torch.testing.assert_close(B.T @ B, torch.eye(16), atol=1e-5, rtol=0)
    support = torch.zeros(P, dtype=torch.bool)
    for n in names:
        support[slices[n]] = True
    assert B[~support].abs().max() < 1e-12  # nothing outside the attention matrices
    for n in names:  # each matrix's top-2 directions lie in span(B)
        comps = matrix_pca(attn[n], 2).components
        v = torch.zeros(2, P)
        v[:, slices[n]] = comps
        resid = v - (v @ B) @ B.T
        assert resid.norm(dim=1).max() < 1e-4


def test_flatten_snapshots_follows_model_flatten_layout():
    cfg = preset("quick", data=dict(p=7), model=dict(d_model=8, n_heads=2, d_ff=16))
    runs = [M.init_params(cfg.model, cfg.data, s) for s in (0, 1, 2)]
    stacked = M.stack_params(runs)
    shuffled = dict(sorted(stacked.items()))  # safetensors returns keys in another order
    assert list(shuffled) != list(stacked)
    flat = flatten_snapshots(shuffled, M.param_slices(stacked))
    assert torch.equal(flat, M.flatten(stacked))


def test_weight_svd_basis_spans_each_matrix_top_singular_pairs():

    g = torch.Generator().manual_seed(0)
    mats = {"layers.0.attn.W_Q": torch.randn(6, 6, generator=g), "layers.0.attn.W_O": torch.randn(6, 6, generator=g)}
    slices = {"layers.0.attn.W_Q": slice(3, 39), "layers.0.attn.W_O": slice(40, 76)}
    B = weight_svd_basis(mats, slices, P=80, k=3).double()
    assert B.shape == (80, 6)
    torch.testing.assert_close(B.T @ B, torch.eye(6, dtype=torch.float64), atol=1e-6, rtol=0)
    for name, W in mats.items():
        v = torch.zeros(80, dtype=torch.float64)
        v[slices[name]] = W.double().flatten()
        s = torch.linalg.svdvals(W.double())
        # the part of vec(W) in the basis is its rank-3 truncation: norm sqrt(s1² + s2² + s3²)
        assert float((B.T @ v).norm()) == pytest.approx(float(s[:3].norm()), rel=1e-5)
    assert float(B[:3].abs().max()) < 1e-12 and float(B[76:].abs().max()) < 1e-12  # only their slices
