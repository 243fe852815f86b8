"""Small value helpers shared by the analyses, the report and the commands: JSON-safe numbers, short text."""

from __future__ import annotations

import math
from typing import Any

__all__ = ["num", "fmt", "short_name"]


def num(x: Any) -> float | None:
    """`x` as a float, None when it is missing, not a number, or not finite (JSON-safe)."""
    try:
        x = float(x)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def fmt(v: Any, spec: str | None = None) -> str:
    """A table cell: '—' for None/NaN/±inf; a float in format `spec` (e.g. '.3f'), or without one as an
    integer when it is whole; anything else as str."""
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "—"
    if isinstance(v, float):
        if spec is not None:
            return f"{v:{spec}}"
        return str(int(v)) if v.is_integer() else str(v)
    return str(v)


def short_name(name: str) -> str:
    """`layers.0.attn.W_Q` → `W_Q@0` (other names unchanged)."""
    parts = name.split(".")
    return f"{parts[-1]}@{parts[1]}" if len(parts) == 4 and parts[0] == "layers" else name
