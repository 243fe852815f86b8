"""`grokscope compare`: the per-method table from per-run rows, and the command on real tiny runs."""

import json

import pandas as pd

from grokscope.analyses.methods_table import comparison_table, markdown
from grokscope.cli import main
from grokscope.training import train

from conftest import tiny_config


def _row(method, seed, grok, **kw):
    return {"run": f"{method}-{seed}", "method": method, "seed": seed, "wd": 1.0, "task": "add", "grok_step": grok,
            "onset": kw.get("onset"), "lead": kw.get("lead"), "lead_fraction": None, "pc1": kw.get("pc1"),
            "rho": 1.0, "lambda_min": None}


def test_speedup_is_the_mean_per_seed_ratio_over_seeds_where_both_grokked():
    rows = pd.DataFrame([_row("baseline", 1, 1000, onset=400, lead=600, pc1=60.0), _row("baseline", 2, 3000),
                         _row("baseline", 3, None),
                         _row("fast", 1, 250, onset=100, lead=150, pc1=70.0), _row("fast", 2, 1000),
                         _row("fast", 3, 500)])
    t = comparison_table(rows, "baseline").set_index("method")
    assert t.loc["fast", "grokked"] == 3 and t.loc["baseline", "grokked"] == 2
    assert t.loc["fast", "speedup"] == (4.0 + 3.0) / 2 and t.loc["fast", "speedup_n"] == 2  # seed 3: no baseline
    assert t.loc["baseline", "speedup"] == 1.0
    assert t.loc["fast", "grok_step"] == (250 + 1000 + 500) / 3
    assert t.loc["fast", "onset"] == 100 and t.loc["fast", "lead"] == 150 and t.loc["baseline", "pc1"] == 60.0
    md = markdown(t.reset_index(), "baseline")
    assert "| fast | add | 3/3 |" in md and "3.50× (n 2)" in md


def test_compare_command_on_a_batch_of_methods(tmp_path, capsys):
    cfgs = [tiny_config(seed=5, steps=300, defect_every=50, method=dict(name=m))
            for m in ("baseline", "grokfast-ema", "stablemax")]
    train(cfgs, tmp_path / "runs")
    out = tmp_path / "cmp"
    assert main(["compare", str(tmp_path / "runs"), "--out", str(out), "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["baseline"] == "baseline"
    assert [m["method"] for m in res["methods"]] == ["baseline", "grokfast-ema", "stablemax"]
    assert all(m["pc1"] is not None and m["rho"] is not None for m in res["methods"])
    for f in ("compare.parquet", "runs.parquet", "compare.md", "methods.png"):
        assert (out / f).exists()
    stored = json.loads((tmp_path / "runs" / cfgs[1].name / "analyses.json").read_text())
    assert "summary" in stored  # the geometry comes from the stored analysis, computed once
    assert main(["compare", str(tmp_path / "runs"), "--baseline", "nope"]) == 2
    assert "'nope'" in capsys.readouterr().err
