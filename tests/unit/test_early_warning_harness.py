"""studies/early_warning.py: run-level outcomes, summaries and the calibration rule on hand-made runs."""

from __future__ import annotations

import importlib.util
import sys

import numpy as np
import pytest

from grokscope.monitor.detector import DEFAULT_DETECTOR

from conftest import ROOT

HARNESS = ROOT / "studies" / "early_warning.py"


@pytest.fixture(scope="module")
def ew():
    spec = importlib.util.spec_from_file_location("early_warning_harness", HARNESS)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # its dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


def _record(ew, part: str, drop: float, grok: int | None, t_mem: int = 200, name: str = "r"):
    """Measurements every 200 steps; fitted from step 200; the norm falls linearly by `drop` over 1000 steps."""
    steps = 200 * np.arange(20)
    norm = 40 * (1 - drop * np.clip((steps - 200) / 1000, 0, 1))
    series = {"step": steps, "defect": np.ones(20), "weight_norm": norm,
              "train_acc": np.where(steps >= 200, 1.0, 0.1), "test_loss": np.full(20, 3.0)}
    return ew.Record(part, "fam", name, 1.0, grok, 4000, series, t_mem)


def test_outcomes_summary_and_calibration_rule(ew):
    recs = [_record(ew, "calib", 0.6, 1400, name="g1"), _record(ew, "calib", 0.5, 1800, name="g2"),
            _record(ew, "calib", 0.2, None, name="n1"), _record(ew, "calib", 0.0, None, name="n2"),
            _record(ew, "calib", 0.0, 400, t_mem=200, name="at-once")]
    rows = ew.score_table(recs, DEFAULT_DETECTOR)
    by = {r["run"]: r for r in rows}
    assert by["g1"]["warned_before"] and by["g2"]["warned_before"] and not by["n1"]["false_alarm"]
    assert by["at-once"]["immediate"] and not by["g1"]["immediate"]
    s = ew.summarise(rows)
    assert (s["n_grok"], s["never"], s["immediate"], s["hit"], s["false_alarms"], s["auroc"]) == (2, 2, 1, 2, 0, 1.0)
    assert ew.summarise(rows, immediate=True)["n_grok"] == 3
    cal = ew.fit_operating_point(recs, DEFAULT_DETECTOR)
    # the optimum lies between the best never-grokking run score (0.2) and the worst grokking one before grokking
    worst_pos = min(by["g1"]["run_score"], by["g2"]["run_score"])
    assert cal["threshold"] == pytest.approx((0.2 + worst_pos) / 2, abs=1e-4) and cal["youden_j"] == 1.0
    assert cal["ratio_lo"] <= cal["ratio_mid"] <= cal["ratio_hi"]


def test_every_group_of_the_corpus_has_a_lofo_family_and_the_tables_render(ew):
    from ew_corpus import CORPUS, LOFO_FAMILIES

    from grokscope.monitor.lofo import LofoRun, lofo

    assert set(LOFO_FAMILIES) == {g.family for g in CORPUS} and len(set(LOFO_FAMILIES.values())) >= 8
    runs = []
    for fam in ("x", "y"):
        for r in (_record(ew, "v2", 0.6, 1400, name="g"), _record(ew, "v2", 0.0, None, name="n")):
            s = {**r.series, "train_loss": np.exp(-r.series["step"] / (300 if r.grok else 1e9)),
                 "clock_rate": np.full(20, 5e-3), "clock_kind": ["decoupled"] * 20}
            runs.append(LofoRun(fam, f"{fam}-{r.name}", r.grok, s, group=fam))
    res = lofo(runs)
    text = ew.lofo_markdown(res, {"x": "1 grok, 1 never", "y": "1 grok, 1 never"})
    assert text.count("\n| x (1 grok, 1 never), ") == 3 and "AUROC ≥ 0.9" in text
