"""The static HTML report of a store: gather what the analyses left, draw it, write `index.html` + PNGs.

`build_report(store, out)` looks at every run below `store` and draws one figure per quantity the store
holds data for: accuracy curves with grok markers, PC1% of each attention matrix vs the random-walk null,
the commutator defect with its onset, integrability ρ, λ_min vs weight decay, k* vs weight decay, the
lead–t_grok power law, intervention scans, compression curves, P3's tangent cosine and decoupled dynamics,
and the claims table. A quantity with no data is skipped and listed on the page with what would produce
it. Figures are written first, then `index.html` atomically, so a reader never sees a page whose
images are missing. Only PCA and the random-walk null are computed here (cheap); everything else is read
as the analysis commands stored it (`compute_summary=True` also runs `geometry_summary` where missing).
"""

from __future__ import annotations

import html
import json
import math
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from grokscope.errors import StoreError
from grokscope.store import RunDir, atomic_write, find_runs, read_json

INDEX = "index.html"
ANALYSES_FILE = "analyses.json"  # sweep.ANALYSES_FILE: {analysis name: its summary dict}


@dataclass(frozen=True)
class ReportConfig:
    """What the report computes itself: the random-walk null (`n_null` walks, for the first `null_runs`
    runs), defect panels (at most `max_panels`), and optionally `geometry_summary` for runs without one."""

    n_null: int = 20
    null_runs: int = 6
    max_panels: int = 12
    compute_summary: bool = False
    draws: int = 9
    device: str = "cpu"
    dpi: int = 90


@dataclass
class Section:
    """A page block: a figure (file name in the report folder), caption, table, or why it is absent."""

    key: str
    title: str
    figure: str | None = None
    caption: str = ""
    table: pd.DataFrame | None = None
    missing: str | None = None


@dataclass
class ReportResult:
    """Where the page went, the figures written, and the sections with no data (title -> reason)."""

    index: Path
    figures: list[Path]
    sections: list[Section]
    missing: dict[str, str] = field(default_factory=dict)


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
    def wd(self) -> float:
        return float(self.cfg.optim.wd) if self.cfg is not None else float("nan")


def _load_run(run: RunDir) -> RunInfo:
    try:
        cfg = run.config()
    except (StoreError, KeyError, TypeError, ValueError):
        cfg = None
    summary = run.summary() if run.file("summary.json").exists() else {}
    analyses = read_json(run.file(ANALYSES_FILE)) if run.file(ANALYSES_FILE).exists() else {}
    name = cfg.name if cfg is not None else summary.get("name", run.path.name)
    return RunInfo(run, str(name), cfg, summary, analyses if isinstance(analyses, dict) else {})


def _num(x: Any) -> float | None:
    try:
        x = float(x)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def _inside(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder.resolve())
        return True
    except ValueError:
        return False


# ---- gathering (store -> tables) ---------------------------------------------------------------------


def metrics_table(runs: list[RunInfo]) -> pd.DataFrame:
    """All runs' metrics, `run` set to the run's name."""
    frames = []
    for r in runs:
        if r.run.file("metrics.parquet").exists():
            m = r.run.metrics()
            frames.append(m.assign(run=r.name))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def pc1_table(runs: list[RunInfo], cfg: ReportConfig) -> pd.DataFrame:
    """PC1% per (run, attention matrix) and, for the first `cfg.null_runs` runs, the random-walk null."""
    from grokscope.geometry.pca import matrix_pca, random_walk_null

    rows = []
    n_null = 0
    for r in runs:
        if not r.run.file("trajectory.safetensors").exists():
            continue
        steps, attn = r.run.attention_trajectory()
        if not attn or len(steps) < 2:
            continue
        with_null = n_null < cfg.null_runs and len(steps) >= 3
        n_null += with_null
        for name, traj in attn.items():
            row = {"run": r.name, "name": name, "pc1_percent": matrix_pca(traj, 1).pc1_percent,
                   "null_mean": np.nan, "null_std": np.nan, "z": np.nan}
            if with_null:
                res = random_walk_null(traj, cfg.n_null, seed=0)
                row.update(null_mean=res.null_mean, null_std=res.null_std, z=res.z)
            rows.append(row)
    df = pd.DataFrame(rows)
    if len(df):
        layer = df["name"].str.extract(r"layers\.(\d+)\.")[0].fillna(-1).astype(int)
        df = df.assign(_layer=layer).sort_values(["_layer", "name"], kind="stable").drop(columns="_layer")
    return df


