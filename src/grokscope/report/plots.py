"""Figures for the report: pure functions, plain tables in, a matplotlib `Figure` out.

Nothing here reads the store or touches pyplot's global state: each function builds a
`matplotlib.figure.Figure` (Agg canvas), so figures can be made from any thread and saved with
`fig.savefig(path)`. Inputs are the long tables the analyses write (column names as stored).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from grokscope.geometry.onset import PowerLawFit
from grokscope.report.labels import tick_labels

MAX_LEGEND = 10  # more lines than this: no legend (colours still cycle)


def _figure(n_panels: int = 1, ncols: int = 3, panel: tuple[float, float] = (4.6, 3.4)
            ) -> tuple[Figure, list]:
    """A figure with `n_panels` axes in a grid of at most `ncols` columns (extra cells hidden)."""
    n = max(1, n_panels)
    cols = min(ncols, n)
    rows = math.ceil(n / cols)
    fig = Figure(figsize=(panel[0] * cols, panel[1] * rows), layout="constrained")
    FigureCanvasAgg(fig)
    axes = list(np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel())
    for ax in axes[n:]:
        ax.set_visible(False)
    return fig, axes[:n]


def _legend(ax, n_lines: int, **kw) -> None:
    if 0 < n_lines <= MAX_LEGEND:
        ax.legend(fontsize=7, **kw)


def accuracy_curves(metrics: pd.DataFrame, grok: Mapping[str, Mapping[str, int | None]]) -> Figure:
    """Test (solid) and train (dashed) accuracy vs step, one panel per task, one colour per run; a dotted
    vertical line at each run's grok step for that task. `metrics`: run, step, task, split, acc."""
    tasks = list(dict.fromkeys(metrics["task"]))
    runs = list(dict.fromkeys(metrics["run"]))
    fig, axes = _figure(len(tasks))
    for ax, task in zip(axes, tasks, strict=True):
        for i, run in enumerate(runs):
            color = f"C{i % 10}"
            d = metrics[(metrics["run"] == run) & (metrics["task"] == task)].sort_values("step")
            te, tr = d[d["split"] == "test"], d[d["split"] == "train"]
            ax.plot(te["step"], te["acc"], color=color, lw=1.2, label=run)
            ax.plot(tr["step"], tr["acc"], color=color, lw=0.8, ls="--", alpha=0.6)
            g = grok.get(run, {}).get(task)
            if g is not None:
                ax.axvline(g, color=color, lw=0.8, ls=":")
        ax.set_title(f"{task}: test (solid), train (dashed), grok step (dotted)", fontsize=8)
        ax.set_xlabel("step")
        ax.set_ylabel("accuracy")
        ax.set_ylim(-0.02, 1.02)
        _legend(ax, len(runs), loc="lower right")
    return fig


def pc1_vs_null(df: pd.DataFrame) -> Figure:
    """PC1% of each attention matrix's trajectory (one dot per run, bar = mean) against the random-walk
    null (grey: null mean ± std, averaged over runs). `df`: run, name, pc1_percent, null_mean, null_std."""
    names = list(dict.fromkeys(df["name"]))
    labels, shared = tick_labels(names)
    chars = max(len(line) for label in labels for line in label.split("\n"))
    lines = max(label.count("\n") + 1 for label in labels)
    per_bar = max(0.9, 0.075 * chars + 0.25)  # inches a label needs at 8 pt
    rotate = per_bar * len(names) > 16  # too wide even so: labels turned upright, bars packed
    fig, (ax,) = _figure(1, panel=(min(16.0, max(5.0, (0.4 if rotate else per_bar) * len(names) + 1.5)),
                                   3.6 + (0.075 * chars if rotate else 0.14 * lines)))
    x = np.arange(len(names))
    obs = [df.loc[df["name"] == n, "pc1_percent"].to_numpy(dtype=float) for n in names]
    ax.bar(x - 0.2, [np.nanmean(o) for o in obs], width=0.4, color="C0", alpha=0.7, label="observed")
    for i, o in enumerate(obs):
        ax.plot(np.full(len(o), x[i] - 0.2), o, "k.", ms=3)
    if "null_mean" in df and df["null_mean"].notna().any():
        nm = [np.nanmean(df.loc[df["name"] == n, "null_mean"].to_numpy(dtype=float)) for n in names]
        ns = [np.nanmean(df.loc[df["name"] == n, "null_std"].to_numpy(dtype=float)) for n in names]
        ax.bar(x + 0.2, nm, width=0.4, yerr=ns, color="0.6", alpha=0.8, label="random-walk null")
    ax.set_xticks(x, labels, rotation=90 if rotate else 0, fontsize=8)
    if shared:
        ax.set_xlabel(f"watched matrix ({shared})", fontsize=8)
    ax.set_ylabel("PC1 % of trajectory variance")
    ax.set_ylim(0, 100)
    ax.legend(fontsize=7)
    return fig


