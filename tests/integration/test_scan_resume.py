"""A killed intervention scan resumes from its checkpoints to exactly the uninterrupted scan's result."""

from __future__ import annotations

import json
import shutil

import pandas as pd
import pytest
import torch

from grokscope import store
from grokscope.cli import main
from grokscope.config import preset
from grokscope.errors import StoreError
from grokscope.experiments import intervention_scan as IS
from grokscope.geometry import interventions as I
from grokscope.store import CHECKPOINT, INTERVENTION_JSON, RunDir, find_runs
from grokscope.store.scan_store import ScanDir
from grokscope.training import loop as T
from grokscope.training import train

from conftest import Stop, stop_after

torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _eager(monkeypatch):
    monkeypatch.setenv("GROKSCOPE_COMPILE", "0")


@pytest.fixture(scope="module")
def base_run(tmp_path_factory):
    cfg = preset("quick", steps=200, data=dict(p=11, train_frac=0.8), model=dict(d_model=16, n_heads=2, d_ff=32),
                 defect_every=0, eval_every=20, attn_every=20, checkpoint_every=40, n_snapshots=6)
    out = tmp_path_factory.mktemp("base")
    train([cfg], out)
    return RunDir(out / cfg.name)


def _checkpoints(folder):
    """Every run's final checkpoint tensors under a scan folder, by run name."""
    return {d.path.name: d.checkpoint()[0] for d in find_runs([ScanDir(folder).runs])}


def _same(a, b):
    """Two scans' rows, metrics and final checkpoints (parameters, optimiser state, sampler) bit for bit."""
    pd.testing.assert_frame_equal(a[0].table, b[0].table)
    pd.testing.assert_frame_equal(a[0].metrics, b[0].metrics)
    ca, cb = _checkpoints(a[1]), _checkpoints(b[1])
    assert ca.keys() == cb.keys() and len(ca) == len(a[0].scan.values)
    for name in ca:
        assert ca[name].keys() == cb[name].keys()
        for k in ca[name]:
            x, y = ca[name][k], cb[name][k]
            assert (x.dtype, x.shape) == (y.dtype, y.shape) and x.numpy().tobytes() == y.numpy().tobytes(), (name, k)


def _scan(base_run, scan, out, **kw):
    return IS.intervention_scan(base_run, scan, out=out, **kw), out


DELETION = IS.ScanConfig(kind="deletion", values=(0.0, 0.3, 1.0), steps=120, start=20, k=3)
KICK = IS.ScanConfig(kind="random-kick", values=(0.0, 2.0, 5.0), steps=120, start=20, every=20)


@pytest.fixture(scope="module")
def whole(base_run, tmp_path_factory):
    """The uninterrupted scans the resumed ones must equal: {kind: (result, folder)}."""
    return {scan.kind: _scan(base_run, scan, tmp_path_factory.mktemp(scan.kind)) for scan in (DELETION, KICK)}


def test_killed_deletion_scan_resumes_bitwise(base_run, whole, tmp_path, monkeypatch):
    whole = whole["deletion"]
    part = tmp_path / "part"
    with pytest.raises(Stop):
        IS.intervention_scan(base_run, DELETION, out=part, on_eval=stop_after(70))  # killed at step 80
    folder = ScanDir(part)
    cfgs = IS.scan_configs(base_run.config(), DELETION)
    assert [p.last_step for p in folder.progress(cfgs)] == [40, 40, 40]
    assert not (part / INTERVENTION_JSON).exists()
    assert "at step 40 of 120" in IS.resume_note(base_run, DELETION, part)
    stored = folder.basis()
    assert torch.equal(stored, IS.intervention_basis(base_run, "deletion", k=3))  # the base run's top-3 PCs

    def no_recompute(*a, **k):
        raise AssertionError("a resumed scan recomputed its basis")

    monkeypatch.setattr(IS, "intervention_basis", no_recompute)  # the resume must project on the stored basis
    evals = []
    resumed = _scan(base_run, DELETION, part, on_eval=lambda e: evals.append(e.step))
    assert evals[0] == 40  # it went on from the checkpoint (not from step 0)
    _same(whole, resumed)
    assert (resumed[0].metrics.step.max(), set(resumed[0].table.steps_trained)) == (120, {120})
    again = _scan(base_run, DELETION, part)  # a finished scan run again trains nothing and gives the same
    _same(whole, again)


