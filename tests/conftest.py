"""Shared fixtures: tiny configs that train in seconds on 2 CPU cores."""

from __future__ import annotations

import os

import pytest
import torch

from grokscope.config import RunConfig, preset

torch.set_num_threads(1)  # tiny models gain nothing from threads; avoids oversubscription
os.environ.setdefault("OMP_NUM_THREADS", "1")  # so the CLI's --threads auto, called in-process, keeps that 1
os.environ.setdefault("GROKSCOPE_COMPILE", "0")  # eager unless a test asks: bitwise checks, no compile time


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
