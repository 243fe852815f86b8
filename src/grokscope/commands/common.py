"""What the sub-commands share: argparse types and printing JSON on stdout."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable

from grokscope.runtime.threads import MAX_THREADS
from grokscope.store import jsonable

__all__ = ["csv_list", "print_json", "threads_option"]


def csv_list(kind: type) -> Callable[[str], list]:
    """argparse type for comma-separated lists, naming the bad item on error."""

    def parse(text: str) -> list:
        items = [s.strip() for s in text.split(",") if s.strip()]
        if not items:
            raise argparse.ArgumentTypeError(f"empty list {text!r}")
        out = []
        for s in items:
            try:
                out.append(kind(s))
            except ValueError:
                raise argparse.ArgumentTypeError(f"{s!r} is not a valid {kind.__name__}") from None
        return out

    return parse


def threads_option(text: str) -> int | str:
    """argparse type for --threads: "auto" or a whole number of threads in 1..MAX_THREADS, naming a bad value."""
    if text.strip() == "auto":
        return "auto"
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"threads {text!r} is not a whole number or 'auto'") from None
    if not 1 <= n <= MAX_THREADS:
        raise argparse.ArgumentTypeError(f"threads {text!r} must be between 1 and {MAX_THREADS} (or 'auto')")
    return n


def print_json(obj: object) -> None:
    """`obj` as strict JSON (NaN → null) on stdout."""
    sys.stdout.write(json.dumps(jsonable(obj), indent=2, allow_nan=False) + "\n")
