"""Sweep specs: a YAML mapping → a validated SweepSpec → its grid of run configs.

`load_spec` reads and validates a spec, `spec_from_dict` does the same for a parsed mapping, and `expand`
turns it into run configs (tasks × p × model × wd × lr × method × seeds), each validated.
"""

from __future__ import annotations

import itertools
import math
import os
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

import yaml

from grokscope.analyses import check_analysis
from grokscope.config import (
    PRESETS,
    DataConfig,
    MethodConfig,
    ModelConfig,
    OptimConfig,
    RunConfig,
    check_grid_size,
    method_config,
    script_budget,
    validate,
    with_overrides,
)
from grokscope.errors import ConfigError
from grokscope.runtime.devices import check_device

__all__ = ["GRID_KEYS", "SPEC_KEYS", "SweepSpec", "load_spec", "spec_from_dict", "expand"]

GRID_KEYS = ("tasks", "p", "model", "wd", "lr", "method", "seeds", "steps", "steps_by")
SPEC_KEYS = ("name", "base", "grid", "analyses", "out", "device", "resume", "max_runs", "max_retries")


@dataclass(frozen=True)
class SweepSpec:
    """A validated sweep: the base config, the grid axes (empty = keep the base value), the per-wd (or
    per-lr) step budgets, the analyses to run after training, where the store lives and on what device."""

    name: str
    base: RunConfig
    tasks: tuple[tuple[str, ...], ...] = ()
    p: tuple[int, ...] = ()
    model: tuple[str, ...] = ()  # model kinds
    wd: tuple[float, ...] = ()
    lr: tuple[float, ...] = ()
    # grokking methods, each with the weight decay it fixes (None: the wd axis applies)
    method: tuple[tuple[MethodConfig, float | None], ...] = ()
    seeds: tuple[int, ...] = ()
    steps: int | tuple[tuple[float, int], ...] | None = None  # one budget, or (key, budget) pairs
    steps_by: str = "wd"  # what a steps mapping is keyed by: wd or lr
    # no budget given (neither grid.steps nor base.steps): a paper preset's runs get their script's budget per wd
    script_budgets: bool = False
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
    spec = SweepSpec(
        name=str(raw.get("name") or default_name),
        base=_base_config(raw.get("base", "quick")),
        tasks=tuple(_task_list(v) for v in _as_list(grid.get("tasks"), "grid.tasks")),
        p=tuple(_int(v, "grid.p") for v in _as_list(grid.get("p"), "grid.p")),
        model=tuple(_model_kind(v) for v in _as_list(grid.get("model"), "grid.model")),
        wd=tuple(_float(v, "grid.wd") for v in _as_list(grid.get("wd"), "grid.wd")),
        lr=tuple(_float(v, "grid.lr") for v in _as_list(grid.get("lr"), "grid.lr")),
        method=tuple(_method(v) for v in _as_list(grid.get("method"), "grid.method")),
        seeds=tuple(_int(v, "grid.seeds") for v in _as_list(grid.get("seeds"), "grid.seeds")),
        steps=_steps(grid.get("steps"), steps_by),
        steps_by=steps_by,
        script_budgets=not (isinstance(raw.get("base"), dict) and "steps" in raw["base"]),
        analyses=tuple(check_analysis(v) for v in _as_list(raw.get("analyses"), "analyses")),
        out=Path(str(raw.get("out") or Path("runs") / str(raw.get("name") or default_name))),
        device=check_device(raw.get("device", "auto")),
        resume=_bool(raw.get("resume", False), "resume"),
        max_runs=None if raw.get("max_runs") is None else _positive(raw.get("max_runs"), "max_runs"),
        max_retries=_int(raw.get("max_retries", 2), "max_retries", minimum=0),
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


def _task_list(v: Any) -> tuple[str, ...]:
    if isinstance(v, str):
        items = [s.strip() for s in v.replace("+", ",").split(",") if s.strip()]
    elif isinstance(v, list) and all(isinstance(x, str) for x in v):
        items = [s.strip() for s in v]
    else:
        raise ConfigError(f"grid.tasks entry {v!r} must be a task name, 'add+mul', or a list of names")
    if not items:
        raise ConfigError(f"grid.tasks entry {v!r} names no task")
    return tuple(items)


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
            kw[f] = _float(kw[f], f"grid.method.{f}")
    if "window" in kw:
        kw["window"] = _int(kw["window"], "grid.method.window")
    return method_config(str(name), **kw), None if wd is None else _float(wd, "grid.method.wd")


def _float(v: Any, where: str) -> float:
    if isinstance(v, bool):
        raise ConfigError(f"{where}: {v!r} is not a number")
    try:
        x = float(v)  # YAML 1.1 reads 1e-3 as a string
    except (TypeError, ValueError):
        raise ConfigError(f"{where}: {v!r} is not a number") from None
    if not math.isfinite(x):
        raise ConfigError(f"{where}: {v!r} is not a finite number")
    return x


def _int(v: Any, where: str, minimum: int | None = None) -> int:
    if isinstance(v, bool) or not (isinstance(v, int) or (isinstance(v, float) and v.is_integer())):
        if isinstance(v, str):
            try:
                return _int(int(float(v)) if float(v).is_integer() else v, where, minimum)
            except ValueError:
                pass
        raise ConfigError(f"{where}: {v!r} is not an integer")
    if minimum is not None and v < minimum:
        raise ConfigError(f"{where}={int(v)} must be >= {minimum}")
    return int(v)


def _positive(v: Any, where: str) -> int:
    return _int(v, where, minimum=1)


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
        return tuple((_float(k, f"grid.steps key ({by})"), _positive(n, f"grid.steps[{k}]"))
                     for k, n in v.items())
    return _positive(v, "grid.steps")



def _base_config(raw: Any) -> RunConfig:
    """`base: quick` or `base: {preset: quick, steps: 200, optim: {wd: 0.5}, ...}` → a RunConfig."""
    if isinstance(raw, str):
        raw = {"preset": raw}
    if not isinstance(raw, dict):
        raise ConfigError(f"base must be a preset name or a mapping, not {raw!r}")
    raw = dict(raw)
    name = raw.pop("preset", "quick")
    if name not in PRESETS:
        raise ConfigError(f"base.preset: unknown preset {name!r}; choose from {', '.join(PRESETS)}")
    cfg = PRESETS[name]
    sections = {"data": DataConfig, "model": ModelConfig, "optim": OptimConfig, "method": MethodConfig}
    top = {f.name for f in fields(RunConfig)} - set(sections)
    for key, value in raw.items():
        if key in sections:
            if not isinstance(value, dict):
                raise ConfigError(f"base.{key} must be a mapping of fields, not {value!r}")
            known = {f.name for f in fields(sections[key])}
            bad = sorted(set(value) - known, key=str)
            if bad:
                raise ConfigError(f"base.{key}: unknown field {bad[0]!r}; "
                                  f"choose from {', '.join(sorted(known))}")
            value = dict(value)
            if key == "data" and "tasks" in value:
                value["tasks"] = _task_list(value["tasks"])
            if key == "method":
                cfg = replace(cfg, method=method_config(**value))
                continue
            if key == "optim" and value.get("batch") == "full":
                value["batch"] = None
            for f in ("lr", "wd", "beta1", "beta2", "eps", "clip", "momentum", "train_frac"):
                if f in value:
                    value[f] = _float(value[f], f"base.{key}.{f}")
            cfg = replace(cfg, **{key: replace(getattr(cfg, key), **value)})
        elif key in top:
            cfg = replace(cfg, **{key: value})
        else:
            raise ConfigError(f"base: unknown field {key!r}; give a RunConfig field, data, model or optim")
    try:
        return validate(cfg)
    except (TypeError, ValueError) as e:
        if isinstance(e, ConfigError):
            raise ConfigError(f"base: {e}") from None
        raise ConfigError(f"base: bad value ({e})") from None



def expand(spec: SweepSpec) -> list[RunConfig]:
    """Every grid point as a validated RunConfig, in grid order (tasks × p × model × wd × lr × method × seeds).
    A method that fixes its weight decay is trained once at that wd, whatever the wd axis holds."""
    b = spec.base
    check_grid_size({"tasks": len(spec.tasks), "p": len(spec.p), "model": len(spec.model), "wd": len(spec.wd),
                     "lr": len(spec.lr), "method": len(spec.method), "seeds": len(spec.seeds)})
    axes = itertools.product(spec.tasks or [b.data.tasks], spec.p or [b.data.p], spec.model or [b.model.kind],
                             spec.wd or [b.optim.wd], spec.lr or [b.optim.lr], spec.method or [(b.method, None)],
                             spec.seeds or [b.seed])
    out: list[RunConfig] = []
    fixed: set[str] = set()
    for tasks, p, kind, wd, lr, (method, method_wd), seed in axes:
        wd = wd if method_wd is None else method_wd
        cfg = with_overrides(b, tasks=tuple(tasks), p=int(p), kind=kind, wd=float(wd), lr=float(lr),
                             seed=int(seed), steps=_budget(spec, wd, lr), method=method)
        if method_wd is not None:
            if cfg.name in fixed:
                continue  # the same run again, from another value of the wd axis
            fixed.add(cfg.name)
        try:
            out.append(validate(cfg))
        except ConfigError as e:
            raise ConfigError(f"run {cfg.name}: {e}") from None
    seen: dict[str, int] = {}
    for c in out:
        seen[c.name] = seen.get(c.name, 0) + 1
        if seen[c.name] > 1:
            raise ConfigError(f"the grid gives two runs named {c.name!r}; remove the repeated value")
    return out


def _budget(spec: SweepSpec, wd: float, lr: float) -> int:
    if spec.steps is None:
        script = script_budget(spec.base.preset, wd) if spec.script_budgets else None
        return spec.base.steps if script is None else script
    if isinstance(spec.steps, int):
        return spec.steps
    key = wd if spec.steps_by == "wd" else lr
    for k, n in spec.steps:
        if math.isclose(k, key, rel_tol=1e-9, abs_tol=1e-12):
            return n
    raise ConfigError(f"grid.steps gives no budget for {spec.steps_by}={key:g}; "
                      f"it has {', '.join(f'{k:g}' for k, _ in spec.steps)}")
