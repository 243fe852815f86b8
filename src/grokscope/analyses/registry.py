"""Per-run analyses, registered once: name → fn(run, device, **options) → a JSON-ready result.

Every analysis reads what a run directory holds, writes its tables beside it and returns a small summary.
`run_analysis` runs one and stores its result through `RunDir.write_analysis` (analyses.json); the sweep,
the CLI, the report, the phase table and the claims all go through this registry, so an analysis has one
implementation and one stored form. Add one with `@register("name")`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from grokscope.analyses.progress_measures import Embedding, Logits, progress_table, summarize_progress
from grokscope.config import EXTERNAL
from grokscope.errors import ConfigError, TooLittleData
from grokscope.formatting import num
from grokscope.geometry.checkpoints import select_snapshots
from grokscope.geometry.commutator import defects_from_snapshots
from grokscope.geometry.compress import FragilityConfig, fragility
from grokscope.geometry.hessian import analyze_hessian, depth_over_samples, summarize_depth_draws, summarize_hessian
from grokscope.geometry.llc import LLCSettings, llc_table
from grokscope.geometry.onset import defect_timing, lead, lead_fraction, onset_envelope, posthoc_indices
from grokscope.geometry.pca import attention_pca, watch_patterns, watched_trajectories
from grokscope.geometry.reconstruct import reconstruction_threshold
from grokscope.geometry.summary import defect_onsets, geometry_summary
from grokscope.store import (
    DEFECT_TABLE,
    FRAGILITY,
    FRAGILITY_TABLE,
    HESSIAN_DRAWS_TABLE,
    HESSIAN_TABLE,
    LLC_TABLE,
    PCA_TABLE,
    POSTHOC_TABLE,
    PROGRESS_TABLE,
    RECONSTRUCTION_TABLE,
    RunDir,
    write_json,
)

__all__ = ["ANALYSES", "register", "analysis_names", "check_analysis", "resolve_analysis", "run_analysis",
           "stored_analysis", "missing_analyses", "analyze_summary", "analyze_pca", "analyze_defect",
           "analyze_hessian_run", "analyze_fragility", "analyze_progress", "analyze_llc"]

AnalysisFn = Callable[..., dict[str, Any]]
ANALYSES: dict[str, AnalysisFn] = {}


def register(name: str) -> Callable[[AnalysisFn], AnalysisFn]:
    """Decorator: file `fn(run, device="cpu", **options) -> dict` under `name` (a name is registered once)."""

    def add(fn: AnalysisFn) -> AnalysisFn:
        if name in ANALYSES:
            raise ValueError(f"analysis {name!r} is registered twice")
        ANALYSES[name] = fn
        return fn

    return add


def analysis_names() -> tuple[str, ...]:
    """The registered analyses, in registration order."""
    return tuple(ANALYSES)


def check_analysis(name: Any) -> str:
    """`name` if it is a registered analysis, else a one-line ConfigError listing them."""
    if name not in ANALYSES:
        raise ConfigError(f"unknown analysis {name!r}; choose from {', '.join(ANALYSES)}")
    return name


def resolve_analysis(name: str) -> AnalysisFn:
    """The function behind an analysis name."""
    return ANALYSES[check_analysis(name)]


def run_analysis(run: RunDir, name: str, device: str = "cpu", **options: Any) -> Any:
    """Run one analysis on a stored run and store its result in the run's analyses.json; returns it. A run
    too short for it gets `{"skipped": what is missing}` instead, and the caller carries on."""
    fn = resolve_analysis(name)
    try:
        result = fn(run, device, **options)
    except TooLittleData as e:
        result = {"skipped": str(e)}
    return run.write_analysis(name, result)


def stored_analysis(run: RunDir, name: str) -> Any:
    """A run's stored result of analysis `name` (None when it has not been run on this run)."""
    return run.analyses().get(check_analysis(name))


def missing_analyses(run: RunDir, names: Sequence[str]) -> list[str]:
    """Those of `names` the run has no stored result for."""
    done = run.analyses()
    return [a for a in names if a not in done]


@register("summary")
def analyze_summary(run: RunDir, device: str = "cpu", draws: int = 9,
                    watch: str | Sequence[str] | None = None) -> dict[str, Any]:
    """PC1% (of the trajectories `watch` picks), integrability ρ at the last snapshot, defect onset and lead
    (grokscope.geometry.summary)."""
    return geometry_summary(run, draws=draws, device=device, watch=watch)


@register("pca")
def analyze_pca(run: RunDir, device: str = "cpu", watch: str | Sequence[str] | None = None) -> dict[str, Any]:
    """Trajectory PCA of the attention matrices (a monitored run: its watched tensors) → pca.parquet; summary:
    PC1% per matrix and mean. `watch` (globs) picks the trajectories, e.g. an MLP's first layer; a pattern that
    matches no watched tensor reads the full snapshots (`geometry.pca.watched_trajectories`)."""
    steps, attn, source = watched_trajectories(run, watch)
    if not attn:
        return {"skipped": "no attention matrices (MLP): name the trajectories to read with watch= (--watch GLOB)"}
    if len(steps) < 2:
        every = run.config().attn_every if source == "watched" else "snapshot"
        return {"skipped": f"PCA needs the trajectories at 2+ steps (every {every}); this run has {len(steps)}"}
    df = attention_pca(run, watch=watch)
    run.write_table(PCA_TABLE, df)
    out = {"pc1_mean": num(df["pc1_percent"].mean()),
           "pc1_percent": {n: num(v) for n, v in zip(df["name"], df["pc1_percent"], strict=True)}}
    return out if watch is None else {**out, "watch": list(watch_patterns(watch)), "source": source}


