"""Issue 41's table: every measure of `beyond_measures` on every run of every setup (`beyond_setups`), cached per run
beside the study's store (a run's measures are recomputed only when the run changed), summarised per setup over its
seeds, with the papers' values as a reference row, as JSON and markdown."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
from beyond_measures import ALPHA, measure, p2_law
from beyond_setups import SETUPS, Rec, Setup, records

CACHE = "table-cache"
VERSION = 4  # of the measures: a cached run's measures of another version are recomputed

# The papers' values (docs/claims.md, docs/papers.md; Nanda et al. for the progress measures): the reference row.
REFERENCE = {
    "setup": "the papers (P1/P2 trunk; Nanda et al. for progress measures)",
    "grok": "P1 13.3k (dual, wd 1); P2 2.5k–3.6k (lr 1e-3); Nanda ≈ 10k",
    "onset": "precedes grokking: P1 9/9, P2 12/12 (lr 1e-3), mean lead 1117",
    "peak": "P2: 500–2000× grokking, 30–50× not",
    "law": f"lead ∝ t_grok^{ALPHA} (R² 0.97, n 43)",
    "pc1": "P1 55–77 %, P2 68–83 % (random walk ≈ 61 %)",
    "rho": "ρ 1.000; exec/random projection 1.8–2.9×",
    "curvature": "λ_min −63 ± 12 at grokking (P1, wd 1)",
    "norm": "not a paper measure (grokscope's early warning: the norm falls after memorisation)",
    "progress": "key frequencies sparse (5 of 56 at p 113); restricted loss falls, excluded loss rises before the "
                "test loss falls",
    "llc": "—",
}


def cached_measure(rec: Rec, cache: Path) -> dict[str, Any]:
    """A run's measures, from the cache when neither the run (its summary's size and mtime) nor the measures
    (`VERSION`) changed since."""
    summary = rec.path / "summary.json"
    key = [VERSION, summary.stat().st_size, summary.stat().st_mtime_ns]
    f = cache / rec.setup.key / f"{rec.path.name}.json"
    if f.exists():
        got = json.loads(f.read_text())
        if got.get("key") == key:
            return got["measures"]
    t0 = time.process_time()
    m = measure(rec)
    m["cpu_seconds"] = round(time.process_time() - t0, 1)
    f.parent.mkdir(parents=True, exist_ok=True)
    tmp = f.with_suffix(".tmp")
    tmp.write_text(json.dumps({"key": key, "measures": m}, default=str))
    tmp.replace(f)
    return m


def _med(xs: list[Any]) -> float | None:
    xs = [float(x) for x in xs if x is not None and np.isfinite(x)]
    return float(np.median(xs)) if xs else None


def _get(m: dict[str, Any], *path: str) -> Any:
    for k in path:
        if not isinstance(m, dict) or k not in m:
            return None
        m = m[k]
    return m


def _why(ms: list[dict[str, Any]], key: str) -> str | None:
    """The one-line reason a measure is missing on every run, if it is."""
    whys = {_get(m, key, "why") for m in ms}
    return next(iter(whys)) if len(whys) == 1 and None not in whys else None


def summarise(setup: Setup, ms: list[dict[str, Any]]) -> dict[str, Any]:
    """One setup over its runs: the runs that may grok (seeds, grok steps, onsets, leads, PC1%, ρ, λ_min, norms,
    progress), and per control role how many grokked and how many had a defect onset."""
    grok = [m for m in ms if m["role"] == "grok?"]
    controls: dict[str, dict[str, Any]] = {}
    for m in ms:
        if m["role"] == "grok?":
            continue
        c = controls.setdefault(m["role"], {"n": 0, "grokked": 0, "onset": 0, "norm_ratio": [], "pc1": [],
                                            "peak_ratio": []})
        c["n"] += 1
        c["grokked"] += m["grok"] is not None
        c["onset"] += m["onset"] is not None
        c["peak_ratio"].append(m.get("defect_peak_ratio"))
        c["norm_ratio"].append(m["norm_ratio"])
        c["pc1"].append(_get(m, "pca", "pc1"))
    for c in controls.values():
        c["norm_ratio"], c["pc1"], c["peak_ratio"] = _med(c["norm_ratio"]), _med(c["pc1"]), _med(c["peak_ratio"])
    grokked = [m for m in grok if m["grok"] is not None]
    law = [m["p2_law"] for m in grokked if m.get("p2_law")]
    lam = [_get(m, "curvature", "lambda_min") or [None, None] for m in grok]
    pcs = [v for v in (_get(m, "pca", "pc1") for m in grok) if v is not None]
    return {
        "key": setup.key, "label": setup.label, "canonical": setup.canonical, "paper": setup.paper,
        "scaled": setup.scaled, "n_runs": len(grok), "seeds": [m.get("label", m["seed"]) for m in grok],
        "grok": [m["grok"] for m in grok], "t90": [m["t90"] for m in grok], "t_mem": [m["t_mem"] for m in grok],
        "steps": [m["steps"] for m in grok],
        "onset": [m["onset"] for m in grok], "lead": [m["lead"] for m in grok],
        "peak_ratio": _med([m.get("defect_peak_ratio") for m in grok]),
        "onset_before_grok": sum(m["onset"] is not None and m["lead"] is not None and m["lead"] > 0 for m in grokked),
        "n_grokked": len(grokked),
        "lead_fraction": _med([m["lead_fraction"] for m in grokked]),
        "law_within": sum(x["within_p2_band"] for x in law), "law_n": len(law),
        "law_residual": _med([x["residual"] for x in law]),
        "pc1": _med(pcs), "pc1_null": _med([_get(m, "pca", "null") for m in grok]),
        "pc1_range": [min(pcs), max(pcs)] if pcs else None,
        "rho": _med([_get(m, "rho", "rho") for m in grok]),
        "rho_random": _med([_get(m, "rho", "rho_random") for m in grok]),
        "proj_ratio": _med([_get(m, "rho", "proj_ratio") for m in grok]), "rho_why": _why(grok, "rho"),
        "lambda_before": _med([x[0] for x in lam]), "lambda_after": _med([x[-1] for x in lam]),
        "norm_ratio": _med([m["norm_ratio"] for m in grok]),
        "gini_first": _med([_get(m, "progress", "gini_first") for m in grok]),
        "gini_last": _med([_get(m, "progress", "gini_last") for m in grok]),
        "first_key": [_get(m, "progress", "first_causal_key_step") for m in grok],
        "excluded_peak": [_get(m, "progress", "excluded_loss_peak_step") for m in grok],
        "progress_why": _why(grok, "progress"),
        "ipr_first": _med([_get(m, "neuron_ipr", "ipr_first") for m in grok]),
        "ipr_last": _med([_get(m, "neuron_ipr", "ipr_last") for m in grok]),
        "controls": controls, "runs": ms,
    }


def build(corpus: Path, own: Path) -> dict[str, Any]:
    """Every setup's summary (setups with no finished run are listed as missing)."""
    cache = own / CACHE
    rows, missing = [], []
    for setup in SETUPS:
        recs = records(setup, corpus, own)
        if not recs:
            missing.append({"key": setup.key, "label": setup.label, "why": "no finished run in the stores"})
            continue
        rows.append(summarise(setup, [cached_measure(r, cache) for r in recs]))
    return {"setups": rows, "missing": missing, "reference": REFERENCE, "p2_law": p2_law(),
            "stores": {"corpus": str(corpus), "own": str(own)}}


