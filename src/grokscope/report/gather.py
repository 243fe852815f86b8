"""Gathering: what the analyses left in each run of a store, as plain tables the sections draw.

`StoreData` reads each quantity once, when a section first asks for it. Everything is read as the analyses
stored it (`RunDir.analyses()` and their tables); only the random-walk null of PC1% is computed here, and
PC1% itself for runs with no stored PCA (by the same PCA). With `ReportConfig.compute_summary`, runs
lacking the `summary` analysis get it run and stored (`grokscope.analyses.run_analysis`). Files kept
elsewhere below the store (scans, claims, P3) are gathered by `store_files`.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from grokscope.analyses import run_analysis
from grokscope.config import EXTERNAL
from grokscope.errors import StoreError
from grokscope.formatting import num
from grokscope.geometry.hessian import summarize_hessian
from grokscope.geometry.onset import defect_timing
from grokscope.geometry.pca import matrix_pca, random_walk_null
from grokscope.geometry.reconstruct import k_star
from grokscope.report.config import ReportConfig
from grokscope.report.early_warning import WarningView, warning_view
from grokscope.report.store_files import claims_rows, decoupled_history, intervention_table, normmin_figures
from grokscope.store import (
    DEFECT_TABLE,
    FRAGILITY,
    FRAGILITY_TABLE,
    HESSIAN_TABLE,
    LLC_TABLE,
    METRICS_TABLE,
    POSTHOC_TABLE,
    PROGRESS_TABLE,
    RECONSTRUCTION_TABLE,
    TANGENT_TABLE,
    RunDir,
    diverged_step,
    find_runs,
    read_json,
)

__all__ = ["RunInfo", "StoreData", "load_run", "metrics_table", "pc1_table", "defect_series", "defect_timings",
           "geometry_summaries", "rho_tables", "hessian_table", "k_star_table", "lead_table",
           "fragility_table", "tangent_series", "runs_overview"]


@dataclass
class RunInfo:
    """One run as the report sees it: name, config fields, summary, stored analysis summaries."""

    run: RunDir
    name: str
    cfg: Any
    summary: dict[str, Any]
    analyses: dict[str, Any]

    @property
    def grok(self) -> dict[str, int | None]:
        return dict(self.summary.get("grok_step", {}) or {})

    @property
    def monitored(self) -> bool:
        """Recorded by grokscope.Monitor from a user's model (grokscope cannot rebuild it)."""
        return self.cfg is not None and self.cfg.model.kind == EXTERNAL

    @property
    def wd(self) -> float:
        return float(self.cfg.optim.wd) if self.cfg is not None else float("nan")


def load_run(run: RunDir) -> RunInfo:
    try:
        cfg = run.config()
    except (StoreError, KeyError, TypeError, ValueError):
        cfg = None
    summary = run.summary() if run.has_summary() else {}
    name = cfg.name if cfg is not None else summary.get("name", run.path.name)
    return RunInfo(run, str(name), cfg, summary, run.analyses())


def metrics_table(runs: list[RunInfo]) -> pd.DataFrame:
    """All runs' metrics, `run` set to the run's name."""
    frames = []
    for r in runs:
        if r.run.has_table(METRICS_TABLE):
            m = r.run.metrics()
            frames.append(m.assign(run=r.name))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def stored_pc1(r: RunInfo) -> dict[str, float | None] | None:
    """PC1% per attention matrix as the `pca` or `summary` analysis stored it (None when neither did)."""
    for name in ("pca", "summary"):
        pcs = (r.analyses.get(name) or {}).get("pc1_percent")
        if pcs:
            return dict(pcs)
    return None


