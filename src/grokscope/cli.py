"""grokscope: train grokking runs as one batched program, then measure the geometry of their training
(trajectory PCA, commutator defects, curvature, interventions) and check the papers' claims."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from grokscope.commands import analyze, claims, compare, fragility, intervene, normmin, report, run, runs, sweep
from grokscope.errors import GrokscopeError

# Sub-command modules, in help order; each exposes register(subparsers).
COMMANDS = (run, runs, analyze, intervene, fragility, normmin, sweep, claims, report, compare)

# One example per command, shown at the end of its --help (tested: every command and verb has one).
EXAMPLES = {
    "": "grokscope run                 # the quick CPU preset: groks in ~10 s, then its geometry summary\n"
        "  grokscope COMMAND --help      # what a command does, its options and an example",
    "run": "grokscope run --seeds 42,137 --wd 0.3,1 --out runs   # 4 runs as one batched program",
    "runs": "grokscope runs list runs/",
    "runs list": "grokscope runs list runs/ --json",
    "runs show": "grokscope runs show runs/add-p31-trunk-wd1-lr0.005-s42",
    "runs tensorboard": "grokscope runs tensorboard runs/ --out tb/   # then: tensorboard --logdir tb/",
    "runs warnings": "grokscope runs warnings runs/ --detector threshold   # would the early warning have fired?",
    "analyze": "grokscope analyze runs/ --what pca,defect",
    "intervene": "grokscope intervene runs/add-p31-trunk-wd1-lr0.005-s42 --kind deletion --fractions 0.05,0.5",
    "fragility": "grokscope fragility runs/add-p31-trunk-wd1-lr0.005-s42 --k 10",
    "normmin": "grokscope normmin toy",
    "normmin mlp": "grokscope normmin mlp --seeds 42 --steps 5000 --out normmin/",
    "normmin decoupled": "grokscope normmin decoupled --seeds 0 --steps 2000",
    "normmin toy": "grokscope normmin toy --lams 0.01,0.1",
    "normmin run": "grokscope normmin run runs/add-p31-trunk-wd1-lr0.005-s42 --max-snapshots 10",
    "sweep": "grokscope sweep configs/quick-wd.yaml --dry-run   # the plan; drop --dry-run to train",
    "claims": "grokscope claims p3 --only toy   # measured vs claimed, with verdicts",
    "compare": "grokscope compare runs/ --out cmp/   # per method: grok step, speed-up, onset, lead, PC1%, ρ",
    "report": "grokscope report runs/ --out report/   # then open report/index.html",
}


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
    _document(parser, "")
    return parser


def _document(parser: argparse.ArgumentParser, path: str) -> None:
    """Give `parser` and its sub-commands, recursively, a description (their one-line help) and an example."""
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    if path in EXAMPLES:
        parser.epilog = f"example:\n  {EXAMPLES[path]}"
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help for a in action._choices_actions}
            for name, child in action.choices.items():
                child.description = child.description or helps.get(name)
                _document(child, f"{path} {name}".strip())


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
    except OSError as e:  # the machine, not the input: a full disk, a vanished folder; files stay whole
        where = f": {e.filename}" if e.filename else ""
        sys.stderr.write(f"grokscope: error: {e.strerror or e}{where}; the store keeps its last complete files\n")
        return 1
    except KeyboardInterrupt:
        sys.stderr.write("grokscope: interrupted; rerun the same command to resume from the last checkpoint\n")
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
