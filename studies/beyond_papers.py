"""Does the papers' geometry hold outside their models? The geometry and every diagnostic on the field's canonical
grokking setups (issue 41), read from the early-warning corpus and from the runs trained here.

    python studies/beyond_papers.py train     # the setups the corpus lacks (Gromov's MLP, S4), resumable
    python studies/beyond_papers.py status    # what the stores hold
    python studies/beyond_papers.py table     # setup × measure from both stores: results.json and table.md in
                                              # the study's store (~/.cache/grokscope/beyond; each run's measures
                                              # cached there, recomputed only when the run changed)

The docs page docs/beyond-papers.md leads with this table (copied from table.md).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from beyond_train import STORE, status, train_all  # noqa: E402

CORPUS = Path(os.environ.get("GROKSCOPE_EW_STORE", Path.home() / ".cache" / "grokscope" / "ew-corpus-v2"))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("command", choices=("train", "status", "table"))
    ap.add_argument("--store", type=Path, default=STORE, help="where the runs trained here live (and the table goes)")
    ap.add_argument("--corpus", type=Path, default=CORPUS, help="the early-warning corpus (read only)")
    args = ap.parse_args(argv)
    if args.command == "train":
        train_all(args.store)
    elif args.command == "status":
        print(status(args.store))
    else:
        import torch
        from beyond_table import build, markdown, write

        torch.set_num_threads(1)
        res = build(args.corpus, args.store)
        write(res, args.store)
        print(markdown(res), end="")
        print(f"-> {args.store / 'results.json'}, {args.store / 'table.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
