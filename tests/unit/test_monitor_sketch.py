"""Sketched trajectories: the record is a fixed linear projection of the full one, and PC1% of the sketch
stays inside the interval the JL second-moment bound gives (monitor/sketch.py), on a model where both fit."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from grokscope.geometry.pca import matrix_pca
from grokscope.monitor import Monitor
from grokscope.monitor.sketch import CountSketch, pc1_error_bound, pc1_interval, sketch_seed
from grokscope.store import RunDir

DELTA = 0.01  # each comparison may fail with probability ≤ 2·DELTA over the sketch's draw


def _train(out, steps: int = 60, **settings) -> RunDir:
    """A 2-layer MLP whose 512×256 first matrix (131072 entries) is above the sketch threshold."""
    torch.manual_seed(0)
    X = torch.randn(256, 256)
    y = (X[:, :8].sum(1) > 0).long()
    model = nn.Sequential(nn.Linear(256, 512), nn.ReLU(), nn.Linear(512, 2))
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    mon = Monitor(model, F.cross_entropy, (X, y), out, watch=["0.weight"], batch_size=64, defect_every=0,
                  watch_every=5, n_snapshots=0, warn=False, **settings)
    for step in range(1, steps + 1):
        idx = torch.randint(0, 256, (64,))
        loss = F.cross_entropy(model(X[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        mon.step(step)
    mon.close()
    return RunDir(out)


@pytest.mark.parametrize("k", [4096, 16384])
def test_sketch_is_the_projection_of_the_full_trajectory_and_pc1_within_the_jl_bound(tmp_path, k):
    _, full = _train(tmp_path / "full", sketch_dim=0).attention_trajectory()
    run = _train(tmp_path / "sketch", sketch_dim=k)
    steps, sketched = run.attention_trajectory()
    W, Y = full["0.weight"], sketched["0.weight"]
    assert W.shape == (13, 512, 256) and Y.shape == (13, k)
    S = CountSketch(W[0].numel(), k, sketch_seed(0, "0.weight"))
    assert torch.allclose(Y, torch.stack([S(w) for w in W]), atol=1e-5)  # the same S at every record
    p, p_sketch = matrix_pca(W, 1).pc1_percent / 100, matrix_pca(Y, 1).pc1_percent / 100
    lo, hi = pc1_interval(p, pc1_error_bound(k, DELTA))
    assert lo <= p_sketch <= hi, (p, p_sketch, lo, hi)


def test_sketch_preserves_squared_norms_on_average():
    """E‖Sx‖² = ‖x‖² (signs matter: x > 0 would be biased upward without them), within 5 standard errors."""
    x = torch.rand(5000, dtype=torch.float64) + 0.5
    k, draws = 256, 400
    ratios = torch.tensor([float(CountSketch(5000, k, s)(x).pow(2).sum() / x.pow(2).sum()) for s in range(draws)])
    assert abs(float(ratios.mean()) - 1) < 5 * (2 / k) ** 0.5 / draws**0.5


def test_small_tensors_stay_full_and_sketch_dim_zero_turns_it_off(tmp_path):
    run = _train(tmp_path / "r", steps=10, sketch_dim=128, sketch_above=10**6)
    assert run.attention_trajectory()[1]["0.weight"].shape == (3, 512, 256)
