"""End to end: a tiny dual-task run with the inline defect probe, its geometry summary, and `analyze`."""

import json

import numpy as np
import pytest
import torch

from grokscope.cli import main
from grokscope.config import preset
from grokscope.geometry.commutator import defect_probe, defects_from_snapshots
from grokscope.geometry.onset import onset_threshold
from grokscope.geometry.pca import exec_basis, matrix_pca, trajectory_pcs
from grokscope.geometry.summary import geometry_summary
from grokscope.store import RunDir
from grokscope.training import train


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


def test_geometry_summary_values(run):
    g = geometry_summary(run, draws=3)
    # PC1% per attention matrix: the centred PCA of each recorded matrix trajectory, and their mean
    _, attn = run.attention_trajectory()
    assert set(g["pc1_percent"]) == {f"layers.0.attn.{m}" for m in ("W_Q", "W_K", "W_V", "W_O")} == set(attn)
    for name, pc in g["pc1_percent"].items():
        assert pc == pytest.approx(matrix_pca(attn[name], 1).pc1_percent, rel=1e-5)
        assert 0 < pc <= 100
    assert g["pc1_mean"] == pytest.approx(np.mean(list(g["pc1_percent"].values())), rel=1e-9)
    # defect and ρ at the last snapshot: the commutator measured there (same draws), ρ in (0, 1]
    steps, _ = run.snapshots()
    assert g["defect_final_step"] == int(steps[-1])
    assert 0 < g["rho"] <= 1 + 1e-6 and 0 < g["rho_random"] <= 1 + 1e-6 and g["defect_final"] > 0
    # onset, peak ratio and lead: the threshold detector on the inline defect table, against the grok steps
    d = run.table("defect").sort_values("step")
    D = d["defect"].to_numpy()
    onset = onset_threshold(d["step"], D)
    assert g["onset"] == onset and g["onset_cross"] == onset_threshold(d["step"], d["defect_cross"])
    assert g["defect_peak_ratio"] == pytest.approx(D.max() / np.median(D[:3]), rel=1e-9)
    grok = run.grok_steps()
    assert set(g["lead"]) == set(g["lead_fraction"]) == {"add", "mul"}
    for t, gs in grok.items():
        want = None if gs is None or onset is None else gs - onset
        assert g["lead"][t] == want
        assert g["lead_fraction"][t] == (None if want is None else pytest.approx(want / gs))
    json.dumps(g, allow_nan=False)  # JSON-safe: no NaN, only numbers and None


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
    assert main(["analyze", str(run.path.parent), "--what", "pca,defect", "--draws", "2", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)[run.config().name]
    pca, post = run.table("pca"), run.table("defect_posthoc")
    steps, _ = run.snapshots()
    assert len(pca) == 4 and list(post["step"]) == steps.tolist() and res["defect"]["n_snapshots"] == len(steps)
    # the printed results are the tables' numbers, and what the run's analyses.json now holds
    assert res["pca"]["pc1_mean"] == pytest.approx(pca["pc1_percent"].mean(), rel=1e-9)
    d = res["defect"]
    assert d["rho_final"] == pytest.approx(post["rho"].iloc[-1]) and 0 < d["rho_final"] <= 1 + 1e-6
    assert d["defect_final"] == pytest.approx(post["defect"].iloc[-1])
    assert d["onset"] == onset_threshold(post["step"], post["defect"])
    assert d["defect_peak_ratio"] == pytest.approx(post["defect"].max() / post["defect"].iloc[:3].median())
    assert run.analyses()["pca"] == res["pca"] and run.analyses()["defect"] == d
    assert main(["analyze", str(run.path), "--what", "pca"]) == 0
    text = capsys.readouterr().out
    assert f"PC1% mean {res['pca']['pc1_mean']:.1f}" in text and "pca.parquet" in text


def test_analyze_command_errors(run, tmp_path, capsys):
    assert main(["analyze", str(run.path), "--what", "hesian"]) == 2
    assert "unknown analysis 'hesian'" in capsys.readouterr().err
    assert main(["analyze", str(tmp_path / "nope"), "--what", "pca"]) == 2
    assert "is not a run directory" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["analyze", str(tmp_path / "empty"), "--what", "pca"]) == 2
    assert "no grokscope runs" in capsys.readouterr().err


def test_analyze_hessian_lanczos_options(run, capsys):
    """`--lanczos-iters` / `--lanczos-tol` reach the Lanczos run: the table records the steps taken, the Ritz
    residuals, and (with a tolerance) whether λ_min and λ_max met it (convergence itself: test_hessian.py)."""
    assert main(["analyze", str(run.path), "--what", "hessian", "--lanczos-iters", "30", "--lanczos-tol", "0.5",
                 "--json"]) == 0
    res = json.loads(capsys.readouterr().out)[run.config().name]["hessian"]
    h = run.table("hessian")
    assert "converged" in h and (h["lanczos_iters"] <= 30).all() and (h["lambda_min_residual"] > 0).all()
    done = h[h["converged"]]
    assert (done["lambda_min_residual"] <= 0.5 * done["lambda_min"].abs()).all()
    assert res["total"]["lambda_min"] == pytest.approx(h[h["loss"] == "total"]["lambda_min"].min())


def test_analyze_hessian_draws(run, capsys):
    """`--hessian-draws N` stores N fresh-sample λ_min traces (hessian_draws.parquet) and prints their depths;
    a negative N is refused before anything is written."""
    assert main(["analyze", str(run.path), "--what", "hessian", "--lanczos-iters", "5", "--hessian-draws", "2"]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if "fresh samples" in x)
    draws = run.table("hessian_draws")
    assert sorted(draws["draw"].unique()) == [0, 1]
    assert draws["step"].nunique() == run.table("hessian")["step"].nunique()
    depths = draws.groupby("draw")["lambda_min"].min()
    assert run.analyses()["hessian"]["depth_draws"]["depths"] == pytest.approx(list(depths))
    assert "over 2 fresh samples" in line and f"{depths.iloc[0]:.1f}" in line
    assert main(["analyze", str(run.path), "--what", "hessian", "--hessian-draws", "-1"]) == 2
    assert "--hessian-draws=-1" in capsys.readouterr().err


def test_analyze_prints_lambda_min_per_loss(run, capsys):
    """The text output names λ_min of each loss (total, then per task) with its step, as the README words it."""
    assert main(["analyze", str(run.path), "--what", "hessian", "--lanczos-iters", "5"]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.strip().startswith("hessian:"))
    h = run.table("hessian")
    for loss in ("total", "add", "mul"):
        at = h[h["loss"] == loss].sort_values("lambda_min").iloc[0]
        assert f"{loss} loss λ_min {at.lambda_min:.3f} at step {at.step}" in line, line
    assert f"({h.step.nunique()} checkpoints)" in line