def defect_curves(series: Mapping[str, pd.DataFrame], onset: Mapping[str, int | None],
                  grok: Mapping[str, Mapping[str, int | None]], max_panels: int = 12) -> Figure:
    """Commutator defect D vs step (log scale), one panel per run (at most `max_panels`): red dashed line
    at the defect onset, black dotted lines at the grok steps. `series[run]`: step, defect[, defect_cross]."""
    runs = list(series)[:max_panels]
    fig, axes = _figure(len(runs))
    for ax, run in zip(axes, runs, strict=True):
        d = series[run].sort_values("step")
        ax.plot(d["step"], d["defect"], "C0.-", lw=1, ms=3, label="total")
        if "defect_cross" in d and d["defect_cross"].notna().any():
            ax.plot(d["step"], d["defect_cross"], "C1.-", lw=0.8, ms=2, label="cross")
        if (d["defect"] > 0).any():
            ax.set_yscale("log")
        o = onset.get(run)
        if o is not None:
            ax.axvline(o, color="r", ls="--", lw=1, label=f"onset {o}")
        for task, g in grok.get(run, {}).items():
            if g is not None:
                ax.axvline(g, color="k", ls=":", lw=1, label=f"grok {task} {g}")
        ax.set_title(run, fontsize=8)
        ax.set_xlabel("step")
        ax.set_ylabel("defect D")
        ax.legend(fontsize=6)
    return fig


def rho_plot(series: Mapping[str, pd.DataFrame], finals: pd.DataFrame) -> Figure:
    """Integrability ρ = ‖δ⊥‖/‖δ‖. Left: ρ vs step per run (post-hoc defects; dashed = random-basis
    control) when `series` is given. Right: ρ at the final snapshot per run vs its random-basis control.
    `series[run]`: step, rho, rho_random; `finals`: run, rho, rho_random."""
    panels = (["series"] if series else []) + (["finals"] if len(finals) else [])
    fig, axes = _figure(len(panels), ncols=2, panel=(5.5, 3.6))
    for ax, kind in zip(axes, panels, strict=True):
        if kind == "series":
            for i, (run, d) in enumerate(series.items()):
                d = d.sort_values("step")
                ax.plot(d["step"], d["rho"], color=f"C{i % 10}", lw=1, label=run)
                if "rho_random" in d:
                    ax.plot(d["step"], d["rho_random"], color=f"C{i % 10}", lw=0.7, ls="--")
            ax.set_xlabel("step")
            ax.set_ylabel("ρ (dashed: random basis)")
            _legend(ax, len(series))
        else:
            x = np.arange(len(finals))
            ax.plot(x, finals["rho"].to_numpy(dtype=float), "o", color="C0", label="execution basis B")
            ax.plot(x, finals["rho_random"].to_numpy(dtype=float), "s", color="0.5", mfc="none",
                    label="random bases")
            ax.set_xticks(x, [str(r) for r in finals["run"]], rotation=60, ha="right", fontsize=6)
            lo = np.nanmin(finals[["rho", "rho_random"]].to_numpy(dtype=float))
            if np.isfinite(lo):
                ax.set_ylim(max(0.0, min(lo, 1.0) - 0.002), 1.001)
            ax.axhline(1.0, color="k", lw=0.5, ls=":")
            ax.set_ylabel("ρ at the final snapshot")
            ax.legend(fontsize=7)
    return fig


