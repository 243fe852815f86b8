"""The report's sections, one function each: (store data) → a Panel (figure to draw, caption, table, or why
the quantity is absent). `SECTIONS` is the page's order; add a quantity by adding a function to it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pandas as pd

from grokscope.geometry.onset import fit_power_law
from grokscope.report import plots
from grokscope.report.early_warning import warning_table
from grokscope.report.early_warning_plot import warning_curves
from grokscope.report.gather import StoreData
from grokscope.report.layer_tables import group_table

__all__ = ["Panel", "SECTIONS"]


@dataclass
class Panel:
    """A section before drawing: `draw()` makes its figure (None: no figure), `missing` says why it is empty."""

    key: str
    title: str
    draw: Callable[[], Any] | None
    caption: str = ""
    missing: str | None = None
    table: pd.DataFrame | None = None


def _panel(key: str, title: str, have: bool, draw: Callable[[], Any], caption: str, missing: str,
           table: pd.DataFrame | None = None) -> Panel:
    """A section that is drawn (with `table`, if any) when the store `have`s its data, else says `missing`."""
    if have:
        return Panel(key, title, draw, caption, None, table)
    return Panel(key, title, None, caption, missing)


def _hint(d: StoreData, trained: str, monitored: str) -> str:
    """Why a quantity is absent, said for the kinds of run the store holds: grokscope's own (`trained`) and
    runs recorded by grokscope.Monitor from a user's model (`monitored`), which grokscope cannot rebuild."""
    kinds = {r.monitored for r in d.runs}
    if kinds == {True}:
        return monitored
    if kinds == {False} or not kinds:
        return trained
    return f"grokscope's runs: {trained}; monitored runs: {monitored}"


NOT_REBUILT = "grokscope cannot rebuild, retrain or re-measure a user's model afterwards"


def accuracy(d: StoreData) -> Panel:
    m = d.metrics
    return _panel("accuracy", "Accuracy and grokking", len(m) > 0, lambda: plots.accuracy_curves(m, d.grok),
                  "Test accuracy (solid) and train accuracy (dashed) per task; dotted lines mark each run's grok "
                  "step (test acc ≥ grok_acc for grok_patience consecutive evaluations).",
                  _hint(d, "no metrics in any run: `grokscope run --out STORE`",
                        "no metrics logged: pass them as `mon.step(step, metrics={'train_acc': ..., "
                        "'test_acc': ...})`"))


def pc1(d: StoreData) -> Panel:
    t = d.pc1
    return _panel("pc1", "Attention-trajectory PC1% vs random-walk null", len(t) > 0, lambda: plots.pc1_vs_null(t),
                  f"Centred PCA of vec(W_t − W_0) per attention matrix (one dot per run); grey: equal-step random "
                  f"walks with as many snapshots ({d.cfg.n_null} walks, first {d.cfg.null_runs} runs; ≈ 61–62 % "
                  f"for 10–12 snapshots). Compare points above or below it; z is no significance level (the "
                  f"walks' spread shrinks with the matrix size).",
                  _hint(d, "no run with ≥ 2 recorded attention matrices (MLP runs have none)",
                        "no watched tensor recorded at 2+ steps: `Monitor(watch=[...], watch_every=N)` with N "
                        "below the run's length"),
                  t.groupby("name", sort=False)[["pc1_percent", "null_mean", "null_std", "z"]].mean().reset_index()
                  if len(t) else None)


def defect(d: StoreData) -> Panel:
    series, source = d.defects
    n = d.cfg.max_panels
    return _panel("defect", "Commutator defect and its onset", bool(series),
                  lambda: plots.defect_curves(series, d.onset, d.grok, n),
                  "Median commutator defect D over draws (log scale; tables: "
                  + ", ".join(sorted(set(source.values()))) + "); red dashed: onset (first D > 10× the median of "
                  f"the first 3 and D > 20); black dotted: grok steps. At most {n} runs shown.",
                  _hint(d, "no defect table: `grokscope analyze STORE/* --what defect`",
                        f"the monitor measured no defect: `Monitor(defect_every=N)` ({NOT_REBUILT})"))


