"""Kill anywhere, monitored: a plain loop monitored by `grokscope.Monitor` and saving its checkpoint (with the
monitor's state_dict) every few steps is SIGKILLed at random moments, writes of the store included, and restarted
from its last checkpoint each time; every file of the record loads after every kill, and the record it ends with is
the one an uninterrupted run writes, bit for bit (both in subprocesses with the same environment and one thread)."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from test_kill_anywhere import _assert_whole

from store_checks import assert_same_record

LOOP = Path(__file__).parents[1] / "monitored_loop.py"  # shared with the unit tests
STEPS, EVERY = 60, 5  # a checkpoint (and so a write of the store) every 5 steps, the monitor's own every 7
KILLS = 3
SEED = int(os.environ.get("GROKSCOPE_KILL_SEED", "20261130"))


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def _cmd(root: Path) -> list[str]:
    return [sys.executable, str(LOOP), str(root / "run"), str(root / "ckpt.pt"), str(STEPS), str(EVERY)]


def _moved(root: Path) -> int:
    """mtime of the user's checkpoint (what moves as the loop makes progress)."""
    ckpt = root / "ckpt.pt"
    return ckpt.stat().st_mtime_ns if ckpt.exists() else 0


def test_monitored_loop_killed_at_random_points_ends_with_the_uninterrupted_record(tmp_path):
    rng = random.Random(SEED + 2)
    ref, killed = tmp_path / "ref", tmp_path / "killed"
    subprocess.run(_cmd(ref), check=True, capture_output=True, env=_env(), timeout=300)
    landed, resumed_from = 0, []
    for _ in range(KILLS):
        before = _moved(killed)
        proc = subprocess.Popen(_cmd(killed), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=_env())
        deadline = time.time() + 120
        while proc.poll() is None and time.time() < deadline and _moved(killed) == before:
            time.sleep(0.005)
        time.sleep(rng.uniform(0.0, 0.3))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            landed += 1
        proc.wait()
        assert proc.returncode in (0, -signal.SIGKILL), proc.stderr.read().decode()[-2000:]
        _assert_whole(killed)  # every file of the record loads, whatever the moment of the kill
        state = json.loads((killed / "run" / "monitor_state.json").read_text())
        resumed_from.append(state["step"])
    assert landed >= 1, "every kill came after the loop had finished: nothing tested"
    assert max(s or 0 for s in resumed_from) >= EVERY, resumed_from  # at least one restart resumed a checkpoint
    subprocess.run(_cmd(killed), check=True, capture_output=True, env=_env(), timeout=300)
    assert_same_record(ref / "run", killed / "run")
