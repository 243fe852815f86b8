"""The report answers a monitoring user: an early-warning section per monitored run (the detector's score as it was
live, its threshold, the warning or why none, the predicted window against the grok step), PC1 labels that stay
readable on long framework parameter names, and "not in this store" hints that work for a monitored run."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from matplotlib.image import imread
from torch import nn

from grokscope.monitor import DetectorConfig, Monitor, MultiSignalDetector, OnsetDetector
from grokscope.report import ReportConfig, build_report, plots
from grokscope.report.early_warning import warning_view
from grokscope.report.labels import tick_labels
from grokscope.store import RunDir, read_json, write_json

from conftest import tiny_config

STEPS = 60
# fires once the training set is memorised (train acc >= 0.9): the gate alone, as the corpus' ablation
GATE = DetectorConfig(bias=1.0, norm_weight=0.0, acc_gate=0.9, threshold=0.5, name="gate")
QUICK = dict(defect_every=4, draws=1, watch_every=4, snapshot_every=20, n_snapshots=2, grok_acc=0.9, grok_patience=2,
             verbose=False)


class Wrapped(nn.Module):
    """Parameter names as long as a TransformerLens bridge's (`layers.0._original_component.attn...`)."""

    def __init__(self) -> None:
        super().__init__()
        self._original_component = nn.ModuleDict({"q_proj_long_name": nn.Linear(6, 16),
                                                  "k_proj_long_name": nn.Linear(16, 16),
                                                  "output_projection": nn.Linear(16, 2)})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = self._original_component
        return m["output_projection"](torch.relu(m["k_proj_long_name"](torch.relu(m["q_proj_long_name"](x)))))


def _monitored(out: Path, *, detector=None, log_train_acc: bool = True, **settings) -> Monitor:
    """A plain loop on a separable toy task with the monitor attached; returns the closed monitor."""
    torch.manual_seed(3)
    g = torch.Generator().manual_seed(0)
    X = torch.randn(96, 6, generator=g)
    y = (X[:, 0] + X[:, 1] > 0).long()
    model = nn.ModuleDict({"layers": nn.ModuleList([Wrapped()])})
    model.forward = lambda x: model["layers"][0](x)  # type: ignore[method-assign]
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.1)
    mon = Monitor(model, F.cross_entropy, (X[:64], y[:64]), out=out, optimizer=opt, batch_size=16, seed=1,
                  detector=detector, watch=["*"], **{**QUICK, **settings})
    for step in range(1, STEPS + 1):
        loss = F.cross_entropy(model(X[:64]), y[:64])
        opt.zero_grad()
        loss.backward()
        opt.step()
        metrics = None
        if step % 2 == 0:
            with torch.no_grad():
                acc = (model(X).argmax(-1) == y).float()
            metrics = {"train_loss": loss.item(), "test_acc": acc[64:].mean().item()}
            if log_train_acc:
                metrics["train_acc"] = acc[:64].mean().item()
        mon.step(step, metrics)
    mon.close()
    return mon


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = tmp_path_factory.mktemp("monitored")
    mons = {"gated": _monitored(root / "gated", detector=MultiSignalDetector(GATE)),
            "default-no-train-acc": _monitored(root / "default-no-train-acc", log_train_acc=False),
            "off": _monitored(root / "off", warn=False),
            "no-defect": _monitored(root / "no-defect", defect_every=0),
            "onset-rule": _monitored(root / "onset-rule", detector=OnsetDetector())}
    return root, mons


@pytest.fixture(scope="module")
def report(store, tmp_path_factory):
    root, _ = store
    out = tmp_path_factory.mktemp("report")
    return build_report(root, out, ReportConfig(compute_summary=True, draws=1)), out


def _rows(result) -> dict:
    (section,) = [s for s in result.sections if s.key == "early_warning"]
    return {r["run"]: r for r in section.table.to_dict("records")}, section


def test_a_warned_run_shows_the_live_scores_threshold_warning_and_window(store, report):
    root, mons = store
    mon = mons["gated"]
    (event,) = mon.events  # the gate detector fires once, when the training set is memorised
    view = warning_view(RunDir(root / "gated"), "gated", RunDir(root / "gated").config(),
                        RunDir(root / "gated").summary())
    assert view.detector == "gate" and view.threshold == GATE.threshold
    assert np.array_equal(view.steps, mon.detector.steps)
    assert np.array_equal(view.scores, np.asarray(mon.detector.scores))  # replayed = live, bit for bit
    rows, section = _rows(report[0])
    row = rows["gated"]
    assert row["warned at"] == event.step and row["detector"] == "gate"
    assert row["predicted window"] == f"{event.window_lo:.0f}–{event.window_hi:.0f}"
    assert row["predicted grok"] == round(event.predicted_grok)
    grok = RunDir(root / "gated").summary()["grok_step"]["task"]
    assert row["grok step"] == grok
    if grok is not None and grok > event.step:
        inside = event.window_lo <= grok <= event.window_hi
        assert f"{grok - event.step} steps before grokking" in row["outcome"]
        assert ("inside the predicted window" in row["outcome"]) == inside
    elif grok is not None:
        assert "before the warning" in row["outcome"]
    assert row["why"].startswith(f"score 1 ≥ threshold {GATE.threshold:.3g}") and "memorised 1" in row["why"]
    png = report[1] / section.figure
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and imread(png).shape[0] > 100


