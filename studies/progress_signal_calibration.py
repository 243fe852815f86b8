"""Would a progress measure help the early-warning detector? A check on the corpus' calibration part only.

The signal is test-free and causal: the Gini coefficient of the token embedding's Fourier norms (Nanda et al. 2023),
from each stored snapshot alone. A run's score is its largest Gini rise over step 0 before its grok step (a grokking
run) or over its whole budget (a never-grokking run), as `monitor.evaluate` scores the detectors; runs that generalise
with no delay (grok step ≤ 500 here) are left out, as the harness leaves them out. The evaluation part is not read.

    python studies/progress_signal_calibration.py [--store DIR]   # the corpus of the early-warning study
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from grokscope.analyses.progress_measures import progress_table
from grokscope.errors import NotApplicable
from grokscope.monitor.evaluate import auroc
from grokscope.store import RunDir

DEFAULT_STORE = Path(os.environ.get("GROKSCOPE_EW_STORE", Path.home() / ".cache" / "grokscope" / "ew-corpus-v2"))
IMMEDIATE = 500  # a grok step at or below this: generalised with no delay (the quick preset memorises by ~300)


def gini_rise(run: RunDir) -> tuple[str, int | None, float] | None:
    """(model kind, grok step, largest Gini rise over step 0 before grokking) of a single-task run; None when
    progress measures do not apply or no snapshot precedes the grok step."""
    cfg = run.config()
    task = cfg.data.tasks[0]
    try:
        df = progress_table(run)
    except NotApplicable:
        return None
    df = df[df.task == task].sort_values("step")
    grok = run.summary()["grok_step"][task]
    before = df[df.step < grok] if grok else df
    if len(before) < 2:
        return None
    return cfg.model.kind, grok, float(before.gini.max() - df.gini.iloc[0])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--store", type=Path, default=DEFAULT_STORE)
    args = ap.parse_args()
    rows = []
    for path in sorted((args.store / "calib").glob("*/*/")):
        got = gini_rise(RunDir(path))
        if got is not None and not (got[1] is not None and got[1] <= IMMEDIATE):
            rows.append((path.relative_to(args.store).as_posix(), *got))
    for name, kind, grok, rise in rows:
        print(f"{name:55s} {kind:6s} grok {grok!s:>5s}  Gini rise {rise:.3f}")
    for label, keep in (("all", lambda k: True), ("trunk", lambda k: k == "trunk"), ("mlp", lambda k: k == "mlp")):
        pos = [r for _, k, g, r in rows if keep(k) and g is not None]
        neg = [r for _, k, g, r in rows if keep(k) and g is None]
        print(f"{label}: {len(pos)} grokking, {len(neg)} never; AUROC of the Gini rise {auroc(pos, neg):.3f}")


if __name__ == "__main__":
    main()