def _external(run: RunDir) -> bool:
    """A run recorded by grokscope.Monitor: the model is the user's, so only what the monitor recorded is read."""
    return run.config().model.kind == EXTERNAL


@register("defect")
def analyze_defect(run: RunDir, device: str = "cpu", draws: int = 9, max_points: int = 120, model: Any = None,
                   watch: str | Sequence[str] | None = None) -> dict[str, Any]:
    """Defects and ρ at ≤ `max_points` stored snapshots spread evenly (P1's post-hoc protocol,
    defect_wd_comparison.py; a paper-exact run reads the script's checkpoints, `geometry.checkpoints`) →
    defect_posthoc.parquet; summary: both onsets, leads, ρ. `onset` (P2's
    threshold rule) gives `lead` per task; `onset_envelope` (P1's Table 5 rule) gives `lead_envelope`, the
    lead to the first task's grok step as P1 measures it. A monitored run: the onset and lead of its inline
    defect table; with `model` (a `grokscope.monitor.UserModel`) also the defect and ρ at ≤ 30 of its snapshots
    against the execution basis of its watched trajectories (or those `watch` picks) → defect_posthoc.parquet."""
    if _external(run):
        if not run.has_table(DEFECT_TABLE) and model is None:
            return {"skipped": "monitored run without inline defects (Monitor defect_every=0); pass model= "
                               "(grokscope.monitor.UserModel) to measure them at its snapshots"}
        out = {"source": "inline (Monitor)", **defect_onsets(run)} if run.has_table(DEFECT_TABLE) else {}
        if model is None:
            return {**out, "rho": "not measured: ρ needs the model (Python API: model=UserModel(...))"}
        df = model.defect_table(run, draws=min(draws, 3), max_points=min(max_points, 30), watch=watch)
        run.write_table(POSTHOC_TABLE, df)
        return {**out, "n_snapshots": len(df), "rho_final": num(df["rho"].iloc[-1]),
                "rho_median": num(df["rho"].median()), "rho_random_median": num(df["rho_random"].median()),
                "proj_ratio_median": num(df["proj_ratio"].median()), "defect_final": num(df["defect"].iloc[-1])}
    steps, _ = run.snapshots()
    which = select_snapshots(run.config(), steps.numpy(), max_points, posthoc_indices)
    df = defects_from_snapshots(run, draws=draws, device=device, which=which)
    run.write_table(POSTHOC_TABLE, df)
    grok = run.grok_steps()
    timing = defect_timing(df["step"], df["defect"], grok)
    onset_env = onset_envelope(df["step"], df["defect"])
    grokked = [g for g in grok.values() if g is not None]
    first = min(grokked) if grokked else None
    return {"n_snapshots": len(df), "onset": timing["onset"], "onset_envelope": onset_env,
            "defect_peak_ratio": timing["defect_peak_ratio"],
            "defect_final": num(df["defect"].iloc[-1]), "rho_final": num(df["rho"].iloc[-1]),
            "rho_median": num(df["rho"].median()), "rho_random_median": num(df["rho_random"].median()),
            "proj_ratio_median": num(df["proj_ratio"].median()),
            "lead": timing["lead"], "lead_fraction": timing["lead_fraction"],
            "grok_first": first, "lead_envelope": lead(first, onset_env),
            "lead_fraction_envelope": num(lead_fraction(first, onset_env))}


@register("hessian")
def analyze_hessian_run(run: RunDir, device: str = "cpu", n_checkpoints: int = 30, iters: int = 25,
                        tol: float | None = None, draws: int = 0, model: Any = None) -> dict[str, Any]:
    """Bottom/top Hessian eigenvalues at ≤ n_checkpoints checkpoints → hessian.parquet
    (grokscope.geometry.hessian; `iters` Lanczos steps as the papers, or up to `iters` until the residual
    tolerance `tol`). `draws` > 0 also repeats the total loss's λ_min under that many fresh samples →
    hessian_draws.parquet and `depth_draws` (the depth's sampling spread). A monitored run: the summary of
    the λ_min its monitor recorded (Monitor hessian_every); with `model` (a `grokscope.monitor.UserModel`), λ_min
    at ≤ n_checkpoints of its snapshots, measured now → hessian.parquet."""
    if _external(run):
        if model is not None:
            df = model.hessian_table(run, max_points=n_checkpoints, iters=iters)
            run.write_table(HESSIAN_TABLE, df)
            return {"source": "snapshots (model given)", **summarize_hessian(df)}
        if not run.has_table(HESSIAN_TABLE):
            return {"skipped": "monitored run without λ_min (Monitor hessian_every=0); pass model= "
                               "(grokscope.monitor.UserModel) to measure it at its snapshots"}
        return {"source": "inline (Monitor)", **summarize_hessian(run.table(HESSIAN_TABLE))}
    df = analyze_hessian(run, n_checkpoints=n_checkpoints, device=device, iters=iters, tol=tol)
    summary = summarize_hessian(df)
    if draws:
        spread = depth_over_samples(run, draws, n_checkpoints=n_checkpoints, iters=iters, device=device, tol=tol)
        run.write_table(HESSIAN_DRAWS_TABLE, spread)
        summary["depth_draws"] = summarize_depth_draws(spread)
    run.write_table(HESSIAN_TABLE, df)
    return summary