def test_no_warning_says_why_for_each_kind_of_run(store, report):
    rows, _ = _rows(report[0])
    assert set(rows) == {"gated", "default-no-train-acc", "off", "no-defect", "onset-rule"}
    r = rows["default-no-train-acc"]
    assert r["warned at"] is None or np.isnan(r["warned at"])
    chosen = RunDir(store[0] / "default-no-train-acc").summary()["monitor"]["detector"]  # the default's own choice
    assert r["detector"] == chosen["running"] and chosen["reason"] in r["detector source"]
    assert f"no warning from the {chosen['running']} detector" in r["why"]
    assert rows["off"]["why"] == "the early warning was off (Monitor warn=False)"
    assert "defect_every=0" in rows["no-defect"]["why"]
    onset = store[1]["onset-rule"]
    r = rows["onset-rule"]
    if onset.events:  # P2's onset rule has no score to replay: its warning as recorded
        assert r["warned at"] == onset.events[0].step and "as recorded" in r["why"]
    else:  # a detector that never fired: the report names the one the monitor recorded running
        recorded = RunDir(store[0] / "onset-rule").summary()["monitor"]["detector"]
        assert r["detector"] == recorded["name"] and "no warning from" in r["why"]


def test_the_summarys_detector_name_and_reason_are_shown(store, tmp_path):
    root, _ = store
    copy = tmp_path / "run"
    shutil.copytree(root / "default-no-train-acc", copy)
    summary = read_json(copy / "summary.json")
    summary["monitor"]["detector"] = {"name": "multi-val", "reason": "the run logs a held-out loss"}
    write_json(copy / "summary.json", summary)
    run = RunDir(copy)
    view = warning_view(run, "x", run.config(), run.summary())
    assert (view.detector, view.detector_note) == ("multi-val", "the run logs a held-out loss")
    assert view.threshold == pytest.approx(0.564974)  # the named detector's own threshold, replayed


def test_hints_for_a_monitored_store_do_not_send_the_user_in_a_circle(store, report):
    """After --compute, nothing says --compute again; nothing offers a command that refuses a monitored run."""
    missing = report[0].missing
    rho = missing["Integrability ρ"]
    assert "not computed for a monitored model" in rho and "--compute" not in rho
    for title, hint in missing.items():
        for refused in ("--compute", "grokscope analyze", "grokscope fragility", "grokscope intervene",
                        "grokscope run"):
            assert refused not in hint, (title, hint)
    page = (report[1] / "index.html").read_text()
    assert 'id="early_warning"' in page and page.index('id="early_warning"') < page.index('id="missing"')


def test_a_mixed_store_names_the_hint_for_each_kind(store, tmp_path):
    root, _ = store
    mixed = tmp_path / "mixed"
    shutil.copytree(root / "off", mixed / "off")
    from grokscope.sweep.batch import train_with_probes
    train_with_probes([tiny_config(steps=100)], mixed)
    result = build_report(mixed, tmp_path / "report", ReportConfig(null_runs=0))
    rho = result.missing["Integrability ρ"]
    assert "grokscope's runs: no geometry summary: `grokscope report STORE --compute`" in rho
    assert "monitored runs: ρ is not computed for a monitored model" in rho


def _overlaps(fig) -> list[tuple[str, str]]:
    """Pairs of x tick labels whose drawn boxes overlap, and labels outside the figure."""
    canvas = fig.canvas
    canvas.draw()
    ax = fig.axes[0]
    labels = [t for t in ax.get_xticklabels() if t.get_text()]
    boxes = [t.get_window_extent(canvas.get_renderer()) for t in labels]
    bad = [(a.get_text(), b.get_text()) for (a, ba), (b, bb) in zip(zip(labels, boxes), zip(labels[1:], boxes[1:]))
           if ba.overlaps(bb)]
    width = fig.bbox.width
    bad += [(t.get_text(), "outside") for t, b in zip(labels, boxes) if b.x0 < 0 or b.x1 > width]
    return bad


@pytest.mark.parametrize("n", [4, 15, 40])
def test_pc1_labels_never_overprint_whatever_the_names(n):
    wrapped = "layers.{i}._original_component.attn._original_component.{w}._original_component.weight"
    names = [wrapped.format(i=i // 4, w="qkvo"[i % 4]) for i in range(n)]
    df = __import__("pandas").DataFrame({"run": "r", "name": names, "pc1_percent": np.linspace(20, 90, n),
                                         "null_mean": 60.0, "null_std": 2.0})
    fig = plots.pc1_vs_null(df)
    assert _overlaps(fig) == []
    labels, shared = tick_labels(names)
    assert len(set(labels)) == n and all("_original_component" not in lab for lab in labels)
    assert max(len(line) for lab in labels for line in lab.split("\n")) <= 14


def test_tick_labels_keep_grokscope_names_and_strip_the_shared_part():
    assert tick_labels(["layers.0.attn.W_Q", "layers.1.attn.W_K"]) == (["W_Q@0", "W_K@1"], "")
    assert tick_labels(["h.0.attn.c_attn.weight", "h.0.attn.c_proj.weight"]) == (["c_attn", "c_proj"],
                                                                                 "h.0.attn.*.weight")
    labels, _ = tick_labels(["_orig_mod.x", "x"])  # stripping the wrapper would merge them: kept whole
    assert labels == ["_orig_mod.x", "x"]
    assert tick_labels(["0.weight", "2.weight"]) == (["0.weight", "2.weight"], "")  # not bare numbers


def test_the_monitored_report_page_in_a_browser(report, tmp_path):
    from conftest import headless_dom
    page = report[1] / "index.html"
    proc = headless_dom(page, tmp_path / "profile")
    assert proc.returncode == 0
    dom = proc.stdout
    assert 'id="early_warning"' in dom and "early_warning.png" in dom
    srcs = re.findall(r'<img src="([^"]+)"', dom)
    assert srcs and all((report[1] / s).is_file() for s in srcs)
    assert json.dumps  # the page is static: nothing else to load