def test_changed_base_run_keeps_the_stored_basis(base_run, whole, tmp_path):
    """The basis is computed once: a scan resumed after its base run changed still projects on it."""
    part = tmp_path / "part"
    with pytest.raises(Stop):
        IS.intervention_scan(base_run, DELETION, out=part, on_eval=stop_after(50))
    other = torch.linalg.qr(torch.randn(ScanDir(part).basis().shape, dtype=torch.float64))[0].float()
    store.write_tensors(part / store.SCAN_BASIS, {"basis": other})  # as if the base had moved on: detectable
    res, _ = _scan(base_run, DELETION, part)
    whole, _ = whole["deletion"]
    m = res.metrics[res.metrics.value == 0.3]
    w = whole.metrics[whole.metrics.value == 0.3]
    assert m[m.step <= 40].acc.tolist() == w[w.step <= 40].acc.tolist()
    assert m[m.step > 40].weight_norm.tolist() != w[w.step > 40].weight_norm.tolist()


def test_killed_kick_scan_resumes_bitwise_with_its_pending_kick(base_run, whole, tmp_path, monkeypatch):
    """Step 40 is a checkpoint and a kick step: the kick needs θ_39, which only the checkpoint holds."""
    whole = whole["random-kick"]
    part = tmp_path / "part"
    with pytest.raises(Stop):
        IS.intervention_scan(base_run, KICK, out=part, on_eval=stop_after(70))
    ck = RunDir(ScanDir(part).runs / IS.scan_configs(base_run.config(), KICK)[1].name).checkpoint()[0]
    assert int(ck["transform.prev_step"][0]) == 40 and "transform.prev" in ck
    lost = tmp_path / "lost"
    shutil.copytree(part, lost)
    evals = []
    _same(whole, _scan(base_run, KICK, part, on_eval=lambda e: evals.append(e.step)))
    assert evals[0] == 40
    # without its saved state the resumed scan misses the kick at step 40 and differs: the state matters
    monkeypatch.setattr(I.KickTransform, "restore", lambda self, r, tensors: None)
    res, _ = _scan(base_run, KICK, lost)
    assert not res.metrics.equals(whole[0].metrics)


def test_killed_between_two_runs_checkpoints(base_run, whole, tmp_path, monkeypatch):
    """A kill between writing run 1's and run 2's checkpoint at step 80: runs 0 and 1 resume at 80 while the
    batch catches up from 40, and run 1's kick at 80 still uses its own saved θ_79."""
    whole = whole["random-kick"]
    part = tmp_path / "part"
    real, seen = T.write_tensors, []

    def dying(path, tensors, meta=None):
        if path.name == CHECKPOINT and (meta or {}).get("step") == 80:
            seen.append(path)
            if len(seen) == 3:
                raise Stop
        return real(path, tensors, meta)

    monkeypatch.setattr(T, "write_tensors", dying)
    with pytest.raises(Stop):
        IS.intervention_scan(base_run, KICK, out=part)
    monkeypatch.setattr(T, "write_tensors", real)
    steps = sorted(p.last_step for p in ScanDir(part).progress(IS.scan_configs(base_run.config(), KICK)))
    assert steps == [40, 80, 80]
    _same(whole, _scan(base_run, KICK, part))


