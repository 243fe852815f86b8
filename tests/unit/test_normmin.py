"""Norm minimisation on the zero-loss manifold (P3): projections, decoupled dynamics, toys, CLI."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from grokscope.cli import main
from grokscope.config import preset
from grokscope.data.tasks import make_split
from grokscope.errors import ConfigError
from grokscope.experiments import p3_mlp as P3
from grokscope.geometry import normmin as N
from grokscope.store import RunDir
from grokscope.training import model as M
from grokscope.training import train
from grokscope.training.problem import Problem


def _mlp_cfgs(seeds=(0, 1), steps=200, p=7, width=16):
    exp = P3.MLPExperiment(p=p, width=width, steps=steps, seeds=seeds, every=100, project_steps=20)
    return exp, P3.mlp_configs(exp)


# ---- decoupled dynamics ------------------------------------------------------------------------------

def _decoupled_small(seeds=(0, 1)):
    cfg = N.DecoupledConfig(p=11, width=64, seeds=seeds, steps=40, eval_every=10, lr=1e-3)
    Xtr, Ytr, Xte, yte = N.decoupled_data(cfg)
    W1 = torch.stack([torch.randn(11, 64, generator=torch.Generator().manual_seed(s), dtype=torch.float64)
                      for s in seeds])
    return cfg, Xtr, Ytr, W1


def test_decoupled_closed_form_gradient_matches_autograd():
    _, X, Y, W1 = _decoupled_small()
    for lam in (1.0, 0.3):
        g, _ = N.decoupled_grad(W1, X, Y, lam)
        W = W1.clone().requires_grad_()
        N.decoupled_R(W, X, Y, lam).sum().backward()
        rel = (g - W.grad).norm() / W.grad.norm()
        assert rel < 1e-6
        # the appendix's flipped sign on the data term would not match
        flipped = 2 * lam * W1 - (g - 2 * lam * W1)
        assert (flipped - W.grad).norm() / W.grad.norm() > 1e-2


def test_decoupled_readout_is_minimum_norm_exact_fit():
    _, X, Y, W1 = _decoupled_small()
    lam = 0.5
    W2 = N.decoupled_readout(W1, X, Y)
    H = torch.relu(X @ W1)
    assert torch.allclose(H @ W2, Y, atol=1e-8)
    assert torch.allclose(W2, torch.linalg.pinv(H) @ Y, atol=1e-8)
    R = N.decoupled_R(W1, X, Y, lam)
    assert torch.allclose(R, lam * (W1.pow(2).sum((1, 2)) + W2.pow(2).sum((1, 2))), rtol=1e-10)


def test_decoupled_simulation_decreases_R_and_records_history():
    cfg = N.DecoupledConfig(p=11, width=64, seeds=(0, 1), steps=40, eval_every=10, lr=1e-3)
    sim = N.simulate_decoupled(cfg)
    h = sim["history"]
    assert set(h.seed) == {0, 1} and h.step.max() == 40
    for _, d in h.groupby("seed"):
        R = d.sort_values("step").R.to_numpy()
        assert np.all(np.diff(R) < 0), R  # small steps of -∇R lower R
    assert ((h.test_acc >= 0) & (h.test_acc <= 1)).all()
    re, im = sim["fourier_final"]
    assert re.shape == (2, 11 // 2 + 1) and im.shape == re.shape
    rows = N.decoupled_summary(sim)
    assert len(rows) == 2 and all(0 < r["top3_power_share_final"] <= 1 for r in rows)


def test_decoupled_step_is_p3s_update_and_init():
    """P3 §7: E ← E + η ΔE, ΔE = Xᵀ((A Y Yᵀ A H) ⊙ σ′(X E)) − E with A = (HHᵀ)⁻¹; E ~ N(0, p^−1/2)."""
    _, X, Y, W1 = _decoupled_small()
    H = torch.relu(X @ W1)
    A = torch.linalg.inv(H @ H.transpose(-1, -2))
    dE = X.transpose(-1, -2) @ ((A @ Y @ Y.transpose(-1, -2) @ A @ H) * (X @ W1 > 0)) - W1
    for lam in (1.0, 0.3):
        g, _ = N.decoupled_grad(W1, X, Y, lam)
        torch.testing.assert_close(N.decoupled_update(g, lam), dE, rtol=1e-7, atol=1e-9)
    cfg = N.DecoupledConfig(p=37, width=512, seeds=(0,), steps=1, eval_every=1, lr=1e-3)
    assert cfg.std == pytest.approx(37 ** -0.5)
    sim = N.simulate_decoupled(cfg)
    W0 = torch.randn(37, 512, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 37 ** -0.5
    Xtr, Ytr, _, _ = N.decoupled_data(cfg)
    g, _ = N.decoupled_grad(W0[None], Xtr, Ytr, 1.0)
    torch.testing.assert_close(sim["W1"], W0[None] + 1e-3 * (-g / 2), rtol=1e-10, atol=1e-12)


def test_decoupled_rejects_width_below_training_pairs():
    with pytest.raises(ConfigError):
        N.simulate_decoupled(N.DecoupledConfig(p=11, width=16, steps=1))


def test_fourier_norms_put_cos_in_real_and_sin_in_imaginary_part():
    p, d, k = 13, 5, 3
    a = torch.arange(p, dtype=torch.float64)[:, None]
    v = torch.randn(1, d, dtype=torch.float64)
    re, im = N.fourier_norms(torch.cos(2 * math.pi * k * a / p) * v)
    assert int(re.argmax()) == k and im.max() < 1e-9
    re, im = N.fourier_norms(torch.sin(2 * math.pi * k * a / p) * v)
    assert int(im.argmax()) == k and re.max() < 1e-9
    tuned = torch.cat([torch.cos(2 * math.pi * (1 + j % 5) * a / p + j) for j in range(8)], 1)  # [p, 8]
    assert N.neuron_top_frequency_share(tuned) > 1 - 1e-9
    assert N.neuron_top_frequency_share(torch.randn(p, 64, dtype=torch.float64)) < 0.6


# ---- toys ----------------------------------------------------------------------------------------------

def test_toy_linear_reaches_analytic_limit_then_min_norm():
    lams = (0.01, 0.1, 0.2)
    res = N.toy_linear(lams, steps=20_000)
    for i, lam in enumerate(lams):
        assert np.abs(res["w"][i, -1] - N.toy_linear_limit(lam)).max() < 1e-6
    assert np.allclose(N.toy_linear_limit(0.0), [1.0, 1.0])
    rows = N.toy_rows("linear", res, N.toy_linear_limit, N.toy_grad_linear)
    small = rows[0]  # λ = 0.01: the fit comes long before w reaches the limit (memorise, then drift)
    assert small["fit_step"] is not None and small["near_limit_step"] > 10 * small["fit_step"]
    # smaller λ drifts more slowly along w₁ + w₂ = 2
    assert rows[0]["near_limit_step"] > rows[1]["near_limit_step"] > rows[2]["near_limit_step"]


def test_toy2_is_p3s_three_input_linear_model():
    """P3 toy 2: ŷ = w₁x₁ + w₂x₂ + w₃x₃ on 1 + 1 + 1 = 3; limit 3/(3 + λ) per weight, (1, 1, 1) at λ → 0."""
    lams = (0.01, 0.2)
    res = N.toy_linear3(lams, steps=20_000)
    for i, lam in enumerate(lams):
        np.testing.assert_allclose(res["w"][i, -1], np.full(3, 3 / (3 + lam)), atol=1e-6)
    rows = N.toy_rows("linear3", res, N.toy_linear3_limit, N.toy_grad_linear)
    assert rows[0]["min_norm_lam0"] == [1.0, 1.0, 1.0]
    assert all(r["fit_step"] < r["near_limit_step"] for r in rows)  # fit first, then the drift
    assert [r["model"] for r in N.run_toys(lams, steps=2000)["rows"]] == ["linear"] * 2 + ["linear3"] * 2


def test_toy_three_reaches_analytic_limit_and_lam0_limit_is_min_norm():
    lams = (0.01, 0.1, 0.2)
    res = N.toy_three(lams, steps=40_000)
    for i, lam in enumerate(lams):
        assert np.abs(res["w"][i, -1] - N.toy_three_limit(lam)).max() < 1e-6
    star = N.toy_three_limit(0.0)
    assert abs(star[2] * (star[0] + star[1]) - 2) < 1e-12
    rng = np.random.default_rng(0)
    w12 = rng.normal(size=(1000, 2)) * 2
    s = w12.sum(1)
    ok = np.abs(s) > 1e-3
    pts = np.column_stack([w12[ok], 2 / s[ok]])  # random points on w₃(w₁ + w₂) = 2
    assert np.linalg.norm(pts, axis=1).min() >= np.linalg.norm(star) - 1e-12


# ---- tangent projections -------------------------------------------------------------------------------

def test_dense_and_cg_tangent_projections_agree_and_are_tangent():
    _, cfgs = _mlp_cfgs(width=64)  # wide enough that J is well conditioned on its row space
    pb = Problem(cfgs)
    params = pb.init_params()
    pairs, _ = pb.split("train")
    J = N.output_jacobian(pb.model, pb.data, params, pairs)
    v = -M.flatten(params).to(torch.float64)
    g = N.tangent_projection_dense(J, v)
    Jg = torch.einsum("rmp,rp->rm", J, g)
    assert (Jg.norm(dim=1) / torch.einsum("rmp,rp->rm", J, v).norm(dim=1)).max() < 1e-8
    assert torch.allclose(N.tangent_projection_dense(J, g), g, atol=1e-10)  # a projection
    assert (g.norm(dim=1) <= v.norm(dim=1) + 1e-12).all()
    p64 = {k: t.to(torch.float64) for k, t in params.items()}
    gc, info = N.tangent_projection_cg(pb.model, pb.data, p64, pairs, v, iters=400, tol=1e-10)
    assert (N.cosine(g, gc) > 1 - 1e-6).all()
    assert (info["residual"] < 1e-6).all()


def test_replay_matches_trainer_and_probe_rows(tmp_path):
    exp, cfgs = _mlp_cfgs(steps=10)
    pb = Problem(cfgs)
    p0 = pb.init_params()
    delta = N.replay_sgd(pb, p0, 0, 10)
    res = train(cfgs)
    for r, rr in enumerate(res):
        for k in p0:
            assert torch.allclose(p0[k][r] + delta[k][r], rr.params[k], atol=1e-6)
    exp = P3.MLPExperiment(p=5, width=16, steps=20, seeds=(0, 1), every=10, eval_every=10, project_steps=5)
    out = P3.run_mlp(exp)
    t = out["table"]
    assert len(t) == 2 * 2 and set(t.step) == {10, 20}  # Δθ_n = θ_n − θ_{n−10}: none at step 0
    assert t.cos_tangent.between(-1, 1).all() and t.tangent_frac.between(0, 1 + 1e-9).all()
    assert len(out["seeds"]) == 2


def test_mlp_jacobian_closed_form_equals_reverse_mode():
    exp, cfgs = _mlp_cfgs(seeds=(0, 1), p=5, width=8)
    pb = Problem(cfgs)
    params = pb.init_params()
    pairs, _ = pb.split("train")
    J = N.output_jacobian(pb.model, pb.data, params, pairs)
    f = N.output_fn(pb.model, pb.data, params)
    flat = M.flatten(params).double()
    ref = torch.stack([torch.func.jacrev(f)(flat[r], pairs[r]) for r in range(2)])
    assert J.shape == ref.shape
    torch.testing.assert_close(J, ref, rtol=1e-10, atol=1e-12)


def test_p3_mlp_preset_builds_66_pairs_and_holds_out_7():
    """The p3-mlp preset (`grokscope run --preset p3-mlp`) is App. D's setup: the n(n+1)/2 = 66 unordered pairs
    0 ≤ a ≤ b < 11 of §7's dataset (App. D's "77" is reached by no pair range), 7 of them for test, in
    the training Problem itself."""
    cfg = preset("p3-mlp")
    assert cfg.data.unordered and not cfg.data.zero_excluded and cfg.data.p == 11
    assert cfg.model.kind == "mlp" and cfg.optim.name == "sgd" and cfg.optim.batch is None
    pb = Problem([cfg])
    train_pairs, _ = pb.split("train")
    test_pairs, _ = pb.split("test")
    assert train_pairs.shape[1] == 59 and test_pairs.shape[1] == 7
    both = torch.cat([train_pairs[0], test_pairs[0]])
    assert {tuple(x) for x in both.tolist()} == {(a, b) for a in range(11) for b in range(a, 11)}


def test_p3_mlp_split_is_the_papers():
    """App. D: unordered pairs a ≤ b at p 11 (e_a + e_b is symmetric), 7 held out for test."""

    exp = P3.MLPExperiment(seeds=(0, 1))
    assert exp.n_pairs == 66 and exp.every == 1 and exp.horizon == 10
    assert (exp.lr, exp.wd, exp.project_steps, exp.project_momentum) == (1.0, 1e-4, 100, 0.9)
    for cfg in P3.mlp_configs(exp):
        d = cfg.data
        sp = make_split(d.tasks, d.p, d.train_frac, cfg.split_seed, d.exclude_zero, d.unordered)
        assert len(sp.pairs) == 66 and sp.n_train == 59 and sp.test_idx.numel() == 7
        assert bool((sp.pairs[:, 0] <= sp.pairs[:, 1]).all()) and int(sp.pairs.min()) == 0
        assert cfg.optim.name == "sgd" and cfg.optim.batch is None and cfg.optim.clip == 0
    with pytest.raises(ConfigError, match="n_test"):
        P3.mlp_configs(P3.MLPExperiment(n_test=66))


def test_tangent_probe_uses_the_backward_difference_and_minus_theta():
    exp, cfgs = _mlp_cfgs(seeds=(0,), p=5, width=8)
    pb = Problem(cfgs)
    g = torch.Generator().manual_seed(0)
    p0 = M.init_params(cfgs[0].model, cfgs[0].data, 0)
    p0 = {k: v[None] for k, v in p0.items()}
    p1 = {k: v + 0.1 * torch.randn(v.shape, generator=g) for k, v in p0.items()}
    probe = N.tangent_probe(every=10, horizon=10, project_steps=5, eval_every=10)
    assert probe.measure(pb, p0, 0) == []  # nothing 10 steps back yet
    row = probe.measure(pb, p1, 10)[0]
    d = (M.flatten(p1) - M.flatten(p0)).double()[0]
    th = M.flatten(p1).double()[0]
    assert row["step_norm"] == pytest.approx(float(d.norm()), rel=1e-9)
    assert row["cos_decay"] == pytest.approx(float(d @ -th / (d.norm() * th.norm())), rel=1e-6)
    with pytest.raises(ConfigError, match="multiples"):
        N.tangent_probe(every=10, horizon=5, eval_every=10)


def test_probe_refuses_adamw():
    cfg = preset("quick", steps=10, data=dict(p=7), model=dict(d_model=8, n_heads=2, d_ff=16), defect_every=0)
    pb = Problem([cfg])
    with pytest.raises(ConfigError):
        N.replay_sgd(pb, pb.init_params(), 0, 2)


@pytest.fixture(scope="module")
def stored_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("store")
    cfg = preset("quick", steps=60, data=dict(p=7), model=dict(d_model=8, n_heads=2, d_ff=16),
                 optim=dict(batch=32), defect_every=0, n_snapshots=4, eval_every=10, attn_every=10,
                 checkpoint_every=60)
    train([cfg], out)
    return RunDir(out / cfg.name)


def test_run_tangent_cosine_on_transformer_snapshots(stored_run):
    opts = N.RunTangentConfig(subsample=4, cg_iters=300, cg_tol=1e-8, max_snapshots=2)
    df = N.run_tangent_cosine(stored_run, opts)
    assert len(df) == 2
    assert df.cos_tangent.between(-1, 1).all()
    assert (df.cg_residual < 1e-2).all()


def test_norm_vs_decay_from_the_memorisation_step(stored_run):
    """Pure weight decay from the step the run first reaches its best train accuracy (memorised at that level):
    equal to the weight norm there, shrinking by (1 − lr·wd) per step after, not defined before."""
    m = stored_run.metrics()
    best = float(m[m.split == "train"].groupby("step").acc.min().max())
    norms, info = N.norm_vs_decay(stored_run, mem_acc=best)
    assert info["mem_step"] is not None
    row = norms[norms.step == info["mem_step"]].iloc[0]
    assert row.pure_decay == pytest.approx(row.weight_norm)
    after = norms[norms.step >= info["mem_step"]]
    assert after.pure_decay.notna().all() and norms[norms.step < info["mem_step"]].pure_decay.isna().all()
    assert (np.diff(after.pure_decay.to_numpy()) < 0).all()


def test_norm_vs_decay_without_memorisation(stored_run):
    """A run that never reaches the memorisation accuracy has no memorisation step and no pure-decay curve."""
    norms, info = N.norm_vs_decay(stored_run, mem_acc=1.01)
    assert info["mem_step"] is None and norms.pure_decay.isna().all()


# ---- CLI -----------------------------------------------------------------------------------------------

def test_cli_toy_json_and_figure(tmp_path, capsys):
    rc = main(["normmin", "toy", "--lams", "0.1", "--steps", "5000", "--out", str(tmp_path), "--json"])
    assert rc == 0
    res = json.loads(capsys.readouterr().out)
    rows = {r["model"]: r for r in res["rows"]}
    assert set(rows) == {"linear", "linear3"} and all(r["lam"] == 0.1 for r in rows.values())
    # after 5000 steps each toy sits on its analytic λ = 0.1 fixed point
    np.testing.assert_allclose(rows["linear"]["w_final"], N.toy_linear_limit(0.1), atol=1e-5)
    np.testing.assert_allclose(rows["linear"]["limit"], [2 / 2.1, 2 / 2.1], atol=1e-6)
    np.testing.assert_allclose(rows["linear3"]["limit"], [3 / 3.1] * 3, atol=1e-6)
    np.testing.assert_allclose(rows["linear3"]["w_final"], N.toy_linear3_limit(0.1), atol=1e-5)
    assert rows["linear"]["dist_final"] < 1e-5
    png = (tmp_path / "normmin_toy.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_bad_inputs(tmp_path, capsys):
    assert main(["normmin", "toy", "--steps", "0"]) == 2
    assert "--steps=0 must be > 0" in capsys.readouterr().err
    assert main(["normmin", "run", str(tmp_path), "--subsample", "8", "--cg-iters", "10"]) == 2
    assert "is not a grokscope run" in capsys.readouterr().err
    assert main(["normmin"]) == 0  # no experiment: the help, listing them
    out = capsys.readouterr().out
    assert all(e in out for e in ("mlp", "decoupled", "toy", "run"))


def test_cli_run_human_output_matches_json(stored_run, capsys):
    args = ["normmin", "run", str(stored_run.path), "--subsample", "4", "--cg-iters", "20", "--max-snapshots", "1"]
    assert main([*args, "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert len(res["tangent_cosine"]) == 1 and -1 <= res["peak_cos"] <= 1
    assert res["peak_step"] == res["tangent_cosine"][0]["step"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert f"tangent cosine peaks at step {res['peak_step']} (cos {res['peak_cos']:.3g})" in out
