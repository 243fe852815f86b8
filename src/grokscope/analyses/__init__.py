"""Analyses of stored runs: the registry of per-run analyses (`registry`: name → function → analyses.json),
Nanda et al.'s progress measures (`progress_measures`), when each diagnostic moves (`diagnostics`), the
weight-decay phase table (`phase`) and the methods table (`methods_table`). The registry's names are
importable from here."""

from grokscope.analyses.registry import (
    ANALYSES,
    AnalysisFn,
    analysis_names,
    analyze_defect,
    analyze_fragility,
    analyze_hessian_run,
    analyze_llc,
    analyze_pca,
    analyze_progress,
    analyze_summary,
    check_analysis,
    missing_analyses,
    register,
    resolve_analysis,
    run_analysis,
    stored_analysis,
)

__all__ = ["ANALYSES", "AnalysisFn", "register", "analysis_names", "check_analysis", "resolve_analysis",
           "run_analysis", "stored_analysis", "missing_analyses", "analyze_summary", "analyze_pca", "analyze_defect",
           "analyze_hessian_run", "analyze_fragility", "analyze_progress", "analyze_llc"]
