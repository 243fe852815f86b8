"""A run killed with SIGKILL mid-training resumes from its checkpoint and ends identical (CPU): its runs keep their
batch shapes through the resume (`batch_shapes`), so bit for bit (`equivalence.assert_stores_match`)."""

import os
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest

from equivalence import assert_stores_match

ARGS = ["--p", "13", "--steps", "1500", "--eval-every", "50", "--checkpoint-every", "100", "--seeds", "3,4",
        "--d-model", "32", "--heads", "2", "--no-geometry", "--json", "--defect-every", "0"]


def _cmd(out):
    return [sys.executable, "-m", "grokscope.cli", "run", *ARGS, "--out", str(out)]


def _env():
    return {**os.environ, "OMP_NUM_THREADS": "1"}


@pytest.mark.slow
def test_sigkill_then_resume_matches_uninterrupted(tmp_path):
    ref, killed = tmp_path / "ref", tmp_path / "killed"
    subprocess.run(_cmd(ref), check=True, capture_output=True, env=_env(), timeout=300)

    proc = subprocess.Popen(_cmd(killed), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=_env())
    deadline = time.time() + 120
    while time.time() < deadline and not list(killed.glob("*/checkpoint.safetensors")):
        time.sleep(0.05)
    time.sleep(0.3)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    runs = sorted(killed.iterdir())
    partial = [pd.read_parquet(r / "metrics.parquet").step.max() for r in runs if (r / "metrics.parquet").exists()]
    full = [pd.read_parquet(r / "metrics.parquet").step.max() for r in sorted(ref.iterdir())]
    assert partial and min(partial) < min(full), "the kill came too late to test resuming"

    subprocess.run(_cmd(killed), check=True, capture_output=True, env=_env(), timeout=300)
    assert set(assert_stores_match(ref, killed).values()) == {"same batch shapes: bit-identical"}
