"""The monitor's per-group (per-layer) tables for the report: the commutator's share per layer and λ_min of
Hessian blocks, at each run's last measured step, with what each measurement cost."""

from __future__ import annotations

import pandas as pd

from grokscope.report.gather import RunInfo
from grokscope.store import DEFECT_GROUPS_TABLE, HESSIAN_GROUPS_TABLE


def _last_step(df: pd.DataFrame) -> pd.DataFrame:
    return df[df["step"] == df["step"].max()]


def group_table(runs: list[RunInfo]) -> pd.DataFrame:
    """Per (run, group): defect D_g and share ‖δ_g‖²/‖δ‖² (median over draws) and, where measured, the block's
    λ_min/λ_max, at the last measured step; groups ordered by share."""
    rows = []
    for r in runs:
        if not r.run.has_table(DEFECT_GROUPS_TABLE) and not r.run.has_table(HESSIAN_GROUPS_TABLE):
            continue
        parts = []
        if r.run.has_table(DEFECT_GROUPS_TABLE):
            d = _last_step(r.run.table(DEFECT_GROUPS_TABLE))
            parts.append(d[["group", "n_params", "step", "defect", "share"]].rename(columns={"step": "defect_step"}))
        if r.run.has_table(HESSIAN_GROUPS_TABLE):
            h = _last_step(r.run.table(HESSIAN_GROUPS_TABLE))
            parts.append(h[["group", "n_params", "step", "lambda_min", "lambda_max", "seconds"]]
                         .rename(columns={"step": "hessian_step", "seconds": "lanczos_s"}))
        t = parts[0] if len(parts) == 1 else parts[0].merge(parts[1], on=["group", "n_params"], how="outer")
        t.insert(0, "run", r.name)
        rows.append(t.sort_values("share" if "share" in t else "group", ascending="share" not in t))
    return pd.concat(rows, ignore_index=True) if rows else pd.DataFrame()
