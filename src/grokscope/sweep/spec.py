"""Sweep specs: a YAML mapping → a validated SweepSpec → its grid of run configs.

`load_spec` reads and validates a spec, `spec_from_dict` does the same for a parsed mapping, and `expand`
turns it into run configs (tasks × p × model × wd × lr × method × seeds), each validated, through the one
path every command takes from a preset, overrides and a grid (`config.grid.build_configs`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from grokscope.analyses import check_analysis
from grokscope.config import Grid, MethodConfig, RunConfig, base_config, build_configs, method_config
from grokscope.config.values import read_float, read_int, read_tasks
from grokscope.errors import ConfigError
from grokscope.runtime.devices import check_device

__all__ = ["GRID_KEYS", "SPEC_KEYS", "SweepSpec", "load_spec", "spec_from_dict", "expand"]

GRID_KEYS = ("tasks", "p", "model", "wd", "lr", "method", "seeds", "steps", "steps_by")
SPEC_KEYS = ("name", "base", "grid", "analyses", "out", "device", "resume", "max_runs", "max_retries")


@dataclass(frozen=True)
class SweepSpec:
    """A validated sweep: the preset and overrides of its base, its grid (axes in product order and step
    budgets), the analyses to run after training, where the store lives and on what device."""

    name: str
    preset: str = "quick"
    overrides: dict[str, Any] = field(default_factory=dict)  # the spec's `base:` beyond its preset
    grid: Grid = Grid()
    analyses: tuple[str, ...] = ()
    out: Path = Path("runs")
    device: str = "auto"
    resume: bool = False  # continue stored runs whose config differs (e.g. a larger budget)
    max_runs: int | None = None
    max_retries: int = 2  # Ray: retries of a failed batch (it resumes from its checkpoints)


def load_spec(path: str | os.PathLike) -> SweepSpec:
    """Read a YAML sweep spec and validate every value (one-line ConfigError naming the bad one)."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"sweep spec {str(path)!r} is a folder; give a YAML spec file (see configs/)")
    if not path.is_file():
        raise ConfigError(f"sweep spec {str(path)!r} does not exist")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        raise ConfigError(f"{path}: not valid YAML{where}: {getattr(e, 'problem', None) or e}") from None
    return spec_from_dict(raw, default_name=path.stem)


def spec_from_dict(raw: Any, default_name: str = "sweep") -> SweepSpec:
    """A SweepSpec from the parsed YAML mapping, validated (every grid point is built and checked)."""
    if raw is None:
        raise ConfigError(f"the sweep spec {default_name!r} is empty; give at least `base:` and `grid:`")
    if not isinstance(raw, dict):
        raise ConfigError(f"a sweep spec must be a mapping with keys {', '.join(SPEC_KEYS)}")
    unknown = sorted(set(raw) - set(SPEC_KEYS), key=str)
    if unknown:
        raise ConfigError(f"unknown sweep key {unknown[0]!r}; choose from {', '.join(SPEC_KEYS)}")
    grid = raw.get("grid") or {}
    if not isinstance(grid, dict):
        raise ConfigError(f"grid must be a mapping of {', '.join(GRID_KEYS)}, not {grid!r}")
    bad = sorted(set(grid) - set(GRID_KEYS), key=str)
    if bad:
        raise ConfigError(f"unknown grid key {bad[0]!r}; choose from {', '.join(GRID_KEYS)}")
    steps_by = grid.get("steps_by", "wd")
    if steps_by not in ("wd", "lr"):
        raise ConfigError(f"grid.steps_by={steps_by!r} must be wd or lr")
    preset, overrides = _base(raw.get("base", "quick"))
    base_config(preset, overrides, "base")  # the base's own errors first, named as such
    axes = {"tasks": [read_tasks(v) for v in _as_list(grid.get("tasks"), "grid.tasks")],
            "p": [read_int(v, "grid.p") for v in _as_list(grid.get("p"), "grid.p")],
            "model": [_model_kind(v) for v in _as_list(grid.get("model"), "grid.model")],
            "wd": [read_float(v, "grid.wd") for v in _as_list(grid.get("wd"), "grid.wd")],
            "lr": [read_float(v, "grid.lr") for v in _as_list(grid.get("lr"), "grid.lr")],
            "method": [_method(v) for v in _as_list(grid.get("method"), "grid.method")],
            "seeds": [read_int(v, "grid.seeds") for v in _as_list(grid.get("seeds"), "grid.seeds")]}
    spec = SweepSpec(
        name=str(raw.get("name") or default_name),
        preset=preset,
        overrides=overrides,
        grid=Grid.of(_steps(grid.get("steps"), steps_by), steps_by, **axes),
        analyses=tuple(check_analysis(v) for v in _as_list(raw.get("analyses"), "analyses")),
        out=Path(str(raw.get("out") or Path("runs") / str(raw.get("name") or default_name))),
        device=check_device(raw.get("device", "auto")),
        resume=_bool(raw.get("resume", False), "resume"),
        max_runs=None if raw.get("max_runs") is None else _positive(raw.get("max_runs"), "max_runs"),
        max_retries=read_int(raw.get("max_retries", 2), "max_retries", minimum=0),
    )
    expand(spec)  # builds and validates every grid point
    return spec


