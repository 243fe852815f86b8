"""`MonitorConfig`: what `grokscope.Monitor` records and how often; every check of its values lives here, and
`settings_of` builds it from the monitor's `config` and keyword settings."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from grokscope.errors import ConfigError

__all__ = ["MonitorConfig", "settings_of"]


@dataclass(frozen=True)
class MonitorConfig:
    """Cadences (in the user's steps; 0 turns a measurement off) and sizes of the monitor's records.

    Defaults keep the overhead near 6 % of a small model's training (benchmarks/monitor_overhead.py): K = 3
    commutator draws (4 gradient evaluations each) every 200 steps, the watched tensors every 100, λ_min off."""

    watch_every: int = 100  # watched tensors -> trajectory `attn.<name>` (what PCA reads)
    max_records: int = 500  # watched-tensor records kept; beyond it every other one is dropped (bounded memory)
    sketch_dim: int = 4096  # a watched tensor above `sketch_above` entries is a CountSketch this size (0: all full)
    sketch_above: int = 65536  # size above which a tensor is sketched (monitor/sketch.py; PC1% error: docs/monitor.md)
    n_snapshots: int = 20  # full parameter snapshots kept (thinned the same way); 0: none
    snapshot_every: int = 500  # a full parameter snapshot every N steps (`snap.<name>` in the trajectory)
    defect_every: int = 200  # inline commutator defect (K draws) -> defect.parquet
    draws: int = 3  # commutator draws K per defect measurement (4 gradient evaluations each)
    eta: float = 1e-3  # the defect's plain step size (docs/papers.md §4)
    defect_batch: int | None = None  # minibatch size of A and B (None: the batch source's own)
    hessian_every: int = 0  # periodic λ_min by Lanczos -> hessian.parquet
    hessian_groups: tuple[str, ...] = ()  # globs; each also gets λ_min of its Hessian block -> hessian_groups
    hessian_iters: int = 25  # Lanczos iterations per λ_min
    hessian_samples: int = 512  # the fixed training sample the Hessian is taken on
    defect_groups: bool = True  # defect per layer (share of ‖δ‖) -> defect_groups.parquet
    llc_every: int = 0  # the local learning coefficient by devinterp's SGLD (grokscope[llc]) -> llc.parquet
    llc_samples: int = 512  # the fixed training sample the SGLD chains run on
    llc_lr: float = 1e-6  # SGLD step size ε (grokscope.geometry.llc)
    llc_nbeta: float | None = None  # SGLD inverse temperature nβ (None: B / log B, B the sample size)
    llc_localization: float = 100.0  # SGLD localisation strength γ towards the measured weights
    llc_chains: int = 4  # independent SGLD chains per estimate
    llc_draws: int = 100  # SGLD draws per chain
    flush_every: int = 1000  # write the store every N steps (and at close)
    grok_acc: float = 0.98  # the trainer's grok rule on the logged test accuracy
    grok_patience: int = 3  # consecutive logged evaluations at grok_acc (the grok step is the first)
    grok_acc_90: float = 0.90  # the first logged test accuracy at this level is also recorded
    eval_mode: bool = True  # measure with the model in eval mode (no dropout), restored afterwards
    warn: bool = True  # run the early-warning detector on the defect series
    verbose: bool = True  # print warnings as they fire

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def __post_init__(self) -> None:
        if isinstance(self.hessian_groups, str) or not all(isinstance(g, str) for g in self.hessian_groups):
            raise ConfigError(f"monitor hessian_groups={self.hessian_groups!r} must be a list of glob patterns")
        object.__setattr__(self, "hessian_groups", tuple(self.hessian_groups))
        for name in ("watch_every", "max_records", "snapshot_every", "draws", "hessian_iters", "hessian_samples",
                     "flush_every", "grok_patience", "llc_samples", "llc_chains", "llc_draws"):
            v = getattr(self, name)
            if not isinstance(v, int) or v <= 0:
                raise ConfigError(f"monitor {name}={v!r} must be a positive integer")
        for name in ("n_snapshots", "defect_every", "hessian_every", "sketch_dim", "sketch_above", "llc_every"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 0:
                raise ConfigError(f"monitor {name}={v!r} must be an integer >= 0 (0 turns it off)")
        if self.max_records < 2:
            raise ConfigError(f"monitor max_records={self.max_records} must be >= 2")
        if not (self.llc_lr > 0 and self.llc_localization >= 0 and (self.llc_nbeta is None or self.llc_nbeta > 0)):
            raise ConfigError(f"monitor llc_lr={self.llc_lr!r} must be > 0, llc_localization >= 0, llc_nbeta > 0")
        if not self.eta > 0:
            raise ConfigError(f"monitor eta={self.eta!r} must be > 0")
        if self.defect_batch is not None and (not isinstance(self.defect_batch, int) or self.defect_batch <= 0):
            raise ConfigError(f"monitor defect_batch={self.defect_batch!r} must be a positive integer or None")
        for name in ("grok_acc", "grok_acc_90"):
            v = getattr(self, name)
            if not 0 < v <= 1:
                raise ConfigError(f"monitor {name}={v!r} must lie in (0, 1]")


def settings_of(config: MonitorConfig | None, overrides: dict[str, Any]) -> MonitorConfig:
    """`config` (None: the defaults) with the fields named in `overrides` replaced; an unknown name is a one-line
    ConfigError."""
    try:
        return MonitorConfig(**{**(config.to_dict() if config else {}), **overrides})
    except TypeError as e:
        raise ConfigError(f"Monitor: {e}") from None