# ---- markdown ------------------------------------------------------------------------------------------------

def _f(x: Any, fmt: str = ".0f") -> str:
    return "—" if x is None else format(x, fmt)


def _steps(xs: list[Any]) -> str:
    return " / ".join("—" if x is None else (f"{x / 1000:.1f}k" if x >= 1000 else str(x)) for x in xs)


def _row(s: dict[str, Any]) -> list[str]:
    ctl = ", ".join(f"{r} {c['n']}" for r, c in s["controls"].items()) or "none"
    law = f"{s['law_within']} of {s['law_n']} (res. {_f(s['law_residual'], '+.2f')})" if s["law_n"] else "—"
    onset = f"{s['onset_before_grok']} of {s['n_grokked']} before; lead {_steps(s['lead'])}"
    pc1 = (f"{_f(s['pc1'], '.0f')} ({_f(s['pc1_range'][0], '.0f')}–{_f(s['pc1_range'][1], '.0f')}); null "
           f"{_f(s['pc1_null'], '.0f')}") if s["pc1"] is not None else "—"
    rho = ("— (no attention)" if s["rho_why"] and "attention" in s["rho_why"] else
           f"{_f(s['rho'], '.5f')} (random {_f(s['rho_random'], '.5f')}; exec/random {_f(s['proj_ratio'], '.2f')}×)")
    prog = ("—" if s["progress_why"] else
            f"Gini {_f(s['gini_first'], '.2f')}→{_f(s['gini_last'], '.2f')}; first key {_steps(s['first_key'])}")
    peaks = [(e, g) for e, g in zip(s["excluded_peak"], s["grok"], strict=True) if e is not None]
    if peaks:
        prog += "; excluded loss peaks " + " / ".join(_steps([e]) for e, _ in peaks)
    if s["ipr_first"] is not None:
        prog += f"; per-unit Fourier IPR {_f(s['ipr_first'], '.2f')}→{_f(s['ipr_last'], '.2f')}"
    return [s["label"], f"{s['n_runs']} ({', '.join(map(str, s['seeds']))}); controls: {ctl}",
            _steps(s["grok"]), _steps(s["t_mem"]), _steps(s["onset"]), _f(s["peak_ratio"], ".1f"), onset,
            _f(s["lead_fraction"], ".2f"), law,
            pc1, rho, f"{_f(s['lambda_before'], '.3g')} → {_f(s['lambda_after'], '.3g')}",
            _f(s["norm_ratio"], ".2f"), prog]


