"""The monitor's defects, PC1% and λ_min on a plain nn.Module equal grokscope's own for the same parameters
and minibatches (the module is examples/p1_transformer.py's `Trunk`, loaded with a grokscope run's weights)."""

from __future__ import annotations

import importlib.util

import pytest
import torch
import torch.nn.functional as F

from grokscope.geometry.commutator import commutator_defect
from grokscope.geometry.hessian import hessian_sample, lanczos, make_hvp
from grokscope.geometry.pca import attention_pca, matrix_pca
from grokscope.monitor import Monitor
from grokscope.store import RunDir
from grokscope.training import model as M
from grokscope.training import train
from grokscope.training.problem import Problem

from conftest import ROOT, tiny_config

EXAMPLE = ROOT / "examples" / "p1_transformer.py"


def _example():
    spec = importlib.util.spec_from_file_location("p1_transformer_example", EXAMPLE)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def load_grokscope(module: torch.nn.Module, params: dict[str, torch.Tensor]) -> None:
    """Copy one run's grokscope trunk parameters (no run axis) into the plain nn.Module (x @ W <-> W.T)."""
    sd = {"embed.weight": params["embed.W_E"], "pos": params["embed.W_pos"],
          "ln_f.weight": params["ln_f.w"], "ln_f.bias": params["ln_f.b"],
          "head.weight": params["head.add.W"].T, "head.bias": params["head.add.b"]}
    n_layers = len({k.split(".")[1] for k in params if k.startswith("layers.")})
    for i in range(n_layers):
        g, m = f"layers.{i}", f"encoder.layers.{i}"
        sd[f"{m}.self_attn.in_proj_weight"] = torch.cat([params[f"{g}.attn.W_{x}"].T for x in "QKV"])
        sd[f"{m}.self_attn.in_proj_bias"] = torch.cat([params[f"{g}.attn.b_{x}"] for x in "QKV"])
        sd[f"{m}.self_attn.out_proj.weight"] = params[f"{g}.attn.W_O"].T
        sd[f"{m}.self_attn.out_proj.bias"] = params[f"{g}.attn.b_O"]
        sd[f"{m}.linear1.weight"], sd[f"{m}.linear1.bias"] = params[f"{g}.mlp.W_in"].T, params[f"{g}.mlp.b_in"]
        sd[f"{m}.linear2.weight"], sd[f"{m}.linear2.bias"] = params[f"{g}.mlp.W_out"].T, params[f"{g}.mlp.b_out"]
        for ln in ("1", "2"):
            sd[f"{m}.norm{ln}.weight"], sd[f"{m}.norm{ln}.bias"] = params[f"{g}.ln{ln}.w"], params[f"{g}.ln{ln}.b"]
    module.load_state_dict({k: v.detach().clone() for k, v in sd.items()}, strict=True)


