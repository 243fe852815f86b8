"""Fragility edits of a final model and the reconstruction threshold k*."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest
import torch

from grokscope.commands import fragility as frag_cmd
from grokscope.config import preset
from grokscope.geometry import compress as C
from grokscope.geometry import reconstruct as Rc
from grokscope.store import RunDir
from grokscope.training import model as M
from grokscope.training import train


def _pair(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    theta0 = {"a": torch.randn(12, 16, generator=g), "b": torch.randn(16, generator=g),
              "c": torch.randn(16, 10, generator=g)}
    theta = {k: v + 0.3 * torch.randn(v.shape, generator=g) for k, v in theta0.items()}
    return theta0, theta


def test_full_rank_svd_is_identity_and_rank_r_is_optimal():
    theta0, theta = _pair()
    out = C.svd_truncate(theta0, theta, [2, 10, 12], min_numel=1)
    for k in theta:  # rank >= min(shape): bitwise identity (10 is full rank for "c", 12 for "a")
        assert torch.equal(out[k][2], theta[k])
    assert torch.equal(out["c"][1], theta["c"])
    assert torch.equal(out["b"][0], theta["b"])  # vectors keep their full Δ
    dW = (out["a"][0] - theta0["a"]).double()
    assert int(torch.linalg.matrix_rank(dW, rtol=1e-5)) == 2  # float32 rounding sits at ~1e-7
    s = torch.linalg.svdvals((theta["a"] - theta0["a"]).double())
    err = torch.linalg.matrix_norm((theta["a"] - out["a"][0]).double())
    assert abs(float(err) - float(s[2:].pow(2).sum().sqrt())) < 1e-4  # Eckart–Young
    # min_numel: small matrices are left alone
    small = C.svd_truncate(theta0, theta, [1], min_numel=10_000)
    assert torch.equal(small["a"][0], theta["a"])


def test_joint_qkv_truncation_is_the_packed_in_proj_svd():
    """The authors cut PyTorch's in_proj_weight [3d, d] = [W_Qᵀ; W_Kᵀ; W_Vᵀ] (x @ W here) as one matrix."""
    g = torch.Generator().manual_seed(3)
    d = 8
    names = [f"layers.0.attn.W_{m}" for m in "QKVO"]
    theta0 = {k: torch.randn(d, d, generator=g, dtype=torch.float64) for k in names}
    theta = {k: v + 0.5 * torch.randn(d, d, generator=g, dtype=torch.float64) for k, v in theta0.items()}
    joint = C.svd_truncate(theta0, theta, [3, d], min_numel=1)
    sep = C.svd_truncate(theta0, theta, [3], min_numel=1, qkv="separate")
    packed = torch.cat([(theta[k] - theta0[k]).T for k in names[:3]])  # [3d, d], torch's layout
    U, S, Vh = torch.linalg.svd(packed, full_matrices=False)
    cut = (U[:, :3] * S[:3]) @ Vh[:3]
    for i, k in enumerate(names[:3]):
        torch.testing.assert_close(joint[k][0] - theta0[k], cut[i * d:(i + 1) * d].T, atol=1e-10, rtol=0)
        assert torch.equal(joint[k][1], theta[k])  # rank d = the packed matrix's smaller side: untouched
        assert not torch.allclose(sep[k][0], joint[k][0])  # separate cuts differ
        s_k = torch.linalg.svdvals(theta[k] - theta0[k])
        err = torch.linalg.matrix_norm(theta[k] - sep[k][0])
        assert float(err) == pytest.approx(float(s_k[3:].norm()), rel=1e-8)
    torch.testing.assert_close(joint[names[3]][0], sep[names[3]][0])  # W_O is cut alone either way
    with pytest.raises(ValueError, match="qkv"):
        C.svd_truncate(theta0, theta, [1], qkv="packed")


