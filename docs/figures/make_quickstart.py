"""Regenerate docs/figures/quickstart.png: the default `grokscope run` (quick preset, seed 42), trained here.

    PYTHONPATH=src python docs/figures/make_quickstart.py [--out docs/figures/quickstart.png] [--threads 1]

Left: train/test accuracy with the grok step. Right: the inline commutator defect with P2's onset, so the
lead of the defect over grokking is visible. The caption line printed at the end names the processor and torch.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import tempfile
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

import grokscope as gs  # noqa: E402
from grokscope.cli import main as main_cli  # noqa: E402
from grokscope.runtime.environment import processor  # noqa: E402

HERE = Path(__file__).resolve().parent


def main() -> None:
    """Train the quick run into a temporary store and draw its two panels."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=HERE / "quickstart.png")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        with contextlib.redirect_stdout(io.StringIO()):  # `grokscope run --json`: the JSON is not needed here
            assert main_cli(["run", "--out", tmp, "--threads", str(args.threads), "--json"]) == 0
        (path,) = [p for p in Path(tmp).iterdir() if p.is_dir()]
        run = gs.RunDir(path)
        m, defect, analyses = run.metrics(), run.table("defect"), run.analyses()
        grok = run.summary()["grok_step"]["add"]
    onset = analyses["summary"].get("onset")

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9.0, 3.2), constrained_layout=True)
    for split, ls in (("train", "--"), ("test", "-")):
        d = m[(m["task"] == "add") & (m["split"] == split)].sort_values("step")
        ax1.plot(d["step"], d["acc"], ls, lw=1.5, label=f"{split} accuracy")
    ax1.axvline(grok, color="k", ls=":", lw=1, label=f"grokked at {grok}")
    ax1.set(xlabel="step", ylabel="accuracy", ylim=(-0.02, 1.02), title="mod-31 addition, quick preset, seed 42")
    ax1.legend(fontsize=8, loc="center right")
    d = defect.sort_values("step")
    ax2.semilogy(d["step"], d["defect"], "C2.-", lw=1, ms=4, label="commutator defect D")
    if onset is not None:
        ax2.axvline(onset, color="r", ls="--", lw=1, label=f"defect onset {onset}")
    ax2.axvline(grok, color="k", ls=":", lw=1, label=f"grokked at {grok}")
    ax2.set(xlabel="step", ylabel="D (median of draws)", title="the defect rises before grokking")
    ax2.legend(fontsize=8, loc="lower right")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=110)
    print(f"{args.out}: grok step {grok}, defect onset {onset}; {processor()}, torch {torch.__version__}, "
          f"{args.threads} thread(s)")


if __name__ == "__main__":
    main()
