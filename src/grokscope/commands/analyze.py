"""`grokscope analyze RUN_DIR...`: post-hoc geometry of stored runs. Writes `pca.parquet`,
`defect_posthoc.parquet` and `hessian.parquet` next to each run and prints a summary."""

from __future__ import annotations

import argparse
import math
from typing import Any

from grokscope.errors import ConfigError, StoreError
from grokscope.store import RunDir, find_runs

ANALYSES = ("pca", "defect", "hessian")


def register(sub: argparse._SubParsersAction) -> None:
    from grokscope.cli import csv_list

    p = sub.add_parser("analyze", help="post-hoc geometry of stored runs: trajectory PCA, defects, Hessian")
    p.add_argument("runs", nargs="+", metavar="RUN_DIR", help="run directories or folders of runs")
    p.add_argument("--what", type=csv_list(str), default=list(ANALYSES),
                   help=f"comma-separated analyses from {','.join(ANALYSES)} (default: all)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--draws", type=int, default=9, help="commutator draws per snapshot (default 9)")
    p.add_argument("--json", action="store_true", help="print only JSON on stdout")
    p.set_defaults(func=run)


def _num(x: Any) -> float | None:
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def analyze_pca(run: RunDir) -> dict[str, Any]:
    """Attention-trajectory PCA → pca.parquet; summary: PC1% per matrix and mean."""
    from grokscope.geometry.pca import attention_pca

    steps, attn = run.attention_trajectory()
    if not attn:
        return {"skipped": "no attention matrices (MLP)"}
    if len(steps) < 2:
        return {"skipped": "fewer than 2 recorded steps"}
    df = attention_pca(run)
    run.write_table("pca", df)
    return {"pc1_mean": _num(df["pc1_percent"].mean()),
            "pc1_percent": {n: _num(v) for n, v in zip(df["name"], df["pc1_percent"], strict=True)}}


def analyze_defect(run: RunDir, device: str = "cpu", draws: int = 9) -> dict[str, Any]:
    """Defects and ρ at every stored snapshot → defect_posthoc.parquet; summary: onset, lead, ρ."""
    from grokscope.geometry.commutator import defects_from_snapshots
    from grokscope.geometry.onset import lead, lead_fraction, onset_threshold

    df = defects_from_snapshots(run, draws=draws, device=device)
    run.write_table("defect_posthoc", df)
    onset = onset_threshold(df["step"], df["defect"])
    grok = run.summary().get("grok_step", {}) if run.file("summary.json").exists() else {}
    base = float(df["defect"].iloc[:3].median())
    return {"n_snapshots": len(df), "onset": onset,
            "defect_peak_ratio": _num(df["defect"].max() / base) if base > 0 else None,
            "defect_final": _num(df["defect"].iloc[-1]), "rho_final": _num(df["rho"].iloc[-1]),
            "rho_median": _num(df["rho"].median()), "rho_random_median": _num(df["rho_random"].median()),
            "proj_ratio_median": _num(df["proj_ratio"].median()),
            "lead": {t: lead(g, onset) for t, g in grok.items()},
            "lead_fraction": {t: _num(lead_fraction(g, onset)) for t, g in grok.items()}}


def analyze_hessian_run(run: RunDir, device: str = "cpu") -> dict[str, Any]:
    """Bottom/top Hessian eigenvalues at checkpoints → hessian.parquet (grokscope.geometry.hessian)."""
    try:
        from grokscope.geometry.hessian import analyze_hessian, summarize_hessian
    except ModuleNotFoundError as e:
        if e.name != "grokscope.geometry.hessian":
            raise
        raise ConfigError("the hessian analysis is not available in this installation") from None
    df = analyze_hessian(run, device=device)
    run.write_table("hessian", df)
    return summarize_hessian(df)


def run(args: argparse.Namespace) -> int:
    what = list(getattr(args, "what", None) or ANALYSES)
    bad = [w for w in what if w not in ANALYSES]
    if bad:
        raise ConfigError(f"unknown analysis {bad[0]!r}; choose from {', '.join(ANALYSES)}")
    draws = int(getattr(args, "draws", 9))
    if draws < 1:
        raise ConfigError(f"draws={draws} must be >= 1")
    device = getattr(args, "device", "cpu")
    if device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise ConfigError(f"device {device!r} is not available on this machine")
    runs = find_runs(args.runs)
    if not runs:
        raise StoreError(f"no grokscope runs under {', '.join(map(str, args.runs))}")
    results: dict[str, dict[str, Any]] = {}
    for r in runs:
        name = r.config().name
        out: dict[str, Any] = {"path": str(r.path)}
        if "pca" in what:
            out["pca"] = analyze_pca(r)
        if "defect" in what:
            out["defect"] = analyze_defect(r, device, draws)
        if "hessian" in what:
            out["hessian"] = analyze_hessian_run(r, device)
        results[name] = out
    if getattr(args, "json", False):
        from grokscope.cli import print_json

        print_json(results)
    else:
        _print(results)
    return 0


def _fmt(v: Any, digits: int = 1) -> str:
    if v is None:
        return "—"
    return f"{v:.{digits}f}" if isinstance(v, float) else str(v)


def _short(name: str) -> str:
    """`layers.0.attn.W_Q` -> `W_Q@0`."""
    parts = name.split(".")
    return f"{parts[-1]}@{parts[1]}" if len(parts) == 4 else name


def _print(results: dict[str, dict[str, Any]]) -> None:
    for name, res in results.items():
        print(f"{name}  ({res['path']})")
        if "pca" in res:
            p = res["pca"]
            if "skipped" in p:
                print(f"  pca: skipped, {p['skipped']}")
            else:
                per = ", ".join(f"{_short(k)} {_fmt(v, 0)}" for k, v in p["pc1_percent"].items())
                print(f"  pca: PC1% mean {_fmt(p['pc1_mean'])} ({per})  -> pca.parquet")
        if "defect" in res:
            d = res["defect"]
            leads = ", ".join(f"{t} {_fmt(v)}" for t, v in d["lead"].items())
            print(f"  defect: onset {_fmt(d['onset'])}, peak/baseline {_fmt(d['defect_peak_ratio'])}, "
                  f"rho final {_fmt(d['rho_final'], 4)} (random {_fmt(d['rho_random_median'], 4)}), "
                  f"lead {leads or '—'}  -> defect_posthoc.parquet")
        if "hessian" in res:
            flat = {k: v for k, v in res["hessian"].items() if not isinstance(v, dict | list)}
            h = ", ".join(f"{k} {_fmt(v, 3)}" for k, v in flat.items())
            print(f"  hessian: {h}  -> hessian.parquet")