def _as_list(v: Any, where: str) -> list:
    """A scalar or a list → a list. For `tasks` each entry is one run's task set: `add`, `add+mul`
    or `[add, mul]`; so `tasks: [add, mul]` means two single-task runs, `[add+mul]` one dual-task run."""
    if v is None:
        return []
    if isinstance(v, dict):
        raise ConfigError(f"{where} must be a value or a list, not a mapping")
    if not isinstance(v, list):
        return [v]
    if not v:
        raise ConfigError(f"{where} is an empty list; leave it out to keep the base value")
    return v


def _method(v: Any) -> tuple[MethodConfig, float | None]:
    """`grokfast-ema`, or a mapping `{name: orthograd, wd: 0, alpha: .., lamb: .., window: ..}`: the method
    and the weight decay it fixes (None: the grid's wd axis applies to it)."""
    if isinstance(v, str):
        return method_config(v), None
    if not isinstance(v, dict) or "name" not in v:
        raise ConfigError(f"grid.method entry {v!r} must be a method name or a mapping with a name")
    kw = dict(v)
    name, wd = kw.pop("name"), kw.pop("wd", None)
    known = {f.name for f in fields(MethodConfig)} - {"name"}
    bad = sorted(set(kw) - known, key=str)
    if bad:
        raise ConfigError(f"grid.method: unknown field {bad[0]!r}; choose from name, wd, {', '.join(sorted(known))}")
    for f in ("alpha", "lamb"):
        if kw.get(f) is not None:
            kw[f] = read_float(kw[f], f"grid.method.{f}")
    if "window" in kw:
        kw["window"] = read_int(kw["window"], "grid.method.window")
    return method_config(str(name), **kw), None if wd is None else read_float(wd, "grid.method.wd")


def _positive(v: Any, where: str) -> int:
    return read_int(v, where, minimum=1)


def _bool(v: Any, where: str) -> bool:
    if not isinstance(v, bool):
        raise ConfigError(f"{where}={v!r} must be true or false")
    return v


def _model_kind(v: Any) -> str:
    if v not in ("trunk", "transformer1", "mlp"):
        raise ConfigError(f"grid.model: unknown model kind {v!r}; choose trunk, transformer1 or mlp")
    return v


def _steps(v: Any, by: str) -> int | tuple[tuple[float, int], ...] | None:
    """One budget, or a mapping {wd (or lr) value: budget}."""
    if v is None:
        return None
    if isinstance(v, dict):
        if not v:
            raise ConfigError("grid.steps mapping is empty")
        return tuple((read_float(k, f"grid.steps key ({by})"), _positive(n, f"grid.steps[{k}]"))
                     for k, n in v.items())
    return _positive(v, "grid.steps")


def _base(raw: Any) -> tuple[str, dict[str, Any]]:
    """`base: quick` or `base: {preset: quick, steps: 200, optim: {wd: 0.5}, ...}` → (preset, overrides)."""
    if isinstance(raw, str):
        return raw, {}
    if not isinstance(raw, dict):
        raise ConfigError(f"base must be a preset name or a mapping, not {raw!r}")
    overrides = dict(raw)
    return str(overrides.pop("preset", "quick")), overrides


def expand(spec: SweepSpec) -> list[RunConfig]:
    """Every grid point as a validated RunConfig, in grid order (tasks × p × model × wd × lr × method × seeds).
    A method that fixes its weight decay is trained once at that wd, whatever the wd axis holds."""
    return build_configs(spec.preset, spec.overrides, spec.grid, where="base")
