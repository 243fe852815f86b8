"""`grokscope` command line: run, runs, and the analysis commands registered from grokscope.commands."""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from collections.abc import Sequence

from grokscope.errors import ConfigError, GrokscopeError

# Sub-command modules; each exposes register(subparsers).
COMMANDS = ("run", "runs", "analyze", "intervene", "fragility", "normmin", "sweep", "claims", "report")


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (exit 2) instead of a usage dump."""

    def error(self, message: str) -> None:  # type: ignore[override]
        sys.stderr.write(f"grokscope: error: {message}\n")
        raise SystemExit(2)


def csv_list(kind: type) -> callable:
    """argparse type for comma-separated lists, naming the bad item on error."""

    def parse(text: str) -> list:
        items = [s.strip() for s in text.split(",") if s.strip()]
        if not items:
            raise argparse.ArgumentTypeError(f"empty list {text!r}")
        try:
            return [kind(s) for s in items]
        except ValueError:
            bad = next(s for s in items if not _ok(kind, s))
            raise argparse.ArgumentTypeError(f"{bad!r} is not a valid {kind.__name__}") from None

    return parse


def _ok(kind: type, s: str) -> bool:
    try:
        kind(s)
        return True
    except ValueError:
        return False


def print_json(obj: object) -> None:
    sys.stdout.write(json.dumps(obj, indent=2, default=str) + "\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="grokscope", description=__doc__)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name in COMMANDS:
        try:
            mod = importlib.import_module(f"grokscope.commands.{name}")
        except ModuleNotFoundError as e:
            if e.name != f"grokscope.commands.{name}":
                raise
            continue
        mod.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
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


def require(cond: bool, message: str) -> None:
    """Raise a ConfigError (one line, exit 2) unless `cond`."""
    if not cond:
        raise ConfigError(message)


if __name__ == "__main__":
    raise SystemExit(main())