def test_prune_keep_all_is_identity_and_keeps_the_largest():
    g = torch.Generator().manual_seed(1)
    theta0, theta = torch.randn(200, generator=g), torch.randn(200, generator=g)
    out = C.prune_delta(theta0, theta, [1.0, 0.1, 0.0])
    assert torch.equal(out[0], theta)
    d = theta - theta0
    kept = (out[1] - theta0).abs() > 1e-6
    assert int(kept.sum()) == 20
    assert float(d.abs()[kept].min()) >= float(d.abs()[~kept].max())
    torch.testing.assert_close(out[2], theta0)


def test_scale_one_is_identity_and_zero_is_init():
    g = torch.Generator().manual_seed(2)
    theta0, theta = torch.randn(50, generator=g), torch.randn(50, generator=g)
    out = C.scale_delta(theta0, theta, [1.0, 0.0, 1.05])
    assert torch.equal(out[0], theta)
    torch.testing.assert_close(out[1], theta0)
    torch.testing.assert_close(out[2] - theta0, 1.05 * (theta - theta0))


def test_perturb_touches_exactly_the_fraction():
    theta = torch.randn(1000, generator=torch.Generator().manual_seed(3))
    assert torch.equal(C.perturb(theta, 0.0, 0.5), theta)
    out = C.perturb(theta, 0.05, 0.2, seed=7)
    changed = out != theta
    assert int(changed.sum()) == 50
    rel = ((out - theta)[changed] / theta[changed].abs())
    assert 0.1 < float(rel.std()) < 0.3
    assert torch.equal(out, C.perturb(theta, 0.05, 0.2, seed=7))


def test_full_basis_reconstructs_exactly():
    g = torch.Generator().manual_seed(4)
    P = 40
    theta0, delta = torch.randn(P, generator=g), torch.randn(P, generator=g)
    Q, _ = torch.linalg.qr(torch.randn(P, P, generator=g, dtype=torch.float64))
    out = Rc.reconstruct(theta0, delta, Q.float())
    torch.testing.assert_close(out[-1], theta0 + delta, atol=1e-5, rtol=0)
    # the captured part of Δθ grows with k
    cap = (out.double() - theta0.double()).pow(2).sum(1)
    assert (cap.diff() >= -1e-9).all()
    assert not torch.allclose(out[0], theta0 + delta, atol=1e-3)


def test_k_star_rule():
    acc = np.array([[0.1, 0.95], [0.91, 0.5], [0.92, 0.93], [0.99, 0.99]])
    assert Rc.k_star(acc, [1, 2, 3, 4]) == 3
    assert Rc.k_star(acc, [1, 2, 3, 4], threshold=0.95) == 4
    assert Rc.k_star(acc[:2], [1, 2]) is None


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    torch.set_num_threads(1)
    cfg = preset("quick", steps=300, data=dict(p=11, train_frac=0.8),
                 model=dict(d_model=16, n_heads=2, d_ff=32), defect_every=0, eval_every=50,
                 checkpoint_every=100, n_snapshots=5)
    out = tmp_path_factory.mktemp("frag")
    train([cfg], out)
    return RunDir(out / cfg.name)


def test_fragility_identities_on_a_trained_run(run):
    df = C.fragility(run, C.FragilityConfig(ranks=(1, 64), keeps=(0.05, 1.0), scales=(0.0, 1.0),
                                            perturb_fractions=(0.1,), perturb_sizes=(0.5,)))
    full = df[df.kind == "full"].set_index("task")
    summ = run.summary()
    for task, row in full.iterrows():
        assert abs(row.test_acc - summ["final_acc"][task]["test"]) < 1e-9
        assert abs(row.train_acc - summ["final_acc"][task]["train"]) < 1e-9
    for kind, value in (("svd", 64.0), ("prune", 1.0), ("scale", 1.0)):
        same = df[(df.kind == kind) & (df.value == value)].set_index("task")
        assert (same.test_acc == full.test_acc).all() and (same.train_acc == full.train_acc).all()
        assert np.allclose(same.delta_kept, 1.0)
    init = df[df.kind == "init"].set_index("task")
    sc0 = df[(df.kind == "scale") & (df.value == 0.0)].set_index("task")
    assert (init.train_acc == sc0.train_acc).all()
    assert float(df[(df.kind == "svd") & (df.value == 1.0)].delta_kept.iloc[0]) < 1.0