def defect_series(runs: list[RunInfo]) -> tuple[dict[str, pd.DataFrame], dict[str, str]]:
    """Defect vs step per run: the inline `defect` table, else the post-hoc one; and which was used."""
    series, source = {}, {}
    for r in runs:
        for table in ("defect", "defect_posthoc"):
            if r.run.has_table(table):
                d = r.run.table(table)
                if len(d) and "defect" in d:
                    series[r.name], source[r.name] = d, table
                    break
    return series, source


def onsets(runs: list[RunInfo], series: dict[str, pd.DataFrame]) -> dict[str, int | None]:
    """Defect onset per run (threshold detector of `geometry.onset`) from its defect series."""
    from grokscope.geometry.onset import onset_threshold

    out: dict[str, int | None] = {}
    for r in runs:
        if r.name in series:
            d = series[r.name]
            out[r.name] = onset_threshold(d["step"].to_numpy(), d["defect"].to_numpy(dtype=float))
        elif "summary" in r.analyses:
            out[r.name] = r.analyses["summary"].get("onset")
    return out


def geometry_summaries(runs: list[RunInfo], cfg: ReportConfig) -> dict[str, dict[str, Any]]:
    """Each run's `geometry_summary` as the sweep stored it in analyses.json (or computed, if asked)."""
    out = {}
    for r in runs:
        s = r.analyses.get("summary")
        if s is None and cfg.compute_summary and r.run.file("trajectory.safetensors").exists():
            from grokscope.geometry.summary import geometry_summary

            s = geometry_summary(r.run, draws=cfg.draws, device=cfg.device)
        if isinstance(s, dict):
            out[r.name] = s
    return out


def rho_tables(runs: list[RunInfo], summaries: dict[str, dict[str, Any]]
               ) -> tuple[dict[str, pd.DataFrame], pd.DataFrame]:
    """(ρ vs step per run from defect_posthoc, final ρ per run from the summary or the last post-hoc row)."""
    series, finals = {}, []
    for r in runs:
        post = r.run.table("defect_posthoc") if r.run.has_table("defect_posthoc") else None
        if post is not None and "rho" in post and post["rho"].notna().any():
            series[r.name] = post
        s = summaries.get(r.name, {})
        rho, rnd = _num(s.get("rho")), _num(s.get("rho_random"))
        if rho is None and r.name in series:
            last = series[r.name].sort_values("step").iloc[-1]
            rho, rnd = _num(last["rho"]), _num(last.get("rho_random"))
        if rho is not None:
            finals.append({"run": r.name, "rho": rho, "rho_random": np.nan if rnd is None else rnd})
    return series, pd.DataFrame(finals, columns=["run", "rho", "rho_random"])


def hessian_table(runs: list[RunInfo]) -> pd.DataFrame:
    """λ_min per (run, loss) from each run's hessian.parquet (`summarize_hessian`), with the run's wd."""
    from grokscope.geometry.hessian import summarize_hessian

    rows = []
    for r in runs:
        if not r.run.has_table("hessian"):
            continue
        df = r.run.table("hessian")
        if df.empty:
            continue
        for loss, s in summarize_hessian(df).items():
            if isinstance(s, dict):
                rows.append({"run": r.name, "wd": r.wd, "loss": loss, "lambda_min": s["lambda_min"],
                             "step": s["step"], "lambda_max_peak": s["lambda_max_peak"]})
    return pd.DataFrame(rows)


