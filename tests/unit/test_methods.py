"""Grokking methods against their published definitions; per-run in a batch; filter state through resume."""

import json
import math

import pytest
import torch

from grokscope.cli import main
from grokscope.config import ConfigError, MethodConfig, method_config, with_overrides
from grokscope.store import RunDir
from grokscope.sweep.packing import run_bytes
from grokscope.sweep.spec import expand, spec_from_dict
from grokscope.training import model as M
from grokscope.training import train
from grokscope.training.methods import MethodState, log_stablemax, orthograd, stablemax_per_task_loss, stablemax_s
from grokscope.training.problem import Problem

from conftest import tiny_config
from equivalence import assert_same_run

P = 6
SLICES = {"a": slice(0, 2), "b": slice(2, 6)}


def _state(*methods: MethodConfig) -> MethodState:
    return MethodState(list(methods), P, SLICES, torch.device("cpu"))


def _feed(state: MethodState, gs: torch.Tensor, theta: torch.Tensor | None = None) -> torch.Tensor:
    """Outputs [T, R, P] of a gradient sequence gs [T, R, P]."""
    theta = torch.ones_like(gs[0]) if theta is None else theta
    on = torch.ones(gs.shape[1], dtype=torch.bool)
    return torch.stack([state.apply(g.clone(), theta, on) for g in gs])


def test_grokfast_ema_equals_the_closed_form():
    # μ_t = α^t g_0 + (1 − α) Σ_{i=1..t} α^{t−i} g_i (μ_0 = g_0, as gradfilter_ema), output g_t + λ μ_t
    alpha, lamb, T = 0.9, 3.0, 12
    gs = torch.randn(T, 2, P, generator=torch.Generator().manual_seed(0), dtype=torch.float64).float()
    out = _feed(_state(MethodConfig("grokfast-ema", alpha=alpha, lamb=lamb), MethodConfig()), gs)
    for t in range(T):
        mu = alpha**t * gs[0, 0].double() + sum((1 - alpha) * alpha ** (t - i) * gs[i, 0].double()
                                                for i in range(1, t + 1))
        torch.testing.assert_close(out[t, 0].double(), gs[t, 0].double() + lamb * mu, rtol=1e-5, atol=1e-6)
    assert torch.equal(out[:, 1], gs[:, 1])  # the baseline row passes through bit for bit


def test_grokfast_ma_is_the_windowed_mean_after_warm_up_with_per_run_windows():
    lamb, T = 5.0, 11
    gs = torch.randn(T, 3, P, generator=torch.Generator().manual_seed(1))
    st = _state(MethodConfig("grokfast-ma", window=3, lamb=lamb), MethodConfig("grokfast-ma", window=5),
                MethodConfig())
    out = _feed(st, gs)
    for r, w, lam in ((0, 3, lamb), (1, 5, 5.0)):
        for t in range(T):
            want = gs[t, r] if t < w - 1 else gs[t, r] + lam * gs[t - w + 1:t + 1, r].mean(0)
            torch.testing.assert_close(out[t, r], want, rtol=1e-5, atol=1e-6)
    assert torch.equal(out[:, 2], gs[:, 2])


def test_frozen_runs_keep_their_filter_state():
    st = _state(MethodConfig("grokfast-ema"), MethodConfig("grokfast-ma", window=2))
    g = torch.randn(2, P)
    st.apply(g, torch.ones(2, P), torch.tensor([True, True]))
    ema, ma, count = st.ema.clone(), st.ma.clone(), st.count.clone()
    st.apply(torch.randn(2, P), torch.ones(2, P), torch.tensor([False, False]))
    assert torch.equal(st.ema, ema) and torch.equal(st.ma, ma) and torch.equal(st.count, count)