def pc1_table(runs: list[RunInfo], cfg: ReportConfig) -> pd.DataFrame:
    """PC1% per (run, attention matrix), read from the stored analyses (computed by the same PCA where
    none is stored) and, for the first `cfg.null_runs` runs, the random-walk null of each matrix."""
    rows = []
    n_null = 0
    for r in runs:
        pcs, want_null = stored_pc1(r), n_null < cfg.null_runs
        attn: dict[str, Any] = {}
        if (pcs is None or want_null) and r.run.has_trajectory():
            steps, attn = r.run.attention_trajectory()
            attn = attn if len(steps) >= 2 else {}
        if pcs is None:
            pcs = {name: matrix_pca(traj, 1).pc1_percent for name, traj in attn.items()}
        if not pcs:
            continue
        with_null = want_null and len(attn) > 0 and next(iter(attn.values())).shape[0] >= 3
        n_null += with_null
        for name, pc in pcs.items():
            row = {"run": r.name, "name": name, "pc1_percent": np.nan if pc is None else float(pc),
                   "null_mean": np.nan, "null_std": np.nan, "z": np.nan}
            if with_null and name in attn:
                res = random_walk_null(attn[name], cfg.n_null, seed=0)
                row.update(null_mean=res.null_mean, null_std=res.null_std, z=res.z)
            rows.append(row)
    df = pd.DataFrame(rows)
    if len(df):
        layer = pd.to_numeric(df["name"].str.extract(r"layers\.(\d+)\.")[0], errors="coerce").fillna(-1).astype(int)
        df = df.assign(_layer=layer).sort_values(["_layer", "name"], kind="stable").drop(columns="_layer")
    return df


def defect_series(runs: list[RunInfo]) -> tuple[dict[str, pd.DataFrame], dict[str, str]]:
    """Defect vs step per run: the inline `defect` table, else the post-hoc one; and which was used."""
    series, source = {}, {}
    for r in runs:
        for table in (DEFECT_TABLE, POSTHOC_TABLE):
            if r.run.has_table(table):
                d = r.run.table(table)
                if len(d) and "defect" in d:
                    series[r.name], source[r.name] = d, table
                    break
    return series, source


def stored_tables(runs: list[RunInfo], name: str) -> dict[str, pd.DataFrame]:
    """Table `name` of every run that has it (progress measures, LLC), by run name."""
    return {r.name: r.run.table(name) for r in runs if r.run.has_table(name)}


def defect_timings(runs: list[RunInfo], series: dict[str, pd.DataFrame], source: dict[str, str]
                   ) -> dict[str, dict[str, Any]]:
    """Defect onset, lead and lead fraction per run as its analyses stored them: `summary` for the inline
    defect table, `defect` for the post-hoc one; for a series with no stored result, the same function
    (`geometry.onset.defect_timing`) on it."""
    out: dict[str, dict[str, Any]] = {}
    for r in runs:
        if r.name in series:
            stored = r.analyses.get("summary" if source[r.name] == DEFECT_TABLE else "defect") or {}
            if "onset" in stored:
                out[r.name] = stored
            else:
                d = series[r.name]
                out[r.name] = defect_timing(d["step"], d["defect"], r.grok)
        elif "summary" in r.analyses:
            out[r.name] = r.analyses["summary"]
    return out


def geometry_summaries(runs: list[RunInfo], cfg: ReportConfig) -> dict[str, dict[str, Any]]:
    """Each run's `geometry_summary` as the sweep stored it in analyses.json (or computed, if asked)."""
    out = {}
    for r in runs:
        s = r.analyses.get("summary")
        if s is None and cfg.compute_summary and r.run.has_trajectory():
            s = run_analysis(r.run, "summary", cfg.device, draws=cfg.draws)
        if isinstance(s, dict):
            out[r.name] = s
    return out


def rho_tables(runs: list[RunInfo], summaries: dict[str, dict[str, Any]]
               ) -> tuple[dict[str, pd.DataFrame], pd.DataFrame]:
    """(ρ vs step per run from defect_posthoc, final ρ per run from the summary or the last post-hoc row)."""
    series, finals = {}, []
    for r in runs:
        post = r.run.table(POSTHOC_TABLE) if r.run.has_table(POSTHOC_TABLE) else None
        if post is not None and "rho" in post and post["rho"].notna().any():
            series[r.name] = post
        s = summaries.get(r.name, {})
        rho, rnd = num(s.get("rho")), num(s.get("rho_random"))
        if rho is None and r.name in series:
            last = series[r.name].sort_values("step").iloc[-1]
            rho, rnd = num(last["rho"]), num(last.get("rho_random"))
        if rho is not None:
            finals.append({"run": r.name, "rho": rho, "rho_random": np.nan if rnd is None else rnd})
    return series, pd.DataFrame(finals, columns=["run", "rho", "rho_random"])


