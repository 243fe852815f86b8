"""Does the papers' geometry hold outside their models? The geometry and every diagnostic on the field's canonical
grokking setups (issue 41), read from the early-warning corpus and from the runs trained here.

    python studies/beyond_papers.py train     # the setups the corpus lacks (Gromov's MLP), resumable
    python studies/beyond_papers.py status    # what the stores hold
    python studies/beyond_papers.py table     # setup × measure: results.json and table.md beside the store

Results: docs/beyond-papers.md.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from beyond_train import STORE, status, train_all  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("command", choices=("train", "status", "table"))
    ap.add_argument("--store", type=Path, default=STORE, help="where the runs trained here live")
    args = ap.parse_args(argv)
    if args.command == "train":
        train_all(args.store)
    elif args.command == "status":
        print(status(args.store))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
