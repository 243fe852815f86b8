"""Every grokking diagnostic on the same runs: run the analyses, print the move/lead table, draw one run's figure.

    python examples/diagnostics_table.py STORE [--figure-run NAME] [--out docs/diagnostics] [--skip-analyses]
        [--llc-lr 1e-6 --llc-nbeta 150 --llc-localization 1e4]

STORE holds grokscope runs (e.g. `grokscope run --preset quick --seeds 42,137,2024 --wd 1,0 --snapshot-spacing 100`).
Per run it runs the `pca`, `hessian` (30 checkpoints), `progress` and `llc` (12 snapshots) analyses (the LLC
with the settings given, the same for every run, or calibrated per run when none is given), then prints one
markdown row per run: the step at which each diagnostic moves (grokscope.analyses.diagnostics's rule) and its lead over
the grok step; and draws the figure of one run.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from grokscope.analyses import run_analysis  # noqa: E402
from grokscope.analyses.diagnostics import diagnostic_series, run_moves  # noqa: E402
from grokscope.store import find_runs  # noqa: E402

COLUMNS = ("defect", "pc1", "lambda_min", "weight_norm", "excluded_loss", "restricted_loss", "gini", "llc")
LABELS = {"defect": "defect onset", "pc1": "PC1 %", "lambda_min": "λ_min", "weight_norm": "‖θ‖ decline",
          "excluded_loss": "excluded ↑", "restricted_loss": "restricted ↓", "gini": "Gini ↑", "llc": "LLC ↓"}


def analyse(store: Path, what: list[str], llc: dict, hessian_checkpoints: int, llc_points: int) -> None:
    """Run the analyses the table reads (`what`) on every run of the store (results stored beside each run)."""
    options = {"hessian": {"n_checkpoints": hessian_checkpoints},
               "llc": {"calibrate": not llc, "max_points": llc_points, **llc}}
    for run in find_runs([store]):
        for name in what:
            run_analysis(run, name, **options.get(name, {}))
        print(f"analysed {run.path.name}", flush=True)


def cell(move: int | None, lead: int | None) -> str:
    """'step (lead)' or — when the diagnostic does not move."""
    if move is None:
        return "—"
    return f"{move}" if lead is None else f"{move} ({lead:+d})"


def table(store: Path) -> str:
    """The markdown table: one row per run and task, move step (lead over that task's grok step) per diagnostic."""
    head = ["run", "grok", "test ≥ 90 %", "memorised", *(LABELS[c] for c in COLUMNS)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for run in find_runs([store]):
        tasks = list(run.grok_steps())
        for task in tasks if len(tasks) > 1 else [None]:  # a multi-task run: one row per task
            r = run_moves(run, task)
            cells = [cell(r["moves"].get(c), r["leads"].get(c)) if c in r["moves"] else "n/a" for c in COLUMNS]
            name = r["run"] if task is None else f"{r['run']} ({task})"
            row = [name, str(r["grok"] or "never"), str(r["grok90"] or "—"), str(r["memorised"]), *cells]
            lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def figure(store: Path, name: str, out: Path) -> Path:
    """Every diagnostic of run `name` on a shared step axis, the grok step and each move marked."""
    run = next(r for r in find_runs([store]) if r.path.name == name)
    series, moves = diagnostic_series(run), run_moves(run)
    panels = [("accuracy", ["train_acc", "test_acc"]), ("defect", ["defect"]), ("PC1 % (expanding)", ["pc1"]),
              ("λ_min (total loss)", ["lambda_min"]), ("weight norm", ["weight_norm"]),
              ("excluded / restricted loss", ["excluded_loss", "restricted_loss"]), ("Gini of Fourier norms", ["gini"]),
              ("LLC", ["llc"])]
    panels = [(t, [k for k in keys if k in series]) for t, keys in panels]
    panels = [(t, keys) for t, keys in panels if keys]
    fig, axes = plt.subplots(len(panels), 1, figsize=(7, 1.5 * len(panels)), sharex=True)
    for ax, (title, keys) in zip(axes, panels):
        for k in keys:
            s = series[k]
            (line,) = ax.plot(s["step"], s["value"], marker=".", ms=3, label=k)
            m = moves["moves"].get(k)
            if m is not None:
                ax.axvline(m, color=line.get_color(), ls=":", lw=1.2)
        if moves["grok"] is not None:
            ax.axvline(moves["grok"], color="k", ls="--", lw=1)
        if moves["memorised"] is not None:
            ax.axvline(moves["memorised"], color="0.6", ls="-.", lw=1)
        if title == "defect":
            ax.set_yscale("log")
        v = series["llc"]["value"] if title == "LLC" else None
        if v is not None and v.abs().max() > 10 * v.abs().median():
            ax.set_yscale("symlog", linthresh=10)  # a blown-up estimate would flatten the rest of the curve
            ax.set_ylim(min(0.0, float(v.min())), 2 * float(v.max()))
        ax.set_ylabel(title, fontsize=7)
        if len(keys) > 1:
            ax.legend(fontsize=6)
    axes[-1].set_xlabel("step (dashed: grok; dash-dot: memorised; dotted, in the curve's colour: it moves)")
    fig.suptitle(run.config().name, fontsize=9)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("store", type=Path)
    ap.add_argument("--figure-run", default=None)
    ap.add_argument("--out", type=Path, default=Path("docs/diagnostics"))
    ap.add_argument("--skip-analyses", action="store_true")
    ap.add_argument("--analyses", default="pca,hessian,progress,llc", help="which analyses to (re)run first")
    ap.add_argument("--hessian-checkpoints", type=int, default=30)
    ap.add_argument("--llc-points", type=int, default=12, help="LLC at this many snapshots per run")
    ap.add_argument("--llc-lr", type=float, default=None)
    ap.add_argument("--llc-nbeta", type=float, default=None)
    ap.add_argument("--llc-localization", type=float, default=None)
    ap.add_argument("--llc-draws", type=int, default=100)
    args = ap.parse_args()
    llc = {k: v for k, v in (("lr", args.llc_lr), ("n_beta", args.llc_nbeta),
                             ("localization", args.llc_localization)) if v is not None}
    if llc:
        llc["draws"] = args.llc_draws
    if not args.skip_analyses:
        analyse(args.store, args.analyses.split(","), llc, args.hessian_checkpoints, args.llc_points)
    print(table(args.store))
    if args.figure_run:
        print(figure(args.store, args.figure_run, args.out / f"{args.figure_run}.png"))


if __name__ == "__main__":
    main()