def rho(d: StoreData) -> Panel:
    series, finals = d.rho
    return _panel("rho", "Integrability ρ", bool(series) or len(finals) > 0, lambda: plots.rho_plot(series, finals),
                  "ρ = ‖δ⊥‖/‖δ‖ with δ⊥ the part of the commutator δ orthogonal to the execution basis B; the "
                  "control uses random orthonormal bases of the same size (papers: ρ ≈ 1.000 for wd > 0).",
                  _hint(d, "no geometry summary: `grokscope report STORE --compute`",
                        "ρ is not computed for a monitored model: it re-measures commutators at stored "
                        f"snapshots against the execution basis, and {NOT_REBUILT} (its inline defect is above)"))


def lambda_min(d: StoreData) -> Panel:
    h = d.hessian
    return _panel("lambda_min", "Curvature depth λ_min vs weight decay", len(h) > 0,
                  lambda: plots.lambda_min_vs_wd(h),
                  "Bottom Hessian eigenvalue (Lanczos), minimum over checkpoints, per loss; mean ± std over seeds.",
                  _hint(d, "no hessian table: `grokscope analyze STORE/* --what hessian`",
                        "no λ_min recorded: `Monitor(hessian_every=N)`"), h)


def k_star(d: StoreData) -> Panel:
    kstar, _ = d.k_star
    have = bool(kstar["k_star"].notna().any())
    return Panel("k_star", "Reconstruction threshold k* vs weight decay",
                 (lambda: plots.k_star_vs_wd(kstar)) if have else None,
                 "k* = smallest k with every task's test accuracy > 90% for θ₀ + Σ_{i≤k} v_i v_iᵀ Δθ.",
                 None if have else (_hint(d, "no reconstruction table: `grokscope fragility RUN`",
                                          f"k* rebuilds the model from its trajectory's PCs: {NOT_REBUILT}")
                                    if kstar.empty else "no run reached the threshold within k ≤ 20"),
                 kstar if len(kstar) else None)


def reconstruction(d: StoreData) -> Panel | None:
    _, recon = d.k_star
    if not len(recon):
        return None
    return Panel("reconstruction", "Reconstruction from trajectory PCs",
                 lambda: plots.reconstruction_curves(recon),
                 "Worst task's test accuracy of the model rebuilt from the top-k uncentred trajectory PCs.")


def progress(d: StoreData) -> Panel | None:
    series = d.progress
    if not series:
        return None
    n = d.cfg.max_panels
    return Panel("progress", "Progress measures (Nanda et al. 2023)",
                 lambda: plots.progress_curves(series, d.grok, n),
                 "Excluded loss (logits without the key frequencies' cos/sin(w_k(a±b)) components, on the training "
                 "pairs) and restricted loss (only the constant and those components, on all pairs), both with "
                 "the end-of-run key frequencies of the token embedding; dashed: Gini of its Fourier norms. "
                 f"`grokscope analyze --what progress`; at most {n} panels.")


def llc(d: StoreData) -> Panel | None:
    series = d.llc
    if not series:
        return None
    n = d.cfg.max_panels
    return Panel("llc", "Local learning coefficient (devinterp)", lambda: plots.llc_curves(series, d.grok, n),
                 "LLC by devinterp's SGLD at stored snapshots, mean ± sd over chains; the sampler's settings are "
                 f"in each run's analyses.json (`grokscope analyze --what llc`). At most {n} runs.")


def lead(d: StoreData) -> Panel:
    leads = d.leads
    pos = leads[(leads["lead"] > 0)] if len(leads) else leads
    fit, note = None, ""
    if len(pos):
        try:
            fit = fit_power_law(pos["grok_step"], pos["lead"])
            note = (f" Fit over {fit.n} (run, task) points: α = {fit.alpha:.3f} ± {fit.alpha_se:.3f}, "
                    f"R² = {fit.r2:.3f} (P2: α = 1.27 ± 0.03, R² 0.97, n = 43).")
        except ValueError as e:
            note = f" No fit: {e}."
    return Panel("lead", "Lead of the defect onset over grokking",
                 (lambda: plots.lead_power_law(leads, fit)) if len(pos) else None,
                 "Lead Δt = t_grok − t_onset per (run, task), log–log; dashed: least-squares power law." + note,
                 None if len(pos) else ("no run has both a grok step and a defect onset" if leads.empty
                                        else "no positive lead (onset after grokking in every case)"),
                 leads if len(leads) else None)