def test_orthograd_removes_the_weight_component_per_tensor_and_keeps_each_norm():
    # hand case: tensor a: w = (1, 0), g = (1, 1) -> g⊥ = (0, 1), rescaled to ‖g‖ = √2
    theta = torch.tensor([[1.0, 0.0, 1.0, 2.0, 0.0, -1.0]])
    g = torch.tensor([[1.0, 1.0, 0.5, -1.0, 3.0, 2.0]])
    out = orthograd(g, theta, SLICES)
    torch.testing.assert_close(out[0, :2], torch.tensor([0.0, math.sqrt(2.0)]))
    for sl in SLICES.values():
        assert abs(float(out[0, sl] @ theta[0, sl])) < 1e-5  # orthogonal to that tensor's weights
        torch.testing.assert_close(out[0, sl].norm(), g[0, sl].norm())
        w, gs = theta[0, sl], g[0, sl]
        perp = gs - (w @ gs) / (w @ w) * w
        torch.testing.assert_close(out[0, sl], perp * gs.norm() / perp.norm())
    # per tensor, not whole-vector: a tensor whose gradient is already orthogonal to it is left as is
    theta2 = torch.tensor([[0.0, 1.0, 1.0, 1.0, 1.0, 1.0]])
    g2 = torch.tensor([[2.0, 0.0, 1.0, 1.0, 1.0, 1.0]])
    out2 = orthograd(g2, theta2, SLICES)
    torch.testing.assert_close(out2[0, :2], g2[0, :2])
    assert float(out2[0, 2:].abs().max()) < 1e-6  # b's gradient was parallel to b: nothing is left


def test_stablemax_definition_and_cross_entropy_by_hand():
    x = torch.tensor([2.0, 0.0, -1.0, -3.0])
    torch.testing.assert_close(stablemax_s(x), torch.tensor([3.0, 1.0, 0.5, 0.25]))
    torch.testing.assert_close(log_stablemax(x).exp().sum(), torch.tensor(1.0))
    logits = x.view(1, 1, 1, 4)  # [R, B, T, p]
    loss = stablemax_per_task_loss(logits, torch.tensor([[[0]]]))
    torch.testing.assert_close(loss, torch.tensor([[-math.log(3.0 / 4.75)]]))
    # gradient is finite where softmax would saturate, and at x = 1 (where 1/(1 − x) would be infinite)
    big = torch.tensor([[[[1.0, 200.0, -300.0]]]], requires_grad=True)
    stablemax_per_task_loss(big, torch.tensor([[[1]]])).sum().backward()
    assert torch.isfinite(big.grad).all()


def test_problem_loss_is_each_runs_own_loss():
    base, sm = tiny_config(seed=1), tiny_config(seed=1, method=dict(name="stablemax"))
    pb = Problem([base, sm])
    params = pb.init_params()
    pairs, targets = pb.minibatch(0)
    out = M.forward(params, pairs, pb.model, pb.data)
    per = pb.per_task_loss(out, targets)
    torch.testing.assert_close(per[0], M.per_task_loss(out[:1], targets[:1], pb.model)[0])
    torch.testing.assert_close(per[1], stablemax_per_task_loss(out[1:], targets[1:])[0])
    assert not torch.allclose(per[0], per[1])


METHODS = ("baseline", "grokfast-ema", "grokfast-ma", "stablemax", "orthograd", "stablemax+orthograd")


def _cfgs(**kw):
    return [tiny_config(seed=3, stop_on_grok=False, method=dict(name=m, window=20), **kw) for m in METHODS]


@pytest.mark.slow
def test_methods_batched_equal_each_alone():
    # one batch holds a baseline and every method; each run equals itself trained alone (float64, to rounding:
    # tests/equivalence.py), also after the runs with shorter budgets have been compacted out of the batch
    cfgs = [c.__class__(**{**c.__dict__, "steps": 100 + 10 * i}) for i, c in enumerate(_cfgs())]
    together = train(cfgs, dtype=torch.float64)
    for cfg, got in zip(cfgs, together):
        assert_same_run(got, train([cfg], dtype=torch.float64)[0], metrics=False)  # budgets off the eval grid
    finals = [M.flatten({k: v[None] for k, v in r.params.items()}) for r in together]
    assert all(not torch.equal(finals[0], f) for f in finals[1:])  # every method changes the run


