"""When the monitor measures: each measurement on the multiples of its cadence in the user's steps, the kept series
(watched tensors, snapshots) on their cadence times the stride their thinning reached (`records.thin`)."""

from __future__ import annotations

from grokscope.monitor.settings import MonitorConfig

__all__ = ["MEASUREMENTS", "due"]

MEASUREMENTS = ("watch", "snapshot", "defect", "hessian", "llc")


def due(cfg: MonitorConfig, step: int, watch_stride: int, snap_stride: int, force: bool = False) -> set[str]:
    """The measurements of `MEASUREMENTS` that fall on `step` (every configured one when `force`)."""
    on = {"watch": force or step % (cfg.watch_every * watch_stride) == 0,
          "snapshot": bool(cfg.n_snapshots) and (force or step % (cfg.snapshot_every * snap_stride) == 0),
          "defect": bool(cfg.defect_every) and (force or step % cfg.defect_every == 0),
          "hessian": bool(cfg.hessian_every) and (force or step % cfg.hessian_every == 0),
          "llc": bool(cfg.llc_every) and (force or step % cfg.llc_every == 0)}
    return {name for name in MEASUREMENTS if on[name]}
