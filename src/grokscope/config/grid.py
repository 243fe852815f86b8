"""Preset + overrides + grid → validated RunConfigs: the one path of `grokscope run` and of sweep specs.

`build_configs(preset, overrides, grid)` starts from a named preset, applies the overrides (`base_config`),
then takes the product of the grid's axes in the order the grid gives them, each point a validated RunConfig.
The rules every caller gets alike:
- the step budget: one given (an override `steps`, or the grid's `steps`, one value or one per wd / lr) wins;
  without one, a paper preset's run gets the budget its authors' script gives its weight decay
  (`presets.script_budget`), and another preset keeps its own;
- checkpoint rounding: an override of `steps` without one of `checkpoint_every` lowers checkpoint_every to the
  budget rounded up to a multiple of eval_every, so a short run's config names the checkpoint it writes;
- a repeated value on an axis, a grid too large to hold, or two points that are one run are refused before
  anything trains; a method that fixes its weight decay is built once, whatever the wd axis holds.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields, replace
from typing import Any

from grokscope.config.presets import PRESETS, script_budget, with_overrides
from grokscope.config.schema import DataConfig, MethodConfig, ModelConfig, OptimConfig, RunConfig, method_config
from grokscope.config.validation import check_axis, check_grid_size, validate
from grokscope.config.values import read_float, read_tasks
from grokscope.errors import ConfigError

# grid axis → the RunConfig field it sets (through `with_overrides`); "method" takes (MethodConfig, wd or None)
AXES = {"tasks": "tasks", "p": "p", "model": "kind", "wd": "wd", "lr": "lr", "method": "method", "seeds": "seed"}
SECTIONS = {"data": DataConfig, "model": ModelConfig, "optim": OptimConfig, "method": MethodConfig}
FLOATS = ("lr", "wd", "beta1", "beta2", "eps", "clip", "momentum", "train_frac")
Budget = int | tuple[tuple[float, int], ...] | None


@dataclass(frozen=True)
class Grid:
    """A grid's axes in product order, outermost first, each (axis, values) with an axis of `AXES` (no values:
    the base value), and its step budget: one for every run, or (wd or lr value, budget) pairs keyed by
    `steps_by`; None: the override's or the script's (see the module)."""

    axes: tuple[tuple[str, tuple[Any, ...]], ...] = ()  # (axis, values) pairs, outermost first
    steps: Budget = None  # one budget for every run, (value, budget) pairs keyed by steps_by, or None
    steps_by: str = "wd"  # the axis (wd or lr) whose value picks a run's budget from `steps` pairs

    @classmethod
    def of(cls, steps: Budget = None, steps_by: str = "wd", **axes: Sequence[Any]) -> Grid:
        """`Grid.of(seeds=[1, 2], wd=[0.1, 1])`: the axes in the order given."""
        bad = sorted(set(axes) - set(AXES))
        if bad:
            raise ConfigError(f"unknown grid axis {bad[0]!r}; choose from {', '.join(AXES)}")
        return cls(tuple((k, tuple(v)) for k, v in axes.items()), steps, steps_by)


def base_config(preset: str, overrides: Mapping[str, Any] | None = None, where: str = "") -> RunConfig:
    """The preset `preset` with `overrides`, validated: a section as a mapping of its fields (`optim={"wd": 0.1}`),
    or one field by name, a RunConfig field (`steps=200`) or a section's (`wd=0.1`). Numbers given as text are
    read, `tasks` may be `add+mul`, `batch` may be "full". `where` names the source in errors ("base": a spec)."""
    at = f"{where}." if where else ""
    if preset not in PRESETS:
        raise ConfigError(f"{at and at + 'preset: '}unknown preset {preset!r}; choose from {', '.join(PRESETS)}")
    cfg, flat = PRESETS[preset], {}
    top = {f.name for f in fields(RunConfig)} - set(SECTIONS)
    by_name = {f.name for kind in SECTIONS.values() for f in fields(kind)} - {"name"}
    for key, value in (overrides or {}).items():
        if key in SECTIONS:
            cfg = _with_section(cfg, key, value, at)
        elif key in top or key in by_name:
            flat[key] = _read(key, value, f"{at}{key}")
        else:
            raise ConfigError(f"{where or 'overrides'}: unknown field {key!r}; give a RunConfig field, data, model "
                              "or optim")
    cfg = with_overrides(cfg, **flat)
    if "steps" in flat and "checkpoint_every" not in flat and cfg.eval_every > 0:
        cfg = with_overrides(cfg, checkpoint_every=min(cfg.checkpoint_every, _round_up(cfg.steps, cfg.eval_every)))
    try:
        return validate(cfg)
    except (TypeError, ValueError) as e:
        if not where:
            raise
        if isinstance(e, ConfigError):
            raise ConfigError(f"{where}: {e}") from None
        raise ConfigError(f"{where}: bad value ({e})") from None


def _with_section(cfg: RunConfig, key: str, value: Any, at: str) -> RunConfig:
    """`cfg` with the fields of one section replaced by the mapping `value`."""
    if not isinstance(value, Mapping):
        raise ConfigError(f"{at}{key} must be a mapping of fields, not {value!r}")
    known = {f.name for f in fields(SECTIONS[key])}
    bad = sorted(set(value) - known, key=str)
    if bad:
        raise ConfigError(f"{at}{key}: unknown field {bad[0]!r}; choose from {', '.join(sorted(known))}")
    if key == "method":
        return replace(cfg, method=method_config(**value))
    value = {k: _read(k, v, f"{at}{key}.{k}") for k, v in value.items()}
    return replace(cfg, **{key: replace(getattr(cfg, key), **value)})


def _read(key: str, value: Any, where: str) -> Any:
    """An override's value in its field's type, where loose input spells it otherwise."""
    if key in FLOATS:
        return read_float(value, where)
    if key == "tasks":
        return read_tasks(value, "grid.tasks entry")
    if key == "batch" and value == "full":
        return None
    return value


def _round_up(n: int, k: int) -> int:
    return max(k, -(-n // k) * k)


def build_configs(preset: str, overrides: Mapping[str, Any] | None = None, grid: Grid | None = None,
                  where: str = "") -> list[RunConfig]:
    """Every point of `grid` over the preset with `overrides`, as validated RunConfigs in grid order (see the
    module for the rules). `where` names the source in errors: "base" prefixes the base's and "run <name>" each
    point's (a spec); "" leaves them as validation words them (the command line)."""
    grid = grid or Grid()
    overrides = dict(overrides or {})
    base = base_config(preset, overrides, where)
    axes = dict(grid.axes)
    for name, values in axes.items():
        if name != "method":
            check_axis("seed" if name == "seeds" else name, values)
    check_grid_size({name: len(values) for name, values in axes.items()})
    defaults = {"tasks": base.data.tasks, "p": base.data.p, "model": base.model.kind, "wd": base.optim.wd,
                "lr": base.optim.lr, "method": (base.method, None), "seeds": base.seed}
    names = list(axes)
    script = "steps" not in overrides and grid.steps is None
    out: list[RunConfig] = []
    fixed: set[str] = set()
    for point in itertools.product(*(values or (defaults[n],) for n, values in axes.items())):
        at = dict(zip(names, point))
        method, method_wd = _method(at.get("method", (base.method, None)))
        wd = float(at.get("wd", base.optim.wd) if method_wd is None else method_wd)
        lr = float(at.get("lr", base.optim.lr))
        kw = {AXES[n]: _axis_value(n, v) for n, v in at.items() if n not in ("method", "wd")}
        cfg = with_overrides(base, **kw, wd=wd, method=method, steps=_budget(grid, base, wd, lr, script))
        if method_wd is not None:
            if cfg.name in fixed:
                continue  # the same run again, from another value of the wd axis
            fixed.add(cfg.name)
        try:
            out.append(validate(cfg))
        except ConfigError as e:
            if not where:
                raise
            raise ConfigError(f"run {cfg.name}: {e}") from None
    _refuse_repeats(out)
    return out


