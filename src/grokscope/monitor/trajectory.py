"""What the monitor keeps of the parameters: the watched tensors (a fixed CountSketch of each large one, `sketch.py`)
and full snapshots, each series appended at its steps and bounded by `records.thin`, and the tensors the store's
trajectory file holds (`attn.<name>` for the watched ones, `snap.<name>` for the snapshots, with their steps)."""

from __future__ import annotations

import torch

from grokscope.monitor.functional import Target
from grokscope.monitor.records import thin
from grokscope.monitor.settings import MonitorConfig
from grokscope.monitor.sketch import CountSketch, sketch_seed

__all__ = ["Series", "append", "sketches_for", "trajectory_tensors", "watched_copies"]

Series = tuple[list[int], dict[str, list[torch.Tensor]], int]  # (steps, records per tensor, stride)


def sketches_for(target: Target, watched: list[str], cfg: MonitorConfig, seed: int) -> dict[str, CountSketch]:
    """A fixed CountSketch of dimension `sketch_dim` for each watched tensor above `sketch_above` entries."""
    k = cfg.sketch_dim
    big = [n for n in watched if k and target.live[n].numel() > cfg.sketch_above]
    return {n: CountSketch(target.live[n].numel(), k, sketch_seed(seed, n), target.live[n].device) for n in big}


def watched_copies(target: Target, watched: list[str], sketches: dict[str, CountSketch]) -> dict[str, torch.Tensor]:
    """The watched tensors now, on the host: a copy, or the sketch of a sketched one."""
    full = target.host_copy([n for n in watched if n not in sketches])
    return {n: full[n] if n in full else sketches[n](target.live[n]).cpu() for n in watched}


def append(series: Series, step: int, copies: dict[str, torch.Tensor], every: int, cap: int) -> Series:
    """`series` with the records `copies` of `step` appended, then thinned to at most `cap` records."""
    steps, records, stride = series
    steps.append(step)
    for n, t in copies.items():
        records[n].append(t)
    return thin(steps, records, stride, every, cap)


def trajectory_tensors(watch_steps: list[int], watched: dict[str, list[torch.Tensor]], snap_steps: list[int],
                       snaps: dict[str, list[torch.Tensor]]) -> dict[str, torch.Tensor]:
    """The trajectory file's tensors: the steps of each series and each tensor's records stacked (none if empty)."""
    out = {"attn_steps": torch.tensor(watch_steps, dtype=torch.int64),
           "snap_steps": torch.tensor(snap_steps, dtype=torch.int64)}
    out.update({f"attn.{n}": torch.stack(v) for n, v in watched.items() if v})
    out.update({f"snap.{n}": torch.stack(v) for n, v in snaps.items() if v})
    return out
