"""Spectral edge: singular-value gaps, commutator norms, the rolling Gram matrix of updates."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from grokscope.config import preset
from grokscope.geometry import spectral as S
from grokscope.store import RunDir
from grokscope.training import train


def test_singular_gaps_match_numpy():
    g = torch.Generator().manual_seed(0)
    W = torch.randn(5, 8, 8, generator=g)
    gaps = S.singular_gaps(W).numpy()
    sv = np.linalg.svd(W.double().numpy(), compute_uv=False)
    np.testing.assert_allclose(gaps[:, 0], sv[:, 0] - sv[:, 1], rtol=1e-10)
    np.testing.assert_allclose(gaps[:, 1], sv[:, 1] - sv[:, 2], rtol=1e-10)
    assert (gaps >= 0).all()


def test_commutator_zero_for_commuting_and_transpose_invariant():
    g = torch.Generator().manual_seed(1)
    A = torch.randn(6, 6, generator=g, dtype=torch.float64)
    B = torch.randn(6, 6, generator=g, dtype=torch.float64)
    assert float(S.commutator_norm(torch.diag(A[0]), torch.diag(A[1]))) == 0.0
    assert float(S.commutator_norm(A, A @ A)) < 1e-9
    c = float(S.commutator_norm(A, B))
    assert c > 0.1
    assert abs(float(S.commutator_norm(A.T, B.T)) - c) < 1e-9
    direct = np.linalg.norm(A.numpy() @ B.numpy() - B.numpy() @ A.numpy())
    assert abs(c - direct) < 1e-9


def test_head_commutators_use_diagonal_blocks():
    g = torch.Generator().manual_seed(2)
    Wq, Wk = torch.randn(3, 8, 8, generator=g), torch.randn(3, 8, 8, generator=g)
    h = S.head_commutator_norms(Wq, Wk, n_heads=2)
    assert h.shape == (3, 2)
    q, k = Wq[1, 4:, 4:].double(), Wk[1, 4:, 4:].double()
    assert abs(float(h[1, 1]) - float(torch.linalg.matrix_norm(q @ k - k @ q))) < 1e-9
    # off-diagonal blocks do not enter a head's commutator
    Wq2 = Wq.clone()
    Wq2[:, :4, 4:] += 5.0
    torch.testing.assert_close(S.head_commutator_norms(Wq2, Wk, 2), h)


def _direct_gram(X: np.ndarray, window: int, end: int):
    """Reference: SVD of the last `window` updates ending at record `end`."""
    U = np.diff(X[end - window:end + 1], axis=0)
    s = np.linalg.svd(U, compute_uv=False)
    lam = s**2
    scores = (s[:-1] / s.sum()) * (s[:-1] / s[1:])
    k = int(np.argmax(scores))
    return lam[1] - lam[2], s[k] / s[k + 1], k + 1, lam


def test_rolling_gram_matches_direct_svd_and_pieces():
    g = torch.Generator().manual_seed(3)
    X = torch.randn(14, 30, generator=g, dtype=torch.float64).cumsum(0)
    w = 5
    st = S.rolling_gram(X, window=w)
    assert list(st.end) == list(range(w, 14))
    for i, end in enumerate(st.end):
        g23, R, k, lam = _direct_gram(X.numpy(), w, int(end))
        np.testing.assert_allclose(st.g23[i], g23, rtol=1e-8, atol=1e-10)
        np.testing.assert_allclose(st.R[i], R, rtol=1e-8)
        assert st.k[i] == k
        np.testing.assert_allclose(st.eigenvalues[i], lam, rtol=1e-8, atol=1e-9)
    # the same sequence split into two "matrices" gives the same statistics
    parts = S.rolling_gram([X[:, :12].reshape(14, 3, 4), X[:, 12:]], window=w)
    np.testing.assert_allclose(parts.g23, st.g23, rtol=1e-10)
    np.testing.assert_allclose(parts.R, st.R, rtol=1e-10)


def test_gram_rank_one_updates():
    """Updates along one direction: λ₂ = λ₃ = 0, so g₂₃ = 0 and the signal rank is 1."""
    v = torch.randn(20, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    X = torch.arange(12, dtype=torch.float64)[:, None] ** 1.5 * v
    st = S.rolling_gram(X, window=4)
    assert np.allclose(st.g23, 0.0, atol=1e-8 * st.eigenvalues[:, 0].max())
    assert (st.k == 1).all()
    assert (st.R > 1e6).all()


def test_short_trajectory_gives_empty_table():
    st = S.rolling_gram(torch.randn(5, 4), window=10)
    assert len(st.g23) == 0


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    torch.set_num_threads(1)
    cfg = preset("quick", steps=200, data=dict(p=11), model=dict(d_model=16, n_heads=2, d_ff=32),
                 defect_every=0, attn_every=100, eval_every=50, checkpoint_every=100)
    out = tmp_path_factory.mktemp("spec")
    train([cfg], out)
    return RunDir(out / cfg.name), cfg


def test_spectral_edge_tables(tiny_run):
    run, cfg = tiny_run
    steps, attn = run.attention_trajectory()
    se = S.spectral_edge(run, window=2)
    T = len(steps)
    assert len(se.layers) == T * cfg.model.n_layers
    assert len(se.heads) == T * cfg.model.n_layers * cfg.model.n_heads
    assert len(se.gram) == T - 2
    row = se.layers.iloc[-1]
    W = attn["layers.0.attn.W_Q"][-1]
    sv = torch.linalg.svdvals(W.double())
    assert abs(row.gap12 - float(sv[0] - sv[1])) < 1e-9
    assert abs(row.commutator - float(S.commutator_norm(W, attn["layers.0.attn.W_K"][-1]))) < 1e-9
    # training moved W_Q, so the recorded matrices differ over time
    assert se.layers.sigma1.nunique() > 1