def interventions(d: StoreData) -> Panel:
    s = d.scans
    return _panel("interventions", "Gradient interventions: deletion and suppression scans", len(s) > 0,
                  lambda: plots.intervention_scans(s),
                  "Grok step vs amount (deletion fraction f, suppression strength s, random controls); × marks "
                  "runs that did not grok within their budget.",
                  _hint(d, "no intervention scan: `grokscope intervene RUN --kind deletion`",
                        f"an intervention retrains the run with a gradient transform: {NOT_REBUILT}"),
                  s.drop(columns=[c for c in ("grok_step_90",) if c in s]))


def compression(d: StoreData) -> Panel:
    f = d.fragility
    return _panel("compression", "Compression and perturbation of the final model", len(f) > 0,
                  lambda: plots.compression_curves(f),
                  "Test accuracy after per-layer SVD of ΔW at rank r, keeping the top q of |Δθ|, scaling "
                  "θ₀ + sΔθ, and random perturbation (averaged over sizes).",
                  _hint(d, "no fragility table: `grokscope fragility RUN`",
                        f"compression and perturbation rebuild the final model: {NOT_REBUILT}"))


def tangent(d: StoreData) -> Panel:
    t = d.tangent
    return _panel("tangent", "P3: tangent cosine cos(Δθ, g̃)", bool(t), lambda: plots.tangent_cosine(t, d.grok),
                  "Cosine between the parameter update over 10 steps and the projection of −θ onto the tangent "
                  "space of the zero-loss manifold; P3 reports it peaks during grokking.",
                  "no tangent-cosine table: `grokscope normmin mlp --out STORE`")


def decoupled(d: StoreData) -> Panel:
    h = d.decoupled
    return _panel("decoupled", "P3: decoupled two-layer dynamics", len(h) > 0, lambda: plots.decoupled_curves(h),
                  "W₂ = H⁺Y re-solved every step, W₁ following −∇R (P3 §7): test accuracy and ‖W₁‖ per seed.",
                  "no decoupled-dynamics history; the figure alone: `grokscope normmin decoupled --out STORE`")


def early_warning(d: StoreData) -> Panel | None:
    views = d.warnings
    if not views:
        return None  # no monitored run
    n = d.cfg.max_panels
    scored = any(v.scores is not None for v in views)
    return Panel("early_warning", "Early warning of grokking (monitored runs)",
                 (lambda: warning_curves(views, n)) if scored else None,
                 "Did the monitor warn, when, with which detector, and what did it predict? Per run: the "
                 "detector's score at each defect measurement (replayed from the inputs the monitor recorded, "
                 "which reproduces the live scores) against its threshold; red dashed: the warning; red band: the "
                 "predicted grokking window (dotted: its centre); black dotted: the grok step (test accuracy ≥ "
                 f"grok_acc for grok_patience evaluations). At most {n} runs drawn; the table has every run and "
                 "says why a run warned or did not (the detector: docs/early-warning.md).",
                 None, warning_table(views))


def layers(d: StoreData) -> Panel | None:
    t = group_table(d.runs)
    if not len(t):
        return None
    return Panel("layers", "Per-layer commutator and curvature (monitor)", None,
                 "Per parameter group (a layer by default) at each run's last measured step: D_g = D·‖δ_g‖/‖δ‖ and "
                 "share = ‖δ_g‖²/‖δ‖² (Σ_g share = 1; median over draws; free: δ is already computed), and for "
                 "`hessian_groups` the extreme eigenvalues of the group's Hessian block by Lanczos (one full HVP "
                 "per iteration; lanczos_s = seconds of that measurement).", None, t)


SECTIONS: tuple[Callable[[StoreData], Panel | None], ...] = (
    accuracy, pc1, defect, early_warning, layers, rho, lambda_min, progress, llc, k_star, reconstruction, lead,
    interventions, compression, tangent, decoupled,
)