def test_another_scan_in_the_folder_is_refused_force_and_resume(base_run, tmp_path):
    out = tmp_path / "scan"
    short = IS.ScanConfig(kind="deletion", values=(0.0, 0.5), steps=60, start=20, k=3)
    IS.intervention_scan(base_run, short, out=out)
    before = sorted(p.name for p in out.rglob("*"))
    other_k = IS.ScanConfig(kind="deletion", values=(0.0, 0.5), steps=60, start=20, k=4)
    with pytest.raises(StoreError, match="another k"):
        IS.intervention_scan(base_run, other_k, out=out)
    longer = IS.ScanConfig(kind="deletion", values=(0.0, 0.5), steps=100, start=20, k=3)
    with pytest.raises(StoreError, match="--resume"):
        IS.intervention_scan(base_run, longer, out=out)
    with pytest.raises(StoreError, match="only under new steps"):
        IS.intervention_scan(base_run, other_k, out=out, resume=True)
    assert sorted(p.name for p in out.rglob("*")) == before  # refused: nothing written
    # --resume carries the scan on to its new budget: the same as a scan trained to 100 at once
    extended = IS.intervention_scan(base_run, longer, out=out, resume=True)
    whole = IS.intervention_scan(base_run, longer, out=tmp_path / "whole")
    pd.testing.assert_frame_equal(extended.table, whole.table)
    pd.testing.assert_frame_equal(extended.metrics, whole.metrics)
    forced = IS.intervention_scan(base_run, other_k, out=out, force=True)
    assert json.loads((out / store.SCAN_STATE).read_text())["scan"]["k"] == 4
    assert ScanDir(out).basis().shape[1] == 4 and set(forced.table.steps_trained) == {60}


def test_scan_runs_are_not_listed_as_plain_runs(base_run, tmp_path):
    out = base_run.path / "intervene-deletion-test"
    try:
        IS.intervention_scan(base_run, IS.ScanConfig(values=(0.5,), steps=40, start=20, k=3), out=out)
        # the base run's store lists the base run alone: its scan's runs are not mixed in
        assert [r.path for r in find_runs([base_run.path.parent])] == [base_run.path]
        assert len(find_runs([out])) == 1  # named, the scan's folder lists its runs
    finally:
        shutil.rmtree(out)


def test_intervene_command_resumes(base_run, tmp_path, capsys):
    def args(out, steps=60, *more):
        return ["intervene", str(base_run.path), "--kind", "random", "--fractions", "0,1", "--steps", str(steps),
                "--start", "10", "--k", "4", "--out", str(out), "--json", *more]

    assert main(args(tmp_path / "whole")) == 0
    want = json.loads(capsys.readouterr().out)
    out = tmp_path / "o"
    scan = IS.ScanConfig(kind="random", values=(0.0, 1.0), steps=60, start=10, k=4)
    with pytest.raises(Stop):
        IS.intervention_scan(base_run, scan, out=out, on_eval=stop_after(50))
    assert main(args(out)) == 0  # the same command resumes the killed scan
    assert json.loads(capsys.readouterr().out)["rows"] == want["rows"]
    assert main(args(out, 80)) == 2  # another budget: refused, naming --resume
    assert "--resume" in capsys.readouterr().err
    assert main(args(out, 80, "--resume")) == 0
    assert {r["steps_trained"] for r in json.loads(capsys.readouterr().out)["rows"]} == {80}
    assert main(args(out, 40, "--force")) == 0
    assert {r["steps_trained"] for r in json.loads(capsys.readouterr().out)["rows"]} == {40}


def test_resume_skips_the_steps_of_a_run_that_stopped_early(base_run, tmp_path):
    """A value whose run stopped early (here: kicked to divergence) keeps its old checkpoint; the resumed scan
    goes on from the live runs' last checkpoint, not from the stopped run's, and still equals the whole scan."""
    scan = IS.ScanConfig(kind="random-kick", values=(0.0, 2.0, 1e38), steps=120, start=20, every=20)
    whole = _scan(base_run, scan, tmp_path / "whole")
    assert list(whole[0].table.drop_duplicates("value").steps_trained) == [120, 120, 40]  # 1e38: diverged
    part = tmp_path / "part"
    with pytest.raises(Stop):
        IS.intervention_scan(base_run, scan, out=part, on_eval=stop_after(90))
    cfgs = IS.scan_configs(base_run.config(), scan)
    assert [p.last_step for p in ScanDir(part).progress(cfgs)] == [80, 80, 40]
    evals = []
    _same(whole, _scan(base_run, scan, part, on_eval=lambda e: evals.append(e.step)))
    assert evals[0] == 80
