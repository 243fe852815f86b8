"""grokscope's batched model and optimisers against the papers' plain nn.Module + torch.optim loop,
and run r of a batch against run r trained alone."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from grokscope.config import preset, with_overrides
from grokscope.errors import ConfigError
from grokscope.training import model as M
from grokscope.training import reference as Ref
from grokscope.training import train
from grokscope.training.optim import HyperParams, adamw_rows_, adamw_step
from grokscope.training.problem import Problem

from equivalence import assert_same_run

TASKS = ("add", "mul")


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny models gain nothing from threads, and OpenMP spin-waits make 2 threads very slow when other
    processes share the 2 cores; restore the setting afterwards."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _trunk(**kw):
    kw.setdefault("model", dict(d_model=32, n_heads=2, d_ff=64, n_layers=2))
    kw.setdefault("optim", dict(batch=64, lr=3e-3, wd=0.5, clip=1.0))
    return preset("quick", data=dict(p=11, tasks=TASKS), defect_every=0, **kw)


def _mlp(**kw):
    return preset("p3-mlp", data=dict(p=11, tasks=TASKS), model=dict(width=32), **kw)


def _batches(cfg):
    """Problem.minibatch of a one-run problem, without the run axis: the trainer's exact batches."""
    pb = Problem([cfg])
    return lambda step: tuple(x[0] for x in pb.minibatch(step))


def _module(cfg, seed):
    params = M.init_params(cfg.model, cfg.data, seed)
    return Ref.load_from_params(Ref.build_module(cfg.model, cfg.data), params), params


def _max_rel_diff(a, b, start, skip=()):
    """Per tensor: max |a - b| relative to how far `a` moved from `start`; the worst over tensors."""
    out = {}
    for k in a:
        if k.rsplit(".", 1)[-1] in skip:
            continue
        moved = (a[k] - start[k]).abs().max().item()
        out[k] = (a[k] - b[k]).abs().max().item() / moved
    return max(out.values())


# ---- (a) same model -------------------------------------------------------------------------------
@pytest.mark.parametrize("make", [_trunk, _mlp])
def test_functional_forward_equals_module_forward(make):
    cfg = make()
    module, params = _module(cfg, seed=3)
    module.double()
    batched = {k: v.double()[None] for k, v in params.items()}
    pairs = torch.randint(1, 11, (40, 2), generator=torch.Generator().manual_seed(0))
    ours = M.forward(batched, pairs[None], cfg.model, cfg.data)[0]
    theirs = module(pairs)
    assert ours.shape == theirs.shape == (40, len(TASKS), 11)
    torch.testing.assert_close(ours, theirs, rtol=1e-12, atol=1e-12)


def test_params_round_trip_in_init_order_with_transposed_attention():
    cfg = _trunk()
    module, params = _module(cfg, seed=5)
    back = Ref.to_params(module)
    assert list(back) == list(params)  # the flat layout of model.flatten
    for k in params:
        assert torch.equal(back[k], params[k]), k
    d = cfg.model.d_model
    attn = module.encoder.layers[1].self_attn
    assert torch.equal(params["layers.1.attn.W_K"], attn.in_proj_weight[d:2 * d].T)  # x @ W_K
    assert torch.equal(params["layers.1.attn.W_O"], attn.out_proj.weight.T)
    with pytest.raises(ConfigError):
        Ref.load_from_params(module, {k: v for k, v in params.items() if k != "ln_f.b"})
    with pytest.raises(ConfigError):
        Ref.build_module(preset("nanda").model, cfg.data)


def test_losses_agree():
    cfg = _trunk()
    module, params = _module(cfg, seed=2)
    pairs, targets = _batches(cfg)(7)
    ours = M.loss({k: v[None] for k, v in params.items()}, pairs[None], targets[None], cfg.model, cfg.data)[0]
    torch.testing.assert_close(ours, Ref.reference_loss(module, pairs, targets), rtol=1e-5, atol=1e-6)