HEAD = ["setup", "runs (decay; controls)", "grok step", "memorised", "defect onset", "defect peak / baseline",
        "onset before grok / lead",
        "lead fraction", "lead on P2's law (within P2's band)", "PC1 % (range); random walk", "ρ",
        "λ_min before → after", "‖θ‖ end / at memorised", "progress measures"]


def markdown(res: dict[str, Any]) -> str:
    """The table (reference row first), the setups' check against their papers' grok steps, the controls."""
    ref = res["reference"]
    lines = ["| " + " | ".join(HEAD) + " |", "|" + "---|" * len(HEAD),
             "| " + " | ".join([ref["setup"], "", ref["grok"], "", "", ref["peak"], ref["onset"], "", ref["law"],
                                ref["pc1"],
                                ref["rho"], ref["curvature"], ref["norm"], ref["progress"]]) + " |"]
    lines += ["| " + " | ".join(_row(s)) + " |" for s in res["setups"]]
    lines += ["", "| setup | paper (configuration, grok step) | here | grok steps here |", "|---|---|---|---|"]
    lines += [f"| {s['label']} | {s['paper']} | {s['scaled']} | {_steps(s['grok'])} |" for s in res["setups"]]
    lines += ["", "| setup | control | runs | grokked | defect onset fired | defect peak / baseline | "
              "‖θ‖ end / memorised | PC1 % |", "|---|---|---|---|---|---|---|---|"]
    for s in res["setups"]:
        for role, c in s["controls"].items():
            lines.append(f"| {s['label']} | {role} | {c['n']} | {c['grokked']} | {c['onset']} | "
                         f"{_f(c['peak_ratio'], '.1f')} | {_f(c['norm_ratio'], '.2f')} | {_f(c['pc1'], '.0f')} |")
    for m in res["missing"]:
        lines.append(f"\nmissing: {m['label']}: {m['why']}")
    return "\n".join(lines) + "\n"


def write(res: dict[str, Any], out: Path) -> None:
    """results.json and table.md in `out`, each written whole then renamed."""
    out.mkdir(parents=True, exist_ok=True)
    for name, text in (("results.json", json.dumps(res, indent=1, default=str)), ("table.md", markdown(res))):
        tmp = out / (name + ".tmp")
        tmp.write_text(text)
        tmp.replace(out / name)
