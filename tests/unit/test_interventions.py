"""Gradient interventions: projections, bitwise no-ops, batched scans, kicks, the intervene command."""

from __future__ import annotations

import json

import pytest
import torch

from grokscope.cli import main
from grokscope.config import preset
from grokscope.errors import ConfigError
from grokscope.experiments import intervention_scan as IS
from grokscope.geometry import interventions as I
from grokscope.geometry.pca import exec_basis, random_basis
from grokscope.store import INTERVENTION_JSON, INTERVENTION_METRICS, RunDir, read_table
from grokscope.training import model as M
from grokscope.training import train

from equivalence import assert_same_run

torch.set_num_threads(1)


def _cfg(**kw):
    base = dict(steps=80, data=dict(p=11), model=dict(d_model=16, n_heads=2, d_ff=32), defect_every=0,
                eval_every=20, attn_every=20, checkpoint_every=80)
    base.update(kw)
    return preset("quick", **base)


def _basis_and_grad(R=3, P=60, K=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    B = torch.linalg.qr(torch.randn(P, K, generator=g, dtype=torch.float64))[0]
    per_run = torch.stack([torch.linalg.qr(torch.randn(P, K, generator=g, dtype=torch.float64))[0]
                           for _ in range(R)])
    return B, per_run, torch.randn(R, P, generator=g, dtype=torch.float64)


@pytest.mark.parametrize("shared", [True, False])
def test_projections_idempotent_and_orthogonal(shared):
    B, Bs, g = _basis_and_grad()
    basis = B if shared else Bs
    par, perp = I.project_parallel(g, basis), I.project_perp(g, basis)
    torch.testing.assert_close(I.project_parallel(par, basis), par)
    torch.testing.assert_close(I.project_perp(perp, basis), perp)
    torch.testing.assert_close(par + perp, g)
    assert (par * perp).sum(1).abs().max() < 1e-10
    cols = basis.unsqueeze(0).expand(3, -1, -1) if shared else basis
    assert torch.einsum("rp,rpk->rk", perp, cols).abs().max() < 1e-10  # g⊥ ⟂ every basis vector
    assert par.norm() > 0.1 and perp.norm() > 0.1
    if not shared:  # each run uses its own basis
        torch.testing.assert_close(par[1], I.project_parallel(g[1:2], Bs[1])[0])


def test_suppression_and_deletion_amounts():
    B, _, g = _basis_and_grad()
    assert torch.equal(I.remove_perp(g, B, 0.0), g)
    torch.testing.assert_close(I.suppress(g, B, 1.0), I.project_parallel(g, B))
    a = torch.tensor([0.0, 0.25, 1.0], dtype=g.dtype)
    out = I.delete(g, B, a)
    assert torch.equal(out[0], g[0])
    torch.testing.assert_close(out[1], I.project_parallel(g, B)[1] + 0.75 * I.project_perp(g, B)[1])
    torch.testing.assert_close(out[2], I.project_parallel(g, B)[2])


def test_transform_waits_for_start():
    B, _, g = _basis_and_grad(R=2, P=12, K=3)
    grads = {"w": g.float().reshape(2, 3, 4)}
    t = I.projection_transform(B.float(), [0.5, 1.0], start=10)
    assert t(9, {}, grads) is grads
    out = t(10, {}, grads)
    expect = I.delete(g.float(), B.float(), torch.tensor([0.5, 1.0]))
    torch.testing.assert_close(M.flatten(out), expect)


def _final(results):
    return {k: torch.stack([r.params[k] for r in results]) for k in results[0].params}


def test_zero_amount_leaves_training_bitwise_unchanged():
    cfg = _cfg()
    plain = _final(train([cfg]))
    P = sum(v[0].numel() for v in plain.values())
    B = random_basis(P, 4, seed=1)
    zero = _final(train([cfg], grad_transform=I.projection_transform(B, 0.0, start=20)))
    assert all(torch.equal(plain[k], zero[k]) for k in plain)
    kick0 = _final(train([cfg], grad_transform=I.kick_transform(None, 0.0, every=20, start=20,
                                                                direction=I.random_direction(0))))
    assert all(torch.equal(plain[k], kick0[k]) for k in plain)
    cut = _final(train([cfg], grad_transform=I.projection_transform(B, 0.5, start=20)))
    assert any(not torch.equal(plain[k], cut[k]) for k in plain)


def test_scan_in_one_batch_equals_runs_one_at_a_time():
    base = _cfg()
    scan = IS.ScanConfig(kind="deletion", values=(0.0, 0.1, 0.5), start=20)
    cfgs = IS.scan_configs(base, scan)
    assert len({c.preset for c in cfgs}) == 3 and all(c.seed == base.seed for c in cfgs)
    P = sum(v.numel() for v in M.init_params(base.model, base.data, base.seed).values())
    B = random_basis(P, 6, seed=2)
    # float64: a batch and a run alone use other GEMM shapes, equal to rounding on any processor (tests/equivalence.py)
    B = B.double()
    batched = train(cfgs, grad_transform=I.projection_transform(B, list(scan.values), start=20), dtype=torch.float64)
    for r, (c, f) in enumerate(zip(cfgs, scan.values, strict=True)):
        alone = train([c], grad_transform=I.projection_transform(B, f, start=20), dtype=torch.float64)
        assert_same_run(batched[r], alone[0])


class _FakeProblem:
    R = 2


def test_kick_size_direction_and_frozen_runs():
    d = torch.tensor([[3.0, 4.0, 0.0], [0.0, 0.0, 2.0]])
    t = I.kick_transform(_FakeProblem(), torch.tensor([0.5, 0.5]), every=5, start=5,
                         direction=lambda pb, params, step: d)
    params = {"w": torch.zeros(2, 3)}
    grads = {"w": torch.ones(2, 3)}
    assert t(4, params, grads) is grads  # step 4 records θ before the update that precedes the kick
    params["w"] += torch.tensor([[0.0, 2.0, 0.0], [0.0, 0.0, 0.0]])  # run 1 is frozen (no update)
    before = params["w"].clone()
    t(5, params, grads)
    kick = params["w"] - before
    torch.testing.assert_close(kick[0], 0.5 * 2.0 * torch.tensor([0.6, 0.8, 0.0]))
    assert torch.equal(kick[1], torch.zeros(3))
    before = params["w"].clone()
    t(6, params, grads)  # not a kick step
    assert torch.equal(params["w"], before)


@pytest.fixture(scope="module")
def base_run(tmp_path_factory):
    cfg = _cfg(steps=200, data=dict(p=11, train_frac=0.8), n_snapshots=6)
    out = tmp_path_factory.mktemp("base")
    train([cfg], out)
    return RunDir(out / cfg.name)


def test_intervention_scan_table_and_files(base_run, tmp_path):
    scan = IS.ScanConfig(kind="deletion", values=(0.0, 0.5), steps=80, start=20, k=3)
    res = IS.intervention_scan(base_run, scan)
    tasks = base_run.config().data.tasks
    assert len(res.table) == 2 * len(tasks)
    assert set(res.table.value) == {0.0, 0.5}
    assert res.baseline == base_run.summary()["grok_step"]
    assert set(res.metrics.value) == {0.0, 0.5} and (res.metrics.step <= 80).all()
    # f = 0 in the scan is the base run itself, up to step 80
    m0 = res.metrics[(res.metrics.value == 0.0)].set_index(["step", "task", "split"]).acc
    mb = base_run.metrics().set_index(["step", "task", "split"]).acc
    assert (m0 == mb.loc[m0.index]).all()
    out = IS.write_scan(res, tmp_path / "scan")
    assert (out / "intervention.parquet").exists() and (out / "intervention_metrics.parquet").exists()


def test_commutator_kick_scan_runs(base_run):
    scan = IS.ScanConfig(kind="kick", values=(0.0, 1.0), steps=60, start=20, every=20, draws=1)
    res = IS.intervention_scan(base_run, scan)
    m = res.metrics
    a0 = m[(m.value == 0.0) & (m.split == "train")].acc.to_numpy()
    mb = base_run.metrics()
    assert (a0 == mb[(mb.step <= 60) & (mb.split == "train")].acc.to_numpy()).all()
    w0 = m[(m.value == 0.0)].weight_norm.to_numpy()
    w1 = m[(m.value == 1.0)].weight_norm.to_numpy()
    assert (w0 != w1).any()  # the kicks moved the kicked run


def test_intervene_command_json_and_table(base_run, tmp_path, capsys):
    args = ["intervene", str(base_run.path), "--kind", "random", "--fractions", "0,1", "--steps", "40",
            "--start", "10", "--k", "4", "--out", str(tmp_path / "o")]
    assert main([*args, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    tasks = list(base_run.config().data.tasks)
    rows = out["rows"]
    assert [(r["value"], r["task"]) for r in rows] == [(v, t) for v in (0.0, 1.0) for t in tasks]
    assert out["baseline"] == base_run.grok_steps()
    # f = 0 removes nothing: that run is the base run's first 40 steps, evaluation for evaluation
    m = read_table(tmp_path / "o" / INTERVENTION_METRICS)
    mb = base_run.metrics()
    for split in ("train", "test"):
        got = m[(m.value == 0.0) & (m.split == split)].sort_values(["step", "task"]).acc.to_numpy()
        want = mb[(mb.step <= 40) & (mb.split == split)].sort_values(["step", "task"]).acc.to_numpy()
        assert len(got) == len(want) > 0 and (got == want).all()
    assert json.loads((tmp_path / "o" / INTERVENTION_JSON).read_text())["baseline"] == out["baseline"]
    # the printed table shows, per fraction and task, the grok step (or "no grok") and the delay of the JSON
    assert main(args) == 0
    lines = capsys.readouterr().out.splitlines()
    for v in (0.0, 1.0):
        line = next(ln for ln in lines if ln.split()[0] == f"{v:g}")
        for r in (r for r in rows if r["value"] == v):
            assert (str(r["grok_step"]) if r["grok_step"] is not None else IS.NO_GROK) in line
            assert ("—" if r["delay_pct"] is None else f"{r['delay_pct']:+.1f}%") in line


def test_bad_scan_is_a_config_error(base_run):
    with pytest.raises(ConfigError):
        IS.intervention_scan(base_run, IS.ScanConfig(kind="bogus"))
    with pytest.raises(ConfigError):
        IS.intervention_scan(base_run, IS.ScanConfig(values=(-0.1,)))


def test_suppression_uses_the_execution_basis(base_run):
    B = IS.intervention_basis(base_run, "suppression")
    torch.testing.assert_close(B, exec_basis(base_run))
    assert B.shape[1] == 2 * 4 * base_run.config().model.n_layers  # 2 directions × W_Q, W_K, W_V, W_O
    res = IS.intervention_scan(base_run, IS.ScanConfig(kind="suppression", values=(1.0,), steps=40, start=10))
    assert len(res.table) == len(base_run.config().data.tasks)
