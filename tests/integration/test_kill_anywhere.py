"""Kill anywhere: SIGKILL a `run` and a `sweep` at random points, resume, and end as an uninterrupted run started the
same way (a subprocess with the same environment and `--threads 1`: on some processors MKL takes another kernel path
in another environment, and then the comparison would test that, not resume); no temp or half-written file survives.
"As" means bit for bit for a run that trained in the same batch shapes as uninterrupted (every run of `run`, whose
batch never changes); a resumed sweep packs its unfinished runs anew, and a run whose batch shrank or grew is held to
the float64 bound (`equivalence.py`), which still tells runs apart, so the killed sweeps train in float64. A full
disk (a small tmpfs when we may mount one, else a writer that raises ENOSPC) gives one clear line and leaves the store
whole and resumable."""

from __future__ import annotations

import errno
import functools
import importlib
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

from grokscope.cli import main
from grokscope.store import RunDir, read_tensors
from grokscope.store import files as store_mod
from grokscope.sweep import expand, run_sweep, spec_from_dict
from grokscope.training import train

from cli_args import tiny_args
from conftest import Stop, stop_after, tiny_config
from equivalence import assert_bit_identical, assert_stores_match, float64_cli

T = importlib.import_module("grokscope.training.loop")  # the trainer's module

RUN_ARGS = ["--p", "11", "--steps", "400", "--eval-every", "20", "--checkpoint-every", "20", "--seeds", "3,4",
            "--wd", "0.5", "--d-model", "32", "--heads", "2", "--no-geometry", "--json", "--defect-every", "0",
            "--threads", "1"]
# lr 1e-3: a one-ulp change of θ₀ grows to at most 7e-13 over these runs in float64 (8 seeds measured), far below the
# bound; at the quick preset's 5e-3 some seeds amplify it to 3e-10 within 300 steps.
SWEEP = {"name": "k", "device": "cpu", "max_runs": 2,
         "base": {"preset": "quick", "steps": 300, "eval_every": 20, "attn_every": 20, "checkpoint_every": 20,
                  "defect_every": 0, "data": {"p": 11}, "model": {"d_model": 32, "n_heads": 2},
                  "optim": {"batch": 64, "lr": 1e-3}},
         "grid": {"seeds": [5, 6], "wd": [0.5, 1.0]}}
KILLS = 3  # per command: each kill lands at a random moment after the store has moved on
SEED = int(os.environ.get("GROKSCOPE_KILL_SEED", "20261130"))


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def _uninterrupted(cmd: list[str]) -> None:
    """The reference: `cmd` run to the end exactly as the killed runs are started (subprocess, same environment)."""
    subprocess.run(cmd, check=True, capture_output=True, env=_env(), timeout=300)


def _state(store: Path) -> dict[str, int]:
    """mtime of every checkpoint below `store` (what moves when training makes progress)."""
    return {str(p): p.stat().st_mtime_ns for p in store.glob("*/checkpoint.safetensors")}


def _kill_loop(cmd: list[str], store: Path, rng: random.Random) -> int:
    """Start `cmd` KILLS times; each time wait until a checkpoint moves, then SIGKILL after a random delay.
    Returns how many kills landed before the command had finished on its own."""
    landed = 0
    for _ in range(KILLS):
        before = _state(store)
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=_env())
        deadline = time.time() + 120
        while proc.poll() is None and time.time() < deadline and _state(store) == before:
            time.sleep(0.01)
        time.sleep(rng.uniform(0.0, 0.4))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            landed += 1
        proc.wait()
        _assert_whole(store)
    return landed


def _assert_whole(store: Path) -> None:
    """Every file below `store` loads in full (atomic writes: the old file or the new one, never half)."""
    for f in store.rglob("*"):
        if f.name.endswith(".tmp"):
            continue  # a killed writer's temp file: never read, removed by the next run
        if f.suffix == ".safetensors":
            read_tensors(f)
        elif f.suffix == ".parquet":
            pd.read_parquet(f)
        elif f.suffix == ".json":
            store_mod.read_json(f)


