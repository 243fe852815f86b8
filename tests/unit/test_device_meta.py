"""The device-facing paths run on the `meta` device, proven without a GPU.

A meta tensor has a shape and a device but no data. The tests pin the default device to the CPU, so a tensor the
library made without `device=` lands on the CPU, and a CPU tensor (of more than one element) meeting a meta one
raises, exactly as it would meet a CUDA one. A path that runs on meta therefore takes every tensor's device from
its inputs: what a CUDA run needs. (Paths that read values back, e.g. an evaluation's host copy, cannot run on meta;
`test_sync_audit.py` covers where those happen.)
"""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from grokscope.config import preset
from grokscope.experiments.p3_mlp import MLPExperiment, mlp_configs
from grokscope.geometry.commutator import commutator_defect
from grokscope.geometry.hvp import make_hvp
from grokscope.geometry.normmin.tangent import mlp_output_jacobian, output_jacobian
from grokscope.monitor import Monitor, TensorBatches, make_source
from grokscope.monitor import monitor as monitor_module
from grokscope.training import model as M
from grokscope.training import stepper
from grokscope.training.problem import Problem

from conftest import tiny_config

META = torch.device("meta")
METHODS = ("baseline", "orthograd", "grokfast-ema", "grokfast-ma", "stablemax")


@pytest.fixture(autouse=True)
def cpu_default():
    """A tensor created without `device=` lands on the CPU while a test runs (whatever a caller set)."""
    before = torch.get_default_device()
    torch.set_default_device("cpu")
    yield
    torch.set_default_device(before)


def _on_meta(*tensors: torch.Tensor) -> bool:
    return all(t.device == META for t in tensors)


def test_the_guard_a_cpu_tensor_meeting_a_meta_one_raises():
    with pytest.raises(RuntimeError, match="device"):
        torch.ones(3) + torch.ones(3, device=META)


def _p1_like(R: int = 2) -> list:
    return [preset("p1-dual", seed=s, data={"p": 11}, model={"d_model": 16, "n_heads": 2, "d_ff": 32},
                   optim={"batch": 32}) for s in range(1, R + 1)]


@pytest.mark.parametrize("cfgs", [
    [tiny_config(seed=1), tiny_config(seed=2, method=dict(name="stablemax"))],  # counter sampler, both losses
    _p1_like(),  # the authors' numpy stream, prefetched in blocks
], ids=["counter", "authors"])
def test_problem_loss_gradients_and_evaluation_run_on_meta(cfgs):
    pb = Problem(cfgs, device=META)
    params = pb.init_params()
    assert _on_meta(*params.values())
    pairs, targets = pb.minibatch(3)
    assert _on_meta(pairs, targets) and pairs.shape[0] == 2
    one, _ = pb.minibatch(3, runs=torch.tensor([1], device=META))  # a compacted batch
    assert _on_meta(one) and one.shape[0] == 1
    loss = pb.loss(params, pairs, targets)
    assert _on_meta(loss) and loss.shape == (2,)
    flat = M.flatten(params)
    g = pb.flat_grads(flat, params, pairs, targets)
    assert _on_meta(g) and g.shape == flat.shape
    for loss_, acc in pb.evaluate(params).values():
        assert _on_meta(loss_, acc) and loss_.shape == (2, len(pb.tasks))


@pytest.mark.parametrize("optim", ["adamw", "sgd"])
def test_a_training_step_with_every_method_runs_on_meta(optim):
    """The trainer's step (minibatch, gradients, clipping, ⊥Grad / Grokfast, the batched optimiser program a GPU
    runs) on meta, a batch holding a run of each method."""
    over = {} if optim == "adamw" else dict(optim=dict(name="sgd", lr=0.1, momentum=0.9, batch=64))
    cfgs = [tiny_config(seed=r, method=dict(name=m, window=3), **over) for r, m in enumerate(METHODS)]
    step = stepper(cfgs, META)
    for s in range(3):  # past the MA window, so the filtered branch runs too
        step(s)


def test_commutator_defect_and_hvp_run_on_meta():
    pb = Problem([tiny_config(seed=1), tiny_config(seed=2)], device=META)
    params = pb.init_params()
    P = M.flatten(params).shape[1]
    # with a basis and no random bases (the NaN control must be made on the device too)
    res = commutator_defect(pb, params, step=0, draws=3, basis=torch.zeros(P, 2, device=META), n_random=0)
    assert _on_meta(res.defect, res.defects, res.delta, res.rho, res.rho_random, res.proj_ratio)
    assert res.defects.shape == (2, 3) and res.delta.shape == (2, P)
    pairs, targets = pb.minibatch(0)
    hvp = make_hvp(pb, params, pairs, targets)
    Hv = hvp(torch.zeros(2, P, device=META))
    assert _on_meta(Hv) and Hv.shape == (2, P)


def test_the_p3_jacobian_runs_on_meta():
    pb = Problem(mlp_configs(replace(MLPExperiment(), seeds=(0, 1), width=16, steps=10)), device=META)
    params = pb.init_params()
    pairs, _ = pb.split("train")
    J = output_jacobian(pb.model, pb.data, params, pairs)  # the closed form for the bias-free MLP
    assert _on_meta(J) and J.shape == (2, pairs.shape[1] * pb.data.p, M.flatten(params).shape[1])
    assert _on_meta(mlp_output_jacobian(params, pairs, pb.data.p))


# ---- the monitor's batch sources ---------------------------------------------------------------------

def _data(n: int = 40) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.randint(0, 11, (n, 2), generator=g), torch.randint(0, 11, (n,), generator=g)


def test_every_batch_source_delivers_on_the_device_it_is_given():
    X, y = _data()
    ds = TensorDataset(X, y)
    kinds = {"tensors": (X, y), "dataset": ds, "loader": DataLoader(ds, batch_size=8, shuffle=True),
             "callable": lambda step, salt: (X[:8], y[:8]), "own source": TensorBatches((X, y), 8)}
    for name, batches in kinds.items():
        src = make_source(batches, batch_size=8, device=META)
        for batch in (src.draw(3, 0), src.draw(3, 1, 4), src.fixed_sample(16), src.fixed_sample(100)):
            assert len(batch) == 2 and _on_meta(*batch), name
    # tensors are moved once, at construction, and indexed on the device
    assert _on_meta(*make_source((X, y), 8, device=META).tensors)
    # without a device a source leaves the data where it is, and draws the same rows from tensors and a dataset
    a, b = make_source((X, y), 8), make_source(ds, 8)
    for salt in (0, 1, 7):
        assert all(torch.equal(u, v) for u, v in zip(a.draw(5, salt), b.draw(5, salt)))


def test_the_monitor_hands_its_source_the_models_device_and_never_moves_the_model(monkeypatch, tmp_path):
    seen = []
    real = monitor_module.make_source

    def spy(batches, batch_size=None, seed=0, device=None):
        seen.append(device)
        return real(batches, batch_size, seed, device)

    monkeypatch.setattr(monitor_module, "make_source", spy)
    X, y = _data()
    model = nn.Sequential(nn.Embedding(11, 8), nn.Flatten(), nn.Linear(16, 11))
    before = [(p, p.device, p.data_ptr()) for p in model.parameters()]
    mon = Monitor(model, nn.functional.cross_entropy, DataLoader(TensorDataset(X, y), batch_size=8), tmp_path / "m",
                  defect_every=5, watch_every=5, verbose=False)
    mon.step(5)
    mon.close()
    assert seen == [next(model.parameters()).device]
    assert [(p, p.device, p.data_ptr()) for p in model.parameters()] == before
