"""Sweep specs (parsing, errors, expansion), batch packing, end-to-end sweeps that rerun, resume, refuse."""

from __future__ import annotations

import copy
import json
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch
import yaml

import grokscope.sweep.packing as S
import grokscope.training.memory as Mem
from grokscope.cli import main
from grokscope.config import batch_key, preset
from grokscope.errors import ConfigError, StoreError
from grokscope.store import RunDir
from grokscope.sweep import (
    CPU_MAX_RUNS,
    EVAL_CHUNK,
    act_floats,
    capacity,
    expand,
    load_spec,
    plan,
    run_bytes,
    run_sweep,
    spec_from_dict,
    train_batch,
)
from grokscope.sweep.batch import train_with_probes
from grokscope.training import model as M
from grokscope.training import train

from conftest import ROOT

CONFIGS = ROOT / "configs"

TINY_BASE = {"preset": "quick", "steps": 100, "eval_every": 50, "attn_every": 50, "checkpoint_every": 50,
             "defect_every": 0, "data": {"p": 11}, "model": {"d_model": 32, "n_heads": 2, "d_ff": 64},
             "optim": {"batch": 64}}


def tiny_spec(tmp_path: Path, **top) -> dict:
    """A spec dict for a tiny CPU sweep into tmp_path/store."""
    raw = {"name": "t", "base": copy.deepcopy(TINY_BASE), "grid": {"seeds": [1, 2]},
           "out": str(tmp_path / "store"), "device": "cpu"}
    raw.update(top)
    return raw