def hessian_table(runs: list[RunInfo]) -> pd.DataFrame:
    """λ_min per (run, loss) from each run's hessian.parquet (`summarize_hessian`), with the run's wd."""
    rows = []
    for r in runs:
        if not r.run.has_table(HESSIAN_TABLE):
            continue
        df = r.run.table(HESSIAN_TABLE)
        if df.empty:
            continue
        for loss, s in summarize_hessian(df).items():
            if isinstance(s, dict):
                rows.append({"run": r.name, "wd": r.wd, "loss": loss, "lambda_min": s["lambda_min"],
                             "step": s["step"], "lambda_max_peak": s["lambda_max_peak"]})
    return pd.DataFrame(rows)


def k_star_table(runs: list[RunInfo]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(k* per run from fragility.json or reconstruction.parquet, all reconstruction rows)."""
    rows, recon = [], []
    for r in runs:
        rec = r.run.table(RECONSTRUCTION_TABLE) if r.run.has_table(RECONSTRUCTION_TABLE) else None
        if rec is not None and len(rec):
            recon.append(rec.assign(run=r.name))
        ks: Any = None
        have = False
        if r.run.file(FRAGILITY).exists():
            ks, have = read_json(r.run.file(FRAGILITY)).get("k_star"), True
        elif rec is not None and len(rec):
            wide = rec.pivot_table(index="k", columns="task", values="test_acc")
            ks, have = k_star(wide.to_numpy(), list(wide.index)), True
        if have:
            rows.append({"run": r.name, "wd": r.wd, "k_star": np.nan if ks is None else float(ks)})
    return (pd.DataFrame(rows, columns=["run", "wd", "k_star"]),
            pd.concat(recon, ignore_index=True) if recon else pd.DataFrame())


def lead_table(runs: list[RunInfo], timing: dict[str, dict[str, Any]]) -> pd.DataFrame:
    """One row per (run, task) with both a grok step and a defect onset: t_grok, onset, lead, fraction."""
    rows = []
    for r in runs:
        t = timing.get(r.name, {})
        leads, fracs = t.get("lead") or {}, t.get("lead_fraction") or {}
        for task, g in r.grok.items():
            if g is not None and t.get("onset") is not None and leads.get(task) is not None:
                rows.append({"run": r.name, "task": task, "grok_step": int(g), "onset": int(t["onset"]),
                             "lead": leads[task], "lead_fraction": fracs.get(task)})
    return pd.DataFrame(rows, columns=["run", "task", "grok_step", "onset", "lead", "lead_fraction"])


def fragility_table(runs: list[RunInfo]) -> pd.DataFrame:
    """All runs' fragility.parquet rows (kind, value, task, test_acc), `run` set to the run's name."""
    frames = [r.run.table(FRAGILITY_TABLE).assign(run=r.name) for r in runs if r.run.has_table(FRAGILITY_TABLE)]
    frames = [f for f in frames if len(f)]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def tangent_series(runs: list[RunInfo]) -> dict[str, pd.DataFrame]:
    """P3 tangent-cosine rows per run (the `normmin` probe table of `geometry.normmin.tangent_probe`)."""
    out = {}
    for r in runs:
        if r.run.has_table(TANGENT_TABLE):
            d = r.run.table(TANGENT_TABLE)
            if len(d) and "cos_tangent" in d:
                out[r.name] = d
    return out


def runs_overview(runs: list[RunInfo], onset: dict[str, int | None], summaries: dict[str, dict[str, Any]],
                  kstar: pd.DataFrame) -> pd.DataFrame:
    """One row per run: its config, grok steps, final test accuracy and headline geometry numbers."""
    ks = dict(zip(kstar["run"], kstar["k_star"], strict=True)) if len(kstar) else {}
    rows = []
    for r in runs:
        c = r.cfg
        final = r.summary.get("final_acc", {}) or {}
        s = summaries.get(r.name, {})
        rows.append({
            "run": r.name,
            "tasks": ",".join(c.data.tasks) if c else "",
            "p": c.data.p if c else None,
            "model": c.model.kind if c else "",
            "wd": c.optim.wd if c else None,
            "lr": c.optim.lr if c else None,
            "seed": c.seed if c else None,
            "steps": r.summary.get("steps_trained"),
            "grok_step": ", ".join(f"{t} {'—' if g is None else g}" for t, g in r.grok.items()),
            "test_acc": ", ".join(f"{t} {v.get('test', float('nan')):.3f}" for t, v in final.items()
                                  if isinstance(v, dict)),
            "pc1_mean": num(s.get("pc1_mean")),
            "onset": onset.get(r.name),
            "rho": num(s.get("rho")),
            "k_star": num(ks.get(r.name)),
            "diverged": None if (at := diverged_step(r.summary)) is None else f"at step {at}",
        })
    table = pd.DataFrame(rows)
    if len(table) and table["diverged"].isna().all():
        table = table.drop(columns="diverged")  # the column only when a run diverged
    return table


@dataclass
class StoreData:
    """Every table the report draws, read from the store on first use (each at most once)."""

    store: Path
    out: Path
    cfg: ReportConfig

    @cached_property
    def runs(self) -> list[RunInfo]:
        return [load_run(r) for r in find_runs([self.store])]

    @cached_property
    def claims(self) -> pd.DataFrame:
        return claims_rows(self.store, self.out)

    @cached_property
    def scans(self) -> pd.DataFrame:
        return intervention_table(self.store, self.out)

    @cached_property
    def p3_pngs(self) -> list[Path]:
        return normmin_figures(self.store, self.out)

    @cached_property
    def decoupled(self) -> pd.DataFrame:
        return decoupled_history(self.store, self.out)

    @cached_property
    def metrics(self) -> pd.DataFrame:
        return metrics_table(self.runs)

    @cached_property
    def grok(self) -> dict[str, dict[str, int | None]]:
        return {r.name: r.grok for r in self.runs}

    @cached_property
    def pc1(self) -> pd.DataFrame:
        return pc1_table(self.runs, self.cfg)

    @cached_property
    def defects(self) -> tuple[dict[str, pd.DataFrame], dict[str, str]]:
        return defect_series(self.runs)

    @cached_property
    def timing(self) -> dict[str, dict[str, Any]]:
        return defect_timings(self.runs, *self.defects)

    @cached_property
    def onset(self) -> dict[str, int | None]:
        return {name: t.get("onset") for name, t in self.timing.items()}

    @cached_property
    def summaries(self) -> dict[str, dict[str, Any]]:
        return geometry_summaries(self.runs, self.cfg)

    @cached_property
    def rho(self) -> tuple[dict[str, pd.DataFrame], pd.DataFrame]:
        return rho_tables(self.runs, self.summaries)

    @cached_property
    def hessian(self) -> pd.DataFrame:
        return hessian_table(self.runs)

    @cached_property
    def progress(self) -> dict[str, pd.DataFrame]:
        return stored_tables(self.runs, PROGRESS_TABLE)

    @cached_property
    def llc(self) -> dict[str, pd.DataFrame]:
        return stored_tables(self.runs, LLC_TABLE)

    @cached_property
    def k_star(self) -> tuple[pd.DataFrame, pd.DataFrame]:
        return k_star_table(self.runs)

    @cached_property
    def leads(self) -> pd.DataFrame:
        return lead_table(self.runs, self.timing)

    @cached_property
    def fragility(self) -> pd.DataFrame:
        return fragility_table(self.runs)

    @cached_property
    def warnings(self) -> list[WarningView]:
        views = (warning_view(r.run, r.name, r.cfg, r.summary) for r in self.runs)
        return [v for v in views if v is not None]

    @cached_property
    def tangent(self) -> dict[str, pd.DataFrame]:
        return tangent_series(self.runs)

    def overview(self) -> pd.DataFrame:
        return runs_overview(self.runs, self.onset, self.summaries, self.k_star[0])
