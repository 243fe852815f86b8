"""The public face stays as recorded: `import grokscope as gs` exports the same names, of the same kinds,
signatures and members, and the CLI the same commands, options and help, as `fixtures/public_surface.json` holds
(recorded before the layout of issue 36 moved the modules). After a deliberate change, record it again:
`python tests/unit/test_public_surface.py > tests/fixtures/public_surface.json`."""

from __future__ import annotations

import argparse
import inspect
import json
import os
import sys
import types
from pathlib import Path

import grokscope
from grokscope.cli import build_parser, command_parsers

RECORD = Path(__file__).resolve().parents[1] / "fixtures" / "public_surface.json"


def _kind(obj: object) -> str:
    if inspect.isclass(obj):
        return "class"
    if inspect.isfunction(obj) or inspect.isbuiltin(obj):
        return "function"
    return type(obj).__name__


def _signature(obj: object) -> str | None:
    try:
        return str(inspect.signature(obj))
    except (TypeError, ValueError):
        return None


def api() -> dict[str, dict]:
    """Every public non-module attribute of the package: kind, signature and (classes) public members."""
    out = {}
    for name in sorted(dir(grokscope)):
        obj = getattr(grokscope, name)
        if name.startswith("_") and name != "__version__" or isinstance(obj, types.ModuleType):
            continue
        entry: dict = {"kind": _kind(obj)}
        if callable(obj):
            entry["signature"] = _signature(obj)
        if inspect.isclass(obj):
            entry["members"] = sorted(m for m in dir(obj) if not m.startswith("_"))
        if isinstance(obj, str):
            entry["value"] = obj
        out[name] = entry
    return out


def cli(columns: int = 100) -> dict[str, dict]:
    """Every command path ("" = the top level) with its options (flags, choices, default) and positionals, and
    its --help text at `columns` characters a line."""
    out, before = {}, os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = str(columns)  # argparse wraps help to the terminal's width
    try:
        for path, parser in command_parsers(build_parser()):
            options = {}
            for a in parser._actions:
                if isinstance(a, (argparse._HelpAction, argparse._SubParsersAction)):
                    continue
                key = "/".join(a.option_strings) or a.dest
                options[key] = {"choices": sorted(map(str, a.choices)) if a.choices else None,
                                "default": repr(a.default), "nargs": repr(a.nargs)}
            out[path] = {"options": options, "help": parser.format_help()}
    finally:
        if before is None:
            os.environ.pop("COLUMNS")
        else:
            os.environ["COLUMNS"] = before
    return out


def surface() -> dict:
    """What the record holds: `__all__`, the package's public attributes, the CLI."""
    return {"all": sorted(grokscope.__all__), "api": api(), "cli": cli()}


def test_public_api_is_unchanged():
    got, want = surface(), json.loads(RECORD.read_text())
    assert got["all"] == want["all"]
    assert sorted(got["api"]) == sorted(want["api"])
    for name, entry in want["api"].items():
        assert got["api"][name] == entry, name


def test_cli_commands_and_options_are_unchanged():
    got, want = surface()["cli"], json.loads(RECORD.read_text())["cli"]
    assert sorted(got) == sorted(want)
    for path in want:
        assert got[path]["options"] == want[path]["options"], path
        assert got[path]["help"] == want[path]["help"], path


if __name__ == "__main__":
    json.dump(surface(), sys.stdout, indent=1, sort_keys=True)
    sys.stdout.write("\n")