@register("fragility")
def analyze_fragility(run: RunDir, device: str = "cpu", k: int = 20, threshold: float = 0.9,
                      seed: int = 0) -> dict[str, Any]:
    """Compression/perturbation of the final model → fragility.parquet, the reconstruction threshold k*
    from the top-k trajectory PCs → reconstruction.parquet; summary (also fragility.json): k*, variance."""
    frag = fragility(run, FragilityConfig(seed=seed), device)
    rec = reconstruction_threshold(run, k, threshold, device)
    run.write_table(FRAGILITY_TABLE, frag)
    run.write_table(RECONSTRUCTION_TABLE, rec.table)
    summary = {"k_star": rec.k_star, "cumulative_at_k_star": rec.cumulative_at_k_star,
               "threshold": rec.threshold}
    write_json(run.file(FRAGILITY), summary)
    return summary


@register("progress")
def analyze_progress(run: RunDir, device: str = "cpu", max_points: int = 120, tasks: Sequence[str] | None = None,
                     embedding: str | Embedding | None = None, modulus: int | None = None, token_axis: int = 0,
                     logits: Logits | None = None, train_pairs: Any = None) -> dict[str, Any]:
    """Nanda et al.'s progress measures per stored snapshot and task (grokscope.analyses.progress_measures) →
    progress.parquet; summary per task: key sets, Gini, excluded-loss peak, restricted-loss minimum. A run
    recorded by grokscope.Monitor: name its token embedding (`embedding`, the parameter's recorded name, with
    `modulus` p and `token_axis`; or an `Embedding`); with `logits` (params, pairs [N, 2]) -> [N, p] and
    `train_pairs` [M, 2] the losses are measured too. A task that is not a group operation, or a model without
    a token embedding, raises NotApplicable."""
    emb = _embedding(run, embedding, modulus, token_axis, logits, train_pairs)
    df = progress_table(run, tuple(tasks) if tasks else None, max_points, embedding=emb)
    run.write_table(PROGRESS_TABLE, df)
    return summarize_progress(df)


def _embedding(run: RunDir, embedding: str | Embedding | None, modulus: int | None, token_axis: int,
               logits: Logits | None, train_pairs: Any) -> Embedding | None:
    """The `Embedding` a monitored run's options name (None for a grokscope run, which needs none)."""
    if isinstance(embedding, Embedding):
        return embedding
    if not _external(run):
        if embedding is not None or modulus is not None:
            raise ConfigError(f"embedding/modulus name a monitored run's token embedding; {run.path.name} is "
                              f"grokscope's own model, whose embedding and p are known")
        return None
    if embedding is None:
        return None  # progress_table says what is missing
    if not isinstance(modulus, int) or isinstance(modulus, bool) or modulus < 2:
        raise ConfigError(f"modulus={modulus!r}: a monitored run records no p; give the modulus of its task "
                          f"(an integer >= 2, --modulus P) with embedding={embedding!r}")
    return Embedding(embedding, modulus, token_axis, logits, train_pairs)


@register("llc")
def analyze_llc(run: RunDir, device: str = "cpu", max_points: int = 30, calibrate: bool = True,
                **settings: Any) -> dict[str, Any]:
    """The local learning coefficient by devinterp's SGLD at ≤ max_points snapshots (grokscope.geometry.llc; the
    grokscope[llc] extra), one calibrated setting for all → llc.parquet; summary: first/last/min LLC, the
    sampler's settings and the calibration sweep. A monitored run: the LLC its monitor recorded (llc_every)."""
    if _external(run):
        if not run.has_table(LLC_TABLE):
            return {"skipped": "monitored run without the LLC (Monitor llc_every=0)"}
        df, sampler, cal = run.table(LLC_TABLE), {"source": "inline (Monitor)"}, None
    else:
        df, chosen, cal = llc_table(run, LLCSettings(**settings), calibrate, max_points, device)
        run.write_table(LLC_TABLE, df)
        sampler = chosen.to_dict()
    return {"n_snapshots": len(df), "llc_first": num(df["llc"].iloc[0]), "llc_last": num(df["llc"].iloc[-1]),
            "llc_max": num(df["llc"].max()), "llc_max_step": int(df["step"].iloc[int(df["llc"].argmax())]),
            "llc_std_median": num(df["llc_std"].median()), "sampler": sampler,
            "calibration": cal.to_dict("records") if cal is not None else None}
