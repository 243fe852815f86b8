"""Paper claims: each claim is a function of a ClaimContext returning a ClaimRow (measured vs claimed).

`evaluate(paper, ctx)` runs (or reuses from the store) the experiments behind every claim of one paper
(P1, P2 or P3; see docs/papers.md §5) and returns their rows.
"""

from __future__ import annotations

from grokscope.claims import p1, p2, p3
from grokscope.claims.context import ClaimContext, run_claims
from grokscope.claims.verdicts import (
    INCONCLUSIVE,
    NOT_REPRODUCED,
    NOT_RUN,
    PARTLY,
    REPRODUCED,
    VERDICTS,
    ClaimRow,
    combine,
    verdict_bool,
    verdict_count,
    verdict_range,
    verdict_value,
)
from grokscope.errors import ConfigError

__all__ = [
    "PAPERS",
    "evaluate",
    "ClaimContext",
    "ClaimRow",
    "VERDICTS",
    "REPRODUCED",
    "PARTLY",
    "NOT_REPRODUCED",
    "INCONCLUSIVE",
    "NOT_RUN",
    "verdict_range",
    "verdict_value",
    "verdict_count",
    "verdict_bool",
    "combine",
]

PAPERS = ("p1", "p2", "p3")
CLAIMS = {"p1": p1.CLAIMS, "p2": p2.CLAIMS, "p3": p3.CLAIMS}


def claims_of(paper: str) -> tuple:
    """The claim functions of one paper ('p1', 'p2' or 'p3')."""
    paper = paper.lower()
    if paper not in PAPERS:
        raise ConfigError(f"unknown paper {paper!r}; choose from {', '.join(PAPERS)}")
    return CLAIMS[paper]


def evaluate(paper: str, ctx: ClaimContext, only: tuple[str, ...] = ()) -> list[ClaimRow]:
    """Every claim of `paper` (or those whose function name contains one of `only`) as ClaimRows."""
    fns = claims_of(paper)
    if only:
        fns = tuple(f for f in fns if any(o in f.__name__ for o in only))
        if not fns:
            raise ConfigError(f"no {paper} claim matches {', '.join(only)}")
    return run_claims(fns, ctx, paper.upper())