def test_reconstruction_with_all_pcs_rebuilds_the_final_snapshot(run):
    steps, _ = run.snapshots()
    res = Rc.reconstruction_threshold(run, k=50)
    kmax = int(res.table.k.max())
    assert kmax == len(steps) - 1  # S − 1 nonzero Δθ(t) rows
    last = res.table[res.table.k == kmax]
    assert np.allclose(last.delta_captured, 1.0, atol=1e-6)
    assert np.allclose(last.cumulative, 1.0, atol=1e-9)
    final = run.summary()["final_acc"]
    for _, r in last.iterrows():
        assert abs(r.train_acc - final[r.task]["train"]) < 1e-9
    assert res.k_star is None  # this run never generalises (test accuracy stays below 90%)


@pytest.fixture(scope="module")
def grokked(tmp_path_factory):
    """A run that groks (p 13, 90% of the pairs for training: ~1600 steps), with a few snapshots."""
    torch.set_num_threads(1)
    cfg = preset("quick", steps=2500, data=dict(p=13, train_frac=0.9), model=dict(d_model=32, n_heads=2, d_ff=64),
                 optim=dict(batch=64), defect_every=0, eval_every=50, checkpoint_every=500, n_snapshots=6, seed=1)
    out = tmp_path_factory.mktemp("grokked")
    train([cfg], out)
    return RunDir(out / cfg.name)


@pytest.mark.slow
def test_k_star_of_a_grokked_run_is_where_its_reconstruction_first_generalises(grokked):
    assert all(g is not None for g in grokked.grok_steps().values())
    res = Rc.reconstruction_threshold(grokked, k=50)
    assert res.k_star is not None  # the all-PC reconstruction is the grokked model itself
    acc = res.table.groupby("k").test_acc.min()
    assert acc[res.k_star] > res.threshold and (acc[acc.index < res.k_star] <= res.threshold).all()
    at = res.table[res.table.k == res.k_star]
    assert res.cumulative_at_k_star == pytest.approx(float(at.cumulative.iloc[0]))


def test_fragility_command_writes_tables(run, capsys):
    args = argparse.Namespace(run_dir=str(run.path), k=3, threshold=0.9, seed=0, device="cpu", json=True)
    assert frag_cmd.run(args) == 0
    out = json.loads(capsys.readouterr().out)
    assert {"k_star", "fragility", "reconstruction"} <= set(out)
    assert run.has_table("fragility") and run.has_table("reconstruction")
    assert set(run.table("fragility").kind) == {"full", "init", "svd", "prune", "scale", "perturb"}
    assert sorted(set(run.table("reconstruction").k)) == [1, 2, 3]
    args.json = False
    assert frag_cmd.run(args) == 0
    text = capsys.readouterr().out
    assert "k*" in text
    edits = text.split("\n\n")[0].splitlines()[2:]  # one line per stored edit, not the product of its levels
    frag = run.table("fragility")
    assert len(edits) == len(frag.drop_duplicates(["kind", "value", "size"]))
    assert [e.split()[0] for e in edits] == list(frag.drop_duplicates(["kind", "value", "size"]).kind)
    assert not any("nan" in e for e in edits)


def test_flat_layout_matches_model_flatten(run):
    """The variants are unflattened with the init order; the final model must round-trip."""
    theta0, theta, _ = C.final_and_init(run)
    flat = M.flatten({k: v[None] for k, v in theta.items()})
    back = M.unflatten(flat, {k: v[None] for k, v in theta.items()})
    assert all(torch.equal(back[k][0], theta[k]) for k in theta)