def _assert_same(ref: Path, got: Path) -> None:
    """The two stores hold the same runs: bit-identical where a run kept its batch shapes, else to the float64
    bound (`assert_stores_match`); says which case each run hit."""
    for name, case in assert_stores_match(ref, got).items():
        print(f"{name}: {case}")


def _cli(*argv: str) -> list[str]:
    return [sys.executable, "-m", "grokscope.cli", *argv]


@pytest.mark.slow
def test_run_killed_at_random_points_resumes_as_uninterrupted(tmp_path):
    rng = random.Random(SEED)
    ref, killed = tmp_path / "ref", tmp_path / "killed"
    _uninterrupted(_cli("run", *RUN_ARGS, "--out", str(ref)))
    landed = _kill_loop(_cli("run", *RUN_ARGS, "--out", str(killed)), killed, rng)
    assert landed >= 1, "every kill came after the run had finished: nothing tested"
    subprocess.run(_cli("run", *RUN_ARGS, "--out", str(killed)), check=True, capture_output=True, env=_env(),
                   timeout=300)
    _assert_same(ref, killed)


@pytest.mark.slow
def test_sweep_killed_at_random_points_resumes_as_uninterrupted(tmp_path):
    rng = random.Random(SEED + 1)
    paths = {}
    for name in ("ref", "killed"):
        paths[name] = tmp_path / f"{name}.yaml"
        paths[name].write_text(yaml.safe_dump({**SWEEP, "out": str(tmp_path / name)}))
    _uninterrupted(float64_cli("sweep", str(paths["ref"]), "--json", "--threads", "1"))
    cmd = float64_cli("sweep", str(paths["killed"]), "--json", "--threads", "1")
    landed = _kill_loop(cmd, tmp_path / "killed", rng)
    assert landed >= 1, "every kill came after the sweep had finished: nothing tested"
    subprocess.run(cmd, check=True, capture_output=True, env=_env(), timeout=300)
    _assert_same(tmp_path / "ref", tmp_path / "killed")


def _nudged(monkeypatch) -> None:
    """What another processor's kernels do to runs trained in other batch shapes, last-bit differences, emulated:
    every training step first moves the parameters of the runs it steps by one ulp."""
    for name in ("_step", "_compact_step"):
        real = getattr(T._Loop, name)

        def step(self, s, step_fn, active, *live, real=real):
            moved = torch.nextafter(self.flat, torch.full_like(self.flat, 2.0))
            self.flat.copy_(torch.where(active[:, None], moved, self.flat))
            real(self, s, step_fn, active, *live)

        monkeypatch.setattr(T._Loop, name, step)


def test_a_run_left_behind_by_a_kill_keeps_its_batch_shapes(tmp_path):
    """A kill between two runs' checkpoint writes leaves one a checkpoint behind the other. Resumed, the run ahead
    waits in the batch, masked, while the other catches up: every step keeps the shapes it had uninterrupted (the
    runs' `batch_shapes` say so), so the store is bit-identical to an uninterrupted one on any processor."""
    cfgs = [tiny_config(steps=120, eval_every=20, attn_every=20, checkpoint_every=20, seed=s, optim=dict(lr=1e-3))
            for s in (3, 4)]
    ref, got, saved = tmp_path / "ref", tmp_path / "got", tmp_path / "behind"
    train(cfgs, ref)
    for stop, keep in ((40, True), (60, False)):  # stop after the checkpoint at 40, keep run 1's; then at 60
        with pytest.raises(Stop):
            train(cfgs, got, on_eval=stop_after(stop))
        if keep:
            shutil.copytree(got / cfgs[1].name, saved)
    shutil.rmtree(got / cfgs[1].name)
    shutil.copytree(saved, got / cfgs[1].name)  # run 1 back at step 40, run 0 at 60
    train(cfgs, got)
    for r, c in enumerate(cfgs):
        assert RunDir(got / c.name).summary()["batch_shapes"] == [
            {"from_step": 0, "evaluated_in": [2, r], "trained_in": [2, r]}]
    assert set(assert_stores_match(ref, got).values()) == {"same batch shapes: bit-identical"}


