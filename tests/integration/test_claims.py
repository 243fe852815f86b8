"""Claims: verdict rules, the weight-decay phase fit, and `grokscope claims` on a tiny pre-populated store."""

from __future__ import annotations

import json
import math
from dataclasses import fields
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from grokscope.analyses.phase import no_decay_failure, phase_fit, phase_table
from grokscope.claims import (
    INCONCLUSIVE,
    NOT_REPRODUCED,
    PARTLY,
    REPRODUCED,
    VERDICTS,
    ClaimRow,
    combine,
    p1,
    p2,
    verdict_count,
    verdict_range,
    verdict_value,
)
from grokscope.claims.context import ClaimContext, default_store
from grokscope.claims.p1 import (
    PAPER_GROK,
    deletion_scan,
    deletion_verdict,
    grok_distribution,
    mul_first_verdict,
    paper_alpha,
    tri_deletion_scan,
    tri_deletion_verdict,
)
from grokscope.claims.rows import rho_row
from grokscope.cli import main
from grokscope.config import preset
from grokscope.store import RunDir
from grokscope.sweep import run_sweep, spec_from_dict


def test_verdict_value_within_outside_partial():
    assert verdict_value(1.25, 1.27, 0.03) == REPRODUCED
    assert verdict_value(1.32, 1.27, 0.03) == PARTLY  # within 2× tolerance
    assert verdict_value(1.50, 1.27, 0.03) == NOT_REPRODUCED
    assert verdict_value(None, 1.27, 0.03) == INCONCLUSIVE
    assert verdict_value(float("nan"), 1.27, 0.03) == INCONCLUSIVE


def test_verdict_range_and_count_and_combine():
    assert verdict_range(70.0, 68, 83, 10) == REPRODUCED
    assert verdict_range(60.0, 68, 83, 10) == PARTLY
    assert verdict_range(40.0, 68, 83, 10) == NOT_REPRODUCED
    assert verdict_count(42, 42) == REPRODUCED
    assert verdict_count(30, 42) == PARTLY
    assert verdict_count(3, 42) == NOT_REPRODUCED
    assert verdict_count(0, 0) == INCONCLUSIVE
    assert combine([REPRODUCED, REPRODUCED]) == REPRODUCED
    assert combine([REPRODUCED, NOT_REPRODUCED]) == PARTLY
    assert combine([NOT_REPRODUCED, NOT_REPRODUCED]) == NOT_REPRODUCED


