"""The new user's path: every command's --help says what it does with an example, and the README's Python API
snippet runs as printed on the CPU (with a smaller step budget substituted)."""

from __future__ import annotations

import argparse
import re

import pytest

from grokscope.cli import EXAMPLES, build_parser, command_parsers, main

from conftest import ROOT

README = ROOT / "README.md"


def _commands(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    out = [path]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                out += _commands(child, (*path, name))
    return out


COMMANDS = _commands(build_parser())


def test_every_command_has_an_example():
    assert len(COMMANDS) >= 16  # 9 commands, runs list/show, normmin mlp/decoupled/toy/run, and the top level
    assert {" ".join(c) for c in COMMANDS} == set(EXAMPLES)


@pytest.mark.parametrize("path", COMMANDS, ids=[" ".join(c) or "grokscope" for c in COMMANDS])
def test_help_says_what_and_shows_an_example(path, capsys):
    assert main([*path, "--help"]) == 0
    out = capsys.readouterr().out
    body = out.split("\n\n")
    assert len(body) >= 3 and body[1].strip(), out  # usage, then a description paragraph
    example = out.split("example:\n", 1)[1]
    assert example.strip().startswith(f"grokscope {' '.join(path)}".strip()), example


@pytest.mark.parametrize("path", COMMANDS, ids=[" ".join(c) or "grokscope" for c in COMMANDS])
def test_every_argument_says_what_it_is(path, capsys):
    parser = dict(command_parsers(build_parser()))[" ".join(path)]
    bare = [a.option_strings[0] if a.option_strings else a.dest for a in parser._actions
            if not isinstance(a, argparse._SubParsersAction) and not a.help]
    assert bare == [], f"grokscope {' '.join(path)}: no help for {bare}"
    assert main([*path, "--help"]) == 0
    assert "%%" not in capsys.readouterr().out  # argparse %-formats helps, not descriptions


def test_no_command_prints_the_help(capsys):
    assert main([]) == 0
    assert "COMMAND --help" in capsys.readouterr().out


def test_readme_python_snippet_runs_as_printed(tmp_path, monkeypatch, capsys):
    text = README.read_text()
    block = re.search(r"## Python API\s+```python\n(.*?)```", text, re.S)
    assert block, "README.md has no Python API snippet"
    code = block.group(1)
    assert code.count("steps=3000") == 1, "the snippet's step budget is what this test shrinks"
    monkeypatch.chdir(tmp_path)
    exec(compile(code.replace("steps=3000", "steps=200"), "README.md", "exec"), {"__name__": "readme"})
    out = capsys.readouterr().out
    assert "add-p31-trunk-wd1-lr0.005-s42" in out
    assert (tmp_path / "runs" / "add-p31-trunk-wd1-lr0.005-s42" / "pca.parquet").exists()