def test_a_sweep_repacked_after_a_kill_is_held_to_the_float64_bound(tmp_path, monkeypatch):
    """The case where shapes do change, made on purpose: a sweep killed once its first run has finished packs the
    three unfinished runs anew (two with each other, one alone), so each trains in another batch shape than
    uninterrupted; `batch_shapes` record it and the comparison holds those runs to the float64 bound, the finished
    run bit for bit, and a swap of runs fails (inside `assert_stores_match`). The resumed sweep's steps are moved by
    one ulp (`_nudged`), as another processor's kernels would move them, so the bound is what passes them."""
    B = importlib.import_module("grokscope.sweep.batch")  # a sweep's batch trains through its train_with_probes
    monkeypatch.setattr(B, "train_with_probes", functools.partial(B.train_with_probes, dtype=torch.float64))
    raw = {**SWEEP, "base": {**SWEEP["base"], "steps": 100}}  # the random kills' sweep, shorter
    ref, got = tmp_path / "ref", tmp_path / "got"
    run_sweep(spec_from_dict({**raw, "out": str(ref)}), progress=False)
    first = expand(spec_from_dict({**raw, "out": str(ref)}))[0].name
    shutil.copytree(ref / first, got / first)  # what the killed sweep had finished
    _nudged(monkeypatch)
    run_sweep(spec_from_dict({**raw, "out": str(got)}), progress=False)
    cases = assert_stores_match(ref, got)
    assert cases.pop(first) == "same batch shapes: bit-identical"
    assert len(cases) == 3 and all(c.endswith("to 1e-09") for c in cases.values()), cases
    for name in cases:
        with pytest.raises(AssertionError):
            assert_bit_identical(got / name, ref / name)


TINY = tiny_args(steps=200, eval_every=20, checkpoint_every=20, no_geometry=True, json=True, defect_every=0)


@pytest.fixture(params=["tmpfs", "enospc"])
def small_disk(request, tmp_path, monkeypatch):
    """(folder, grow): a 96 KiB tmpfs (root only; grow() enlarges it), or a folder whose writes fail with ENOSPC
    after the first few (the writer monkeypatched; grow() lifts the limit)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    if request.param == "tmpfs":
        if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=96k", "tmpfs", str(disk)],
                                               capture_output=True).returncode != 0:
            pytest.skip("mounting a tmpfs needs root (the enospc case simulates a full disk instead)")

        def grow() -> None:
            subprocess.run(["mount", "-o", "remount,size=64m", str(disk)], check=True)

        yield disk, grow
        subprocess.run(["umount", str(disk)], check=True)
        return
    real = store_mod.atomic_write
    calls = {"n": 0, "limit": 12}

    def full(path, write):
        calls["n"] += 1
        if calls["n"] > calls["limit"]:
            def fail(tmp):
                write(tmp)
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(tmp))
            return real(path, fail)
        return real(path, write)

    monkeypatch.setattr(store_mod, "atomic_write", full)

    def lift() -> None:
        calls["limit"] = 1 << 30

    yield disk, lift


def test_full_disk_is_one_line_and_leaves_the_store_whole(tmp_path, small_disk, capsys):
    disk, grow = small_disk
    out = disk / "store"
    code = main(["run", *TINY, "--out", str(out)])
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert code == 1, captured.err[-2000:]
    assert len(lines) == 1 and "No space left on device" in lines[0], lines
    assert "Traceback" not in captured.err
    _assert_whole(out)
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")]  # the failed write cleaned up after itself
    grow()  # free space, rerun the same command: it resumes and ends like an uninterrupted run
    assert main(["run", *TINY, "--out", str(out)]) == 0
    capsys.readouterr()
    assert main(["run", *TINY, "--out", str(tmp_path / "ref")]) == 0
    capsys.readouterr()
    _assert_same(tmp_path / "ref", out)
