"""The grok rule, on the device: a task has grokked once its test accuracy stayed at or above `grok_acc` for
`grok_patience` consecutive evaluations (`grok_step`); `grok_step_90` is its first evaluation at 90 %. The trainer
and the monitor both apply it."""

from __future__ import annotations

from typing import NamedTuple

import torch

from grokscope.config import RunConfig


class GrokState(NamedTuple):
    """Per run and task [R, T]: consecutive evals at/above the grok accuracy, `grok_step` and
    `grok_step_90` (-1 until they fire)."""

    consec: torch.Tensor
    grok: torch.Tensor
    grok90: torch.Tensor


def update_grok(state: GrokState, test_acc: torch.Tensor, logged: torch.Tensor, step: int,
                cfg: RunConfig) -> GrokState:
    """The grok rules after one evaluation, on the device: `grok_step` is the step at which test accuracy
    has been >= `grok_acc` (98%) for `grok_patience` (3) consecutive evals; `grok_step_90` the first eval
    >= 90%. Runs not `logged` [R] this eval keep their state."""
    on = logged[:, None]
    consec = torch.where(test_acc >= cfg.grok_acc, state.consec + 1, torch.zeros_like(state.consec))
    consec = torch.where(on, consec, state.consec)
    fire = on & (consec >= cfg.grok_patience) & (state.grok < 0)
    grok = torch.where(fire, torch.full_like(state.grok, step), state.grok)
    fire90 = on & (test_acc >= cfg.grok_acc_90) & (state.grok90 < 0)
    grok90 = torch.where(fire90, torch.full_like(state.grok90, step), state.grok90)
    return GrokState(consec, grok, grok90)