def _ce(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(out, target[:, 0])  # grokscope's targets are [B, tasks]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny grokscope trunk run (attention every 20 steps, snapshots) and its Problem."""
    cfg = tiny_config(steps=120, eval_every=20, attn_every=20, checkpoint_every=60,
                      model=dict(d_model=16, n_heads=2, d_ff=32, n_layers=1), optim=dict(batch=32))
    out = tmp_path_factory.mktemp("consistency")
    train([cfg], out=out)
    return RunDir(out / cfg.name), cfg


def _module_at(cfg, params: dict[str, torch.Tensor], dtype=torch.float64):
    ex = _example()
    net = ex.Trunk(cfg.data.p, d_model=cfg.model.d_model, n_heads=cfg.model.n_heads, d_ff=cfg.model.d_ff,
                   n_layers=cfg.model.n_layers).to(dtype)
    load_grokscope(net, {k: v.to(dtype) for k, v in params.items()})
    return net


def _train_tensors(problem: Problem):
    idx = problem.train_idx[0]
    return problem.pairs[idx], problem.targets[idx]


def test_defects_equal_grokscope_on_the_same_parameters_and_minibatches(trained, tmp_path):
    run, cfg = trained
    problem = Problem([cfg])
    steps, snaps = run.snapshots()
    i = len(steps) - 1
    params = {k: v[i].double() for k, v in snaps.items()}
    net = _module_at(cfg, params)
    mon = Monitor(net, _ce, _train_tensors(problem), out=tmp_path / "mon", batch_size=cfg.optim.batch,
                  seed=cfg.seed, draws=4, defect_every=0, n_snapshots=0, warn=False)
    mine = mon.defects_at(int(steps[i]))
    ordered = {k: params[k][None] for k in M.init_params(cfg.model, cfg.data, cfg.seed)}
    theirs = commutator_defect(problem, ordered, step=int(steps[i]), draws=4).defects[0]
    assert mine.dtype == torch.float64 and theirs.dtype == torch.float64
    torch.testing.assert_close(mine, theirs, rtol=1e-7, atol=0)
    assert len(set(mine.tolist())) == 4  # four different draws, not one repeated


def test_lambda_min_equals_grokscope_lanczos(trained, tmp_path):
    run, cfg = trained
    problem = Problem([cfg])
    steps, snaps = run.snapshots()
    params = {k: v[-1].double() for k, v in snaps.items()}
    net = _module_at(cfg, params)
    mon = Monitor(net, _ce, _train_tensors(problem), out=tmp_path / "mon", batch_size=cfg.optim.batch,
                  seed=cfg.seed, defect_every=0, n_snapshots=0, hessian_iters=60, hessian_samples=128, warn=False)
    mine = mon.lambda_min_at(int(steps[-1]))
    ordered = {k: params[k][None] for k in M.init_params(cfg.model, cfg.data, cfg.seed)}
    pairs, targets = hessian_sample(problem, 128)
    hvp = make_hvp(problem, ordered, pairs, targets)
    P = M.flatten(ordered).shape[1]
    res = lanczos(hvp, torch.randn(1, P, generator=torch.Generator().manual_seed(1), dtype=torch.float64), 60)
    theirs, tol = float(res.lambda_min[0]), float(res.bottom_residual[0, 0]) + mine["lambda_min_residual"]
    assert mine["lambda_min"] < 0 or theirs >= 0
    assert abs(mine["lambda_min"] - theirs) <= tol + 1e-9, (mine["lambda_min"], theirs, tol)
    assert abs(mine["lambda_max"] - float(res.lambda_max[0])) <= 1e-6 * abs(float(res.lambda_max[0]))
    torch.testing.assert_close(torch.tensor(mine["loss_value"], dtype=torch.float64),
                               problem.loss(ordered, pairs, targets)[0].detach(), rtol=1e-10, atol=0)


def test_pc1_of_the_monitor_store_equals_grokscope(trained, tmp_path):
    """Feed the run's recorded parameters through the plain module step by step: the monitor's store gives the
    same PC1% per attention matrix (W_Q/W_K/W_V together as in_proj_weight, W_O as out_proj) as grokscope's."""
    run, cfg = trained
    steps, attn = run.attention_trajectory()
    snap_steps, snaps = run.snapshots()
    base = {k: v[0] for k, v in snaps.items()}
    net = _module_at(cfg, base, torch.float32)
    problem = Problem([cfg])
    mon = Monitor(net, _ce, _train_tensors(problem), out=tmp_path / "mon", watch=["*self_attn*weight"],
                  watch_every=20, defect_every=0, n_snapshots=0, warn=False, start_step=int(steps[0]))
    for t in range(1, len(steps)):
        load_grokscope(net, {**base, **{k: v[t] for k, v in attn.items()}})
        mon.step(int(steps[t]))
    mon.close()
    mine = attention_pca(mon.run).set_index("name")["pc1_percent"]
    theirs = attention_pca(run).set_index("name")["pc1_percent"]

    qkv = torch.cat([attn[f"layers.0.attn.W_{x}"].transpose(1, 2) for x in "QKV"], 1)
    assert mine["encoder.layers.0.self_attn.in_proj_weight"] == pytest.approx(matrix_pca(qkv).pc1_percent, rel=1e-6)
    assert mine["encoder.layers.0.self_attn.out_proj.weight"] == pytest.approx(theirs["layers.0.attn.W_O"], rel=1e-6)
    assert 20 < theirs["layers.0.attn.W_O"] < 100
