"""Which stored snapshots a post-hoc analysis reads: for a paper-exact run, the checkpoints the authors' scripts held.

P1's scripts keep a full state_dict at step 0 and every CHECKPOINT_EVERY = 200 steps (train_multitask.py,
train_tritask.py, hessian_wd*.py), and nothing at the stop step unless it is a multiple of 200; their analyses
read that list, subsampled by the integer linspace `np.linspace(0, n − 1, m, dtype=int)` (m = 120 for the
post-hoc defect of defect_wd_comparison.py, 30 for hessian_analysis.py, 100 for the trajectory PCs of
pca_threshold_scan.py and ortho_fine_scan.py), and take `checkpoints[-1]` as the final model
(snapshot_decomposition.py, postgrok_compression.py, pca_threshold_scan.py). A paper-exact run (`sampler`
"authors" with a `snapshot_spacing`, as the P1 presets) stores the same grid plus its stop step; these
functions give the stored indices of the scripts' list, so the analyses read the checkpoints the scripts read.
Every other run keeps grokscope's own choice (`fallback`).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from grokscope.config import RunConfig
from grokscope.geometry.onset import posthoc_indices

__all__ = ["paper_exact", "script_checkpoints", "select_snapshots", "final_snapshot"]

Fallback = Callable[[int, int], np.ndarray | list[int]]


def paper_exact(cfg: RunConfig) -> bool:
    """Whether a run is a paper-exact one whose snapshots sit on the scripts' checkpoint grid."""
    return cfg.sampler == "authors" and cfg.snapshot_spacing > 0


def script_checkpoints(cfg: RunConfig, steps: np.ndarray) -> np.ndarray:
    """Indices of the stored snapshots (at `steps`) the script's checkpoint list holds: those on the grid of a
    paper-exact run (its stop step off the grid left out), all of them for another run."""
    steps = np.asarray(steps)
    if not paper_exact(cfg):
        return np.arange(len(steps))
    return np.flatnonzero(steps % cfg.snapshot_spacing == 0)


def select_snapshots(cfg: RunConfig, steps: np.ndarray, max_points: int,
                     fallback: Fallback | None = None) -> np.ndarray:
    """Stored-snapshot indices an analysis reads: for a paper-exact run the script's list subsampled to
    ≤ `max_points` by its integer linspace; for another run `fallback(n, max_points)` (default: all)."""
    steps = np.asarray(steps)
    if paper_exact(cfg):
        grid = script_checkpoints(cfg, steps)
        return grid[posthoc_indices(len(grid), max_points)]
    if fallback is None:
        return np.arange(len(steps))
    return np.asarray(fallback(len(steps), max_points), dtype=int)


def final_snapshot(cfg: RunConfig, steps: np.ndarray) -> int | None:
    """Index of the snapshot a paper-exact run's script calls the final model (`checkpoints[-1]`, the last
    one on the grid); None for another run (its final model is the checkpoint at the stop step)."""
    if not paper_exact(cfg):
        return None
    grid = script_checkpoints(cfg, steps)
    return int(grid[-1]) if len(grid) else None