def _method(v: MethodConfig | tuple[MethodConfig, float | None]) -> tuple[MethodConfig, float | None]:
    """A method axis value: the method and the weight decay it fixes (None: the wd axis applies)."""
    return (v, None) if isinstance(v, MethodConfig) else v


def _axis_value(name: str, v: Any) -> Any:
    return tuple(v) if name == "tasks" else int(v) if name in ("p", "seeds") else float(v) if name == "lr" else v


def _budget(grid: Grid, base: RunConfig, wd: float, lr: float, script: bool) -> int:
    """A point's step budget: the grid's, else the script's for its wd (`script`: no budget was given), else the
    base's."""
    if grid.steps is None:
        steps = script_budget(base.preset, wd) if script else None
        return base.steps if steps is None else steps
    if isinstance(grid.steps, int):
        return grid.steps
    key = wd if grid.steps_by == "wd" else lr
    for k, n in grid.steps:
        if math.isclose(k, key, rel_tol=1e-9, abs_tol=1e-12):
            return n
    raise ConfigError(f"grid.steps gives no budget for {grid.steps_by}={key:g}; "
                      f"it has {', '.join(f'{k:g}' for k, _ in grid.steps)}")


def _refuse_repeats(cfgs: list[RunConfig]) -> None:
    seen: set[str] = set()
    for c in cfgs:
        if c.name in seen:
            raise ConfigError(f"the grid gives two runs named {c.name!r}; remove the repeated value")
        seen.add(c.name)
