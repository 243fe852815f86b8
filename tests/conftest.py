"""Shared fixtures: tiny configs that train in seconds on 2 CPU cores."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import torch

from grokscope.config import RunConfig, preset

torch.set_num_threads(1)  # tiny models gain nothing from threads; avoids oversubscription
os.environ.setdefault("OMP_NUM_THREADS", "1")  # so the CLI's --threads auto, called in-process, keeps that 1
os.environ.setdefault("GROKSCOPE_COMPILE", "0")  # eager unless a test asks: bitwise checks, no compile time


ROOT = Path(__file__).resolve().parents[1]  # the repository: README, docs, examples, configs, benchmarks
CHROMIUM = "/usr/bin/chromium"


def extra_module(module: str, extra: str):
    """Import `module` of an optional extra. `.ci/run` installs every extra, so under CI (`CI` set) a missing one
    fails; elsewhere (the README's `.[dev]` install) the test skips, saying what to install."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as e:
        why = f'{e}: this test needs pip install -e ".[{extra}]" (CI installs it)'
        if os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no"):
            pytest.fail(why)
        pytest.skip(why)


def headless_dom(page: Path, profile: Path, budget_ms: int = 5000) -> subprocess.CompletedProcess:
    """Open `page` in headless Chromium and return the finished process: the DOM after load on stdout,
    the browser's log (console messages included) on stderr. Skips the test when Chromium is absent."""
    if not Path(CHROMIUM).exists():
        pytest.skip(f"the browser test needs Chromium at {CHROMIUM}: apt-get install chromium (then rerun pytest)")
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0", f"--virtual-time-budget={budget_ms}",
           "--dump-dom", page.as_uri()]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    shutil.rmtree(profile, ignore_errors=True)
    return proc


def tiny_config(**overrides) -> RunConfig:
    """A 1-layer d=32 trunk on p=11 add; overrides as in `preset`."""
    base = dict(steps=200, eval_every=50, attn_every=50, checkpoint_every=100, defect_every=0,
                data=dict(p=11, tasks=("add",)), model=dict(d_model=32, n_heads=2, d_ff=64, n_layers=1),
                optim=dict(batch=64))
    for k in ("data", "model", "optim"):
        if k in overrides:
            base[k] = {**base[k], **overrides.pop(k)}
    base.update(overrides)
    return preset("quick", **base)


@pytest.fixture
def tiny() -> RunConfig:
    return tiny_config()


class Stop(Exception):
    """Raised by `stop_after` to kill a training loop from its evaluation callback (a simulated crash)."""


def stop_after(step: int):
    """An `on_eval` hook that raises Stop at the first evaluation after `step`."""
    def hook(info):
        if info.step > step:
            raise Stop

    return hook
