"""studies/ew_*: the early-warning corpus' runs, controls and budgets, and every family added for issue 38 builds
and trains a few steps into a store a detector can replay (held-out and train metrics, weight norm, defects,
the optimiser), which a second pass then skips."""

from __future__ import annotations

import json
import sys
from dataclasses import replace

import pytest

from conftest import ROOT

STUDIES = ROOT / "studies"


@pytest.fixture(scope="module")
def ew(tmp_path_factory):
    """The study's modules, importable (as the script sees them) while this file's tests run, with an empty record
    of exported runs in place of the repository's (its real runs share names with the tests' tiny ones)."""
    sys.path.insert(0, str(STUDIES))
    import ew_corpus
    import ew_export
    import ew_train

    real = ew_export.EXPORT
    ew_export.EXPORT = tmp_path_factory.mktemp("no-export")
    yield ew_corpus, ew_train
    ew_export.EXPORT = real
    sys.path.remove(str(STUDIES))


def test_runs_controls_and_budget(ew):
    corpus, _ = ew
    g = corpus.Group("v2", "f", "add", "plain-embed-mlp", (1.0, 0.0), (1, 2), lr=1e-3, steps=4000, max_steps=9000,
                     small_frac=0.1, small_lr=1e-5, control_seeds=1)
    runs = list(g.runs())
    assert [(r.seed, r.role) for r in runs] == [(1, "grok?"), (1, "no-decay"), (1, "small-lr"), (1, "small-data"),
                                                (2, "grok?")]
    small_lr = runs[2]
    assert (small_lr.wd, small_lr.lr, small_lr.train_frac) == (1.0, 1e-5, g.train_frac)
    assert len({g.run_name(r) for r in runs}) == len(runs)
    assert corpus.budget(g, []) == 4000 and corpus.budget(g, [1100]) == 4000
    assert corpus.budget(g, [1100, 2100]) == 7000 and corpus.budget(g, [5000]) == 9000
    assert corpus.budget(replace(g, max_steps=0), [5000]) == 4000
    # every run of the corpus has its own folder and is scheduled once; the schedule opens with every group's
    # first seed, user code with the runs that may grok (their controls' budgets follow those grok steps)
    names = [(g.part, g.family, g.run_name(r)) for g in corpus.CORPUS for r in g.runs()]
    assert len(names) == len(set(names))
    order = list(corpus.schedule())
    scheduled = [(g.family, r) for g, rs in order for r in rs]
    assert len(scheduled) == len(names) and set(scheduled) == {(g.family, r) for g in corpus.CORPUS for r in g.runs()}
    first = order[:len(corpus.CORPUS)]
    assert [(g.family, rs[0].seed) for g, rs in first] == [(g.family, g.seeds[0]) for g in corpus.CORPUS]
    assert all({r.role for r in rs} == {"grok?"} for g, rs in first if g.model not in corpus.GROKSCOPE_MODELS)
    late = [i for i, (g, rs) in enumerate(order) if g.late_controls and rs[0].role != "grok?"]
    assert late and late == list(range(len(order) - len(late), len(order)))  # the costliest controls come last


@pytest.mark.parametrize("family", ["embed-mlp-adam-l2", "hf-gpt2-mul", "lightning-trunk-sub", "tl-bridge-add"])
def test_family_trains_and_records(ew, tmp_path, family):
    corpus, train = ew
    g = next(g for g in corpus.V2 if g.family == family)
    pytest.importorskip({"hf-gpt2-mul": "transformers", "lightning-trunk-sub": "lightning",
                         "tl-bridge-add": "transformer_lens"}.get(family, "torch"))
    from grokscope.store import RunDir

    tiny = replace(g, p=11, steps=200, max_steps=0, seeds=(1,))
    runs = [r for r in tiny.runs() if r.role == "small-lr"]  # a control: its own lr, at the family's decay
    assert train.train_runs(tiny, runs, tmp_path) == 1
    for r in runs:
        run = RunDir(corpus.group_dir(tmp_path, tiny) / tiny.run_name(r))
        m = run.metrics()
        for split in ("train", "test"):  # the full split's loss and accuracy in one row, every 100 steps
            rows = m[m.split == split]
            assert list(rows.step) == [100, 200] and rows.acc.between(0, 1).all() and rows.loss.gt(0).all(), m
        assert m.weight_norm.dropna().gt(0).all()
        assert list(run.table("defect").step.unique()) == [0, 100, 200]
        assert run.config().optim.lr == pytest.approx(r.lr) and run.config().optim.wd == pytest.approx(r.wd)
        meta = json.loads((run.path / train.META).read_text())
        assert (meta["family"], meta["role"], meta["budget"]) == (family, r.role, 200)
        assert meta["optimizer"] == {**meta["optimizer"], "kind": g.optimizer, "lr": r.lr, "weight_decay": r.wd,
                                     "decay": "l2" if g.optimizer == "adam" else "decoupled"}
    assert train.train_runs(tiny, runs, tmp_path) == 0  # done runs are skipped
    (run.path / "summary.json").unlink()  # as if killed: trained again, from scratch
    assert train.train_runs(tiny, runs, tmp_path) == 1 and RunDir(run.path).summary()["finished"]
    assert meta["cpu_seconds"] > 0 and f"{family}: 1/" in train.status(tmp_path, groups=(tiny,))


def test_an_exported_run_scores_as_stored_and_is_not_trained_again(ew, tmp_path, monkeypatch):
    """A finished run exported to the repository's record reads back as the store gives it, and training a fresh
    store skips it (a later session, its cache gone, does not pay for it again)."""
    import numpy as np

    corpus, train = ew
    import early_warning
    import ew_export

    monkeypatch.setattr(ew_export, "EXPORT", tmp_path / "export")
    g = replace(next(g for g in corpus.V2 if g.family == "embed-mlp-adam-l2"), p=11, steps=200, max_steps=0,
                seeds=(1,))
    runs = [r for r in g.runs() if r.role == "small-lr"]
    monkeypatch.setattr(early_warning, "CORPUS", (g,))
    assert train.train_runs(g, runs, tmp_path / "store") == 1
    assert early_warning.export_corpus(tmp_path / "store") == 1
    (stored,) = early_warning.load_corpus(tmp_path / "store", 100, tmp_path / "none")
    (exported,) = early_warning.load_corpus(tmp_path / "fresh", 100)
    assert (stored.family, stored.name, stored.grok, stored.budget, stored.t_mem) == (
        exported.family, exported.name, exported.grok, exported.budget, exported.t_mem)
    assert list(exported.series["step"]) == [0, 100, 200] and exported.series.keys() == stored.series.keys()
    for k, v in stored.series.items():
        assert list(v) == list(exported.series[k]) if k == "clock_kind" else np.array_equal(
            np.asarray(v, float), exported.series[k], equal_nan=True), k
    assert list(early_warning.load_corpus(tmp_path / "fresh", 200)[0].series["step"]) == [0, 200]
    assert train.train_runs(g, runs, tmp_path / "fresh") == 0 and not (tmp_path / "fresh").exists()
    assert "(exported)" in train.status(tmp_path / "fresh", groups=(g,))
