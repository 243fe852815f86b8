"""grokscope: train grokking runs as one batched program, then measure the geometry of their training
(trajectory PCA, commutator defects, curvature, interventions) and check the papers' claims."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator, Sequence

import torch

from grokscope.commands import analyze, claims, compare, fragility, intervene, normmin, report, run, runs, sweep
from grokscope.commands.common import threads_option
from grokscope.errors import GrokscopeError
from grokscope.runtime.threads import apply_threads, machine_threads

# Sub-command modules, in help order; each exposes register(subparsers).
COMMANDS = (run, runs, analyze, intervene, fragility, normmin, sweep, claims, report, compare)

# One example per command, shown at the end of its --help (tested: every command and verb has one).
EXAMPLES = {
    "": "grokscope run                 # the quick CPU preset: groks in ~20 s, then its geometry summary\n"
        "  grokscope COMMAND --help      # what a command does, its options and an example",
    "run": "grokscope run --seeds 42,137 --wd 0.3,1 --out runs   # 4 runs as one batched program",
    "runs": "grokscope runs list runs/",
    "runs list": "grokscope runs list runs/ --json",
    "runs show": "grokscope runs show runs/add-p31-trunk-wd1-lr0.005-s42",
    "runs tensorboard": "grokscope runs tensorboard runs/ --out tb/   # then: tensorboard --logdir tb/",
    "runs warnings": "grokscope runs warnings runs/ --detector multi   # would the early warning have fired?",
    "analyze": "grokscope analyze runs/ --what pca,defect",
    "intervene": "grokscope intervene runs/add-p31-trunk-wd1-lr0.005-s42 --kind deletion --fractions 0.05,0.5",
    "fragility": "grokscope fragility runs/add-p31-trunk-wd1-lr0.005-s42 --k 10",
    "normmin": "grokscope normmin toy",
    "normmin mlp": "grokscope normmin mlp --seeds 42 --steps 3000 --every 50 --out normmin/   # ~30 s (every step: "
                   "~1 s a step)",
    "normmin decoupled": "grokscope normmin decoupled --seeds 0 --steps 2000   # ~1 min",
    "normmin toy": "grokscope normmin toy --lams 0.01,0.1",
    "normmin run": "grokscope normmin run runs/add-p31-trunk-wd1-lr0.005-s42 --max-snapshots 10",
    "sweep": "grokscope sweep configs/quick-wd.yaml --dry-run   # the plan; drop --dry-run to train",
    "claims": "grokscope claims p3 --only toy   # measured vs claimed, with verdicts",
    "compare": "grokscope compare runs/ --out cmp/   # per method: grok step, speed-up, onset, lead, PC1%, ρ",
    "report": "grokscope report runs/ --out report/   # then open report/index.html",
}

# The commands that train or compute, each given --threads (tested: every command with --device is here).
THREADED = ("run", "analyze", "intervene", "fragility", "normmin mlp", "normmin decoupled", "normmin toy",
            "normmin run", "sweep", "claims", "report", "compare")
# Help of options several commands share, for those that do not word their own.
COMMON_HELP = {"--json": "print only JSON on stdout", "--device": "cpu (default), cuda, cuda:N or auto"}
THREADS_HELP = ("CPU threads for torch: N, or auto (default): the idle cores (usable cores minus the 1-minute load "
                "average, at least 1), unless OMP_NUM_THREADS or MKL_NUM_THREADS is set")


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
    commands = dict(command_parsers(parser))
    for path in THREADED:
        commands[path].add_argument("--threads", type=threads_option, default="auto", metavar="N|auto",
                                    help=THREADS_HELP)
    _document(parser)
    return parser


def command_parsers(parser: argparse.ArgumentParser, path: str = "") -> Iterator[tuple[str, argparse.ArgumentParser]]:
    """(path, parser) of `parser` and of its sub-commands, recursively ("" is the top level, then "runs list")."""
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                yield from command_parsers(child, f"{path} {name}".strip())


def _document(parser: argparse.ArgumentParser) -> None:
    """Give `parser` and its sub-commands, recursively, a description (their one-line help), an example, and
    the shared options their help (`COMMON_HELP`)."""
    for path, command in command_parsers(parser):
        command.formatter_class = argparse.RawDescriptionHelpFormatter
        if path in EXAMPLES:
            command.epilog = f"example:\n  {EXAMPLES[path]}"
        for action in command._actions:
            if action.help is None and action.option_strings and action.option_strings[0] in COMMON_HELP:
                action.help = COMMON_HELP[action.option_strings[0]]
            if isinstance(action, argparse._SubParsersAction):
                helps = {a.dest: a.help for a in action._choices_actions}
                for name, child in action.choices.items():  # a help is %-formatted, a description is not
                    child.description = child.description or (helps.get(name) or "").replace("%%", "%") or None


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
    restore = _set_threads(getattr(args, "threads", None))
    try:
        return int(args.func(args) or 0)
    except GrokscopeError as e:
        sys.stderr.write(f"grokscope: error: {e}\n")
        return 2
    except OSError as e:  # the machine, not the input: a full disk, a vanished folder; files stay whole
        where = f": {e.filename}" if e.filename else ""
        sys.stderr.write(f"grokscope: error: {e.strerror or e}{where}; the store keeps its last complete files\n")
        return 1
    except KeyboardInterrupt:
        sys.stderr.write("grokscope: interrupted; rerun the same command to resume from the last checkpoint\n")
        return 130
    finally:  # main() called from Python leaves torch's threads as it found them
        if restore is not None:
            torch.set_num_threads(restore)


def _set_threads(option: int | str | None) -> int | None:
    """Apply a command's --threads (one line on stderr when it changes torch's count); the count to restore."""
    if option is None:
        return None
    n, why = machine_threads(option)
    if n is None or n == torch.get_num_threads():
        return None
    sys.stderr.write(f"threads: {n} ({why})\n")
    return apply_threads(n)


if __name__ == "__main__":
    raise SystemExit(main())
