"""The LLC through devinterp: grokscope's estimate equals devinterp called directly with the same seed and
settings; the calibration's rule; the `llc` analysis; Monitor(llc_every=...)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from grokscope.analyses import run_analysis
from grokscope.analyses.progress_measures import progress_table
from grokscope.cli import main
from grokscope.config import preset
from grokscope.data.tasks import make_split
from grokscope.errors import NotApplicable
from grokscope.geometry.llc import (
    LLCSettings,
    ParamsModule,
    calibrate_llc,
    chains_level_off,
    estimate_llc,
    module_loss,
    per_example_loss,
)
from grokscope.monitor import Monitor
from grokscope.store import RunDir
from grokscope.training import model as M
from grokscope.training import train

pytest.importorskip("devinterp")
from devinterp.slt.llc import llc as devinterp_llc  # noqa: E402

SETTINGS = LLCSettings(lr=1e-5, localization=100.0, n_beta=20.0, chains=2, draws=15, batch=16, seed=3)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    torch.set_num_threads(1)
    cfg = preset("quick", steps=150, data=dict(p=7, tasks=("add",)), model=dict(d_model=16, n_heads=2, d_ff=32),
                 optim=dict(batch=16), defect_every=0, n_snapshots=3, eval_every=50, checkpoint_every=50)
    out = tmp_path_factory.mktemp("llc")
    train([cfg], out)
    return RunDir(out / cfg.name)


class Direct(nn.Module):
    """The test's own module: the trunk's cross-entropy per example, written without grokscope.geometry.llc."""

    def __init__(self, params, cfg, pairs, targets):
        super().__init__()
        self.keys = list(params)
        self.w = nn.ParameterList([nn.Parameter(v.clone()) for v in params.values()])
        self.cfg, self.pairs, self.targets = cfg, pairs, targets

    def forward(self, rows):
        params = {k: v[None] for k, v in zip(self.keys, self.w)}
        out = M.forward(params, self.pairs[rows][None], self.cfg.model, self.cfg.data)[0, :, 0]
        return F.cross_entropy(out, self.targets[rows, 0], reduction="none")


def _data(run):
    cfg = run.config()
    d = cfg.data
    split = make_split(d.tasks, d.p, d.train_frac, cfg.split_seed, d.zero_excluded, d.unordered, d.split)
    return cfg, split


@pytest.mark.slow
def test_estimate_equals_devinterp_called_directly(run):
    from datasets import Dataset

    cfg, split = _data(run)
    _, snaps = run.snapshots()
    params = {k: v[-1] for k, v in snaps.items()}
    rows = split.train_idx.tolist()
    ours = estimate_llc(ParamsModule(params, per_example_loss(cfg, split.pairs, split.targets)), module_loss,
                        rows, SETTINGS)
    data = Dataset.from_dict({"input_ids": [[r, r] for r in rows]}).with_format("torch")
    theirs = devinterp_llc(Direct(params, cfg, split.pairs, split.targets), data, {}, lr=1e-5, n_beta=20.0,
                           localization=100.0, num_chains=2, num_draws=15, batch_size=16, init_seed=3,
                           loss_fn=lambda m, ids: m(ids[:, 0])[:, None])
    assert np.allclose(ours["llc_per_chain"], theirs["llc_per_chain"].values, rtol=1e-4, atol=1e-6)
    assert ours["llc_mean"] == pytest.approx(float(theirs["llc_mean"]), rel=1e-4, abs=1e-6)
    assert ours["settings"]["n_beta"] == 20.0 and ours["settings"]["lr"] == 1e-5
    # another seed moves the chains: the comparison above is not vacuous
    other = estimate_llc(ParamsModule(params, per_example_loss(cfg, split.pairs, split.targets)), module_loss,
                         rows, LLCSettings(**{**SETTINGS.to_dict(), "seed": 4}))
    assert not np.allclose(other["llc_per_chain"], ours["llc_per_chain"])


def test_default_nbeta_is_devinterps():
    from devinterp.utils import default_nbeta

    assert LLCSettings(batch=64).resolved(1000).n_beta == pytest.approx(default_nbeta(64))
    assert LLCSettings(batch=64).resolved(10).batch == 10  # capped at the rows


def test_chains_level_off_rule():
    t = np.linspace(0, 1, 40)
    flat = 0.5 + 0.0 * t
    assert chains_level_off(np.stack([np.r_[0.1, flat[1:]]] * 2), init=0.0)
    assert not chains_level_off(np.stack([t, t]), init=0.0)  # still climbing
    assert not chains_level_off(np.stack([flat + 2, flat + 2]), init=0.0)  # left the basin (> MAX_RISE)
    assert not chains_level_off(np.stack([flat, flat * np.nan]), init=0.0)
    assert not chains_level_off(np.stack([flat - 1, flat - 1]), init=0.0)  # below the start


@pytest.mark.slow
def test_calibration_picks_a_stable_setting_or_flags_none(run):
    cfg, split = _data(run)
    _, snaps = run.snapshots()
    module = ParamsModule({k: v[-1] for k, v in snaps.items()}, per_example_loss(cfg, split.pairs, split.targets))
    chosen, table = calibrate_llc(module, module_loss, split.train_idx.tolist(), SETTINGS, lrs=(1e-7, 1e-3),
                                  factors=(1.0,), localizations=(100.0,))
    assert table["chosen"].sum() == 1 and len(table) == 2
    pick = table[table["chosen"]].iloc[0]
    assert chosen.lr == pick["lr"]
    if table["stable"].any():
        assert pick["stable"] and pick["lr"] == table[table["stable"]]["lr"].max()
    else:  # the in-basin setting with the least drift (else the first)
        inside = table[(table["rise"] < 1.0) & (table["llc_mean"] > 0)]
        assert pick["drift"] == (inside["drift"].min() if len(inside) else table["drift"].iloc[0])


@pytest.mark.slow
def test_llc_analysis_stores_a_table(run):
    res = run_analysis(run, "llc", max_points=2, calibrate=False, **{k: v for k, v in SETTINGS.to_dict().items()})
    df = run.table("llc")
    assert len(df) == 2 and list(df["step"]) == sorted(df["step"])
    assert res["sampler"]["lr"] == 1e-5 and res["n_snapshots"] == 2
    assert np.isfinite(df["llc"]).all() and (df["llc_std"] >= 0).all()


def _monitored(tmp_path, **settings):
    torch.manual_seed(0)
    X, y = torch.randn(64, 4), torch.randint(0, 3, (64,))
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    mon = Monitor(model, F.cross_entropy, (X, y), out=tmp_path, batch_size=16, defect_every=0, warn=False,
                  verbose=False, **settings)
    for step in range(1, 21):
        opt.zero_grad()
        F.cross_entropy(model(X), y).backward()
        opt.step()
        mon.step(step)
    mon.close()
    return RunDir(tmp_path), model


@pytest.mark.slow
def test_monitor_llc_off_by_default_and_at_its_cadence(tmp_path):
    run, plain = _monitored(tmp_path / "off")
    assert not run.has_table("llc")
    assert run_analysis(run, "llc") == {"skipped": "monitored run without the LLC (Monitor llc_every=0)"}
    # a monitored model has no token embedding grokscope knows: progress measures refuse it, in one line
    with pytest.raises(NotApplicable, match="Monitor"):
        progress_table(run)
    assert main(["analyze", str(run.path), "--what", "progress"]) == 2
    run, model = _monitored(tmp_path / "on", llc_every=10, llc_draws=10, llc_chains=2, llc_samples=32)
    df = run.table("llc")
    assert list(df["step"]) == [0, 10, 20] and np.isfinite(df["llc"]).all()
    assert isinstance(run_analysis(run, "llc")["llc_last"], float)
    # sampling moved copies only: the user's training is bitwise the one without the LLC
    assert all(torch.equal(plain.state_dict()[k], v) for k, v in model.state_dict().items())
    assert isinstance(pd.DataFrame(df).iloc[-1]["levels_off"], (bool, np.bool_))


def test_report_shows_the_llc_when_stored(run, tmp_path):
    from grokscope.report import ReportConfig, build_report

    if not run.has_table("llc"):
        run_analysis(run, "llc", max_points=2, calibrate=False, **SETTINGS.to_dict())
    res = build_report(run.path.parent, tmp_path / "report", ReportConfig(n_null=0))
    assert "llc" in {f.stem for f in res.figures} and "Local learning coefficient" in res.index.read_text()
