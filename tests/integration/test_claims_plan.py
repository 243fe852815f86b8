"""`grokscope claims <paper> --plan`: what a scale still needs, read from a tiny store made here (nothing trains,
nothing is written)."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace

import pytest
import yaml

from grokscope.claims import p1, p2, p3
from grokscope.claims.cache import read_stored_scan, scan_dir, stored_scan
from grokscope.claims.context import ClaimContext
from grokscope.claims.plan import RunState, scan_base
from grokscope.cli import main
from grokscope.config import preset
from grokscope.errors import StoreError
from grokscope.experiments.intervention_scan import intervention_scan
from grokscope.store import RunDir
from grokscope.store.scan_store import ScanDir
from grokscope.sweep import expand, plan, spec_from_dict
from grokscope.sweep.batch import train_with_probes

from conftest import Stop, stop_after

BASE = {"preset": "quick", "data": {"tasks": "add+mul", "p": 11, "train_frac": 0.8},
        "model": {"d_model": 32, "n_heads": 2, "d_ff": 64}, "eval_every": 50, "attn_every": 50,
        "checkpoint_every": 100, "defect_every": 0}
DUAL = {"name": "tiny-dual", "base": BASE, "grid": {"wd": [0, 1], "seeds": [42, 7], "steps": {0: 200, 1: 300}},
        "analyses": ["summary"]}
# the quick preset's own run (add, p 31): seed 42 groks at step 1100-1200 (float order moves it), inside its budget
SINGLE = {"name": "tiny-single", "base": {"preset": "quick", "defect_every": 0, "checkpoint_every": 500},
          "grid": {"seeds": [42], "steps": 1600}, "analyses": ["summary"]}


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """The tiny dual sweep: wd 0 and wd 1 seed 42 trained to their budgets, wd 1 seed 7 killed after its first
    checkpoint (step 100), wd 0 seed 7 never started; and P2's single sweep as one quick run that groks."""
    root = tmp_path_factory.mktemp("plan")
    out = root / "store" / DUAL["name"]
    cfgs = {(c.optim.wd, c.seed): c for c in expand(spec_from_dict({**DUAL, "out": str(out)}))}
    train_with_probes([cfgs[0.0, 42], cfgs[1.0, 42]], out, "cpu")
    with pytest.raises(Stop):
        train_with_probes([cfgs[1.0, 7]], out, "cpu", on_eval=stop_after(150))
    single = root / "store" / SINGLE["name"]
    train_with_probes(expand(spec_from_dict({**SINGLE, "out": str(single)})), single, "cpu")
    specs = root / "specs.yaml"
    specs.write_text(yaml.safe_dump({"dual": DUAL, "single": SINGLE}))
    return root / "store", specs, cfgs


