"""What a report computes itself and what it hands back (shared by gathering, the sections and the page)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

__all__ = ["ReportConfig", "Section", "ReportResult"]


@dataclass(frozen=True)
class ReportConfig:
    """What the report computes itself: the random-walk null (`n_null` walks, for the first `null_runs`
    runs), defect panels (at most `max_panels`), and optionally `geometry_summary` for runs without one."""

    n_null: int = 20  # random walks in the PC1% null of each attention matrix
    null_runs: int = 6  # the null is computed for the first N runs only (it costs a PCA per walk)
    max_panels: int = 12  # at most this many per-run defect panels
    compute_summary: bool = False  # compute `geometry_summary` for runs that have none stored (--compute)
    draws: int = 9  # commutator draws per defect when the summary is computed
    device: str = "cpu"  # where computed analyses run
    dpi: int = 90  # resolution of the figures (PNG)


@dataclass
class Section:
    """A page block: a figure (file name in the report folder), caption, table, or why it is absent."""

    key: str
    title: str
    figure: str | None = None
    caption: str = ""
    table: pd.DataFrame | None = None
    missing: str | None = None


@dataclass
class ReportResult:
    """Where the page went, the figures written, and the sections with no data (title -> reason)."""

    index: Path
    figures: list[Path]
    sections: list[Section]
    missing: dict[str, str] = field(default_factory=dict)
