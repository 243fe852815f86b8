"""Every measure of issue 41's table on one stored run, read from the store (nothing is written into it): grok and
memorisation steps, P2's defect onset and lead and where the lead sits against P2's power law, PC1% of the watched
trajectories against a random-walk null, ρ, λ_min before and after grokking, the weight norm, progress measures."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from grokscope.formatting import num
from grokscope.store import RunDir

ALPHA = 1.27  # P2: lead ∝ t_grok^1.27 (v2 §4.6)
# P2's lr sweep at the cpu scale, (t90, lead) per run, lr 1e-4 / 3e-4 / 1e-3 × add, sub, mul, sq × seeds 42, 137,
# 2024 (docs/claims.md, "P2's lead power law on three seeds"): α 1.35 ± 0.04 over these, lead fractions as P2's.
P2_POINTS = (
    (33600, 31200), (34800, 32300), (29600, 27300), (24500, 21900),
    (35900, 33500), (30600, 28300), (38900, 36400), (33200, 30700), (35900, 33300), (32800, 30600),
    (24900, 22700), (26400, 24200),
    (11600, 10400), (11800, 10600), (10000, 8900), (12000, 10600), (13100, 11700), (11600, 10300),
    (9700, 8600), (12000, 10900), (10200, 9100), (7000, 5900), (7200, 6100), (7100, 6100),
    (3100, 1300), (3200, 1300), (2500, 700), (3200, 1200), (3600, 1600), (3400, 1400),
    (2500, 700), (2800, 900), (2600, 700), (1800, 900), (2000, 1100), (2000, 1000),
)


def p2_law() -> dict[str, float]:
    """P2's law with its exponent fixed at 1.27, placed on P2's own runs: log10 lead = a + 1.27 log10 t90 with a
    their mean residual; the band is the range of their residuals (how far P2's own runs sit from it)."""
    t, lead = np.array(P2_POINTS, dtype=float).T
    res = np.log10(lead) - ALPHA * np.log10(t)
    a = float(res.mean())
    return {"intercept": a, "lo": float((res - a).min()), "hi": float((res - a).max())}


def on_law(t90: int | None, lead: int | None) -> dict[str, Any] | None:
    """Where a run's (t90, lead) sits against P2's law: the log10 residual, the lead over the law's lead, and
    whether the residual lies within P2's own runs' band (None: no positive lead)."""
    if t90 is None or lead is None or lead <= 0:
        return None
    law = p2_law()
    r = math.log10(lead) - (law["intercept"] + ALPHA * math.log10(t90)) - 0.0
    return {"residual": round(r, 3), "ratio": round(10**r, 3), "within_p2_band": law["lo"] <= r <= law["hi"]}


def timeline(run: RunDir, task: str) -> dict[str, Any]:
    """Grok step (98 %×3), t90, last step, the memorisation step (train acc ≥ 0.99) and the weight norm at
    memorisation and at the end (its ratio: the decline the early warning reads)."""
    s = run.summary()
    df = run.table("metrics")
    df = df[df["task"] == df["task"].iloc[0]] if task not in set(df["task"]) else df[df["task"] == task]
    tr = df[df["split"] == "train"].sort_values("step")
    mem = tr[tr["acc"] >= 0.99]
    t_mem = int(mem["step"].iloc[0]) if len(mem) else None
    wn = tr.dropna(subset=["weight_norm"]) if "weight_norm" in tr else tr.iloc[:0]
    at_mem = float(wn[wn["step"] >= t_mem]["weight_norm"].iloc[0]) if t_mem is not None and len(wn) else None
    end = float(wn["weight_norm"].iloc[-1]) if len(wn) else None
    grok = (s.get("grok_step") or {}).get(task)
    t90 = (s.get("grok_step_90") or {}).get(task)
    return {"grok": grok, "t90": t90, "steps": s.get("steps_trained"), "t_mem": t_mem,
            "norm_mem": num(at_mem), "norm_end": num(end),
            "norm_ratio": num(end / at_mem) if at_mem and end else None}


def onset(run: RunDir, task: str, t90: int | None) -> dict[str, Any]:
    """P2's defect onset (threshold rule on the inline defects), its lead to the grok step and to t90, the lead
    fraction, and the lead against P2's law."""
    from grokscope.geometry.summary import defect_onsets

    d = defect_onsets(run)
    lead90 = (d.get("lead_90") or {}).get(task)
    return {"onset": d.get("onset"), "defect_peak_ratio": num(d.get("defect_peak_ratio")),
            "lead": (d.get("lead") or {}).get(task), "lead_90": lead90,
            "lead_fraction": num((d.get("lead_fraction") or {}).get(task)), "p2_law": on_law(t90, lead90)}


def pca(run: RunDir, watch: str | None, n_null: int = 10) -> dict[str, Any]:
    """PC1% of each watched trajectory (mean over them) and of equal-step random walks of as many records."""
    from grokscope.geometry.pca import matrix_pca, random_walk_null, watched_trajectories

    steps, traj, source = watched_trajectories(run, watch)
    if not traj or len(steps) < 3:
        return {"pc1": None, "why": f"{len(steps)} recorded steps"}
    pc1 = {n: matrix_pca(t, 1).pc1_percent for n, t in traj.items()}
    null = [random_walk_null(t, n_null=n_null, seed=0).null_mean for t in traj.values()]
    return {"pc1": num(float(np.mean(list(pc1.values())))), "pc1_each": {n: num(v) for n, v in pc1.items()},
            "null": num(float(np.mean(null))), "n_records": len(steps), "source": source}


def _nearest(steps: np.ndarray, s: float) -> int:
    return int(steps[int(np.abs(steps - s).argmin())])


def curvature_steps(run: RunDir, t: dict[str, Any]) -> list[int]:
    """The snapshots λ_min is read at: 'before' nearest half the grok step (half the run for one that never
    groks), 'after' the last one (a run stops once it groks)."""
    steps = run.snapshots()[0].numpy()
    end = t["grok"] if t["grok"] is not None else t["steps"]
    return sorted({_nearest(steps, end / 2), int(steps[-1])})


def grokscope_lambda(run: RunDir, at: list[int], iters: int = 25) -> list[dict[str, Any]]:
    """λ_min/λ_max of a grokscope run's total loss on its fixed 512-example sample at the snapshots `at`."""
    from grokscope.geometry.hvp import hessian_sample, make_hvp
    from grokscope.geometry.krylov import lanczos
    from grokscope.geometry.pca import flat_layout
    from grokscope.training import model as M
    from grokscope.training.problem import Problem

    problem = Problem([run.config()])
    steps, snaps = run.snapshots()
    pairs, targets = hessian_sample(problem, 512)
    out = []
    for s in at:
        i = int(np.abs(steps.numpy() - s).argmin())
        params = {k: snaps[k][i:i + 1] for k in flat_layout(run)}
        theta = M.flatten(params)
        v0 = torch.randn(theta.shape, generator=torch.Generator().manual_seed(s), dtype=theta.dtype)
        res = lanczos(make_hvp(problem, params, pairs, targets), v0, iters, 5)
        out.append({"step": int(steps[i]), "lambda_min": float(res.bottom[0, 0]), "lambda_max": float(res.top[0, 0])})
    return out


def curvature(run: RunDir, rec: Any, model: Any, t: dict[str, Any]) -> dict[str, Any]:
    """λ_min before and after grokking (`curvature_steps`)."""
    at = curvature_steps(run, t)
    if model is None:
        rows = grokscope_lambda(run, at)
    else:
        rows = model.hessian_table(run, at=at).to_dict("records")
    return {"at": [r["step"] for r in rows], "lambda_min": [num(r["lambda_min"]) for r in rows],
            "lambda_max": [num(r["lambda_max"]) for r in rows]}


def integrability(run: RunDir, model: Any, watch: str | None) -> dict[str, Any]:
    """ρ (and its random-basis control) at the last snapshot against the execution basis of the attention
    trajectories: grokscope's `final_integrability`, or the monitored model's `defect_table`."""
    if model is None:
        from grokscope.geometry.summary import final_integrability

        r = final_integrability(run, draws=3)
        return {"rho": r["rho"], "rho_random": r["rho_random"], "proj_ratio": r["proj_ratio"]}
    steps = run.snapshots()[0].numpy()
    df = model.defect_table(run, draws=3, at=[int(steps[-1])], watch=watch)
    row = df.iloc[-1]
    return {"rho": num(row["rho"]), "rho_random": num(row["rho_random"]), "proj_ratio": num(row["proj_ratio"])}


def progress(run: RunDir, rec: Any, model: Any, max_points: int = 30) -> dict[str, Any]:
    """Nanda et al.'s measures: Gini of the embedding's Fourier norms first → last, the end-of-run key set, the
    first step with a causal key frequency; the restricted and excluded losses where the logits are at hand."""
    from beyond_setups import logits_fn

    from grokscope.analyses.progress_measures import Embedding, progress_table, summarize_progress

    emb = None
    if rec.setup.embedding is not None:
        name, axis, p = rec.setup.embedding
        got = logits_fn(rec, model)
        emb = Embedding(name, p, axis, *(got or (None, None)))
    res = summarize_progress(progress_table(run, (rec.task,), max_points, embedding=emb))["tasks"][rec.task]
    return {k: res[k] for k in ("gini_first", "gini_last", "key_final", "first_causal_key_step",
                                "excluded_loss_peak_step", "restricted_loss_min_step")}


def neuron_ipr(run: RunDir, rec: Any) -> dict[str, Any] | None:
    """Gromov's own progress measure for a first layer acting on one-hot inputs (token axis 1): per hidden unit,
    the inverse participation ratio Σ P_k² of its normalised Fourier power over the first operand's weights (1/n:
    spread over every frequency, 1: one frequency), median over units, at θ₀ and at the end; and how many distinct
    frequencies the units' strongest ones are (a Fourier solution where each unit picks its own frequency is
    sparse per unit and dense over the layer, which the embedding-level key set cannot see)."""
    if rec.setup.embedding is None or rec.setup.embedding[1] != 1:
        return None
    name, _, p = rec.setup.embedding
    steps, snaps = run.snapshots()
    out = {}
    for label, i in (("first", 0), ("last", len(steps) - 1)):
        power = torch.fft.rfft(snaps[name][i][:, :p].double(), dim=1).abs()[:, 1:] ** 2
        power = power / power.sum(1, keepdim=True)
        out[f"ipr_{label}"] = num(float((power**2).sum(1).median()))
        out[f"distinct_top_{label}"] = len(set((power.argmax(1) + 1).tolist()))
    return out


def measure(rec: Any) -> dict[str, Any]:
    """Every measure of one run; a measure that does not apply (or fails on this run) says why in one line."""
    from beyond_setups import user_model

    run = RunDir(rec.path)
    t = timeline(run, rec.task)
    out: dict[str, Any] = {"run": rec.path.name, "label": rec.label, "role": rec.role, "seed": rec.seed, **t,
                           **onset(run, rec.task, t["t90"])}
    model = user_model(rec)
    steps: dict[str, Any] = {
        "pca": lambda: pca(run, rec.setup.watch),
        "rho": lambda: integrability(run, model, rec.setup.watch) if rec.setup.attention else
        {"why": "no attention matrices: P2's execution basis is built from them"},
        "curvature": lambda: curvature(run, rec, model, t),
        "progress": lambda: progress(run, rec, model),
        "neuron_ipr": lambda: neuron_ipr(run, rec),
    }
    for key, fn in steps.items():
        try:
            out[key] = fn()
        except Exception as e:  # noqa: BLE001 - the table says why a measure is missing, in one line
            out[key] = {"why": f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"}
    return out