@pytest.mark.slow
def test_filter_state_resumes_exactly(tmp_path):
    # a run stopped at 100 steps and resumed to 200 equals one trained straight to 200 (EMA μ, MA ring saved)
    full = train(_cfgs(steps=200), tmp_path / "full")
    train(_cfgs(steps=100), tmp_path / "cut")
    resumed = train(_cfgs(steps=200), tmp_path / "cut", resume=True)
    for a, b in zip(full, resumed):
        assert all(torch.equal(a.params[k], b.params[k]) for k in a.params), a.config.method.name
    _, meta = RunDir(tmp_path / "full" / full[2].config.name).checkpoint()
    tensors, _ = RunDir(tmp_path / "full" / full[2].config.name).checkpoint()
    assert tensors["method.ma"].shape[0] == 20 and int(tensors["method.count"][0]) == 200


def test_method_names_and_validation():
    assert method_config("⊥Grad").name == "orthograd"
    assert method_config("orthograd+stablemax").name == "stablemax+orthograd"
    assert method_config("grokfast").amplification == 2.0
    assert method_config("grokfast-ma").amplification == 5.0
    assert method_config("grokfast-ema", alpha=0.9, lamb=4).label == "grokfast-ema-a0.9-l4"
    assert tiny_config(method=dict(name="stablemax")).name.endswith("-stablemax")
    assert tiny_config().name == tiny_config(method=dict(name="baseline")).name  # baseline names unchanged
    for bad, needle in (("adam", "'adam'"), ("grokfast-ema+grokfast-ma", "both")):
        with pytest.raises(ConfigError, match=needle):
            method_config(bad)
    with pytest.raises(ConfigError, match="alpha=1.0"):
        method_config("grokfast-ema", alpha=1.0)


def test_cli_method_flag_trains_one_batch_and_rejects_bad_values(tmp_path, capsys):
    args = ["run", "--p", "11", "--steps", "100", "--eval-every", "50", "--d-model", "32", "--heads", "2",
            "--defect-every", "0", "--no-geometry", "--json", "--out", str(tmp_path / "s")]
    assert main([*args, "--method", "baseline,grokfast-ema,⊥grad", "--alpha", "0.9"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["config"]["method"]["name"] for r in rows] == ["baseline", "grokfast-ema", "orthograd"]
    assert [r["config"]["method"]["alpha"] for r in rows] == [0.98, 0.9, 0.98]  # filter settings: Grokfast only
    assert main([*args, "--method", "sgdx"]) == 2
    err = capsys.readouterr().err.strip()
    assert "'sgdx'" in err and len(err.splitlines()) == 1
    assert main([*args, "--lamb", "3"]) == 2
    assert "--method grokfast" in capsys.readouterr().err


def test_sweep_method_axis_and_a_method_that_fixes_its_weight_decay():
    spec = spec_from_dict({"base": {"preset": "quick", "steps": 100}, "grid": {
        "wd": [1, 0.5], "seeds": [1, 2],
        "method": ["baseline", {"name": "grokfast-ma", "window": 7}, {"name": "⊥grad", "wd": 0}]}})
    cfgs = expand(spec)
    got = sorted((c.method.label, c.optim.wd, c.seed) for c in cfgs)
    assert got == sorted([(m, wd, s) for m in ("baseline", "grokfast-ma-w7") for wd in (1.0, 0.5) for s in (1, 2)]
                         + [("orthograd", 0.0, s) for s in (1, 2)])
    ma = next(c for c in cfgs if c.method.grad_filter == "ma")
    assert run_bytes(ma) > run_bytes(with_overrides(ma, method=MethodConfig()))  # the MA ring is planned for
    with pytest.raises(ConfigError, match="'beta'"):
        spec_from_dict({"grid": {"method": [{"name": "grokfast-ema", "beta": 1}]}})
