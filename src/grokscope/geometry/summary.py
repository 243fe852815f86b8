"""The geometry lines of a run's default summary: PC1%, integrability ρ, defect onset and its lead."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from grokscope.config import EXTERNAL
from grokscope.errors import StoreError
from grokscope.formatting import num
from grokscope.geometry.commutator import commutator_defect
from grokscope.geometry.onset import defect_timing, onset_envelope, onset_threshold
from grokscope.geometry.pca import attention_pca, exec_basis, flat_layout, watched_trajectories
from grokscope.store import DEFECT_TABLE, RunDir, diverged_step
from grokscope.training.problem import Problem


def final_integrability(run: RunDir, draws: int = 9, device: str = "cpu") -> dict[str, float | None]:
    """Defect and ρ (vs the run's execution basis B, and vs random bases) at the run's last snapshot."""
    cfg = run.config()
    steps, snaps = run.snapshots()
    if len(steps) == 0:
        raise StoreError(f"{run.path} has no parameter snapshots")
    problem = Problem([cfg], device)
    params = {k: snaps[k][-1:].to(device) for k in flat_layout(run)}
    try:
        basis = exec_basis(run).to(device)
    except StoreError:  # no attention matrices (MLP), or too few recorded steps: no ρ
        basis = None
    res = commutator_defect(problem, params, step=int(steps[-1]), draws=draws, basis=basis)
    out = {"defect_final_step": int(steps[-1]), "defect_final": num(res.defect[0])}
    for k in ("rho", "rho_random", "proj_ratio"):
        v = getattr(res, k)
        out[k] = num(v[0]) if v is not None else None
    return out


def defect_onsets(run: RunDir) -> dict[str, Any]:
    """Onsets of the inline defect series (both detectors), peak/baseline ratio, and lead per task: `lead`
    to the 98 %×3 grok step, `lead_90` to the first evaluation ≥ 90 % (P2's t_grok), both from the
    threshold onset."""
    grok = run.grok_steps()
    grok90 = dict(run.summary().get("grok_step_90") or {}) if run.has_summary() else {}
    out: dict[str, Any] = {"onset": None, "onset_envelope": None, "defect_peak_ratio": None,
                           "lead": {t: None for t in grok}, "lead_fraction": {t: None for t in grok},
                           "lead_90": {t: None for t in grok90}}
    if not run.has_table(DEFECT_TABLE):
        return out
    df = run.table(DEFECT_TABLE).sort_values("step")
    if df.empty:
        return out
    steps, D = df["step"].to_numpy(), df["defect"].to_numpy(dtype=float)
    out.update(defect_timing(steps, D, grok), onset_envelope=onset_envelope(steps, D),
               lead_90=defect_timing(steps, D, grok90)["lead"])
    if "defect_cross" in df:
        out["onset_cross"] = onset_threshold(steps, df["defect_cross"].to_numpy(dtype=float))
    return out


def geometry_summary(run: RunDir, draws: int = 9, device: str = "cpu",
                     watch: str | Sequence[str] | None = None) -> dict[str, Any]:
    """PC1% per attention matrix and their mean, defect and ρ at the last snapshot, defect `onset` (threshold
    detector; `onset_envelope` the P1 one) of the inline `defect` table, lead and lead fraction per task
    (None where a quantity is undefined: no attention, no defect table, no grokking; a run recorded by
    grokscope.Monitor has no post-hoc defect or ρ); `missing` (present only when something is) lists, in words,
    what a run too short or diverged lacks for a quantity. `watch` (globs) picks the trajectories of PC1%
    (`geometry.pca.watched_trajectories`)."""
    out: dict[str, Any] = {"pc1_percent": {}, "pc1_mean": None}
    missing: list[str] = []
    diverged = diverged_step(run.summary()) if run.has_summary() else None
    if diverged is not None and run.config().model.kind == EXTERNAL:  # the monitor stopped recording there
        missing.append(f"the run diverged at step {diverged}: the monitor's records stop there")
    elif diverged is not None:
        missing.append(f"the run diverged at step {diverged}: its weights are "
                       "not finite, so PC1%, ρ and the defect onset are undefined")
        out.update({"defect_final_step": None, "defect_final": None, "rho": None, "rho_random": None,
                    "proj_ratio": None})
        out.update(defect_onsets(run))
        return {**out, "missing": missing}
    steps, attn, _ = watched_trajectories(run, watch)
    if attn and len(steps) >= 2:
        df = attention_pca(run, k=3, watch=watch)
        out["pc1_percent"] = {n: num(v) for n, v in zip(df["name"], df["pc1_percent"], strict=True)}
        out["pc1_mean"] = num(df["pc1_percent"].mean())
    elif attn:
        missing.append(f"PC1% and ρ need attention matrices at 2+ steps (every {run.config().attn_every} steps); "
                       f"this run has {len(steps)}")
    if run.config().model.kind != EXTERNAL:  # a monitored user model cannot be re-measured post hoc
        out.update(final_integrability(run, draws=draws, device=device))
    n = len(run.table(DEFECT_TABLE)) if run.has_table(DEFECT_TABLE) else 0
    if run.config().defect_every and n <= 3:
        missing.append(f"defect onset and lead need more than 3 inline defect measurements; this run has {n}")
    out.update(defect_onsets(run))
    return {**out, "missing": missing} if missing else out