def _vs_wd(ax, df: pd.DataFrame, y: str, group: str | None = None) -> None:
    """Scatter of `y` vs `wd` (jittered colour per group) with the mean per wd joined by a line."""
    groups = list(dict.fromkeys(df[group])) if group else [None]
    for i, g in enumerate(groups):
        d = df if g is None else df[df[group] == g]
        d = d[np.isfinite(d[y].to_numpy(dtype=float))]
        ax.plot(d["wd"], d[y], ".", color=f"C{i % 10}", alpha=0.6)
        m = d.groupby("wd")[y].agg(["mean", "std"]).reset_index()
        ax.errorbar(m["wd"], m["mean"], yerr=m["std"].fillna(0), color=f"C{i % 10}", lw=1.2, capsize=3,
                    label=None if g is None else str(g))
    ax.set_xlabel("weight decay")
    if group:
        _legend(ax, len(groups))


def lambda_min_vs_wd(df: pd.DataFrame) -> Figure:
    """Curvature depth λ_min (min over checkpoints of the bottom Hessian eigenvalue) vs weight decay, per
    loss (total and per task); mean ± std over seeds. `df`: run, wd, loss, lambda_min."""
    fig, (ax,) = _figure(1, panel=(5.5, 3.8))
    _vs_wd(ax, df, "lambda_min", "loss")
    ax.axhline(0, color="k", lw=0.5)
    ax.set_ylabel("λ_min (depth)")
    return fig


def k_star_vs_wd(df: pd.DataFrame) -> Figure:
    """Reconstruction threshold k* vs weight decay (mean ± std over seeds). `df`: run, wd, k_star."""
    fig, (ax,) = _figure(1, panel=(5.5, 3.8))
    _vs_wd(ax, df, "k_star")
    ax.set_ylabel("k* (trajectory PCs to rebuild the model)")
    return fig


def reconstruction_curves(df: pd.DataFrame, threshold: float = 0.9) -> Figure:
    """Test accuracy of θ₀ + Σ_{i≤k} v_i v_iᵀ Δθ vs k (worst task per run), with the k* threshold.
    `df`: run, k, task, test_acc."""
    fig, (ax,) = _figure(1, panel=(5.5, 3.8))
    runs = list(dict.fromkeys(df["run"]))
    for i, run in enumerate(runs):
        d = df[df["run"] == run].groupby("k")["test_acc"].min()
        ax.plot(d.index, d.to_numpy(), ".-", color=f"C{i % 10}", lw=1, label=run)
    ax.axhline(threshold, color="k", ls=":", lw=0.8)
    ax.set_xlabel("k (uncentred trajectory PCs)")
    ax.set_ylabel("min over tasks of test accuracy")
    ax.set_ylim(-0.02, 1.02)
    _legend(ax, len(runs))
    return fig


def lead_power_law(df: pd.DataFrame, fit: PowerLawFit | None) -> Figure:
    """Lead Δt = t_grok − t_onset vs t_grok in log–log, one colour per task, with the least-squares power
    law Δt ∝ t_grok^α when `fit` is given. `df`: run, task, grok_step, lead."""
    fig, (ax,) = _figure(1, panel=(5.5, 4.0))
    pos = df[(df["lead"] > 0) & (df["grok_step"] > 0)]
    tasks = list(dict.fromkeys(pos["task"]))
    for i, task in enumerate(tasks):
        d = pos[pos["task"] == task]
        ax.plot(d["grok_step"], d["lead"], "o", color=f"C{i % 10}", ms=4, label=task)
    if fit is not None:
        xs = np.geomspace(pos["grok_step"].min(), pos["grok_step"].max(), 50)
        ax.plot(xs, 10 ** fit.intercept * xs ** fit.alpha, "k--", lw=1,
                label=f"α = {fit.alpha:.2f} ± {fit.alpha_se:.2f}, R² = {fit.r2:.2f}, n = {fit.n}")
    if len(pos):
        ax.set_xscale("log")
        ax.set_yscale("log")
    ax.set_xlabel("t_grok")
    ax.set_ylabel("lead t_grok − t_onset")
    ax.legend(fontsize=7)
    return fig


