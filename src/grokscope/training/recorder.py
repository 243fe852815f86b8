"""A run's host-side record while it trains: metric and probe rows, the attention trajectory and snapshots, cut into
trajectory segments at each checkpoint and refilled from the run directory on resume."""

from __future__ import annotations

from typing import Any

import torch

from grokscope.errors import StoreError
from grokscope.store import METRICS_TABLE, RunDir


class Recorder:
    """Per-run host-side buffers: metric rows, probe rows, attention trajectory, snapshots."""

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []
        self.probe_rows: dict[str, list[dict[str, Any]]] = {}
        self.attn_steps: list[int] = []
        self.attn: dict[str, list[torch.Tensor]] = {}
        self.snap_steps: list[int] = []
        self.snaps: dict[str, list[torch.Tensor]] = {}

    def take_segment(self) -> dict[str, torch.Tensor] | None:
        """The attention matrices and snapshots recorded since the last call, as one trajectory segment
        (None if there are none); they leave memory."""
        if not self.attn_steps and not self.snap_steps:
            return None
        out = {"attn_steps": torch.tensor(self.attn_steps, dtype=torch.int64, device="cpu"),
               "snap_steps": torch.tensor(self.snap_steps, dtype=torch.int64, device="cpu")}
        out.update({f"attn.{k}": torch.stack(v) for k, v in self.attn.items()})
        out.update({f"snap.{k}": torch.stack(v) for k, v in self.snaps.items()})
        self.attn_steps, self.attn, self.snap_steps, self.snaps = [], {}, [], {}
        return out

    def load(self, run: RunDir, upto: int, probe_names: list[str]) -> None:
        """Refill the tables from a run directory and cut its trajectory back, dropping anything written
        after checkpoint step `upto`."""
        if run.has_table(METRICS_TABLE):
            df = run.metrics()
            self.rows = df[df.step <= upto].to_dict("records")
        for name in probe_names:
            if run.has_table(name):
                df = run.table(name)
                self.probe_rows[name] = df[df.step <= upto].to_dict("records")
        run.truncate_trajectory(upto)


def note_batch_shapes(shapes: list[list[dict[str, Any]]], s: int, rows: list[int], trains: list[bool]) -> None:
    """Record, for each run that trains from step `s` (`trains[r]`, in the batch's `rows`), the batch it is evaluated
    in and the one its steps take ([rows, its row] each), when they differ from its last record. Kernels are picked by
    shape, so two records of one run are bit-identical only where these agree; a resume that leaves a run behind the
    others (it trains alone until it catches up) or a sweep that packs its unfinished runs anew shows here."""
    R = len(shapes)
    for r in range(R):
        if not trains[r] or r not in rows:
            continue
        shape = {"from_step": s, "evaluated_in": [R, r], "trained_in": [len(rows), rows.index(r)]}
        last = shapes[r][-1] if shapes[r] else {}
        if (last.get("evaluated_in"), last.get("trained_in")) != (shape["evaluated_in"], shape["trained_in"]):
            shapes[r].append(shape)


def finished_summary(d: RunDir) -> bool:
    """Whether the run directory holds the summary of a finished run (a damaged one counts as not)."""
    try:
        return d.has_summary() and d.summary().get("finished") is True
    except StoreError:
        return False