def write(tmp_path: Path, raw: dict, name: str = "spec.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(raw))
    return path


# ---- parsing and expansion --------------------------------------------------------------------------


def test_load_spec_expands_grid_with_budgets_per_wd(tmp_path):
    text = """
name: demo
base: {preset: quick, data: {p: 11}, model: {d_model: 32, n_heads: 2, d_ff: 64}}
grid:
  tasks: [add, add+mul, [sub, mul]]
  wd: [0.1, 1]
  lr: 1e-3            # YAML 1.1 reads this as a string
  seeds: [1, 2]
  steps: {0.1: 300, 1: 200}
analyses: [pca]
out: somewhere
"""
    (tmp_path / "s.yaml").write_text(text)
    spec = load_spec(tmp_path / "s.yaml")
    cfgs = expand(spec)
    assert len(cfgs) == 3 * 2 * 2
    assert {c.data.tasks for c in cfgs} == {("add",), ("add", "mul"), ("sub", "mul")}
    assert all(c.optim.lr == pytest.approx(1e-3) and isinstance(c.optim.lr, float) for c in cfgs)
    assert {c.steps for c in cfgs if c.optim.wd == 0.1} == {300}
    assert {c.steps for c in cfgs if c.optim.wd == 1.0} == {200}
    assert len({c.name for c in cfgs}) == len(cfgs)
    assert all(c.data.p == 11 and c.model.d_model == 32 for c in cfgs)
    assert spec.analyses == ("pca",) and spec.out == Path("somewhere") and spec.device == "auto"


def test_steps_mapping_by_lr():
    raw = {"base": "quick",
           "grid": {"lr": ["1e-3", 0.01], "steps_by": "lr", "steps": {"1e-3": 500, 0.01: 100}}}
    cfgs = expand(spec_from_dict(raw))
    assert {(c.optim.lr, c.steps) for c in cfgs} == {(1e-3, 500), (0.01, 100)}


@pytest.mark.parametrize("change, needle", [
    ({"colour": "red"}, "colour"),
    ({"grid": {"width": [1]}}, "width"),
    ({"grid": {"wd": ["abc"]}}, "abc"),
    ({"grid": {"wd": [True]}}, "True"),
    ({"grid": {"seeds": [1.5]}}, "1.5"),
    ({"grid": {"seeds": []}}, "grid.seeds"),
    ({"grid": {"p": [12], "tasks": ["mul"]}}, "p=12"),
    ({"grid": {"tasks": ["pow"]}}, "pow"),
    ({"grid": {"model": ["lstm"]}}, "lstm"),
    ({"grid": {"wd": [0.1, 0.7], "steps": {0.1: 100}}}, "wd=0.7"),
    ({"grid": {"steps": -5}}, "-5"),
    ({"grid": {"steps_by": "seed"}}, "seed"),
    ({"base": {"preset": "huge"}}, "huge"),
    ({"base": {"preset": "quick", "optim": {"momentun": 0.9}}}, "momentun"),
    ({"base": {"preset": "quick", "stepz": 3}}, "stepz"),
    ({"base": {"preset": "quick", "optim": {"lr": "fast"}}}, "fast"),
    ({"analyses": ["pca", "tarot"]}, "tarot"),
    ({"device": "tpu"}, "tpu"),
    ({"resume": "yes"}, "yes"),
    ({"max_runs": 0}, "max_runs"),
    ({"grid": {"wd": [1, 1.0]}}, "wd 1.0 appears twice"),
    ({"grid": {"method": ["grokfast-ema", "grokfast-ema"]}}, "two runs named"),
])
def test_bad_values_raise_one_line_config_error(tmp_path, change, needle):
    raw = tiny_spec(tmp_path)
    for k, v in change.items():
        raw[k] = {**raw[k], **v} if k == "grid" else v
    with pytest.raises(ConfigError) as e:
        load_spec(write(tmp_path, raw))
    msg = str(e.value)
    assert needle in msg and "\n" not in msg


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_spec(tmp_path / "nope.yaml")
    (tmp_path / "bad.yaml").write_text("grid: [wd: 1\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_spec(tmp_path / "bad.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_spec(tmp_path / "list.yaml")


def test_example_specs_load_with_paper_grids():
    specs = {p.stem: load_spec(p) for p in sorted(CONFIGS.glob("*.yaml"))}
    assert {"quick-wd", "p1-dual-wd", "p1-tri-wd", "p2-single", "p2-lr"} <= set(specs)
    for name in ("p1-dual-wd", "p1-tri-wd"):
        cfgs = expand(specs[name])
        assert len(cfgs) == 18
        assert {c.optim.wd for c in cfgs} == {0, 0.1, 0.2, 0.3, 0.5, 1.0}
        assert {c.seed for c in cfgs} == {42, 137, 2024}
        budget = {c.optim.wd: c.steps for c in cfgs}
        assert budget[0.1] == 250_000 and budget[0.1] == max(budget.values()) and budget[0] <= 100_000
    assert {c.optim.wd: c.steps for c in expand(specs["p1-dual-wd"])}[1.0] == 30_000
    single = expand(specs["p2-single"])
    assert len(single) == 18 and {c.data.tasks[0] for c in single} == {"add", "sub", "mul", "sq", "sq_ab",
                                                                       "cube_ab"}
    assert {c.optim.wd for c in single} == {1.0}
    lrs = sorted({c.optim.lr for c in expand(specs["p2-lr"])})
    assert lrs == pytest.approx([3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2])


# ---- packing ------------------------------------------------------------------------------------------


def _mixed():
    a = [preset("quick", seed=s, data=dict(p=11)) for s in range(4)]
    b = [preset("quick", seed=s, data=dict(p=13)) for s in range(3)]
    c = [preset("quick", seed=s, data=dict(p=11, tasks=("mul",))) for s in range(2)]
    return [x for trio in zip(a, b + [None], c + [None, None], strict=True) for x in trio if x is not None]


def test_plan_packs_same_shape_together_and_shapes_apart():
    cfgs = _mixed()
    batches = plan(cfgs, "cpu")
    assert len(batches) == 3  # one program per shape
    for b in batches:
        assert len({batch_key(c) for c in b}) == 1
    assert sorted(c.name for b in batches for c in b) == sorted(c.name for c in cfgs)


def test_plan_respects_max_runs_and_splits_evenly():
    cfgs = [preset("quick", seed=s, data=dict(p=11)) for s in range(7)]
    batches = plan(cfgs, "cpu", max_runs=3)
    sizes = sorted(len(b) for b in batches)
    assert len(batches) == 3 and max(sizes) <= 3 and sizes[-1] - sizes[0] <= 1
    assert sum(sizes) == 7
    with pytest.raises(ConfigError, match="max_runs"):
        plan(cfgs, "cpu", max_runs=0)


def test_plan_caps_cpu_batches():
    cfgs = [preset("quick", seed=s, data=dict(p=11)) for s in range(CPU_MAX_RUNS + 6)]
    batches = plan(cfgs, "cpu")
    assert len(batches) == 2 and all(len(b) <= CPU_MAX_RUNS for b in batches)
    assert abs(len(batches[0]) - len(batches[1])) <= 1


def test_plan_fits_device_memory(monkeypatch):
    cfg = preset("quick", data=dict(p=11))
    fixed = 4 * EVAL_CHUNK * act_floats(cfg)
    monkeypatch.setattr(S, "device_budget", lambda device: (fixed + 5 * run_bytes(cfg) + 1, 1 << 30))
    assert capacity(cfg, "cuda") == 5 and capacity(cfg, "cuda", max_runs=2) == 2
    batches = plan([preset("quick", seed=s, data=dict(p=11)) for s in range(12)], "cuda")
    assert len(batches) == 3 and max(len(b) for b in batches) <= 5 and sum(map(len, batches)) == 12
    monkeypatch.setattr(S, "device_budget", lambda device: (fixed + 5 * run_bytes(cfg) - 1, 1 << 30))
    assert capacity(cfg, "cuda") == 4


def test_one_program_is_bounded_by_its_largest_tensor_and_chunks_follow_the_device(monkeypatch):
    """A GPU with memory to spare still puts no more runs in one program than keeps its largest tensors within
    32-bit indexing; on the CPU (and meta) the evaluation and defect chunks keep their cache-sized defaults, on a
    GPU they grow with the free memory."""
    cfg = preset("quick", data=dict(p=11))
    big = 1 << 50
    monkeypatch.setattr(S, "device_budget", lambda device: (big, 1 << 30))
    monkeypatch.setattr(S, "host_budget", lambda: big)
    cap = capacity(cfg, "cuda")
    assert cap == Mem.program_runs(cfg) < 1 << 30
    assert cap * M.count_params(M.init_params(cfg.model, cfg.data, 0), batched=False) <= Mem.ELEMENT_LIMIT
    assert cap * cfg.optim.batch * Mem.widest_floats(cfg) <= Mem.ELEMENT_LIMIT
    assert Mem.program_runs(preset("quick", data=dict(p=11), optim=dict(batch=1024))) < Mem.program_runs(cfg)
    for dev in ("cpu", "meta"):
        assert Mem.eval_chunk(cfg, dev) == Mem.EVAL_ROWS_CPU and Mem.defect_chunk(cfg, dev, 256) == Mem.DEFECT_ROWS_CPU
        assert Mem.fit_runs(cfg, dev) is None
    gib = 1 << 30
    monkeypatch.setattr(Mem, "memory_budget", lambda device: gib)
    assert Mem.eval_chunk(cfg, "cuda") == gib // (4 * act_floats(cfg)) > Mem.EVAL_ROWS_CPU
    assert Mem.defect_chunk(cfg, "cuda", 256) > Mem.defect_chunk(cfg, "cuda", 4096) >= Mem.DEFECT_ROWS_CPU


def test_run_bytes_grows_with_model_and_batch():
    small = preset("quick", data=dict(p=11))
    assert run_bytes(preset("quick", data=dict(p=11), model=dict(d_model=128, n_heads=4))) > run_bytes(small)
    assert run_bytes(preset("quick", data=dict(p=11), optim=dict(batch=1024))) > run_bytes(small)
    # at least params + grads + 2 Adam moments in float32
    P = M.count_params(M.init_params(small.model, small.data, 0), batched=False)
    assert run_bytes(small) >= 16 * P


# ---- end to end ----------------------------------------------------------------------------------------


def _mtimes(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()}


def test_sweep_reruns_train_nothing_and_add_missing_analyses(tmp_path):
    raw = tiny_spec(tmp_path)
    calls: list[int] = []

    def counting(cfgs, *a, **k):
        calls.append(len(cfgs))
        return train_batch(cfgs, *a, **k)

    df = run_sweep(spec_from_dict(raw), progress=False, batch_fn=counting)
    assert calls == [2]  # two seeds, one batched program
    assert list(df.status) == ["trained", "trained"]
    assert list(df.steps_trained) == [100, 100]
    assert {"grok_step.add", "train_acc.add", "test_acc.add", "path"} <= set(df.columns)
    for path in df.path:
        _, meta = RunDir(path).checkpoint()
        assert meta["step"] == 100
    store = tmp_path / "store"
    before = _mtimes(store)

    df2 = run_sweep(spec_from_dict(raw), progress=False, batch_fn=counting)
    assert calls == [2]  # nothing to do: no batch ran
    assert list(df2.status) == ["skipped", "skipped"]
    assert _mtimes(store) == before
    cols = ["name", "steps_trained", "grok_step.add", "train_acc.add", "test_acc.add"]
    assert df2[cols].equals(df[cols])

    raw["analyses"] = ["pca"]  # a new analysis: analyse the finished runs, train nothing
    df3 = run_sweep(spec_from_dict(raw), progress=False, batch_fn=counting)
    assert calls == [2, 2]
    assert "pca.pc1_mean" in df3.columns and df3["pca.pc1_mean"].notna().all()
    after = _mtimes(store)
    for name in before:
        if name.endswith(("checkpoint.safetensors", "metrics.parquet")) or "/trajectory/" in name:
            assert after[name] == before[name], name
    for path in df3.path:
        assert json.loads((Path(path) / "analyses.json").read_text())["pca"]["pc1_mean"] is not None
        assert (Path(path) / "pca.parquet").exists()


class _Killed(Exception):
    pass


def test_killed_sweep_resumes_from_checkpoint_and_matches_uninterrupted(tmp_path):
    raw = tiny_spec(tmp_path, grid={"seeds": [3]})
    spec = spec_from_dict(raw)
    (cfg,) = expand(spec)

    def kill(e):
        if e.step == 100:  # after the step-50 checkpoint, before the final one
            raise _Killed

    with pytest.raises(_Killed):
        train_with_probes([cfg], tmp_path / "store", "cpu", on_eval=kill)
    run = RunDir(tmp_path / "store" / cfg.name)
    assert run.checkpoint()[1]["step"] == 50

    df = run_sweep(spec, progress=False)
    assert df.status.iloc[0] == "trained" and run.checkpoint()[1]["step"] == 100
    m = run.metrics()
    assert not m.duplicated(["step", "task", "split"]).any()
    assert sorted(m.step.unique()) == [0, 50, 100]

    (ref,) = train([cfg], tmp_path / "ref")
    resumed = run.final_params()
    for k, v in ref.params.items():
        torch.testing.assert_close(resumed[k], v, rtol=1e-5, atol=1e-6)


def test_changed_config_is_refused_unless_spec_says_resume(tmp_path):
    raw = tiny_spec(tmp_path, grid={"seeds": [5]})
    (cfg,) = expand(spec_from_dict(raw))
    train([replace(cfg, steps=50)], tmp_path / "store")
    run = RunDir(tmp_path / "store" / cfg.name)
    assert run.checkpoint()[1]["step"] == 50
    mtime = run.file("checkpoint.safetensors").stat().st_mtime_ns
    with pytest.raises(StoreError, match="resume: true") as e:
        run_sweep(spec_from_dict(raw), progress=False)
    assert "\n" not in str(e.value)
    assert run.file("checkpoint.safetensors").stat().st_mtime_ns == mtime  # refused before anything ran

    raw["resume"] = True
    df = run_sweep(spec_from_dict(raw), progress=False)
    assert df.status.iloc[0] == "trained" and df.steps_trained.iloc[0] == 100
    assert run.checkpoint()[1]["step"] == 100 and run.config() == cfg
    m = run.metrics()
    assert not m.duplicated(["step", "task", "split"]).any() and m.step.max() == 100


# ---- CLI and the Ray switch ------------------------------------------------------------------------------


def test_cli_dry_run_prints_plan_and_trains_nothing(tmp_path, capsys):
    raw = tiny_spec(tmp_path, grid={"seeds": [1, 2, 3], "p": [11, 13]})
    path = write(tmp_path, raw)
    assert main(["sweep", str(path), "--dry-run", "--json", "--max-runs", "2"]) == 0
    plan_json = json.loads(capsys.readouterr().out)
    assert plan_json["runs"] == 6 and plan_json["states"] == {"new": 6}
    sizes = [len(b["runs"]) for b in plan_json["batches"]]
    assert sorted(sizes) == [1, 1, 2, 2] and not (tmp_path / "store").exists()
    for b in plan_json["batches"]:
        assert len({n.split("-")[1] for n in b["runs"]}) == 1  # p11 and p13 never share a program


def test_cli_runs_sweep_as_json_and_reports_bad_spec(tmp_path, capsys):
    raw = tiny_spec(tmp_path, grid={"seeds": [8]})
    raw["base"]["steps"] = 50
    path = write(tmp_path, raw)
    out = tmp_path / "elsewhere"
    assert main(["sweep", str(path), "--json", "--out", str(out)]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == 1 and rows[0]["status"] == "trained" and rows[0]["steps_trained"] == 50
    assert Path(rows[0]["path"]).parent == out.resolve()
    raw["grid"]["wd"] = ["heavy"]
    assert main(["sweep", str(write(tmp_path, raw, "bad.yaml"))]) == 2
    err = capsys.readouterr().err
    assert "heavy" in err and err.count("\n") == 1


def test_ray_executor_without_ray_is_a_config_error(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray → ImportError
    with pytest.raises(ConfigError, match="pip install"):
        run_sweep(spec_from_dict(tiny_spec(tmp_path)), executor="ray", progress=False)
    assert not (tmp_path / "store").exists()
    with pytest.raises(ConfigError, match="dask"):
        run_sweep(spec_from_dict(tiny_spec(tmp_path)), executor="dask", progress=False)


def test_host_memory_estimate_is_one_checkpoint_window_not_the_budget():
    """The trainer writes snapshots and attention matrices out at every checkpoint, so the scripts' long
    budgets (300k steps) do not shrink how many runs a CPU batch may hold."""
    short, long = preset("p1-dual", steps=30_000), preset("p1-dual")
    assert long.steps == 300_000 and Mem.host_bytes(long) == Mem.host_bytes(short)
    assert Mem.host_bytes(preset("p1-dual", checkpoint_every=20_000)) > Mem.host_bytes(long)
    assert capacity(long, "cpu") == capacity(short, "cpu")
