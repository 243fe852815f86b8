"""Kill anywhere: SIGKILL a `run` and a `sweep` at random points, resume, and end bit-identical to an
uninterrupted run started the same way (a subprocess with the same environment and `--threads 1`: on some processors
MKL takes another kernel path in another environment, and then the comparison would test that, not resume); no temp
or half-written file survives. A full disk (a small tmpfs when we may
mount one, else a writer that raises ENOSPC) gives one clear line and leaves the store whole and resumable."""

from __future__ import annotations

import errno
import os
import random
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

from cli_args import tiny_args

RUN_ARGS = ["--p", "11", "--steps", "400", "--eval-every", "20", "--checkpoint-every", "20", "--seeds", "3,4",
            "--wd", "0.5", "--d-model", "32", "--heads", "2", "--no-geometry", "--json", "--defect-every", "0",
            "--threads", "1"]
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
    """The two stores hold the same runs with bit-identical metrics, trajectories and checkpoints."""
    a_runs, b_runs = sorted(p.name for p in ref.iterdir()), sorted(p.name for p in got.iterdir())
    assert a_runs == b_runs
    for name in a_runs:
        a, b = ref / name, got / name
        pd.testing.assert_frame_equal(pd.read_parquet(a / "metrics.parquet"), pd.read_parquet(b / "metrics.parquet"))
        ta, tb = read_tensors(a / "checkpoint.safetensors")[0], read_tensors(b / "checkpoint.safetensors")[0]
        assert ta.keys() == tb.keys() and all(torch.equal(ta[k], tb[k]) for k in ta), (name, "checkpoint")
        ta, tb = RunDir(a).trajectory()[0], RunDir(b).trajectory()[0]  # segments may split differently
        assert ta.keys() == tb.keys() and all(torch.equal(ta[k], tb[k]) for k in ta), (name, "trajectory")
        sa, sb = RunDir(a).summary(), RunDir(b).summary()
        for k in ("grok_step", "grok_step_90", "final_acc", "steps_trained", "finished", "diverged"):
            assert sa[k] == sb[k], (name, k)
    leftovers = [p for p in got.rglob("*") if p.name.endswith(".tmp")]
    assert not leftovers, leftovers


def _cli(*argv: str) -> list[str]:
    return [sys.executable, "-m", "grokscope.cli", *argv]


@pytest.mark.slow
def test_run_killed_at_random_points_resumes_bit_identical(tmp_path):
    rng = random.Random(SEED)
    ref, killed = tmp_path / "ref", tmp_path / "killed"
    _uninterrupted(_cli("run", *RUN_ARGS, "--out", str(ref)))
    landed = _kill_loop(_cli("run", *RUN_ARGS, "--out", str(killed)), killed, rng)
    assert landed >= 1, "every kill came after the run had finished: nothing tested"
    subprocess.run(_cli("run", *RUN_ARGS, "--out", str(killed)), check=True, capture_output=True, env=_env(),
                   timeout=300)
    _assert_same(ref, killed)


@pytest.mark.slow
def test_sweep_killed_at_random_points_resumes_bit_identical(tmp_path):
    rng = random.Random(SEED + 1)
    spec = {"name": "k", "device": "cpu", "max_runs": 2,
            "base": {"preset": "quick", "steps": 300, "eval_every": 20, "attn_every": 20, "checkpoint_every": 20,
                     "defect_every": 0, "data": {"p": 11}, "model": {"d_model": 32, "n_heads": 2},
                     "optim": {"batch": 64}},
            "grid": {"seeds": [5, 6], "wd": [0.5, 1.0]}}
    paths = {}
    for name in ("ref", "killed"):
        paths[name] = tmp_path / f"{name}.yaml"
        paths[name].write_text(yaml.safe_dump({**spec, "out": str(tmp_path / name)}))
    _uninterrupted(_cli("sweep", str(paths["ref"]), "--json", "--threads", "1"))
    cmd = _cli("sweep", str(paths["killed"]), "--json", "--threads", "1")
    landed = _kill_loop(cmd, tmp_path / "killed", rng)
    assert landed >= 1, "every kill came after the sweep had finished: nothing tested"
    subprocess.run(cmd, check=True, capture_output=True, env=_env(), timeout=300)
    _assert_same(tmp_path / "ref", tmp_path / "killed")


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
