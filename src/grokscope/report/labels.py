"""Axis labels that stay readable whatever a model calls its parameters: grokscope's own names shortened
(`layers.0.attn.W_Q` → `W_Q@0`), anyone else's stripped of wrapper segments (`_original_component`, `_orig_mod`,
`module`) and of the part every name shares (shown once, in the axis title), then wrapped at dots."""

from __future__ import annotations

import re
import textwrap

from grokscope.formatting import short_name

__all__ = ["tick_labels"]

WRAPPERS = {"module"}  # DistributedDataParallel's prefix; segments starting with "_" are wrappers too
GROKSCOPE_NAME = re.compile(r"layers\.\d+\.attn\.W_[QKVO]$")


def _segments(name: str) -> list[str]:
    kept = [s for s in name.split(".") if s and not s.startswith("_") and s not in WRAPPERS]
    return kept or [name]


def _common(rows: list[list[str]], from_end: bool) -> int:
    """How many leading (or trailing) segments every row shares, leaving each row at least one of its own."""
    n = 0
    limit = min(len(r) for r in rows) - 1
    while n < limit:
        i = -1 - n if from_end else n
        if len({r[i] for r in rows}) != 1:
            break
        n += 1
    return n


def tick_labels(names: list[str], width: int = 14) -> tuple[list[str], str]:
    """(a label per name, lines of at most about `width` characters; the dotted part all names share, with `*`
    where the labels go: "" when nothing is shared). Labels stay distinct when the names are."""
    if all(GROKSCOPE_NAME.match(n) for n in names):
        return [short_name(n) for n in names], ""
    rows = [_segments(n) for n in names]
    head = _common(rows, False) if len(rows) > 1 else 0
    tail = _common([r[head:] for r in rows], True) if len(rows) > 1 else 0
    if tail and all(".".join(r[head:len(r) - tail]).replace(".", "").isdigit() for r in rows):
        tail -= 1  # bare layer numbers say little: keep the last shared segment (`0.weight`, not `0`)
    core = [".".join(r[head:len(r) - tail]) for r in rows]
    if len(set(core)) < len(set(names)):  # dropping wrappers merged two names: keep them whole
        core, head, tail = list(names), 0, 0
        rows = [n.split(".") for n in names]
    shared = ".".join([*rows[0][:head], "*", *rows[0][len(rows[0]) - tail:]]) if head or tail else ""
    wrapped = ["\n".join(textwrap.wrap(c.replace(".", ". "), width, break_long_words=True)).replace(". ", ".")
               for c in core]
    return wrapped, shared