def k_star_table(runs: list[RunInfo]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(k* per run from fragility.json or reconstruction.parquet, all reconstruction rows)."""
    from grokscope.geometry.reconstruct import k_star

    rows, recon = [], []
    for r in runs:
        rec = r.run.table("reconstruction") if r.run.has_table("reconstruction") else None
        if rec is not None and len(rec):
            recon.append(rec.assign(run=r.name))
        ks: Any = None
        have = False
        if r.run.file("fragility.json").exists():
            ks, have = read_json(r.run.file("fragility.json")).get("k_star"), True
        elif rec is not None and len(rec):
            wide = rec.pivot_table(index="k", columns="task", values="test_acc")
            ks, have = k_star(wide.to_numpy(), list(wide.index)), True
        if have:
            rows.append({"run": r.name, "wd": r.wd, "k_star": np.nan if ks is None else float(ks)})
    return (pd.DataFrame(rows, columns=["run", "wd", "k_star"]),
            pd.concat(recon, ignore_index=True) if recon else pd.DataFrame())


def lead_table(runs: list[RunInfo], onset: dict[str, int | None]) -> pd.DataFrame:
    """One row per (run, task) with both a grok step and a defect onset: t_grok, onset, lead, fraction."""
    from grokscope.geometry.onset import lead, lead_fraction

    rows = []
    for r in runs:
        o = onset.get(r.name)
        for task, g in r.grok.items():
            if g is not None and o is not None:
                rows.append({"run": r.name, "task": task, "grok_step": int(g), "onset": int(o),
                             "lead": lead(g, o), "lead_fraction": lead_fraction(g, o)})
    return pd.DataFrame(rows, columns=["run", "task", "grok_step", "onset", "lead", "lead_fraction"])


def intervention_table(store: Path, out: Path) -> pd.DataFrame:
    """Every `intervention.parquet` below the store (see `geometry.interventions.write_scan`), with `base`
    = the base run's folder name (the scan lives in BASE_RUN/intervene-<kind>/ by default)."""
    from grokscope.store import read_table

    frames = []
    for f in sorted(store.rglob("intervention.parquet")):
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


def fragility_table(runs: list[RunInfo]) -> pd.DataFrame:
    """All runs' fragility.parquet rows (kind, value, task, test_acc), `run` set to the run's name."""
    frames = [r.run.table("fragility").assign(run=r.name) for r in runs if r.run.has_table("fragility")]
    frames = [f for f in frames if len(f)]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def tangent_series(runs: list[RunInfo]) -> dict[str, pd.DataFrame]:
    """P3 tangent-cosine rows per run (the `normmin` probe table of `geometry.normmin.tangent_probe`)."""
    out = {}
    for r in runs:
        if r.run.has_table("normmin"):
            d = r.run.table("normmin")
            if len(d) and "cos_tangent" in d:
                out[r.name] = d
    return out


def decoupled_history(store: Path, out: Path) -> pd.DataFrame:
    """P3 decoupled-dynamics histories (step, seed, test_acc[, w1_norm]) stored as *decoupled*.parquet."""
    from grokscope.store import read_table

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
            "pc1_mean": _num(s.get("pc1_mean")),
            "onset": onset.get(r.name),
            "rho": _num(s.get("rho")),
            "k_star": _num(ks.get(r.name)),
        })
    return pd.DataFrame(rows)


# ---- writing -----------------------------------------------------------------------------------------


def _save_figure(fig: Any, path: Path, dpi: int) -> None:
    """PNG via a temporary file renamed into place."""
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=dpi, format="png"))


def _write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def _fmt_cell(v: Any) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "—"
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, (dict, list)):
        return json.dumps(v, default=str)
    return str(v)