# ---- (b) batched AdamW = torch.optim.AdamW ----------------------------------------------------------
def test_key_bias_gradient_is_zero():
    """Softmax is invariant to a per-query shift of the scores, so b_K gets no gradient: in float32 its
    'gradient' is rounding noise that Adam normalises to lr-sized steps, in torch as in grokscope, so
    b_K is left out of the optimiser comparisons below."""
    cfg = _trunk()
    pb = Problem([cfg])
    grads, _ = pb.grads(pb.init_params(), *pb.minibatch(0))
    for i in range(cfg.model.n_layers):
        g_k = grads[f"layers.{i}.attn.b_K"].abs().max().item()
        assert g_k < 1e-5 * grads[f"layers.{i}.attn.b_Q"].abs().max().item()


def test_batched_adamw_equals_torch_adamw_loop():
    steps = 100
    cfg = _trunk(steps=steps)
    ours = train([cfg])[0]
    theirs = Ref.reference_train(cfg, steps, batches=_batches(cfg), eval_every=steps)
    start = M.init_params(cfg.model, cfg.data, cfg.seed)
    err = _max_rel_diff(ours.params, theirs.params, start, skip=("b_K",))
    assert err < 1e-3, f"params differ by {err:.2e} of their movement"
    # the same metrics at the last evaluation
    a = ours.metrics[ours.metrics.step == steps].sort_values(["task", "split"])
    b = theirs.metrics[theirs.metrics.step == steps].sort_values(["task", "split"])
    np.testing.assert_allclose(a.loss.values, b.loss.values, rtol=1e-4)
    np.testing.assert_allclose(a.acc.values, b.acc.values, atol=1e-9)
    # control: Adam with coupled L2 decay is a different optimiser, and the comparison sees it
    module, _ = _module(cfg, cfg.seed)
    opt = torch.optim.Adam(module.parameters(), lr=cfg.optim.lr, betas=(cfg.optim.beta1, cfg.optim.beta2),
                           weight_decay=cfg.optim.wd)
    get = _batches(cfg)
    for s in range(steps):
        Ref.reference_step(module, opt, *get(s), cfg.optim.clip)
    assert _max_rel_diff(ours.params, Ref.to_params(module), start, skip=("b_K",)) > 1e-2


def test_the_one_program_adamw_equals_the_fused_kernel_per_run_and_leaves_stopped_runs_alone():
    """The update a GPU runs (all runs in one broadcast program, hyper-parameters on the device) against the CPU's
    (torch's fused kernel per run): the same arithmetic, so equal to a few ulps; a stopped run, even one whose
    gradient is NaN (diverged), keeps p, m and v bit for bit in both; a per-run hyper-parameter swapped between
    two runs is seen."""
    R, P = 4, 1001
    g = torch.Generator().manual_seed(0)
    start = [torch.randn(R, P, generator=g), torch.randn(R, P, generator=g) * 1e-3,
             torch.rand(R, P, generator=g) * 1e-6]
    grads = [torch.randn(R, P, generator=g) * 1e-3 for _ in range(3)]
    grads[1][2, 5] = float("nan")
    active = torch.tensor([True, True, False, True])

    def hyper(lr: list[float]) -> HyperParams:
        t = torch.tensor
        return HyperParams(lr=t(lr), wd=t([1.0, 0.3, 0.0, 0.5]), clip=torch.ones(R), beta1=t([0.9, 0.9, 0.8, 0.9]),
                           beta2=t([0.98, 0.999, 0.98, 0.98]), eps=torch.full((R,), 1e-8), momentum=torch.zeros(R))

    def run(update, lr=(1e-3, 3e-3, 1e-2, 2e-3)) -> list[torch.Tensor]:
        p, m, v = (x.clone() for x in start)
        hp = hyper(list(lr))
        hp.update = update
        for t, grad in enumerate(grads, 1):
            adamw_step({"w": p}, {"w": grad}, {"m.w": m, "v.w": v}, hp, t, active)
        return [p, m, v]

    fused, program = run(None), run(adamw_rows_)
    for a, b, x0 in zip(fused, program, start, strict=True):
        torch.testing.assert_close(b, a, rtol=1e-6, atol=0)
        assert torch.equal(a[2], x0[2]) and torch.equal(b[2], x0[2])  # the stopped run, untouched
        assert not torch.equal(a[0], x0[0])
    swapped = run(adamw_rows_, lr=(3e-3, 1e-3, 1e-2, 2e-3))
    assert (swapped[0][0] - program[0][0]).abs().max() > 1e-4


