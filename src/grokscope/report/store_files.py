"""Gathering, store-wide part: results kept as files anywhere below the store rather than in one run's
directory (intervention scans, P3's decoupled histories and figures, claims tables)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from grokscope.store import INTERVENTION_TABLE, read_json, read_table

__all__ = ["intervention_table", "decoupled_history", "normmin_figures", "claims_rows"]


def _inside(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder.resolve())
        return True
    except ValueError:
        return False


def intervention_table(store: Path, out: Path) -> pd.DataFrame:
    """Every `intervention.parquet` below the store (see `experiments.intervention_scan.write_scan`), with `base`
    = the base run's folder name (the scan lives in BASE_RUN/intervene-<kind>/ by default)."""
    frames = []
    for f in sorted(store.rglob(INTERVENTION_TABLE)):
        if _inside(f, out):
            continue
        parent = f.parent
        base = parent.parent.name if parent.name.startswith("intervene-") else parent.name
        df = read_table(f)
        if len(df):
            frames.append(df.assign(base=base))
    if not frames:
        return pd.DataFrame()
    df = pd.concat(frames, ignore_index=True)
    df["grok_step"] = pd.to_numeric(df["grok_step"], errors="coerce").astype(float)
    if "steps_trained" in df:
        df["steps_trained"] = pd.to_numeric(df["steps_trained"], errors="coerce").astype(float)
    return df


def decoupled_history(store: Path, out: Path) -> pd.DataFrame:
    """P3 decoupled-dynamics histories (step, seed, test_acc[, w1_norm]) stored as *decoupled*.parquet."""
    frames = []
    for f in sorted(store.rglob("*decoupled*.parquet")):
        if _inside(f, out):
            continue
        df = read_table(f)
        if {"step", "seed", "test_acc"} <= set(df.columns) and len(df):
            frames.append(df)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def normmin_figures(store: Path, out: Path) -> list[Path]:
    """PNG figures `grokscope normmin --out` left in the store (normmin_*.png), to show as they are."""
    return [f for f in sorted(store.rglob("normmin_*.png")) if not _inside(f, out)]


def claims_rows(store: Path, out: Path) -> pd.DataFrame:
    """Rows of every claims_*.json in the store: a list of rows, or {"rows"|"claims": [...]}, each with
    claim, paper, measured, verdict (other keys kept when present)."""
    rows = []
    for f in sorted(store.rglob("claims_*.json")):
        if _inside(f, out):
            continue
        obj = read_json(f)
        if isinstance(obj, dict):
            obj = obj.get("rows", obj.get("claims", []))
        if not isinstance(obj, list):
            continue
        for row in obj:
            if isinstance(row, dict) and "claim" in row:
                rows.append({"source": f.name, **row})
    cols = ["source", "paper_id", "claim", "paper", "measured", "verdict", "tolerance", "scale", "note"]
    if not rows:
        return pd.DataFrame()
    df = pd.DataFrame(rows)
    return df[[c for c in cols if c in df.columns]]
