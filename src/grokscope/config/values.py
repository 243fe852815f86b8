"""Typed values from loose input (a YAML spec, a mapping of overrides): a number YAML read as text, an integer
given as 3.0, a task set given as `add+mul`. Each refusal is one ConfigError naming where the value was."""

from __future__ import annotations

import math
from typing import Any

from grokscope.errors import ConfigError


def read_float(v: Any, where: str) -> float:
    """`v` as a finite float (YAML 1.1 reads 1e-3 as a string); a bool is no number."""
    if isinstance(v, bool):
        raise ConfigError(f"{where}: {v!r} is not a number")
    try:
        x = float(v)
    except (TypeError, ValueError):
        raise ConfigError(f"{where}: {v!r} is not a number") from None
    if not math.isfinite(x):
        raise ConfigError(f"{where}: {v!r} is not a finite number")
    return x


def read_int(v: Any, where: str, minimum: int | None = None) -> int:
    """`v` as an int (3, 3.0 or "3"), at least `minimum` when given."""
    if isinstance(v, bool) or not (isinstance(v, int) or (isinstance(v, float) and v.is_integer())):
        if isinstance(v, str):
            try:
                return read_int(int(float(v)) if float(v).is_integer() else v, where, minimum)
            except ValueError:
                pass
        raise ConfigError(f"{where}: {v!r} is not an integer")
    if minimum is not None and v < minimum:
        raise ConfigError(f"{where}={int(v)} must be >= {minimum}")
    return int(v)


def read_tasks(v: Any, where: str = "grid.tasks entry") -> tuple[str, ...]:
    """One run's task set: `add`, `add+mul`, `add,mul` or a list of names."""
    if isinstance(v, str):
        items = [s.strip() for s in v.replace("+", ",").split(",") if s.strip()]
    elif isinstance(v, (list, tuple)) and all(isinstance(x, str) for x in v):
        items = [s.strip() for s in v]
    else:
        raise ConfigError(f"{where} {v!r} must be a task name, 'add+mul', or a list of names")
    if not items:
        raise ConfigError(f"{where} {v!r} names no task")
    return tuple(items)