# ---- (c) batched SGD = torch.optim.SGD ----------------------------------------------------------
@pytest.mark.parametrize("clip", [0.0, 0.02])  # the MLP's gradient norm is ~0.07: 0.02 clips
def test_batched_sgd_momentum_equals_torch_sgd_on_mlp(clip):
    steps = 100
    cfg = _mlp(steps=steps, optim=dict(name="sgd", lr=0.5, momentum=0.9, wd=1e-2, clip=clip, batch=None))
    ours = train([cfg])[0]
    theirs = Ref.reference_train(cfg, steps, batches=_batches(cfg), eval_every=0)
    start = M.init_params(cfg.model, cfg.data, cfg.seed)
    err = _max_rel_diff(ours.params, theirs.params, start)
    assert err < 1e-4, f"params differ by {err:.2e} of their movement"
    # the host-sampling path gives the same run for full-batch training
    host = Ref.reference_train(cfg, steps, eval_every=0)
    assert _max_rel_diff(theirs.params, host.params, start) < 1e-5


# ---- (d) run r in a batch = run r alone; a stopped run stays put -------------------------------------
def test_run_in_batch_equals_run_alone_and_stopped_run_is_frozen():
    base = _trunk(steps=300, model=dict(d_model=16, n_heads=2, d_ff=32, n_layers=1), optim=dict(batch=32))
    cfgs = [with_overrides(base, seed=s, lr=lr, wd=wd)
            for s, lr, wd in [(1, 1e-3, 1.0), (2, 3e-3, 0.1), (3, 1e-2, 0.0), (4, 3e-3, 0.5)]]
    cfgs[1] = with_overrides(cfgs[1], steps=100)
    batch = train(cfgs, dtype=torch.float64)  # float64: equal to rounding on any processor (tests/equivalence.py)
    for r in (0, 1):
        alone = train([cfgs[r]], dtype=torch.float64)[0]
        assert len(alone.metrics) and alone.metrics.step.max() == cfgs[r].steps
        assert_same_run(batch[r], alone)
    assert batch[1].summary["steps_trained"] == 100 and batch[0].summary["steps_trained"] == 300
    # the runs that went on did move after step 100
    assert not torch.allclose(batch[0].params["embed.W_E"],
                              train([with_overrides(cfgs[0], steps=100)], dtype=torch.float64)[0].params["embed.W_E"])


# ---- the plain loop itself ----------------------------------------------------------------------
def test_reference_train_host_sampling_learns_and_logs():
    cfg = _trunk(steps=200, model=dict(d_model=16, n_heads=2, d_ff=32, n_layers=1), eval_every=100)
    res = Ref.reference_train(cfg)
    assert len(res.losses) == 200 and np.isfinite(res.losses).all()
    assert res.losses[-20:].mean() < 0.8 * res.losses[:20].mean()
    assert sorted(res.metrics.step.unique()) == [0, 100, 200]
    assert set(res.metrics.columns) >= {"run", "step", "task", "split", "loss", "acc", "weight_norm"}
    assert len(res.metrics) == 3 * 2 * len(TASKS)
    # host draws differ from grokscope's device sampler, so the run differs from train()'s
    ours = train([cfg])[0]
    assert not torch.allclose(ours.params["embed.W_E"], res.params["embed.W_E"])
    # init="torch": the modules' own defaults from the seed, reproducible, and not grokscope's init
    t1 = Ref.reference_train(cfg, 5, init="torch", eval_every=0)
    t2 = Ref.reference_train(cfg, 5, init="torch", eval_every=0)
    assert all(torch.equal(t1.params[k], t2.params[k]) for k in t1.params)
    assert not torch.allclose(t1.params["embed.W_E"], res.params["embed.W_E"], atol=0.1)
