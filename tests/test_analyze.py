"""End to end: a tiny dual-task run with the inline defect probe, its geometry summary, and `analyze`."""

import argparse
import json
import math

import numpy as np
import pytest
import torch

from grokscope.commands import analyze as analyze_cmd
from grokscope.config import preset
from grokscope.errors import ConfigError, StoreError
from grokscope.geometry.commutator import defect_probe, defects_from_snapshots
from grokscope.geometry.pca import exec_basis, trajectory_pcs
from grokscope.geometry.summary import geometry_summary
from grokscope.store import RunDir
from grokscope.train import train


def _args(runs, what):
    return argparse.Namespace(runs=runs, what=what, device="cpu", draws=2, json=True)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    torch.set_num_threads(1)
    cfg = preset("quick", steps=200, data=dict(p=11, tasks=("add", "mul")),
                 model=dict(d_model=16, n_heads=2, d_ff=32), optim=dict(batch=64), defect_every=100,
                 n_snapshots=5, eval_every=50, checkpoint_every=100)
    out = tmp_path_factory.mktemp("geo")
    train([cfg], out, probes=(defect_probe(cfg.defect_every, draws=2),))
    return RunDir(out / cfg.name)


def test_inline_probe_writes_defect_table(run):
    df = run.table("defect")
    assert list(df["step"]) == [0, 100, 200]
    assert {"run", "step", "defect", "defect_cross"} <= set(df.columns)
    assert np.isfinite(df["defect"]).all() and (df["defect"] > 0).all()
    assert np.isfinite(df["defect_cross"]).all() and (df["defect_cross"] > 0).all()


def test_geometry_summary_is_finite(run):
    g = geometry_summary(run, draws=3)
    assert set(g["pc1_percent"]) == {f"layers.0.attn.{m}" for m in ("W_Q", "W_K", "W_V", "W_O")}
    for v in [*g["pc1_percent"].values(), g["pc1_mean"], g["defect_final"], g["rho"], g["rho_random"],
              g["proj_ratio"]]:
        assert v is not None and math.isfinite(v)
    assert 0 < g["rho"] <= 1 + 1e-6 and 0 < g["rho_random"] <= 1 + 1e-6
    assert g["defect_final"] > 0 and g["defect_peak_ratio"] > 0
    assert set(g["lead"]) == {"add", "mul"} and set(g["lead_fraction"]) == {"add", "mul"}
    assert "onset" in g and "onset_envelope" in g and "onset_cross" in g
    json.dumps(g, allow_nan=False)  # JSON-safe: no NaN, only numbers and None
    # the recorded trajectory moved, so the attention matrices have a leading direction
    assert g["pc1_mean"] > 0, "attention trajectory is constant: are recorded snapshots copies of the params?"


def test_exec_basis_and_trajectory_pcs_of_a_run(run):
    B = exec_basis(run)
    cfg = run.config()
    assert B.shape[1] == 2 * 4 * cfg.model.n_layers
    torch.testing.assert_close(B.T @ B, torch.eye(B.shape[1]), atol=1e-5, rtol=0)
    pcs = trajectory_pcs(run, k=20)
    steps, _ = run.snapshots()
    assert pcs.basis.shape == (B.shape[0], min(20, len(steps) - 1))
    assert np.all(np.diff(pcs.cumulative) >= -1e-12) and pcs.cumulative[-1] <= 1 + 1e-9


def test_posthoc_defects_chunking_is_invisible(run):
    a = defects_from_snapshots(run, draws=2, chunk=1)
    b = defects_from_snapshots(run, draws=2, chunk=3)
    steps, _ = run.snapshots()
    assert list(a["step"]) == steps.tolist()
    for col in ("defect", "defect_cross", "rho", "rho_random", "proj_ratio"):
        np.testing.assert_allclose(a[col], b[col], rtol=1e-4)
    assert ((a["rho"] > 0) & (a["rho"] <= 1 + 1e-6)).all()


def test_analyze_command_writes_tables_and_json(run, capsys):
    args = _args([str(run.path.parent)], ["pca", "defect"])
    assert analyze_cmd.run(args) == 0
    out = json.loads(capsys.readouterr().out)
    res = out[run.config().name]
    assert run.has_table("pca") and run.has_table("defect_posthoc")
    assert len(run.table("pca")) == 4 and len(run.table("defect_posthoc")) == res["defect"]["n_snapshots"]
    assert math.isfinite(res["pca"]["pc1_mean"]) and 0 < res["defect"]["rho_final"] <= 1 + 1e-6
    args.json = False
    assert analyze_cmd.run(argparse.Namespace(**{**vars(args), "what": ["pca"]})) == 0
    text = capsys.readouterr().out
    assert "PC1%" in text and "pca.parquet" in text


def test_analyze_command_errors(run, tmp_path):
    with pytest.raises(ConfigError, match="hesian"):
        analyze_cmd.run(_args([str(run.path)], ["hesian"]))
    with pytest.raises(StoreError):
        analyze_cmd.run(_args([str(tmp_path / "nope")], ["pca"]))
    (tmp_path / "empty").mkdir()
    with pytest.raises(StoreError, match="no grokscope runs"):
        analyze_cmd.run(_args([str(tmp_path / "empty")], ["pca"]))