def _files(root):
    return {str(p): (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*")}


def _plan(capsys, *argv, probe=False):
    assert main(["claims", *argv, "--plan", "--json", *(() if probe else ("--no-probe",))]) == 0
    return json.loads(capsys.readouterr().out)


def test_plan_reads_each_runs_state_and_writes_nothing(store, capsys):
    root, specs, cfgs = store
    before = _files(root)
    got = _plan(capsys, "p1", "--store", str(root), "--specs", str(specs))
    assert _files(root) == before  # pure reading
    items = {i["role"]: i for i in got["items"]}
    assert set(items) == {"dual", "tri", "deletion"}  # quick scale: dual (the specs' one), tri, the scan
    assert cfgs[1.0, 42].name in items["deletion"]["note"] and "not grokked yet" in items["deletion"]["note"]
    runs = {r["name"]: r for r in items["dual"]["runs"]}
    assert set(runs) == {c.name for c in cfgs.values()}
    for (wd, seed), c in cfgs.items():
        r, d = runs[c.name], RunDir(root / DUAL["name"] / c.name)
        assert r["budget"] == c.steps
        if (wd, seed) == (0.0, 7):
            assert (r["state"], r["last_step"], r["to_go"], r["wall_time"]) == ("new", 0, c.steps, None)
            continue
        s = d.summary()
        assert r["last_step"] == s["steps_trained"] and r["wall_time"] == s["wall_time"] > 0
        assert r["missing"] == ["summary"]  # the sweep's analysis never ran
        if (wd, seed) == (1.0, 7):  # killed after its checkpoint at 100
            assert (r["state"], r["reason"], r["last_step"], r["to_go"]) == ("partial", "", 100, c.steps - 100)
        else:
            grokked = all(v is not None for v in s["grok_step"].values())
            assert r["state"] == "stopped" and r["to_go"] == 0
            assert r["reason"] == ("grokked" if grokked else "budget")
            assert r["last_step"] == (s["steps_trained"] if grokked else c.steps)
    assert runs[cfgs[0.0, 42].name]["reason"] == "budget"  # wd 0 does not grok in 200 steps
    dual = items["dual"]
    assert dual["to_go"] == sum(r["to_go"] for r in runs.values())
    assert dual["budget"] == sum(c.steps for c in cfgs.values())
    assert dual["done"] == sum(r["last_step"] for r in runs.values())
    assert dual["stopped"] == 2
    # rate: the stored run-steps over the longest wall time of the (single) batched program
    timed = [r for r in runs.values() if r["wall_time"]]
    assert len(plan(list(cfgs.values()), "cpu")) == 1
    want = sum(r["last_step"] for r in timed) / max(r["wall_time"] for r in timed)
    assert dual["rate"] == pytest.approx(want)
    assert dual["eta_s"] == pytest.approx(dual["to_go"] / want)
    tri = items["tri"]  # the quick tri sweep: nothing stored, no rate, its whole budget to go
    assert all(r["state"] == "new" for r in tri["runs"]) and tri["to_go"] == tri["budget"] > 0
    assert tri["rate"] is None and tri["eta_s"] is None
    total = got["total"]
    assert total["to_go"] == sum(i["to_go"] for i in got["items"])
    assert total["eta_complete"] is False and "tri" in total["no_rate"]
    assert main(["claims", "p1", "--store", str(root), "--specs", str(specs), "--plan"]) == 0
    out = capsys.readouterr().out
    assert cfgs[1.0, 7].name in out and "partial" in out and "run-steps" in out
    # --only does not narrow a plan, and the user is told so rather than shown more than they asked for unawares
    assert main(["claims", "p1", "--store", str(root), "--specs", str(specs), "--plan", "--only", "deletion"]) == 0
    got = capsys.readouterr()
    assert cfgs[1.0, 7].name in got.out and "--only deletion is not applied" in got.err
    assert _files(root) == before


@pytest.mark.slow
def test_plan_grokked_run_scan_base_and_stored_scans(store, capsys, tmp_path):
    """P2: the single sweep's add run stopped by grokking; the suppression scans take it as their base, and
    a stored scan's run is done."""
    root, specs, _ = store
    run = RunDir(root / SINGLE["name"] / "add-p31-trunk-wd1-lr0.005-s42")
    grok = run.grok_steps()["add"]
    assert grok is not None and grok < SINGLE["grid"]["steps"]  # the quick preset's seed 42 groks
    items = {i["role"]: i for i in _plan(capsys, "p2", "--store", str(root), "--specs", str(specs))["items"]}
    assert set(items) == {"single", "lr", "suppression exec s=1", "suppression random s=0.5"}
    (r,) = items["single"]["runs"]
    assert (r["state"], r["reason"], r["last_step"], r["to_go"]) == ("stopped", "grokked", grok, 0)
    needs = p2.scans("quick")
    for need in needs:
        item = items[need.label]
        assert run.path.name in item["note"] and "not grokked" not in item["note"]
        assert [x["state"] for x in item["runs"]] == ["new"] and item["to_go"] == SINGLE["grid"]["steps"]
    copy = tmp_path / "store"  # the scan trains into a copy: the module's store stays as made
    shutil.copytree(root, copy)
    stored, pending = needs  # store the execution-basis scan only
    stored_scan(ClaimContext(store=copy), RunDir(copy / SINGLE["name"] / run.path.name), stored.scan)
    items = {i["role"]: i for i in _plan(capsys, "p2", "--store", str(copy), "--specs", str(specs))["items"]}
    rows = read_stored_scan(copy, run.path.name, stored.scan)
    (x,) = items[stored.label]["runs"]
    assert (x["state"], x["to_go"], x["last_step"]) == ("done", 0, rows[0]["steps_trained"])
    assert x["reason"] == ("grokked" if rows[0]["grokked"] else "budget")
    assert [x["state"] for x in items[pending.label]["runs"]] == ["new"]
    # the other scan killed after its first checkpoint (step 500): the plan reads how far its run got
    where = scan_dir(copy, run.path.name, pending.scan)
    with pytest.raises(Stop):
        intervention_scan(RunDir(copy / SINGLE["name"] / run.path.name), pending.scan, out=where,
                          on_eval=stop_after(550))
    item = {i["role"]: i for i in _plan(capsys, "p2", "--store", str(copy), "--specs", str(specs))["items"]}[
        pending.label]
    budget = SINGLE["grid"]["steps"]
    (x,) = item["runs"]
    assert (x["state"], x["last_step"], x["to_go"]) == ("partial", 500, budget - 500)
    assert item["where"] == str(where) and "resumes" in item["note"] and item["rate"] > 0
    # the claims resume it from there, and say so
    table, _ = stored_scan(ClaimContext(store=copy, progress=True), RunDir(copy / SINGLE["name"] / run.path.name),
                           pending.scan)
    assert f"at step 500 of {budget}" in capsys.readouterr().err
    assert read_stored_scan(copy, run.path.name, pending.scan) == table.to_dict("records")


def test_scan_base_prefers_a_grokked_seed_42():
    need = p1.scans("paper")[0]
    cfgs = [preset("p1-dual", seed=s, optim={"wd": wd}) for wd in (0.5, 1.0) for s in (7, 42)]

    def states(grokked: set[int]) -> list[RunState]:
        return [RunState(c.name, c.steps, 0, "stopped" if c.seed in grokked else "new",
                         "grokked" if c.seed in grokked else "") for c in cfgs]

    assert scan_base(cfgs, states(set()), need) == (cfgs[3], False)  # nothing grokked: seed 42 pending
    assert scan_base(cfgs, states({7}), need) == (cfgs[2], True)  # a grokked base over a pending seed 42
    assert scan_base(cfgs, states({7, 42}), need) == (cfgs[3], True)
    assert scan_base(cfgs[:2], states(set())[:2], need) is None  # no wd-1 run in the sweep


def test_plan_conflicting_budget_counts_the_steps_a_resume_would_take(store, capsys, tmp_path):
    root, _, cfgs = store
    longer = {**DUAL, "grid": {**DUAL["grid"], "steps": {0: 400, 1: 1500}}}
    specs = tmp_path / "longer.yaml"
    specs.write_text(yaml.safe_dump({"dual": longer}))
    got = _plan(capsys, "p1", "--store", str(root), "--specs", str(specs))
    runs = {r["name"]: r for r in got["items"][0]["runs"]}
    r = runs[cfgs[0.0, 42].name]  # stopped at its old 200-step budget: 200 more under the new one
    assert (r["state"], r["reason"], r["last_step"], r["budget"], r["to_go"]) == ("conflict", "budget", 200, 400, 200)


def test_plan_p3_experiments(tmp_path, capsys):
    """P3's experiments are cached whole: all to go on an empty store, done once cached with their config."""
    got = _plan(capsys, "p3", "--scale", "cpu", "--store", str(tmp_path))
    mlp, dec, toys = p3.experiments("cpu")
    items = {i["name"]: i for i in got["items"]}
    assert items[mlp.name]["to_go"] == mlp.runs * mlp.steps == 5 * p3.CPU_MLP_STEPS
    assert items[dec.name]["to_go"] == dec.runs * dec.steps
    assert items["toys"]["to_go"] == 0 and items["toys"]["budget"] == 0
    assert got["total"]["to_go"] == mlp.runs * mlp.steps + dec.runs * dec.steps
    p3._cached(ClaimContext(scale="cpu", store=tmp_path), dec, lambda: [{"seed": 0}])
    items = {i["name"]: i for i in _plan(capsys, "p3", "--scale", "cpu", "--store", str(tmp_path))["items"]}
    assert items[dec.name]["to_go"] == 0 and {r["state"] for r in items[dec.name]["runs"]} == {"done"}
    assert items[mlp.name]["to_go"] == mlp.runs * mlp.steps


@pytest.mark.parametrize("argv, needle", [
    (["p9", "--store", "{tmp}"], "'p9'"),
    (["p1", "--scale", "huge", "--store", "{tmp}"], "'huge'"),
    (["p2", "--scale", "cpu", "--store", "{tmp}/file"], "file is a file"),
])
def test_plan_bad_input_one_line_exit_2(argv, needle, tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    assert main(["claims", *argv, "--plan"]) == 2
    err = capsys.readouterr().err
    assert needle in err and len(err.strip().splitlines()) == 1


def test_plan_on_a_store_not_created_yet_lists_everything_with_a_probed_rate(store, capsys, tmp_path):
    """The newcomer's case: `--plan` before any run. Every item is new with its whole budget to go, and each gets
    a rate timed now (its time left = to go / rate); nothing is created. A partly stored sweep keeps its
    stored rate, and --no-probe leaves new items without one."""
    _, specs, cfgs = store
    missing = tmp_path / "new" / "store"
    got = _plan(capsys, "p1", "--store", str(missing), "--specs", str(specs), probe=True)
    assert not (tmp_path / "new").exists() and got["store_exists"] is False
    items = {i["role"]: i for i in got["items"]}
    assert set(items) == {"dual", "tri", "deletion"}
    assert {r["name"] for r in items["dual"]["runs"]} == {c.name for c in cfgs.values()}
    for i in items.values():
        assert all(r["state"] == "new" and r["last_step"] == 0 for r in i["runs"])
        assert i["to_go"] == i["budget"] > 0
        assert i["rate_source"] == "probe" and i["rate"] > 0
        assert i["eta_s"] == pytest.approx(i["to_go"] / i["rate"])
    total = got["total"]
    assert total["eta_complete"] is True and total["no_rate"] == []
    assert total["eta_s"] == pytest.approx(sum(i["eta_s"] for i in items.values()))
    assert main(["claims", "p1", "--store", str(missing), "--specs", str(specs), "--plan"]) == 0
    out = capsys.readouterr().out
    assert "does not exist yet" in out and "(probe)" in out and not (tmp_path / "new").exists()
    got = _plan(capsys, "p1", "--store", str(missing), "--specs", str(specs))
    assert all(i["rate"] is None and i["rate_source"] == "" for i in got["items"])
    assert got["total"]["no_rate"] == ["dual", "tri", "deletion"]


def test_plan_keeps_a_stored_rate_and_probes_only_the_rest(store, capsys):
    root, specs, _ = store
    items = {i["role"]: i for i in _plan(capsys, "p1", "--store", str(root), "--specs", str(specs),
                                         probe=True)["items"]}
    stored = {i["role"]: i for i in _plan(capsys, "p1", "--store", str(root), "--specs", str(specs))["items"]}
    assert items["dual"]["rate_source"] == "stored" and items["dual"]["rate"] == stored["dual"]["rate"]
    assert items["tri"]["rate_source"] == "probe" and items["tri"]["rate"] > 0


def test_plan_and_claims_refuse_a_scan_folder_holding_another_scan(store, capsys, tmp_path):
    """A scan folder whose scan.json names another scan config: `--plan` shows its runs as conflicts, and the
    claims refuse to resume it (a StoreError: bad input), writing nothing."""
    root, specs, _ = store
    copy = tmp_path / "store"
    shutil.copytree(root, copy)
    run = RunDir(copy / SINGLE["name"] / "add-p31-trunk-wd1-lr0.005-s42")
    need = p2.scans("quick")[0]
    where = scan_dir(copy, run.path.name, need.scan)
    ScanDir(where).begin(replace(need.scan, start=need.scan.start + 100), run.path.name, None)
    item = {i["role"]: i for i in _plan(capsys, "p2", "--store", str(copy), "--specs", str(specs))["items"]}[
        need.label]
    assert [r["state"] for r in item["runs"]] == ["conflict"] and "another scan" in item["note"]
    before = _files(copy)
    with pytest.raises(StoreError, match="another start"):
        stored_scan(ClaimContext(store=copy), run, need.scan)
    assert _files(copy) == before
