"""Per-group geometry: the per-layer defects decompose the commutator, and Lanczos on a group's Hessian block
finds that block's extreme eigenvalues (checked against the dense Hessian in float64)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from grokscope.monitor import Monitor
from grokscope.monitor.groups import Groups, layer_of


def _setup(tmp_path, **settings) -> Monitor:
    torch.manual_seed(0)
    X = torch.randn(40, 3, dtype=torch.float64)
    y = (X[:, 0] > X[:, 1]).long()
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2)).double()
    return Monitor(model, F.cross_entropy, (X, y), tmp_path / "r", batch_size=8, watch_every=5, warn=False,
                   **settings)


def test_layer_of_cuts_at_the_first_index():
    assert layer_of("transformer.h.3.attn.c_attn.weight") == "transformer.h.3"
    assert layer_of("transformer.wte.weight") == "transformer.wte" and layer_of("pos") == "pos"


def test_group_defects_decompose_the_defect(tmp_path):
    mon = _setup(tmp_path, draws=1, defect_every=1)
    rows = [r for r in mon.defect_group_rows if r["step"] == 0]
    assert {r["group"] for r in rows} == {"0", "2"} and sum(r["n_params"] for r in rows) == mon.target.n_params
    assert abs(sum(r["share"] for r in rows) - 1) < 1e-12
    D = mon.defect_rows[0]["defect"]
    assert abs(sum(r["defect"] ** 2 for r in rows) - D**2) < 1e-9 * D**2


def test_group_lanczos_equals_the_dense_hessian_block(tmp_path):
    mon = _setup(tmp_path, hessian_every=1, hessian_groups=["0.*"], hessian_iters=16, hessian_samples=40)
    row = mon.hessian_group_rows[0]
    theta = mon.target.theta()
    H = torch.autograd.functional.hessian(lambda t: mon.target.loss(mon.target.unflatten(t), mon._hessian_batch),
                                          theta)
    g = Groups(mon.target.names, mon.target.sizes, ["0.*"])
    idx = torch.cat([torch.arange(a, b) for a, b in g.slices["0.*"]])
    ev = torch.linalg.eigvalsh(H[idx][:, idx])
    assert row["n_params"] == 16 and len(idx) == 16
    assert abs(row["lambda_min"] - float(ev[0])) < 1e-8 * float(ev.abs().max())
    assert abs(row["lambda_max"] - float(ev[-1])) < 1e-8 * float(ev.abs().max())
    full = torch.linalg.eigvalsh(H)  # the block's spectrum lies within the whole Hessian's (Cauchy interlacing)
    assert float(full[0]) <= row["lambda_min"] + 1e-10 and row["lambda_max"] <= float(full[-1]) + 1e-10