def table_html(df: pd.DataFrame, verdict_col: str | None = None) -> str:
    """A plain HTML table (escaped); a verdict column gets a CSS class per verdict."""
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in df.columns)
    body = []
    for _, row in df.iterrows():
        cells = []
        for c in df.columns:
            text = html.escape(_fmt_cell(row[c]))
            cls = ""
            if c == verdict_col:
                cls = f' class="v-{html.escape(str(row[c]).replace(" ", "-"))}"'
            cells.append(f"<td{cls}>{text}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


CSS = """
body { font-family: system-ui, sans-serif; margin: 1.5em auto; max-width: 1200px; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.15em; margin-top: 1.8em; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; font-size: 0.8em; margin: 0.5em 0; }
th, td { border: 1px solid #ddd; padding: 2px 6px; text-align: left; vertical-align: top; }
th { background: #f3f3f3; }
img { max-width: 100%; height: auto; border: 1px solid #eee; }
.caption { font-size: 0.85em; color: #444; max-width: 70em; }
.missing { color: #8a5300; font-size: 0.9em; }
.v-reproduced { background: #d8f5d0; } .v-partly { background: #fff1c2; }
.v-not-reproduced { background: #f9d0d0; } .v-inconclusive, .v-not-run { background: #eee; }
"""


def render_html(store: Path, sections: list[Section], overview: pd.DataFrame, n_runs: int) -> str:
    """The page: header, the list of absent quantities, the runs table, then one block per section."""
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    absent = [s for s in sections if s.missing]
    parts = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        f"<title>grokscope report: {html.escape(store.name or str(store))}</title>",
        f"<style>{CSS}</style></head><body>",
        f"<h1>grokscope report</h1><p>Store <code>{html.escape(str(store))}</code>: {n_runs} run(s); "
        f"generated {when}.</p>",
    ]
    if absent:
        parts.append("<h2>Not in this store</h2><ul class=\"missing\">")
        parts += [f"<li><b>{html.escape(s.title)}</b>: {html.escape(s.missing or '')}</li>" for s in absent]
        parts.append("</ul>")
    if len(overview):
        parts += ["<h2>Runs</h2>", table_html(overview)]
    for s in sections:
        parts.append(f'<h2 id="{html.escape(s.key)}">{html.escape(s.title)}</h2>')
        if s.missing:
            parts.append(f'<p class="missing">Skipped: {html.escape(s.missing)}</p>')
        if s.figure:
            parts.append(f'<img src="{html.escape(s.figure)}" alt="{html.escape(s.title)}">')
        if s.caption:
            parts.append(f'<p class="caption">{html.escape(s.caption)}</p>')
        if s.table is not None and len(s.table):
            parts.append(table_html(s.table, verdict_col="verdict" if "verdict" in s.table else None))
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def build_report(store: str | os.PathLike, out: str | os.PathLike | None = None,
                 cfg: ReportConfig = ReportConfig()) -> ReportResult:
    """Draw every figure the store has data for into `out` (default STORE/report), then write index.html."""
    from grokscope import plots
    from grokscope.geometry.onset import fit_power_law

    store = Path(store)
    if not store.exists():
        raise StoreError(f"{store} does not exist")
    out = Path(out) if out is not None else store / "report"
    if out.exists() and not out.is_dir():
        raise StoreError(f"--out {out} exists and is not a folder")
    runs = [_load_run(r) for r in find_runs([store])]
    claims = claims_rows(store, out)
    scans = intervention_table(store, out)
    p3_pngs = normmin_figures(store, out)
    decoupled = decoupled_history(store, out)
    if not runs and claims.empty and scans.empty and not p3_pngs and decoupled.empty:
        raise StoreError(f"no grokscope runs, claims or scans under {store}")
    out.mkdir(parents=True, exist_ok=True)

    sections: list[Section] = []
    figures: list[Path] = []

    def add(key: str, title: str, draw: Callable[[], Any] | None, caption: str = "",
            missing: str | None = None, table: pd.DataFrame | None = None) -> None:
        s = Section(key, title, caption=caption, table=table, missing=missing)
        if draw is not None and missing is None:
            fig = draw()
            path = out / f"{key}.png"
            _save_figure(fig, path, cfg.dpi)
            figures.append(path)
            s.figure = path.name
        sections.append(s)

    # accuracy
    metrics = metrics_table(runs)
    grok = {r.name: r.grok for r in runs}
    add("accuracy", "Accuracy and grokking",
        (lambda: plots.accuracy_curves(metrics, grok)) if len(metrics) else None,
        "Test accuracy (solid) and train accuracy (dashed) per task; dotted lines mark each run's grok step "
        "(test acc ≥ grok_acc for grok_patience consecutive evaluations).",
        None if len(metrics) else "no metrics.parquet in any run (train runs with `grokscope run`)")

    # PC1% vs null
    pc1 = pc1_table(runs, cfg)
    add("pc1", "Attention-trajectory PC1% vs random-walk null",
        (lambda: plots.pc1_vs_null(pc1)) if len(pc1) else None,
        f"Centred PCA of vec(W_t − W_0) per attention matrix (one dot per run); grey: random walks with the "
        f"same step norms ({cfg.n_null} walks, first {cfg.null_runs} runs).",
        None if len(pc1) else "no run has ≥ 2 recorded attention matrices (MLP runs have none)",
        pc1.groupby("name", sort=False)[["pc1_percent", "null_mean", "null_std", "z"]].mean().reset_index()
        if len(pc1) else None)

    # defect
    series, source = defect_series(runs)
    onset = onsets(runs, series)
    add("defect", "Commutator defect and its onset",
        (lambda: plots.defect_curves(series, onset, grok, cfg.max_panels)) if series else None,
        "Median commutator defect D over draws (log scale; tables: "
        + ", ".join(sorted(set(source.values()))) + "); red dashed: onset (first D > 10× the median of "
        f"the first 3 and D > 20); black dotted: grok steps. At most {cfg.max_panels} runs shown.",
        None if series else "no defect.parquet (train with defect_every > 0) or defect_posthoc.parquet "
        "(`grokscope analyze --what defect`)")

    # rho
    summaries = geometry_summaries(runs, cfg)
    rho_series, rho_finals = rho_tables(runs, summaries)
    have_rho = bool(rho_series) or len(rho_finals) > 0
    add("rho", "Integrability ρ",
        (lambda: plots.rho_plot(rho_series, rho_finals)) if have_rho else None,
        "ρ = ‖δ⊥‖/‖δ‖ with δ⊥ the part of the commutator δ orthogonal to the execution basis B; the control "
        "uses random orthonormal bases of the same size (papers: ρ ≈ 1.000 for wd > 0).",
        None if have_rho else "no geometry summary (sweep analysis `summary`, or `--compute`) and no "
        "defect_posthoc.parquet with ρ")

    # lambda_min
    hess = hessian_table(runs)
    add("lambda_min", "Curvature depth λ_min vs weight decay",
        (lambda: plots.lambda_min_vs_wd(hess)) if len(hess) else None,
        "Bottom Hessian eigenvalue (Lanczos), minimum over checkpoints, per loss; mean ± std over seeds.",
        None if len(hess) else "no hessian.parquet (`grokscope analyze --what hessian`)",
        hess if len(hess) else None)

    # k*
    kstar, recon = k_star_table(runs)
    add("k_star", "Reconstruction threshold k* vs weight decay",
        (lambda: plots.k_star_vs_wd(kstar)) if kstar["k_star"].notna().any() else None,
        "k* = smallest k with every task's test accuracy > 90% for θ₀ + Σ_{i≤k} v_i v_iᵀ Δθ.",
        None if kstar["k_star"].notna().any() else ("no fragility.json / reconstruction.parquet "
                                                    "(`grokscope fragility RUN`)" if kstar.empty
                                                    else "no run reached the threshold within k ≤ 20"),
        kstar if len(kstar) else None)
    if len(recon):
        add("reconstruction", "Reconstruction from trajectory PCs",
            lambda: plots.reconstruction_curves(recon),
            "Worst task's test accuracy of the model rebuilt from the top-k uncentred trajectory PCs.")

    # lead power law
    leads = lead_table(runs, onset)
    pos = leads[(leads["lead"] > 0)] if len(leads) else leads
    fit, fit_note = None, ""
    if len(pos):
        try:
            fit = fit_power_law(pos["grok_step"], pos["lead"])
            fit_note = (f" Fit over {fit.n} (run, task) points: α = {fit.alpha:.3f} ± {fit.alpha_se:.3f}, "
                        f"R² = {fit.r2:.3f} (P2: α = 1.27 ± 0.03, R² 0.97, n = 43).")
        except ValueError as e:
            fit_note = f" No fit: {e}."
    add("lead", "Lead of the defect onset over grokking",
        (lambda: plots.lead_power_law(leads, fit)) if len(pos) else None,
        "Lead Δt = t_grok − t_onset per (run, task), log–log; dashed: least-squares power law." + fit_note,
        None if len(pos) else ("no run has both a grok step and a defect onset" if leads.empty
                               else "no positive lead (onset after grokking in every case)"),
        leads if len(leads) else None)

    # interventions
    add("interventions", "Gradient interventions: deletion and suppression scans",
        (lambda: plots.intervention_scans(scans)) if len(scans) else None,
        "Grok step vs amount (deletion fraction f, suppression strength s, random controls); × marks runs "
        "that did not grok within their budget.",
        None if len(scans) else "no intervene-*/intervention.parquet (`grokscope intervene`)",
        scans.drop(columns=[c for c in ("grok_step_90",) if c in scans]) if len(scans) else None)

    # compression
    frag = fragility_table(runs)
    add("compression", "Compression and perturbation of the final model",
        (lambda: plots.compression_curves(frag)) if len(frag) else None,
        "Test accuracy after per-layer SVD of ΔW at rank r, keeping the top q of |Δθ|, scaling θ₀ + sΔθ, "
        "and random perturbation (averaged over sizes).",
        None if len(frag) else "no fragility.parquet (`grokscope fragility RUN`)")

    # P3
    tangent = tangent_series(runs)
    add("tangent", "P3: tangent cosine cos(Δθ, g̃)",
        (lambda: plots.tangent_cosine(tangent, grok)) if tangent else None,
        "Cosine between the parameter update over 10 steps and the projection of −θ onto the tangent "
        "space of the zero-loss manifold; P3 reports it peaks during grokking.",
        None if tangent else "no normmin.parquet (`grokscope normmin mlp --out STORE`)")
    add("decoupled", "P3: decoupled two-layer dynamics",
        (lambda: plots.decoupled_curves(decoupled)) if len(decoupled) else None,
        "W₂ = H⁺Y re-solved every step, W₁ following −∇R (P3 §7): test accuracy and ‖W₁‖ per seed.",
        None if len(decoupled) else "no decoupled-dynamics table (*decoupled*.parquet)")
    for i, png in enumerate(p3_pngs):
        name = f"p3_{i}_{png.name}"
        shutil.copyfile(png, out / name)
        figures.append(out / name)
        sections.append(Section(f"p3_{i}", f"P3 figure {png.name}", figure=name,
                                caption=f"As written by `grokscope normmin` at {png.relative_to(store)}."))

    # claims
    sections.append(Section("claims", "Paper claims: measured vs claimed",
                            table=claims if len(claims) else None,
                            caption="From claims_*.json in the store (`grokscope claims`).",
                            missing=None if len(claims) else "no claims_*.json (`grokscope claims`)"))

    overview = runs_overview(runs, onset, summaries, kstar)
    _write_text(out / INDEX, render_html(store, sections, overview, len(runs)))
    missing = {s.title: s.missing for s in sections if s.missing}
    return ReportResult(out / INDEX, figures, sections, missing)
