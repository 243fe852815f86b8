"""`grokscope` command line: run, runs, and the analysis commands registered from grokscope.commands."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from grokscope.commands import analyze, claims, compare, fragility, intervene, normmin, report, run, runs, sweep
from grokscope.errors import GrokscopeError

# Sub-command modules, in help order; each exposes register(subparsers).
COMMANDS = (run, runs, analyze, intervene, fragility, normmin, sweep, claims, report, compare)


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (exit 2) instead of a usage dump."""

    def error(self, message: str) -> None:  # type: ignore[override]
        sys.stderr.write(f"grokscope: error: {message}\n")
        raise SystemExit(2)


def build_parser() -> argparse.ArgumentParser:
    """The parser with every sub-command registered."""
    parser = _Parser(prog="grokscope", description=__doc__)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for mod in COMMANDS:
        mod.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse `argv`, run the command; bad input is one line on stderr and exit code 2."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # argparse: --help (0) or a bad argument (2, one line already printed)
        return int(e.code or 0)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        return int(args.func(args) or 0)
    except GrokscopeError as e:
        sys.stderr.write(f"grokscope: error: {e}\n")
        return 2
    except KeyboardInterrupt:
        sys.stderr.write("grokscope: interrupted; rerun the same command to resume from the last checkpoint\n")
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