def intervention_scans(df: pd.DataFrame) -> Figure:
    """Grok step vs intervention amount, one panel per kind (deletion f, suppression s, ...), one line per
    (base run, task); runs that never grokked are drawn as × at the top of the panel.
    `df`: base, kind, value, task, grok_step (NaN = no grok), steps_trained."""
    kinds = list(dict.fromkeys(df["kind"]))
    fig, axes = _figure(len(kinds), ncols=2, panel=(5.5, 3.8))
    for ax, kind in zip(axes, kinds, strict=True):
        d = df[df["kind"] == kind]
        top = float(np.nanmax(d["steps_trained"].to_numpy(dtype=float))) if "steps_trained" in d else np.nan
        keys = list(dict.fromkeys(zip(d["base"], d["task"], strict=True)))
        for i, (base, task) in enumerate(keys):
            e = d[(d["base"] == base) & (d["task"] == task)].sort_values("value")
            g = e["grok_step"].to_numpy(dtype=float)
            color = f"C{i % 10}"
            ax.plot(e["value"], g, "o-", color=color, ms=3, lw=1, label=f"{base} {task}")
            miss = ~np.isfinite(g)
            if miss.any() and np.isfinite(top):
                ax.plot(e["value"].to_numpy()[miss], np.full(miss.sum(), top), "x", color=color, ms=7)
        ax.set_title(f"{kind} (× = no grok within budget)", fontsize=8)
        ax.set_xlabel("amount")
        ax.set_ylabel("grok step")
        _legend(ax, len(keys))
    return fig


def compression_curves(df: pd.DataFrame) -> Figure:
    """Test accuracy of the edited final model vs the edit's amount, one panel per kind (SVD rank of ΔW,
    pruning keep-fraction of |Δθ|, scale s, random perturbation), one line per (run, task).
    `df`: run, kind, value, task, test_acc (perturbations averaged over their sizes)."""
    kinds = list(dict.fromkeys(df["kind"]))
    fig, axes = _figure(len(kinds), ncols=2, panel=(5.0, 3.5))
    for ax, kind in zip(axes, kinds, strict=True):
        d = df[df["kind"] == kind].groupby(["run", "task", "value"], sort=False)["test_acc"].mean()
        d = d.reset_index()
        keys = list(dict.fromkeys(zip(d["run"], d["task"], strict=True)))
        for i, (run, task) in enumerate(keys):
            e = d[(d["run"] == run) & (d["task"] == task)].sort_values("value")
            ax.plot(e["value"], e["test_acc"], "o-", color=f"C{i % 10}", ms=3, lw=1, label=f"{run} {task}")
        ax.set_title(kind, fontsize=9)
        ax.set_xlabel("amount")
        ax.set_ylabel("test accuracy")
        ax.set_ylim(-0.02, 1.02)
        _legend(ax, len(keys))
    return fig


def tangent_cosine(series: Mapping[str, pd.DataFrame],
                   markers: Mapping[str, Mapping[str, int | None]] | None = None) -> Figure:
    """P3: cos(Δθ, g̃) (projection of −θ onto the tangent of the zero-loss manifold) vs step per run,
    cos(Δθ, −θ) dashed, dotted: grok steps. `series[run]`: step, cos_tangent[, cos_decay]."""
    fig, (ax,) = _figure(1, panel=(6.5, 3.8))
    markers = markers or {}
    for i, (run, d) in enumerate(series.items()):
        d = d.sort_values("step")
        color = f"C{i % 10}"
        ax.plot(d["step"], d["cos_tangent"], color=color, lw=1.2, label=run)
        if "cos_decay" in d:
            ax.plot(d["step"], d["cos_decay"], color=color, lw=0.7, ls="--")
        for g in markers.get(run, {}).values():
            if g is not None:
                ax.axvline(g, color=color, ls=":", lw=0.8)
    ax.set_xlabel("step")
    ax.set_ylabel("cos(Δθ, g̃)  (dashed: cos(Δθ, −θ))")
    _legend(ax, len(series))
    return fig


def decoupled_curves(history: pd.DataFrame) -> Figure:
    """P3 decoupled two-layer dynamics: test accuracy and ‖W₁‖ vs step per seed.
    `history`: step, seed, test_acc[, w1_norm]."""
    panels = ["test_acc"] + (["w1_norm"] if "w1_norm" in history else [])
    fig, axes = _figure(len(panels), ncols=2, panel=(5.0, 3.5))
    seeds = list(dict.fromkeys(history["seed"]))
    for ax, col in zip(axes, panels, strict=True):
        for i, s in enumerate(seeds):
            d = history[history["seed"] == s].sort_values("step")
            ax.plot(d["step"], d[col], color=f"C{i % 10}", lw=1, label=f"seed {s}")
        ax.set_xlabel("step")
        ax.set_ylabel("test accuracy" if col == "test_acc" else "‖W₁‖")
        _legend(ax, len(seeds))
    return fig



