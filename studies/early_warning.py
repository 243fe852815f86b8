"""Early-warning study: train a corpus of grokking and never-grokking runs, then score detectors on it by ROC.

The corpus (`ew_corpus.CORPUS`) holds issue 24's split, a calibration part and an evaluation part that differ in
seeds *and* task families (docs/early-warning.md states the split), and part `v2`, the model classes researchers
bring (a TransformerLens bridge, a GPT-2 under the HF Trainer, a LightningModule, Adam with L2), each family with
its never-grokking controls. Modular-arithmetic families of grokscope's own models train with its batched trainer;
every other family is user code recorded by `grokscope.Monitor` or its HF / Lightning callback (`ew_train`,
`ew_frameworks`). Every run records the inline commutator defect, train/test loss and accuracy and the weight norm
every 100 steps; runs stop when they grok (test accuracy ≥ 98 % for 3 evaluations) or at their budget.

    python studies/early_warning.py train                 # the corpus (resumable) under ~/.cache/grokscope/ew-corpus-v2
    python studies/early_warning.py score                 # the tables, JSON and the figure
    python studies/early_warning.py all                   # both
    python studies/early_warning.py status                # per family: runs done, grok steps, CPU-seconds
    python studies/early_warning.py train --only v2       # one part (calib / eval / v2)
    python studies/early_warning.py export                # finished runs into studies/results/ew-corpus (committed)

Scoring replays each stored run through a detector in step order (what it would have done live, at the cadence
given by `--every`, default the monitor's 200 steps) and reads run-level outcomes off the trace: a grokking run's
score is the largest detector score before its grok step, a never-grokking run's the largest over its whole
budget, so a threshold on that score is an operating point (hit rate vs false-alarm rate) and sweeping it is the
ROC.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the study's own modules, also when loaded by path
from ew_corpus import CORPUS, LOFO_FAMILIES, PARTS, group_dir  # noqa: E402
from ew_export import EXPORT, at_cadence, read_exports, write_export  # noqa: E402
from ew_models import setup  # noqa: E402
from ew_train import status, stored_budget, train_corpus  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
IMMEDIATE = 3  # a run whose grok step is < 3 × its memorisation step generalised at once: no grokking delay
DEFAULT_STORE = Path(os.environ.get("GROKSCOPE_EW_STORE", Path.home() / ".cache" / "grokscope" / "ew-corpus-v2"))


# ---- scoring ----------------------------------------------------------------------------------------------
@dataclass
class Record:
    """One stored run of the corpus: where it belongs, its grok step (None: never within its budget) and its
    detector inputs per defect measurement."""

    part: str
    family: str
    name: str
    wd: float
    grok: int | None
    budget: int
    series: dict[str, Any]
    t_mem: int | None = None  # first logged step with train accuracy >= 0.99

    @property
    def immediate(self) -> bool:
        """Generalised with no delay after fitting (grok step < IMMEDIATE × the memorisation step): not grokking,
        nothing to warn of; reported apart from the delayed (grokking) runs."""
        return self.grok is not None and self.t_mem is not None and self.grok < IMMEDIATE * self.t_mem


def stored_records(store: Path) -> list[dict[str, Any]]:
    """Every finished run in the store as an export record (`ew_export.FIELDS` and its series at every
    measurement); runs still training are left out."""
    from grokscope.monitor.evaluate import _grok, run_series
    from grokscope.store import find_runs

    out = []
    for g in CORPUS:
        for run in find_runs([group_dir(store, g)]) if group_dir(store, g).exists() else []:
            if not run.has_summary() or not run.summary().get("finished"):
                continue
            s = run_series(run)
            if s is None:
                continue
            s.update(clock_series(run, len(s["step"])))
            mem = np.flatnonzero(s["train_acc"] >= 0.99)
            out.append({"part": g.part, "family": g.family, "name": run.path.name,
                        "wd": float(run.config().optim.wd), "grok": _grok(run),
                        "budget": stored_budget(run.path, g.steps),
                        "t_mem": int(s["step"][mem[0]]) if len(mem) else None, "series": s})
    return out


def load_corpus(store: Path, every: int, export: Path | None = None) -> list[Record]:
    """Every finished run of the corpus, the store's and the export's (the store's where both hold a run), with its
    inputs at the cadence `every`."""
    recs = {(r["part"], r["family"], r["name"]): r for r in read_exports(export)}
    recs.update({(r["part"], r["family"], r["name"]): r for r in stored_records(store)})
    out = []
    for r in recs.values():
        s = at_cadence(r["series"], every)
        if len(s["step"]):
            out.append(Record(r["part"], r["family"], r["name"], r["wd"], r["grok"], r["budget"], s, r["t_mem"]))
    return out


def export_corpus(store: Path, export: Path | None = None) -> int:
    """Write every finished run of the store into the export (`ew_export`); the number written."""
    recs = stored_records(store)
    for r in recs:
        write_export(r, export)
    return len(recs)


def clock_series(run: Any, n: int) -> dict[str, Any]:
    """The run's optimiser clock per measurement (constant over a corpus run): its config's optimiser, corrected by
    `ew_run.json` where the stored name is a wrapper's (`monitor.clock.clock_of_config`)."""
    from ew_train import META

    from grokscope.monitor.clock import clock_of_config

    meta = json.loads((run.path / META).read_text()) if (run.path / META).exists() else None
    c = clock_of_config(run.config().optim, meta)
    return {"clock_rate": np.full(n, c.rate), "clock_kind": [c.kind] * n}


def lofo_runs(store: Path, every: int) -> list[Any]:
    """The stored corpus as leave-one-family-out runs (`monitor.lofo.LofoRun`), families by `LOFO_FAMILIES`."""
    from grokscope.monitor.lofo import LofoRun

    return [LofoRun(LOFO_FAMILIES[r.family], r.name, r.grok, r.series, group=r.family)
            for r in load_corpus(store, every)]


def lofo_markdown(res: dict[str, Any], counts: dict[str, str]) -> str:
    """The LOFO tables: overall (with the targets) and per family, each detector."""
    targets = {"multi-val": "≥ 90 % warned, ≤ 10 % false alarms, lead ≥ 0.3, coverage ≥ 80 %",
               "transfer": "AUROC ≥ 0.9, ≥ 70 % warned at ≤ 10 % false alarms", "multi": "(reference)"}
    head = ("| detector | grok / never (at once; abstained) | AUROC | warned before grokking | false alarms | "
            "warned at ≤ 10 % false alarms | median lead / t_grok | forecast error | interval coverage |")
    sep = "|---|---|---:|---:|---:|---:|---:|---:|---:|"

    def line(first: str, r: dict[str, Any]) -> str:
        return (f"| {first} | {r['n_grok']} / {r['never']} ({r['immediate']}; {r['abstained']}) | {_fmt(r['auroc'])} "
                f"| {r['hit']}/{r['n_grok']} ({_fmt(r['hit_rate'], '.0%')}) "
                f"| {r['false_alarms']}/{r['never']} ({_fmt(r['false_alarm_rate'], '.0%')}) "
                f"| {_fmt(r['hit_at_fa10'], '.0%')} | {_fmt(r['median_lead_fraction'])} "
                f"| {_fmt(r['forecast_error'])} | {_fmt(r['coverage'], '.0%')} ({r['n_forecast']}) |")

    out = [head + " target |", sep + "---|"]
    out += [line(r["detector"], r) + f" {targets[r['detector']]} |" for r in res["summary"]]
    out += ["", "| family (runs) | " + head.split("| ", 2)[2], "|---|---|" + sep.split("|", 3)[3]]
    for r in res["per_family"]:
        out.append(line(f"{r['family']} ({counts.get(r['family'], '')}), {r['detector']}", r))
    return "\n".join(out)


def threshold_rule_scores(rec: Record) -> tuple[np.ndarray, int | None]:
    """The seed's rule (P2's defect threshold, `monitor.warning`) as a 0/1 score per measurement, and its step."""
    from grokscope.monitor.warning import replay

    ev = replay(rec.series["step"], rec.series["defect"], detector="threshold")
    fired = ev.step if ev is not None else None
    return (np.asarray(rec.series["step"]) >= (fired if fired is not None else np.inf)).astype(float), fired


def replay_scores(rec: Record, cfg: Any) -> tuple[np.ndarray, int | None]:
    """Scores per measurement and the warning step of a detector (a DetectorConfig, or "threshold")."""
    from grokscope.monitor.evaluate import replay_multi

    if cfg == "threshold":
        return threshold_rule_scores(rec)
    scores, ev = replay_multi(rec.series, cfg)
    return scores, (ev.step if ev is not None else None)


def score_table(records: list[Record], cfg: Any) -> list[dict[str, Any]]:
    """Per run: outcome, run-level score, warning step, lead, and whether the predicted window held the grok."""
    from grokscope.monitor.evaluate import run_level_score

    rows = []
    for rec in records:
        scores, warned = replay_scores(rec, cfg)
        g = rec.grok
        row = {"part": rec.part, "family": rec.family, "run": rec.name, "wd": rec.wd, "grok_step": g,
               "t_mem": rec.t_mem, "immediate": rec.immediate,
               "run_score": run_level_score(rec.series["step"], scores, g), "warning_step": warned}
        row["warned_before"] = g is not None and warned is not None and warned < g
        row["false_alarm"] = g is None and warned is not None
        row["lead_fraction"] = (g - warned) / g if row["warned_before"] else None
        if row["warned_before"] and not isinstance(cfg, str):
            row["in_window"] = cfg.ratio_lo * warned <= g <= cfg.ratio_hi * warned
        rows.append(row)
    return rows


def summarise(rows: list[dict[str, Any]], immediate: bool = False) -> dict[str, Any]:
    """AUROC of the run-level score, and at the detector's own threshold: hit rate, false-alarm rate, lead
    fraction (median over runs warned in time) and window coverage (over grokking runs). Runs that generalised at
    once count as grokking runs only with `immediate`."""
    from grokscope.monitor.evaluate import auroc

    pos = [r for r in rows if r["grok_step"] is not None and (immediate or not r["immediate"])]
    neg = [r for r in rows if r["grok_step"] is None]
    leads = [r["lead_fraction"] for r in pos if r["warned_before"]]
    cover = [bool(r.get("in_window")) for r in pos]
    return {"runs": len(rows), "n_grok": len(pos), "never": len(neg),
            "immediate": sum(bool(r["immediate"]) for r in rows),
            "auroc": auroc([r["run_score"] for r in pos], [r["run_score"] for r in neg]),
            "hit": sum(r["warned_before"] for r in pos), "hit_rate": _rate(sum(r["warned_before"] for r in pos), pos),
            "false_alarms": sum(r["false_alarm"] for r in neg),
            "false_alarm_rate": _rate(sum(r["false_alarm"] for r in neg), neg),
            "median_lead_fraction": float(np.median(leads)) if leads else None,
            "window_coverage": _rate(sum(cover), pos) if any("in_window" in r for r in pos) else None}


def _rate(k: int, of: list) -> float | None:
    return k / len(of) if of else None


def fit_operating_point(records: list[Record], cfg: Any) -> dict[str, float]:
    """The operating point and window of a detector, from calibration runs only: the threshold maximising hit rate
    − false-alarm rate over the midpoints between distinct run scores (the middle one of several optima), and
    the window [min, median, max] of t_grok / t_warn over the delayed grokking runs it then warns in time."""
    from dataclasses import replace

    rows = score_table([r for r in records if r.part == "calib"], replace(cfg, threshold=math.inf))
    pos = np.array([r["run_score"] for r in rows if r["grok_step"] is not None and not r["immediate"]])
    neg = np.array([r["run_score"] for r in rows if r["grok_step"] is None])
    vals = np.unique(np.concatenate([pos, neg]))
    vals = vals[np.isfinite(vals)]
    cands = (vals[1:] + vals[:-1]) / 2
    cands = cands[cands > 0]
    j = np.array([(pos >= t).mean() - (neg >= t).mean() for t in cands])
    best = cands[np.flatnonzero(j == j.max())]
    thr = float(best[len(best) // 2])
    tuned = replace(cfg, threshold=thr)
    ratios = [r["grok_step"] / r["warning_step"] for r in score_table([r for r in records if r.part == "calib"], tuned)
              if r["warned_before"] and not r["immediate"]]
    return {"threshold": round(thr, 6), "youden_j": float(j.max()), "ratio_lo": float(np.min(ratios)),
            "ratio_mid": float(np.median(ratios)), "ratio_hi": float(np.max(ratios)), "n_ratios": len(ratios)}


def detectors() -> dict[str, Any]:
    """The detectors scored: the default (test-free), the validation variant, each signal alone, the seed's rule."""
    from grokscope.monitor.detector import DEFAULT_DETECTOR as D
    from grokscope.monitor.detector import VALIDATION_DETECTOR, variant

    return {
        "multi (default, test-free)": D,
        "multi-val (uses test loss)": VALIDATION_DETECTOR,
        "norm decline alone, gated": variant(D, norm_weight=1.0, defect_weight=0.0, name="norm"),
        "norm decline alone, ungated": variant(D, norm_weight=1.0, defect_weight=0.0, gate=False, name="norm-raw"),
        "defect rise alone, gated": variant(D, norm_weight=0.0, defect_weight=1.0, name="defect"),
        "defect rise alone, ungated": variant(D, norm_weight=0.0, defect_weight=1.0, gate=False, name="defect-raw"),
        "memorised gate alone": variant(D, norm_weight=0.0, defect_weight=0.0, test_weight=0.0, bias=1.0,
                                        name="gate"),
        "test-loss drop alone, gated": variant(D, norm_weight=0.0, defect_weight=0.0, test_weight=1.0, name="test"),
        "P2 defect threshold (seed's rule)": "threshold",
    }


def results(store: Path, everys: tuple[int, ...] = (200, 100)) -> dict[str, Any]:
    """Every detector on both parts at each cadence: summaries, per-family rows and ROC points."""
    from grokscope.monitor.evaluate import roc_curve

    out: dict[str, Any] = {"summary": [], "families": [], "roc": {}, "runs": []}
    dets = detectors()
    for every in everys:
        records = load_corpus(store, every)
        for part in PARTS:
            recs = [r for r in records if r.part == part]
            for name, cfg in dets.items():
                rows = score_table(recs, cfg)
                out["summary"].append({"part": part, "every": every, "detector": name, "grokking": "delayed",
                                       **summarise(rows)})
                if name.startswith(("multi", "P2")):
                    out["summary"].append({"part": part, "every": every, "detector": name, **summarise(rows, True),
                                           "grokking": "all"})
                pos = [r["run_score"] for r in rows if r["grok_step"] is not None and not r["immediate"]]
                neg = [r["run_score"] for r in rows if r["grok_step"] is None]
                fpr, tpr, _ = roc_curve(pos, neg)
                out["roc"][f"{part}|{every}|{name}"] = [fpr.tolist(), tpr.tolist()]
                if name.startswith("multi") or name.startswith("P2"):
                    for fam in dict.fromkeys(r["family"] for r in rows):
                        fr = [r for r in rows if r["family"] == fam]
                        out["families"].append({"part": part, "every": every, "detector": name, "family": fam,
                                                **summarise(fr)})
                if name.startswith("multi (default"):
                    out["runs"].extend({**r, "every": every} for r in rows)
    return out


def cost(store: Path, n: int = 200) -> dict[str, float]:
    """Seconds per detector update (the whole causal rescoring of a run's series so far, at its longest) and per
    defect measurement of the plain-PyTorch transformer (what the monitor spends at each measurement)."""
    from grokscope.monitor.detector import MultiSignalDetector

    rng = np.random.default_rng(0)
    det = MultiSignalDetector()
    t0 = time.process_time()
    for i in range(n):
        det.observe(100 * i, float(rng.random()), 40.0 - 0.01 * i, 1.0, 2.0)
    per_update = (time.process_time() - t0) / n
    from grokscope.monitor import Monitor

    g = next(g for g in CORPUS if g.task == "s4")
    model, (X, y, _, _) = setup(g.model, g.task, g.p, g.train_frac, 0)
    batch = g.batch
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        mon = Monitor(model, F.cross_entropy, (X, y), out=Path(tmp) / "m", batch_size=batch, warn=False, verbose=False)
        t0 = time.process_time()
        for k in range(5):
            mon.defects_at(k)
        per_defect = (time.process_time() - t0) / 5
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
        t0 = time.process_time()
        for _ in range(50):
            loss = F.cross_entropy(model(X[:batch]), y[:batch])
            opt.zero_grad()
            loss.backward()
            opt.step()
        per_step = (time.process_time() - t0) / 50
        mon.close()
    return {"detector_update_s": per_update, "defect_measurement_s": per_defect, "train_step_s": per_step,
            "n_measurements": n}


def _fmt(v: Any, spec: str = ".2f") -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "—"
    return format(v, spec) if isinstance(v, float) else str(v)


def markdown(res: dict[str, Any]) -> str:
    """The report's tables (summary per part and cadence, per family) as markdown."""
    lines = ["| part | defects every | detector | grokking runs counted | grok / never | AUROC | warned before "
             "grokking | false alarms | median lead / t_grok | window coverage |",
             "|---|---:|---|---|---|---:|---:|---:|---:|---:|"]
    for r in res["summary"]:
        lines.append(f"| {r['part']} | {r['every']} | {r['detector']} | {r['grokking']} | {r['n_grok']} / {r['never']} "
                     f"| {_fmt(r['auroc'])} | {r['hit']}/{r['n_grok']} ({_fmt(r['hit_rate'], '.0%')}) "
                     f"| {r['false_alarms']}/{r['never']} ({_fmt(r['false_alarm_rate'], '.0%')}) "
                     f"| {_fmt(r['median_lead_fraction'])} | {_fmt(r['window_coverage'], '.0%')} |")
    lines += ["", "| part | defects every | detector | family | grok / never | AUROC | warned before grokking "
              "| false alarms | median lead / t_grok |", "|---|---:|---|---|---|---:|---:|---:|---:|"]
    for r in res["families"]:
        lines.append(f"| {r['part']} | {r['every']} | {r['detector']} | {r['family']} | {r['n_grok']} / {r['never']} "
                     f"(+{r['immediate']} at once) | {_fmt(r['auroc'])} | {r['hit']}/{r['n_grok']} "
                     f"| {r['false_alarms']}/{r['never']} | {_fmt(r['median_lead_fraction'])} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("what", choices=("train", "status", "calibrate", "score", "lofo", "export", "all"))
    ap.add_argument("--results", type=Path, default=Path.home() / ".cache" / "grokscope" / "ew-lofo.json",
                    help="where `lofo` writes its rows and tables (never into the corpus store)")
    ap.add_argument("--store", type=Path, default=DEFAULT_STORE, help="corpus folder")
    ap.add_argument("--only", choices=PARTS, default=None, help="one part of the corpus")
    ap.add_argument("--family", action="append", choices=[g.family for g in CORPUS], default=None,
                    help="train only this group (repeatable): two processes on disjoint groups train in parallel")
    ap.add_argument("--role", action="append", choices=("grok?", "no-decay", "small-lr", "small-data"), default=None,
                    help="train only runs of this role (repeatable), e.g. one group's controls in two processes")
    ap.add_argument("--figure", type=Path, default=ROOT / "docs" / "figures" / "early-warning.png",
                    help="where the figure goes (ROC + a few runs' signals)")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    if args.what == "status":
        print(status(args.store, args.only))
    if args.what in ("train", "all"):
        train_corpus(args.store, args.only,
                     tuple(g for g in CORPUS if not args.family or g.family in args.family), tuple(args.role or ()))
    if args.what == "export":
        print(f"{export_corpus(args.store)} finished runs exported to {EXPORT.relative_to(ROOT)}")
    if args.what == "calibrate":
        from grokscope.monitor.detector import DEFAULT_DETECTOR, VALIDATION_DETECTOR

        records = [r for r in load_corpus(args.store, 200) if r.part == "calib"]
        for cfg in (DEFAULT_DETECTOR, VALIDATION_DETECTOR):
            print(cfg.name, fit_operating_point(records, cfg))
    if args.what == "lofo":
        run_lofo(args.store, args.results, args.figure.with_name("early-warning-lofo.png") if args.figure else None)
    if args.what in ("score", "all"):
        res = results(args.store)
        res["cost"] = cost(args.store)
        from grokscope.runtime.environment import environment
        res["environment"] = {k: v for k, v in environment("cpu").items() if k in ("processor", "torch", "python")}
        (args.store / "results.json").write_text(json.dumps(res, indent=1, default=_json_default))
        print(markdown(res))
        c = res["cost"]
        print(f"\ncost: detector update {1e3 * c['detector_update_s']:.2f} ms at {c['n_measurements']} measurements; "
              f"defect measurement {1e3 * c['defect_measurement_s']:.1f} ms; "
              f"train step {1e3 * c['train_step_s']:.2f} ms (plain S4 transformer); {res['environment']}")
        if args.figure:
            figure(res, args.store, args.figure)
    return 0


def run_lofo(store: Path, results: Path, fig: Path | None, every: int = 200) -> dict[str, Any]:
    """Leave-one-family-out scoring of the stored corpus at the monitor's default cadence, the constants fitted on
    all of it (the shipped defaults' rule), the tables, and the figure."""
    from grokscope.monitor.choice import WarnConstants
    from grokscope.monitor.lofo import fit_constants, lofo
    from grokscope.monitor.transfer import SCORES, TransferConfig

    runs = lofo_runs(store, every)
    res = lofo(runs)
    counts = {}
    for fam in res["families"]:
        rs = [r for r in runs if r.family == fam]
        counts[fam] = (f"{sum(r.grok is not None and not r.immediate for r in rs)} grok, "
                       f"{sum(r.grok is None for r in rs)} never, {sum(r.immediate for r in rs)} at once")
    res["counts"] = counts
    planned: dict[str, int] = {}
    for g in CORPUS:
        planned[LOFO_FAMILIES[g.family]] = planned.get(LOFO_FAMILIES[g.family], 0) + len(list(g.runs()))
    res["stored_of_planned"] = {f: (sum(r.family == f for r in runs), n) for f, n in planned.items()}
    res["shipped"] = fit_constants(runs, source=f"whole stored corpus, {len(runs)} runs").to_dict()
    res["every"] = every
    no_acc = lofo(runs, hide=("train_acc",))  # as the HF Trainer logs by default: train loss, no train accuracy
    res["train_loss_only"] = no_acc["summary"]
    res["transfer_variants"] = {}  # the transfer detector's score forms, each left-one-family-out (an ablation)
    for form in SCORES:
        alt = lofo(runs, WarnConstants(transfer=TransferConfig(score=form)))
        res["transfer_variants"][form] = next(r for r in alt["summary"] if r["detector"] == "transfer")
    results.parent.mkdir(parents=True, exist_ok=True)
    results.write_text(json.dumps(res, indent=1, default=_json_default))
    print(lofo_markdown(res, counts))
    print("\nstored / planned runs per family: " + ", ".join(f"{f} {a}/{b}" for f, (a, b) in
                                                             res["stored_of_planned"].items()))
    print("\nheld-out runs scored without their train accuracy (the memorisation gate on the train loss):")
    for r in res["train_loss_only"]:
        print(f"  {r['detector']}: AUROC {_fmt(r['auroc'])}, warned {r['hit']}/{r['n_grok']}, false alarms "
              f"{r['false_alarms']}/{r['never']}, at <= 10 % false alarms {_fmt(r['hit_at_fa10'], '.0%')}")
    print("\n| transfer score form | AUROC | warned before grokking | false alarms | warned at ≤ 10 % false alarms |"
          "\n|---|---:|---:|---:|---:|")
    for form, r in res["transfer_variants"].items():
        print(f"| {form} | {_fmt(r['auroc'])} | {r['hit']}/{r['n_grok']} | {r['false_alarms']}/{r['never']} "
              f"| {_fmt(r['hit_at_fa10'], '.0%')} |")
    print("\nshipped constants (fitted on all stored runs):", json.dumps(res["shipped"], indent=1))
    if fig:
        lofo_figure(res, runs, fig)
    return res


def lofo_figure(res: dict[str, Any], runs: list[Any], path: Path) -> None:
    """Left: the pooled out-of-family ROC of each detector (score / its fold's threshold). Right: three held-out runs'
    transfer and validation scores with warnings, forecasts and grok steps."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from grokscope.monitor.choice import WarnConstants
    from grokscope.monitor.evaluate import roc_curve
    from grokscope.monitor.lofo import negatives, positives, traces

    fig, axes = plt.subplots(1, 4, figsize=(17, 3.8))
    ax = axes[0]
    for s in res["summary"]:
        rows = [r for r in res["rows"] if r["detector"] == s["detector"]]
        fpr, tpr, _ = roc_curve([r["norm_score"] for r in positives(rows)], [r["norm_score"] for r in negatives(rows)])
        ax.step(fpr, tpr, where="post", label=f"{s['detector']} ({_fmt(s['auroc'])})", lw=2 if s["detector"] != "multi"
                else 1)
    ax.axvline(0.1, color="grey", lw=0.5, ls="--")
    ax.plot([0, 1], [0, 1], color="grey", lw=0.5, ls=":")
    ax.set(xlabel="false-alarm rate", ylabel="hit rate (warned before grokking)",
           title="leave-one-family-out ROC (every 200)")
    ax.legend(fontsize=7, loc="lower right")
    picks = []
    for fam in ("hf-gpt2", "lightning-trunk", "plain-mlp-parity", "trunk-modular", "embed-mlp-adam-l2"):
        r = next((r for r in runs if r.family == fam and r.grok is not None and not r.immediate), None)
        if r is not None and len(picks) < 3:
            picks.append(r)
    for ax, run in zip(axes[1:], picks + [None] * (3 - len(picks)), strict=True):
        if run is None:
            ax.set_axis_off()
            continue
        k = res["folds"][run.family]
        from grokscope.monitor.lofo import _from_dict

        kk: WarnConstants = _from_dict(k)
        tr = traces(run, kk)
        st = run.series["step"]
        for name, thr in (("multi-val", kk.validation.threshold), ("transfer", kk.transfer.threshold)):
            ax.plot(st, np.nan_to_num(tr[name]) / thr, label=f"{name} score / threshold", lw=1.5)
        ax.axhline(1.0, color="grey", lw=0.6, ls="--")
        ax.axvline(run.grok, color="green", lw=1.2, label=f"grokked at {run.grok}")
        for r in res["rows"]:
            if r["run"] == run.name and r["group"] == run.group and r["detector"] != "multi" and r["warning_step"]:
                c = "red" if r["detector"] == "multi-val" else "purple"
                ax.axvline(r["warning_step"], color=c, lw=1, ls="-", label=f"{r['detector']} warns at "
                           f"{r['warning_step']}")
                if r.get("predicted"):  # the forecast interval
                    ax.axvspan(r["lo"], min(r["hi"], st[-1] * 1.5), color=c, alpha=0.08)
        ax.set(xlabel="step", ylim=(-0.1, 3))
        ax.set_title(f"held out: {run.family} ({run.group})", fontsize=9)
        ax.legend(fontsize=6)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    print(f"figure: {path}")


def figure(res: dict[str, Any], store: Path, path: Path) -> None:
    """ROC curves (evaluation part, default cadence) and three evaluation runs' signals with the warning marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from grokscope.monitor.detector import DEFAULT_DETECTOR, signals
    from grokscope.monitor.evaluate import replay_multi

    fig, axes = plt.subplots(1, 4, figsize=(17, 3.8))
    ax = axes[0]
    for key, (fpr, tpr) in sorted(res["roc"].items(), key=lambda kv: kv[0].endswith("test-free)")):
        part, every, name = key.split("|")  # the default last, on top (norm decline alone, gated, is the same)
        if part == "eval" and every == "200" and not name.startswith(("memorised", "defect rise alone, gated",
                                                                       "norm decline alone, gated")):
            auc = next(r["auroc"] for r in res["summary"] if r["part"] == part and str(r["every"]) == every
                       and r["detector"] == name)
            ax.step(fpr, tpr, where="post", label=f"{name} ({auc:.2f})", lw=2 if name.startswith("multi (") else 1)
    ax.plot([0, 1], [0, 1], color="grey", lw=0.5, ls=":")
    ax.set(xlabel="false-alarm rate (never-grokking runs)", ylabel="hit rate (warned before grokking)",
           title="run-level ROC, evaluation part, defects every 200")
    ax.legend(fontsize=6, loc="lower right")
    records = [r for r in load_corpus(store, 200) if r.part == "eval"]
    picks = [next((r for r in records if r.grok is not None and r.family == "div" and r.wd < 1), None),
             next((r for r in records if r.grok is None and r.family == "sub"), None),
             next((r for r in records if r.family.startswith("parity-plain-mlp") and r.grok is not None), None)]
    for ax, rec in zip(axes[1:], picks, strict=True):
        if rec is None:
            ax.set_axis_off()
            continue
        s = rec.series
        sig = signals(s["defect"], s["weight_norm"], s["train_acc"], None, DEFAULT_DETECTOR)
        scores, ev = replay_multi(s, DEFAULT_DETECTOR)
        ax.plot(s["step"], scores, label="score", lw=2)
        ax.plot(s["step"], np.nan_to_num(sig["norm_drop"]), label="norm decline since memorised", lw=1)
        ax.plot(s["step"], np.nan_to_num(sig["defect_rise"]) / 4, label="log10 defect rise / 4", lw=1)
        ax.plot(s["step"], np.nan_to_num(sig["memorised"]) * 0.95, label="memorised (train acc)", lw=0.8, ls=":")
        ax.axhline(DEFAULT_DETECTOR.threshold, color="grey", lw=0.6, ls="--")
        if ev is not None:
            ax.axvline(ev.step, color="red", lw=1.2, label=f"warning at {ev.step}")
        if rec.grok is not None:
            ax.axvline(rec.grok, color="green", lw=1.2, label=f"grokked at {rec.grok}")
        ax.set(xlabel="step", title=f"{rec.family}, wd {rec.wd:g}: " + ("grokked" if rec.grok else "never grokked"))
        ax.set_ylim(-0.05, 1.05)
        ax.legend(fontsize=6)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    print(f"figure: {path}")


def _json_default(v: Any) -> Any:
    if isinstance(v, (np.integer, np.floating, np.bool_)):
        return v.item()
    raise TypeError(type(v))


if __name__ == "__main__":
    sys.exit(main())
