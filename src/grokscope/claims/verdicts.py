"""Verdicts of paper claims: the result row, and the rules that turn a measurement against a stated tolerance
into reproduced / partly / not reproduced / inconclusive (`verdict_range`, `verdict_value`, `verdict_count`,
`verdict_bool`, `combine`): a verdict is computed, never written by hand."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

REPRODUCED = "reproduced"
PARTLY = "partly"
NOT_REPRODUCED = "not reproduced"
INCONCLUSIVE = "inconclusive"
NOT_RUN = "not run"
VERDICTS = (REPRODUCED, PARTLY, NOT_REPRODUCED, INCONCLUSIVE, NOT_RUN)


@dataclass
class ClaimRow:
    """One paper claim: what the paper says, what we measured, the verdict and how it was reached."""

    claim: str
    paper: str
    measured: str
    verdict: str
    tolerance: str
    config: str
    scale: str
    note: str = ""
    paper_id: str = ""
    key: str = ""
    values: dict[str, Any] = field(default_factory=dict)  # the raw numbers behind `measured`

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _finite(x: float | None) -> bool:
    return x is not None and isinstance(x, (int, float)) and math.isfinite(float(x))


def verdict_range(measured: float | None, lo: float, hi: float, slack: float) -> str:
    """Inside [lo, hi] → reproduced; inside [lo − slack, hi + slack] → partly; else not reproduced;
    no measurement → inconclusive."""
    if not _finite(measured):
        return INCONCLUSIVE
    m = float(measured)
    if lo <= m <= hi:
        return REPRODUCED
    if lo - slack <= m <= hi + slack:
        return PARTLY
    return NOT_REPRODUCED


def verdict_value(measured: float | None, target: float, tol: float, partial: float = 2.0) -> str:
    """|measured − target| ≤ tol → reproduced; ≤ partial·tol → partly; else not reproduced."""
    if tol < 0:
        raise ValueError(f"tolerance {tol} must be >= 0")
    return verdict_range(measured, target - tol, target + tol, (partial - 1.0) * tol)


def verdict_count(k: int, n: int, partly_frac: float = 0.5) -> str:
    """k of n cases agree with the claim: all → reproduced; ≥ partly_frac → partly; none measured →
    inconclusive."""
    if n <= 0:
        return INCONCLUSIVE
    if k == n:
        return REPRODUCED
    return PARTLY if k / n >= partly_frac else NOT_REPRODUCED


def verdict_bool(ok: bool | None) -> str:
    """A yes/no claim: True → reproduced, False → not reproduced, None → inconclusive."""
    return INCONCLUSIVE if ok is None else (REPRODUCED if ok else NOT_REPRODUCED)


def combine(verdicts: Sequence[str]) -> str:
    """One verdict from parts: all reproduced → reproduced; any inconclusive part and none failed →
    inconclusive; all failed → not reproduced; otherwise partly."""
    vs = [v for v in verdicts if v != NOT_RUN]
    if not vs:
        return NOT_RUN
    if all(v == REPRODUCED for v in vs):
        return REPRODUCED
    if all(v == NOT_REPRODUCED for v in vs):
        return NOT_REPRODUCED
    if INCONCLUSIVE in vs and not any(v in (NOT_REPRODUCED, PARTLY) for v in vs):
        return INCONCLUSIVE if not any(v == REPRODUCED for v in vs) else PARTLY
    return PARTLY