def method_curves(metrics: pd.DataFrame, defects: pd.DataFrame) -> Figure:
    """Grokking methods side by side: test accuracy vs step per task (left panels) and the commutator defect
    vs step (right, log scale), one colour per method, one line per run (seed). `metrics`: method, run,
    step, task, split, acc; `defects`: method, run, step, defect (may be empty)."""
    tasks = list(dict.fromkeys(metrics["task"]))
    methods = list(dict.fromkeys(metrics["method"]))
    fig, axes = _figure(len(tasks) + 1, ncols=len(tasks) + 1)
    colour = {m: f"C{i % 10}" for i, m in enumerate(methods)}
    for ax, task in zip(axes, tasks):
        test = metrics[(metrics["task"] == task) & (metrics["split"] == "test")]
        for method in methods:
            for i, (_, d) in enumerate(test[test["method"] == method].groupby("run", sort=False)):
                d = d.sort_values("step")
                ax.plot(d["step"], d["acc"], color=colour[method], lw=1, alpha=0.8, label=method if i == 0 else None)
        ax.set_title(f"test accuracy, {task}", fontsize=9)
        ax.set_xlabel("step")
        ax.set_ylim(-0.02, 1.02)
        _legend(ax, len(ax.get_legend_handles_labels()[1]))
    ax = axes[-1]
    for method in methods:
        sub = defects[defects["method"] == method] if len(defects) else defects
        for i, (_, d) in enumerate(sub.groupby("run", sort=False) if len(sub) else []):
            d = d.sort_values("step")
            ax.plot(d["step"], d["defect"], color=colour[method], lw=1, alpha=0.8, label=method if i == 0 else None)
    if len(defects) and (defects["defect"] > 0).any():
        ax.set_yscale("log")
    ax.set_title("commutator defect D", fontsize=9)
    ax.set_xlabel("step")
    _legend(ax, len(ax.get_legend_handles_labels()[1]))
    return fig


def _grok_lines(ax, grok: Mapping[str, int | None]) -> None:
    """Black dotted lines at a run's grok steps."""
    for task, g in grok.items():
        if g is not None:
            ax.axvline(g, color="k", ls=":", lw=1, label=f"grok {task} {g}")


def progress_curves(series: Mapping[str, pd.DataFrame], grok: Mapping[str, Mapping[str, int | None]],
                    max_panels: int = 12) -> Figure:
    """Nanda et al.'s progress measures vs step, one panel per (run, task): excluded loss (training pairs) and
    restricted loss (all pairs) with the end-of-run key frequencies, Gini of the Fourier norms on the right."""
    keys = [(run, task) for run, df in series.items() for task in dict.fromkeys(df["task"])][:max_panels]
    fig, axes = _figure(len(keys))
    for ax, (run, task) in zip(axes, keys, strict=True):
        d = series[run][series[run]["task"] == task].sort_values("step")
        ax.plot(d["step"], d["excluded_loss_final"], "C3.-", lw=1, ms=3, label="excluded (train)")
        ax.plot(d["step"], d["restricted_loss_final"], "C2.-", lw=1, ms=3, label="restricted (all)")
        ax.set_yscale("log")
        _grok_lines(ax, grok.get(run, {}))
        g = ax.twinx()
        g.plot(d["step"], d["gini"], "C0--", lw=1, label="Gini")
        g.set_ylabel("Gini", fontsize=7)
        keys_final = [int(k) for k in d["key_final"].iloc[-1]] if len(d) else []
        ax.set_title(f"{run} · {task} · keys {keys_final}", fontsize=7)
        ax.set_xlabel("step")
        ax.set_ylabel("loss")
        ax.legend(fontsize=6)
    return fig


def llc_curves(series: Mapping[str, pd.DataFrame], grok: Mapping[str, Mapping[str, int | None]],
               max_panels: int = 12) -> Figure:
    """The LLC (devinterp) vs step, mean ± sd over chains, one panel per run; grok steps dotted."""
    runs = list(series)[:max_panels]
    fig, axes = _figure(len(runs))
    for ax, run in zip(axes, runs, strict=True):
        d = series[run].sort_values("step")
        ax.errorbar(d["step"], d["llc"], yerr=d["llc_std"], fmt="C4.-", lw=1, ms=3, capsize=2)
        _grok_lines(ax, grok.get(run, {}))
        ax.set_title(run, fontsize=8)
        ax.set_xlabel("step")
        ax.set_ylabel("LLC")
    return fig
