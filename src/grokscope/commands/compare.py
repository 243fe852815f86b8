"""`grokscope compare RUN_DIR...`: grokking methods side by side (per method and task: grok step, speed-up
over the baseline, defect onset and lead, PC1%, ρ, λ_min), from stored runs and the analyses registry."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import pandas as pd

from grokscope.analyses import resolve_analysis, run_analysis
from grokscope.analyses.methods_table import comparison_table, default_baseline, markdown, method_label, run_rows
from grokscope.commands.common import print_json
from grokscope.errors import ConfigError, StoreError
from grokscope.report.plots import method_curves
from grokscope.runtime.devices import check_device, resolve_device
from grokscope.store import RunDir, check_out, find_runs, jsonable, write_table


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("compare", help="grokking methods side by side: grok step, speed-up, onset, lead, PC1%%, "
                                       "ρ, λ_min")
    p.add_argument("runs", nargs="+", metavar="RUN_DIR", help="run directories or folders of runs")
    p.add_argument("--baseline", help="method label the speed-up is measured against (default: the baseline runs)")
    p.add_argument("--hessian-checkpoints", type=int, default=0,
                   help="λ_min: run the hessian analysis at N checkpoints where it is not stored (0: stored only)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", help="directory for compare.parquet, compare.md, runs.parquet and methods.png")
    p.add_argument("--json", action="store_true", help="print only JSON on stdout")
    p.set_defaults(func=run)


def geometry(run: RunDir, device: str, hessian_checkpoints: int) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The run's `summary` analysis (PC1%, ρ, onset, lead) and its `hessian` one (λ_min), each the stored
    result or run now (hessian only when `hessian_checkpoints` > 0). Results of a finished run are stored;
    those of a run still training (or stopped mid-budget) are not: they would go stale when it resumes."""
    finished = bool(run.summary().get("finished"))
    stored = run.analyses() if finished else {}

    def get(name: str, **options: Any) -> Any:
        if name in stored:
            return stored[name]
        if finished:
            return run_analysis(run, name, device, **options)
        return jsonable(resolve_analysis(name)(run, device, **options))

    summary = get("summary")
    curvature = get("hessian", n_checkpoints=hessian_checkpoints) if hessian_checkpoints > 0 or "hessian" in stored \
        else None
    return summary, curvature


def run(args: argparse.Namespace) -> int:
    if args.hessian_checkpoints < 0:
        raise ConfigError(f"--hessian-checkpoints={args.hessian_checkpoints} must be >= 0")
    device = resolve_device(check_device(args.device))
    out = check_out(args.out) if args.out else None  # before any analysis is stored in a run
    runs = [r for r in find_runs(args.runs) if r.has_summary()]
    if not runs:
        raise StoreError(f"no grokscope runs with a summary under {', '.join(map(str, args.runs))}")
    cfgs = [r.config() for r in runs]
    with_wd = len({c.optim.wd for c in cfgs}) > 1
    labels = [method_label(c, with_wd) for c in cfgs]
    baseline = args.baseline or default_baseline(labels, cfgs)
    if baseline is not None and baseline not in labels:
        raise ConfigError(f"baseline {baseline!r} is not among the methods compared: "
                          f"{', '.join(dict.fromkeys(labels))}")
    rows = []
    for r, lab in zip(runs, labels, strict=True):
        geo, curv = geometry(r, device, args.hessian_checkpoints)
        rows.extend(run_rows(r, lab, geo, curv))
    per_run = pd.DataFrame(rows)
    table = comparison_table(per_run, baseline or "")
    if out is not None:
        _write(out, runs, labels, per_run, table, baseline or "—")
    if args.json:
        print_json({"baseline": baseline, "methods": jsonable(table.to_dict("records")),
                    "runs": jsonable(per_run.to_dict("records"))})
    else:
        print(markdown(table, baseline or "—"))
    return 0


def _write(out: Path, runs: list[RunDir], labels: list[str], per_run: pd.DataFrame, table: pd.DataFrame,
           baseline: str) -> None:
    """compare.parquet (per method), runs.parquet (per run and task), compare.md and methods.png."""
    out.mkdir(parents=True, exist_ok=True)
    write_table(out / "compare.parquet", table)
    write_table(out / "runs.parquet", per_run)
    (out / "compare.md").write_text(markdown(table, baseline) + "\n")
    metrics = [r.metrics().assign(method=lab) for r, lab in zip(runs, labels, strict=True) if r.has_table("metrics")]
    defects = [r.table("defect").assign(method=lab) for r, lab in zip(runs, labels, strict=True)
               if r.has_table("defect")]
    if metrics:
        fig = method_curves(pd.concat(metrics, ignore_index=True),
                            pd.concat(defects, ignore_index=True) if defects else pd.DataFrame())
        fig.savefig(out / "methods.png", dpi=110)
