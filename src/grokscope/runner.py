"""Compose the trainer with the measurements a config asks for (inline defects), and expand grids.

The trainer stays ignorant of analyses; this is the one place that turns config fields into probes.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from pathlib import Path

from grokscope.config import MethodConfig, RunConfig, check_axis, check_grid_size, with_overrides
from grokscope.geometry.commutator import defect_probe
from grokscope.training import EvalInfo, Probe, RunResult, train


def probes_for(cfg: RunConfig) -> tuple[Probe, ...]:
    """Inline measurements requested by the config (shared by every run of a batch)."""
    probes: list[Probe] = []
    if cfg.defect_every:
        probes.append(defect_probe(cfg.defect_every, draws=cfg.defect_draws, stream=cfg.defect_stream == "training"))
    return tuple(probes)


def grid(base: RunConfig, seeds: Sequence[int] = (), wds: Sequence[float] = (), lrs: Sequence[float] = (),
         methods: Sequence[MethodConfig] = ()) -> list[RunConfig]:
    """Every combination of seeds × weight decays × learning rates × methods on top of `base` (a repeated value
    or a grid too large to hold is refused before any config is built)."""
    for name, values in (("seed", seeds), ("wd", wds), ("lr", lrs)):
        check_axis(name, values)
    check_grid_size({"seeds": len(seeds), "wd": len(wds), "lr": len(lrs), "method": len(methods)})
    out = []
    for seed, wd, lr, method in itertools.product(seeds or [base.seed], wds or [base.optim.wd],
                                                  lrs or [base.optim.lr], methods or [base.method]):
        out.append(with_overrides(base, seed=int(seed), wd=float(wd), lr=float(lr), method=method))
    return out


def run_batch(cfgs: list[RunConfig], out: str | Path | None, device: str = "cpu", *, resume: bool = False,
              force: bool = False, on_eval: Callable[[EvalInfo], None] | None = None,
              compile: bool | None = None) -> list[RunResult]:
    """Train `cfgs` as one batched program with the probes their config asks for (`compile`: see `train`)."""
    return train(cfgs, out, device, resume=resume, force=force, probes=probes_for(cfgs[0]), on_eval=on_eval,
                 compile=compile)