def _synthetic_runs(alpha: float, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for wd in (0.0, 0.1, 0.2, 0.3, 0.5, 1.0):
        for s in range(3):
            g = float("nan") if wd == 0 else 13_000 * wd ** (-alpha) * float(np.exp(rng.normal(0, 0.05)))
            rows.append({"wd": wd, "seed": s, "steps": 300_000, "grok_step": g, "grokked": np.isfinite(g),
                         "lambda_min": -10 * (1 + wd)})
    return pd.DataFrame(rows)


@pytest.mark.parametrize("alpha", [0.9, 1.6])
def test_phase_fit_recovers_planted_alpha(alpha):
    runs = _synthetic_runs(alpha)
    fit = phase_fit(runs)
    assert fit.n == 15  # wd 0 (never grokked) is left out
    assert abs(fit.alpha - alpha) < 3 * fit.alpha_se + 0.02
    assert fit.alpha_se < 0.1 and fit.r2 > 0.95
    table = phase_table(runs)
    assert abs(phase_fit(table).alpha - alpha) < 0.1  # per-wd means give the same slope
    assert list(table.wd) == sorted(table.wd)


def test_phase_table_regimes_and_no_decay_failure():
    table = phase_table(_synthetic_runs(0.7))  # wd 0.5: 1.6× the wd-1 grok step, wd 0.3: 2.3×
    reg = dict(zip(table.wd, table.regime, strict=True))
    assert reg[0.0] == "no grokking"
    assert reg[1.0] == "fast" and reg[0.5] == "fast"  # within 2× of the fastest wd
    assert reg[0.3] == "slow" and reg[0.1] == "slow"
    assert no_decay_failure(table) is True
    runs = _synthetic_runs(1.0)
    runs.loc[runs.wd == 0, "grok_step"] = 5000.0  # a wd-0 run that groks: no failure
    runs.loc[(runs.wd == 0.3) & (runs.seed == 0), "grok_step"] = float("nan")
    t2 = phase_table(runs)
    assert no_decay_failure(t2) is False
    runs.loc[runs.wd > 0, "grok_step"] = float("nan")  # nothing groks anywhere: cannot tell
    assert no_decay_failure(phase_table(runs)) is None
    assert dict(zip(t2.wd, t2.regime, strict=True))[0.3] == "partial"


@pytest.fixture(scope="module")
def tiny_store(tmp_path_factory):
    """Two tiny dual-task runs (p 11, wd 0 and 1) trained into a store as the `dual` sweep of P1."""
    root = tmp_path_factory.mktemp("claims")
    store = root / "store"
    spec = {"name": "tiny-dual",
            "base": {"preset": "quick", "data": {"tasks": "add+mul", "p": 11},
                     "model": {"d_model": 32, "n_heads": 2, "d_ff": 64}, "steps": 200, "eval_every": 50,
                     "attn_every": 50, "checkpoint_every": 100, "defect_every": 50},
            "grid": {"wd": [0, 1], "seeds": [42]}, "analyses": ["summary", "defect"]}
    run_sweep(spec_from_dict({**spec, "out": str(store / "tiny-dual"), "device": "cpu"}), progress=False)
    specs = root / "specs.yaml"
    specs.write_text(yaml.safe_dump({"dual": spec}))
    return store, specs


def _mtimes(store):
    return {p: p.stat().st_mtime_ns for p in store.rglob("summary.json")}


def test_claims_command_on_tiny_store(tiny_store, capsys):
    store, specs = tiny_store
    before = _mtimes(store)
    assert len(before) == 2
    argv = ["claims", "p1", "--store", str(store), "--specs", str(specs),
            "--only", "grok_vs_wd,no_decay,mul_first,pc1_dual,rho,defect_precedes"]
    assert main([*argv, "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == 6
    required = {f.name for f in fields(ClaimRow)}
    for r in rows:
        assert required <= set(r)
        assert r["verdict"] in VERDICTS and r["verdict"] != "not run", r["note"]
        assert r["scale"] == "quick" and "quick scale" in r["note"]
        assert r["paper"] and r["measured"] and r["tolerance"]
        assert "tiny-dual" in r["config"]
        assert r["paper_id"] == "P1"
    by = {r["key"]: r for r in rows}
    # every verdict follows its measurement, and the measurement is what the runs stored
    runs = {RunDir(p).config().optim.wd: RunDir(p) for p in (store / "tiny-dual").iterdir()}
    summ = {wd: r.analyses()["summary"] for wd, r in runs.items()}
    grok = {wd: r.grok_steps() for wd, r in runs.items()}
    grokked = {wd: all(g is not None for g in gs.values()) for wd, gs in grok.items()}
    nd = by["claim_no_decay"]
    want = None if not grokked[1.0] else not grokked[0.0]
    assert nd["values"]["no_decay_failure"] is want
    assert nd["verdict"] == {True: REPRODUCED, False: NOT_REPRODUCED, None: INCONCLUSIVE}[want]
    gw = by["claim_grok_vs_wd"]  # one wd > 0: no power-law fit, nothing to call monotone
    assert [(r["wd"], r["n_runs"], r["n_grokked"]) for r in gw["values"]["per_wd"]] == [
        (0.0, 1, int(grokked[0.0])), (1.0, 1, int(grokked[1.0]))]
    assert gw["verdict"] == INCONCLUSIVE and "no fit" in gw["measured"]
    pc = by["claim_pc1_dual"]
    assert pc["values"]["pc1_mean"] == pytest.approx([summ[1.0]["pc1_mean"]])
    assert pc["verdict"] == verdict_range(summ[1.0]["pc1_mean"], 55, 77, 10.0)
    rho = by["claim_rho"]  # ρ must read 1.000 and the exec basis catch < 10× a random basis's share
    assert rho["values"]["rho"] == pytest.approx([summ[1.0]["rho"]])
    ratio_ok = REPRODUCED if summ[1.0]["proj_ratio"] < 10 else NOT_REPRODUCED
    assert rho["verdict"] == combine([verdict_value(summ[1.0]["rho"], 1.0, 5e-4, 10.0), ratio_ok])
    # P1's leads: the post-hoc envelope onset to the first task's grok step, wd > 0 runs that grokked
    dfc = runs[1.0].analyses()["defect"]
    leads = [dfc["lead_envelope"]] if dfc["grok_first"] is not None else []
    dp = by["claim_defect_precedes"]
    assert [None if x is None or x != x else x for x in dp["values"]["leads"]] == leads
    assert dp["verdict"] == verdict_count(sum(1 for x in leads if x is not None and x > 0), len(leads))
    mf = by["claim_mul_first"]  # the seed-mean gap per wd ≥ 0.2 must be > 0
    if grok[1.0]["add"] is None or grok[1.0]["mul"] is None:
        assert mf["verdict"] == INCONCLUSIVE and mf["values"]["gaps"] == {"1.0": []}
    else:
        gap = grok[1.0]["add"] - grok[1.0]["mul"]
        assert mf["values"]["gaps"] == {"1.0": [gap]}
        assert mf["verdict"] == (REPRODUCED if gap > 0 else NOT_REPRODUCED)
    assert _mtimes(store) == before  # the rerun reused the finished runs
    assert main(argv) == 0  # the human table
    out = capsys.readouterr().out
    assert "P1 claims" in out and "wd 0 never groks" in out


def test_bad_paper_and_scale_exit_2(capsys, tmp_path):
    assert main(["claims", "p9", "--store", str(tmp_path)]) == 2
    assert "unknown paper" in capsys.readouterr().err
    assert main(["claims", "p1", "--scale", "huge", "--store", str(tmp_path)]) == 2
    assert "unknown scale" in capsys.readouterr().err


# ---- claim rules as the papers state them (issue 10 / docs/fidelity.md items 1, 3, 7, 14) ---------------


def test_mul_first_rule_passes_the_papers_own_table():
    """P1 Table 1 gaps t_add − t_mul (mean of 3 seeds): 200, 67, 200, 100, −866 at wd 1 … 0.1."""

    table1 = {1.0: [200.0], 0.5: [67.0], 0.3: [200.0], 0.2: [100.0], 0.1: [-866.0]}
    verdict, means = mul_first_verdict(table1)
    assert verdict == REPRODUCED and means[0.1] == -866.0
    # a "100–400 steps in every condition" rule fails the paper's own numbers: 67 and −866
    assert sum(100 <= g[0] <= 400 for g in table1.values()) == 3
    assert mul_first_verdict({1.0: [0.0, 0.0], 0.5: [100.0]})[0] == PARTLY  # same eval is not "first"
    assert mul_first_verdict({1.0: [-100.0], 0.5: [-200.0]})[0] == NOT_REPRODUCED
    assert mul_first_verdict({0.1: [300.0]})[0] == INCONCLUSIVE  # wd 0.1 is not scored


def test_deletion_rule_is_the_papers_scan():

    paper = {0.01: True, 0.05: True, 0.1: False, 0.15: False, 0.25: False, 0.5: True}
    assert deletion_verdict(paper) == REPRODUCED
    assert deletion_verdict({**paper, 0.5: False}) == PARTLY  # "≥ 10 % never groks" is not P1's result
    assert deletion_verdict({0.1: True, 0.15: True, 0.25: True, 0.5: False}) == NOT_REPRODUCED
    scan = deletion_scan("paper")
    assert scan.steps == 50_000 and scan.start == 499 and scan.k == 20
    assert {0.01, 0.1, 0.15, 0.25, 0.5} <= set(scan.values)
    assert deletion_scan("cpu") == scan  # the cpu scale runs P1's own scan (issue 26)


def test_deletion_row_reads_the_scan_per_fraction(tiny_store, monkeypatch):
    """The row scores the stored scan of the seed-42 wd-1 run (a hand-made table of P1's own result here):
    each fraction's grok step (its last task's) and delay, and the verdict by the paper's rule."""
    from grokscope.claims.p1 import deletion as D

    store, _ = tiny_store
    base = next(p for p in (store / "tiny-dual").iterdir() if RunDir(p).config().optim.wd == 1.0)
    table = pd.DataFrame([{"wd": 1.0, "seed": 7, "path": "elsewhere", "grok_step.add": 9000.0,
                           "grok_step.mul": 9000.0},
                          {"wd": 1.0, "seed": 42, "path": str(base), "grok_step.add": 14100.0,
                           "grok_step.mul": 14000.0}])
    monkeypatch.setattr(D, "_dual", lambda ctx: (table, {"name": "dual"}))
    paper = {0.01: 18000, 0.1: None, 0.15: None, 0.25: None, 0.5: 36900}
    rows = [{"value": f, "task": task, "grok_step": None if g is None else g - 100 * (task == "add"),
             "grokked": g is not None, "delay_pct": None if g is None else 100 * (g - 14100) / 14100}
            for f, g in paper.items() for task in ("add", "mul")]
    seen = []
    monkeypatch.setattr(D, "stored_scan", lambda ctx, run, scan: seen.append(run.path) or (pd.DataFrame(rows), "x"))
    row = D.claim_deletion(ClaimContext(scale="cpu", store=store))
    assert seen == [base]  # seed 42, as the authors' scan
    assert "f 0.5: grokked at 36900 (+162 %)" in row.measured and "f 0.1: no grok" in row.measured
    assert "f 0.01: grokked at 18000" in row.measured
    assert row.verdict == REPRODUCED
    rows[-1]["grokked"] = rows[-2]["grokked"] = False  # 50 % no longer groks: one fraction of five is off
    assert D.claim_deletion(ClaimContext(scale="cpu", store=store)).verdict == PARTLY


def test_tri_deletion_rule_is_the_papers_sentence():
    """P1: on the tri-task model every f ≥ 10 % stops grokking, 50 % included (no recovery, unlike the dual
    model); smaller fractions grok. The scan is the authors' tri-task one (60k, fractions to 25 %) plus 50 %."""
    paper = {0.01: True, 0.07: True, 0.1: False, 0.25: False, 0.5: False}
    assert tri_deletion_verdict(paper) == REPRODUCED
    assert tri_deletion_verdict({**paper, 0.5: True}) == PARTLY  # the dual model's recovery is not tri's
    assert tri_deletion_verdict({0.01: False, 0.1: True, 0.25: True, 0.5: True}) == NOT_REPRODUCED
    assert deletion_verdict(paper) == PARTLY  # the dual rule would count the tri model's 50 % as a miss
    scan = tri_deletion_scan("cpu")
    assert scan.steps == 60_000 and scan.start == 499 and scan.k == 20
    assert {0.01, 0.02, 0.03, 0.05, 0.07, 0.1, 0.15, 0.25, 0.5} == set(scan.values)
    assert tri_deletion_scan("paper") == scan and tri_deletion_scan("quick") is None
    assert [n.role for n in p1.scans("cpu")] == ["dual", "tri"] and [n.role for n in p1.scans("quick")] == ["dual"]


def test_tri_deletion_row_scans_the_tri_run(tiny_store, monkeypatch):
    """The tri row scans the tri sweep's grokked wd-1 run, seed 42 first, and scores every fraction; a run
    that did not grok every task is not a base."""
    from grokscope.claims.p1 import deletion as D

    store, _ = tiny_store
    base = next(p for p in (store / "tiny-dual").iterdir() if RunDir(p).config().optim.wd == 1.0)
    table = pd.DataFrame([{"wd": 1.0, "seed": 42, "path": "not-grokked", "grok_step.add": None,
                           "grok_step.mul": 17800.0, "grok_step.sq": 20900.0},
                          {"wd": 1.0, "seed": 137, "path": str(base), "grok_step.add": 19500.0,
                           "grok_step.mul": 15700.0, "grok_step.sq": 17500.0}])
    monkeypatch.setattr(D, "sweep_table", lambda ctx, spec: table)
    outcome = {0.01: 24000, 0.1: None, 0.5: None}
    rows = [{"value": f, "task": task, "grok_step": g, "grokked": g is not None,
             "delay_pct": None if g is None else 100 * (g - 19500) / 19500}
            for f, g in outcome.items() for task in ("add", "mul", "sq")]
    seen = []
    monkeypatch.setattr(D, "stored_scan",
                        lambda ctx, run, scan: seen.append((run.path, scan)) or (pd.DataFrame(rows), "x"))
    row = D.claim_deletion_tri(ClaimContext(scale="cpu", store=store))
    assert [p for p, _ in seen] == [base] and seen[0][1] == tri_deletion_scan("cpu")
    assert "f 0.01: grokked at 24000 (+23 %)" in row.measured and "f 0.5: no grok" in row.measured
    assert row.verdict == REPRODUCED
    rows[-1]["grokked"] = True  # one task of the 50 % run groks: the fraction as a whole still did not
    assert D.claim_deletion_tri(ClaimContext(scale="cpu", store=store)).verdict == REPRODUCED
    for r in rows[-3:]:
        r["grokked"], r["grok_step"], r["delay_pct"] = True, 50000, 156.0  # 50 % recovers, as the dual model
    assert D.claim_deletion_tri(ClaimContext(scale="cpu", store=store)).verdict == PARTLY
    assert D.claim_deletion_tri(ClaimContext(scale="quick", store=store)).verdict == INCONCLUSIVE


def test_grok_distribution_and_paper_alpha():

    d = grok_distribution(np.array([14_000.0, 12_000, 13_000, 9_000]), np.array([13_900.0, 12_000, 13_100, 8_000]))
    assert d["mul_first"] == 2 and d["same"] == 1
    assert d["median_add"] == 12_500 and d["min"] == 8_500 and d["max"] == 13_950
    assert d["q25"] == pytest.approx(np.percentile([13_950, 12_000, 13_050, 8_500], 25))
    full, cut = paper_alpha(), paper_alpha([1.0, 0.5, 0.3])
    logs = np.log10([np.mean(PAPER_GROK[w]) for w in (1.0, 0.5, 0.3)])
    slope = -np.polyfit(np.log10([1.0, 0.5, 0.3]), logs, 1)[0]
    assert cut.alpha == pytest.approx(slope, rel=1e-6) and cut.n == 3 and full.n == 5


def test_rho_verdict_can_fail(tmp_path):

    ctx = ClaimContext(store=tmp_path)
    ok = pd.DataFrame({"summary.rho": [0.99996, 0.99998], "summary.rho_random": [0.99997] * 2,
                       "summary.proj_ratio": [2.1, 2.6]})
    assert rho_row(ctx, ok, "s", "ρ").verdict == REPRODUCED
    inside = ok.assign(**{"summary.proj_ratio": [40.0, 60.0]})  # δ concentrated in the basis
    assert rho_row(ctx, inside, "s", "ρ").verdict == PARTLY
    low = inside.assign(**{"summary.rho": [0.9, 0.92]})
    assert rho_row(ctx, low, "s", "ρ").verdict == NOT_REPRODUCED


def test_default_store_outside_the_work_tree(monkeypatch, tmp_path):


    monkeypatch.setenv("GROKSCOPE_CACHE", str(tmp_path))
    assert default_store("cpu") == tmp_path / "claims-cpu"
    monkeypatch.delenv("GROKSCOPE_CACHE")
    assert default_store("paper") == Path.home() / ".cache" / "grokscope" / "claims-paper"
    assert default_store("quick") == Path("runs/claims-quick")


def test_cpu_scale_keeps_the_papers_models():
    """The cpu scale cuts grids, never the model, p or hyper-parameters."""


    for spec in (p1.dual_spec("cpu"), p1.seeds_spec("cpu"), p1.tri_spec("cpu"),
                 p2.single_spec("cpu"), p2.nongrok_spec("cpu"), p2.lr_spec("cpu"), p2.lr_slow_spec("cpu"),
                 p2.lr_slowest_spec("cpu")):
        spec_from_dict({**spec, "out": "unused"})  # every cpu sweep is a valid spec
        assert set(spec["base"]) <= {"preset", "defect_every", "defect_draws"}
        cfg = preset(spec["base"]["preset"])
        assert cfg.data.p == 97 and cfg.model.d_model == 128 and cfg.model.n_layers == 2
    assert len(p1.seeds_spec("cpu")["grid"]["seeds"]) + len(p1.dual_spec("cpu")["grid"]["seeds"]) == 10
    assert p1.dual0_spec("cpu") is None  # wd 0 to 100k: paper only
    dual, tri = p1.scans("cpu")  # the deletion scans, on grokked wd-1 runs of the dual and tri sweeps
    assert dual.scan == p1.deletion_scan("paper") and dual.role == "dual"
    assert tri.scan == p1.tri_deletion_scan("paper") and tri.role == "tri"
    assert p1.tri_spec("cpu")["grid"]["seeds"] == [42, 137, 2024]
    q = p1.dual_spec("quick")["grid"]["steps"]
    assert q[0] >= max(v for k, v in q.items() if k > 0)  # equal wd-0 budget at the quick scale too
    assert p2.single_spec("cpu")["base"]["defect_draws"] == 5


@pytest.mark.slow
def test_cpu_scale_path_on_tiny_runs(tiny_store, tmp_path, capsys):
    """`--scale cpu` with the sweeps swapped for tiny ones: the wider-seed row reads both sweeps; at the
    quick scale the same row says it is not part of that scale."""
    store, specs = tiny_store
    spec = yaml.safe_load(specs.read_text())["dual"]
    wide = {**spec, "name": "tiny-seeds", "grid": {"wd": [1], "seeds": [7]}, "analyses": ["summary"]}
    cpu_specs = tmp_path / "cpu.yaml"
    cpu_specs.write_text(yaml.safe_dump({"dual": spec, "seeds": wide}))
    assert main(["claims", "p1", "--scale", "cpu", "--store", str(store), "--specs", str(cpu_specs),
                 "--only", "grok_spread,grok_steps", "--json"]) == 0
    rows = {r["key"]: r for r in json.loads(capsys.readouterr().out)}
    spread = rows["claim_grok_spread"]
    assert spread["scale"] == "cpu" and "quick scale" not in spread["note"]
    n = len(spread["values"]["add"])
    assert n == 2  # seed 42 of the dual sweep at wd 1 and seed 7 of the seed sweep
    assert rows["claim_grok_steps"]["verdict"] in VERDICTS
    # the cpu scale leaves wd 0 to 100k to the paper scale: the row says so, nothing trains
    assert main(["claims", "p1", "--scale", "cpu", "--store", str(store), "--specs", str(cpu_specs),
                 "--only", "no_decay", "--json"]) == 0
    (r,) = json.loads(capsys.readouterr().out)
    assert r["key"] == "claim_no_decay"
    assert r["verdict"] == "not run" and "paper-only" in r["note"] and "run-steps" in r["note"]
    assert not (store / "scans").exists() or not any((store / "scans").iterdir())
    assert main(["claims", "p1", "--store", str(store), "--specs", str(specs), "--only", "grok_spread",
                 "--json"]) == 0
    row = json.loads(capsys.readouterr().out)[0]
    assert row["verdict"] == "not run" and "paper-only" in row["note"]
    # λ_min at the cpu scale: fresh-sample depths for the wd-1 run, scored by the sampling test
    assert main(["claims", "p1", "--scale", "cpu", "--store", str(store), "--specs", str(cpu_specs),
                 "--only", "lambda_min", "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    fresh = row["values"]["fresh_samples"]["1.0"]
    assert fresh["n"] == p1.CPU_HESSIAN_DRAWS and "fresh samples" in row["measured"] and row["verdict"] in VERDICTS


def test_control_phase_is_the_scripts_classify_phase():
    # grok_integrability_controls.py:227–236, boundaries included
    assert p2.control_phase(0.95, 0.29) == "memorization"
    assert p2.control_phase(0.95, 0.30) == "pre-grok"
    assert p2.control_phase(0.94, 0.10) == "early"
    assert p2.control_phase(0.50, 0.95) == "post-grok"
    assert p2.control_phase(1.00, 0.949) == "pre-grok"


def _acc_table(accs: dict[int, tuple[float, float]]) -> pd.DataFrame:
    rows = [{"run": "r", "step": s, "task": "add", "split": split, "loss": 0.0, "acc": a, "weight_norm": 1.0}
            for s, (tr, te) in accs.items() for split, a in (("train", tr), ("test", te))]
    return pd.DataFrame(rows)


def test_exec_random_ratio_is_the_memorization_median(tmp_path):
    # Per-step ratios of a run that memorises at 200 and groks at 800: P2's 1.8–2.9× is the median over the
    # memorization-phase steps (the script's per-phase summary), not a mean over the whole run.
    accs = {0: (0.01, 0.01), 200: (0.97, 0.02), 400: (1.0, 0.10), 600: (1.0, 0.29), 700: (1.0, 0.5),
            800: (1.0, 0.99), 900: (1.0, 1.0)}
    ratio = {0: 0.5, 200: 2.6, 400: 1.9, 600: 2.2, 700: 1.1, 800: 0.3, 900: 0.4}
    run = RunDir(tmp_path / "r")
    run.path.mkdir()
    run.write_table("metrics", _acc_table(accs))
    run.write_table(p2.SVD_TABLE, pd.DataFrame({"run": "r", "step": list(ratio), "defect": 1.0, "rho": 1.0,
                                                "rho_random": 1.0, "proj_ratio": list(ratio.values())}))
    got = p2.svd_ratio(run, "cpu")
    assert got["value"] == pytest.approx(2.2)  # median of 2.6, 1.9, 2.2
    assert got["phases"]["memorization"]["n"] == 3
    assert got["phases"]["pre-grok"] == {"median": 1.1, "n": 1}
    assert got["phases"]["post-grok"]["median"] == pytest.approx(0.35)
    assert got["mean_all"] == pytest.approx(np.mean(list(ratio.values())))  # 1.29: what the claim read before
    # a run never labelled memorization has no value (the row then counts fewer runs)
    run.write_table("metrics", _acc_table({s: (0.5, 0.5) if s < 800 else (1.0, 1.0) for s in accs}))
    assert p2.svd_ratio(run, "cpu")["value"] is None


def _lead_table(runs: list[tuple[float, str, int, float, float | None]]) -> pd.DataFrame:
    """A sweep result table of single-task runs (lr, task, seed, t_grok90, lead_90); the 98 %×3 grok step is
    set 1000 steps later so a fit on it would differ."""
    rows = []
    for lr, task, seed, t90, lead in runs:
        rows.append({"tasks": task, "lr": lr, "seed": seed, f"grok_step_90.{task}": t90,
                     f"grok_step.{task}": t90 + 1000, f"summary.lead_90.{task}": lead})
    return pd.DataFrame(rows)


def test_lead_power_law_is_the_papers_per_run_fit(tmp_path):
    # P2 v2 §4.6: ln–ln least squares over *runs* with a detected onset and lead > 0, t_grok = the first
    # evaluation ≥ 90 % (grok_lr_sweep.py:336–339 computes lead = t90 − onset per run); not lr means, not the
    # 98 %×3 step. Lead 0, lead < 0 and no onset (NaN) leave the fit.
    single = _lead_table([(1e-3, "add", 42, 3100, 1300), (1e-3, "mul", 42, 2500, 600),
                          (1e-3, "sq", 137, 1900, 1000)])
    lr = _lead_table([(3e-4, "add", 42, 11600, 10400), (3e-4, "sq", 42, 7300, 6200),
                      (3e-3, "add", 42, 800, 0), (3e-3, "sub", 42, 800, -100), (1e-2, "mul", 42, 200, None)])
    ctx = ClaimContext(scale="cpu", store=tmp_path)
    ctx.cache.update({p2.single_spec("cpu")["name"]: single, p2.lr_spec("cpu")["name"]: lr,
                      p2.lr_slow_spec("cpu")["name"]: _lead_table([]),
                      p2.lr_slowest_spec("cpu")["name"]: _lead_table([])})
    row = p2.claim_lead_power_law(ctx)
    t = np.array([3100, 2500, 1900, 11600, 7300.0])
    d = np.array([1300, 600, 1000, 10400, 6200.0])
    want = np.polyfit(np.log(t), np.log(d), 1)[0]
    assert row.values["alpha"] == pytest.approx(want, rel=1e-9)
    assert len(row.values["points"]) == 5
    means = np.polyfit(np.log([t[:3].mean(), t[3:].mean()]), np.log([d[:3].mean(), d[3:].mean()]), 1)[0]
    assert abs(means - want) > 0.05  # a fit over lr means would have read otherwise
    assert row.values["lead_fraction"] == pytest.approx({1e-3: np.mean(d[:3] / t[:3]), 3e-4: np.mean(d[3:] / t[3:])})
    assert "(paper 0.88)" in row.measured and "(paper 0.43)" in row.measured


def test_lead_power_law_takes_the_cpu_scales_lr_1e4_and_3e5_runs(tmp_path):
    """The cpu scale's lr-1e-4 sweep (three seeds) and lr-3e-5 sweep (seed 42), each its own role, enter the fit
    beside the lr sweep; another scale has no such sweeps, and `--specs` may replace them."""
    slow = p2.lr_slow_spec("cpu")
    assert slow["grid"]["lr"] == [1e-4] and slow["grid"]["steps"] == 150000 and p2.lr_slow_spec("paper") is None
    assert slow["grid"]["seeds"] == [42, 137, 2024]  # lr 1e-4 on the paper's three seeds
    slowest = p2.lr_slowest_spec("cpu")
    assert slowest["grid"]["lr"] == [3e-5] and slowest["grid"]["steps"] == 300000  # the paper's budget
    assert slowest["grid"]["seeds"] == [42] and p2.lr_slowest_spec("paper") is None
    single = _lead_table([(1e-3, "add", 42, 3100, 1300), (1e-3, "mul", 42, 2500, 600)])
    lr = _lead_table([(3e-4, "add", 42, 11600, 10400)])
    ctx = ClaimContext(scale="cpu", store=tmp_path)
    ctx.cache.update({p2.single_spec("cpu")["name"]: single, p2.lr_spec("cpu")["name"]: lr,
                      slow["name"]: _lead_table([(1e-4, "add", 42, 31000, 29000), (1e-4, "sq", 42, 26000, 23500)]),
                      slowest["name"]: _lead_table([(3e-5, "add", 42, 143000, 135800)])})
    row = p2.claim_lead_power_law(ctx)
    assert sorted({pt["lr"] for pt in row.values["points"]}) == [3e-5, 1e-4, 3e-4, 1e-3]
    t = np.array([3100, 2500, 11600, 31000, 26000, 143000.0])
    d = np.array([1300, 600, 10400, 29000, 23500, 135800.0])
    assert row.values["alpha"] == pytest.approx(np.polyfit(np.log(t), np.log(d), 1)[0], rel=1e-9)
    mine = {"name": "my-slow", "grid": {}}
    ctx = ClaimContext(scale="cpu", store=tmp_path, specs={"lr_slow": mine})
    ctx.cache.update({p2.single_spec("cpu")["name"]: single, p2.lr_spec("cpu")["name"]: lr,
                      "my-slow": _lead_table([(1e-4, "mul", 42, 30000, 27000)]), slowest["name"]: _lead_table([])})
    assert {(pt["lr"], pt["task"]) for pt in p2.claim_lead_power_law(ctx).values["points"]} >= {(1e-4, "mul")}


def test_fragility_rows_score_the_scripts_wd1_runs(tmp_path):
    """postgrok_compression.py / snapshot_decomposition.py load only multitask_s{seed}.pt (WEIGHT_DECAY 1.0):
    the SVD / prune / scale rows score the grokked wd-1 runs; other wd > 0 are kept apart, wd 0 and
    non-grokked runs are never scored."""
    from grokscope.claims.p1.fragility import FRAGILITY_WD, _final_runs, fragility_accs

    assert FRAGILITY_WD == 1.0
    runs = [(1.0, 100, 0.01), (1.0, 200, 0.02), (0.5, 300, 0.30), (1.0, None, 0.90), (0.0, 400, 0.50)]
    rows = []
    for i, (wd, grok, acc) in enumerate(runs):
        rd = RunDir(tmp_path / f"r{i}")
        rd.path.mkdir()
        rd.write_table("fragility", pd.DataFrame({
            "kind": ["prune", "prune", "scale"], "value": [0.5, 0.5, 0.95], "task": ["add", "mul", "add"],
            "test_acc": [acc, acc + 0.002, 0.7]}))
        rows.append({"path": str(rd.path), "wd": wd, "grok_step.add": grok, "grok_step.mul": grok})
    table = pd.DataFrame(rows)
    assert fragility_accs(_final_runs(table, FRAGILITY_WD), "prune", (0.5,)) == pytest.approx([0.011, 0.021])
    assert fragility_accs(_final_runs(table, FRAGILITY_WD, exclude=True), "prune", (0.5,)) == pytest.approx([0.301])
    assert len(_final_runs(table)) == 3  # every grokked wd > 0 run (PC1 alone, k*: all wd, as pca_threshold_scan)


def test_lambda_min_sampling_test_is_two_standard_errors():
    # the 18 fresh-sample depths measured over seeds 42/137/2024 at wd 1 (docs/notes/p1-lambda-min.md)
    depths = [-102.8, -69.8, -80.1, -48.3, -169.2, -57.7, -87.3, -50.2, -59.0, -35.7, -137.1, -80.7,
              -139.4, -68.3, -157.9, -92.5, -44.4, -49.5]
    t = p1.depth_sampling_test(depths, -63.0, 12.0)
    assert t["n"] == 18 and t["mean"] == pytest.approx(-85.0, abs=0.05)
    se = math.sqrt(np.var(depths, ddof=1) / 18 + 144 / 3)
    assert t["se"] == pytest.approx(se) and t["z"] == pytest.approx((t["mean"] + 63) / se)
    assert abs(t["z"]) < 2  # not distinguishable from the paper's −63 ± 12 under this spread
    tight = p1.depth_sampling_test([-100.0, -101.0, -99.0, -100.5], -63.0, 1.0)
    assert abs(tight["z"]) > 2  # a tight spread far from the paper is told apart
    with pytest.raises(ValueError, match="at least 2"):
        p1.depth_sampling_test([-80.0], -63.0, 12.0)


def test_optional_roles_take_the_users_spec(tmp_path):
    """A role only the cpu scale has (nongrok, lr_slow) is None elsewhere, and `--specs` replaces it where given."""
    from grokscope.claims.p2.sweeps import _all_single

    ctx = ClaimContext(scale="paper", store=tmp_path)
    assert ctx.optional_spec("nongrok", p2.nongrok_spec) is None
    mine = {"name": "my-nongrok", "grid": {}}
    ctx = ClaimContext(scale="cpu", store=tmp_path, specs={"nongrok": mine})
    assert ctx.optional_spec("nongrok", p2.nongrok_spec) is mine
    ctx.cache.update({p2.single_spec("cpu")["name"]: pd.DataFrame({"tasks": ["add"]}),
                      "my-nongrok": pd.DataFrame({"tasks": ["sq_ab"]})})
    table, _ = _all_single(ctx)
    assert list(table.tasks) == ["add", "sq_ab"]
