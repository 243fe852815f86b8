"""What the early warning did in each monitored run, as the report shows it: the detector and where its name comes
from, its score at every measurement against its threshold, the warning or why there was none, and the predicted
grokking window against the run's grok step.

Scores are not stored: they are replayed from the detector's inputs as the monitor recorded them
(`detector_inputs`; a record without them: rebuilt from the stored defect and metrics, `monitor.evaluate.run_series`)
through the same detector (`monitor.evaluate.replay_multi`), which gives the live scores exactly. The detector is the
one the record names (the summary's `monitor.detector`, else the warning's own name and settings); a record that
names none (no warning fired) is replayed with the default and says so.
"""

from __future__ import annotations

import ast
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from grokscope.config import EXTERNAL
from grokscope.errors import ConfigError
from grokscope.monitor.detector import DEFAULT_DETECTOR, MULTI_DETECTORS, DetectorConfig
from grokscope.monitor.evaluate import replay_multi, run_series
from grokscope.store import DEFECT_TABLE, DETECTOR_TABLE, MONITOR, WARNINGS_TABLE, RunDir, read_json

__all__ = ["WarningView", "warning_view", "warning_table"]


@dataclass
class WarningView:
    """One monitored run's early warning: the detector, the scores it gave, the warning (or why none) and how the
    predicted window compares with the run's grok step."""

    run: str
    detector: str  # the detector's name ("" when the warning was off)
    detector_note: str  # where the name comes from, and the detector's reason when the record gives one
    steps: np.ndarray = field(default_factory=lambda: np.zeros(0))  # the defect measurements the detector scored
    scores: np.ndarray | None = None  # its score at each (None: a detector without a replayable score)
    threshold: float | None = None
    inputs: str = ""  # where the scored inputs come from
    warning: dict[str, Any] | None = None  # step, score, predicted_grok, window_lo, window_hi (as recorded)
    grok_step: int | None = None
    last_step: int | None = None
    why: str = ""  # why it warned, or why it did not
    outcome: str = ""  # the warning against the grok step and the window


def _num(v: Any) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _evidence(row: dict[str, Any]) -> dict[str, Any]:
    """A warning row's evidence (stored as the text of a dict)."""
    ev = row.get("evidence")
    if isinstance(ev, dict):
        return ev
    try:
        got = ast.literal_eval(str(ev)) if ev else {}
    except (ValueError, SyntaxError):
        return {}
    return got if isinstance(got, dict) else {}


def _recorded_warning(run: RunDir, summary: dict[str, Any]) -> dict[str, Any] | None:
    """The first warning the monitor recorded (warnings.parquet, else the summary), or None."""
    rows: list[dict[str, Any]] = []
    if run.has_table(WARNINGS_TABLE):
        rows = run.table(WARNINGS_TABLE).sort_values("step").to_dict("records")
    if not rows:
        rows = list((summary.get("monitor") or {}).get("warnings") or [])
    return rows[0] if rows else None


def _named_detector(summary: dict[str, Any], warning: dict[str, Any] | None) -> tuple[str | None, str]:
    """(the detector's name as the record gives it, its reason or where the name was read)."""
    recorded = (summary.get("monitor") or {}).get("detector")
    if isinstance(recorded, dict) and "running" in recorded:  # the default's choice (`monitor.choice.AutoDetector`)
        reason = str(recorded.get("reason") or "")
        if recorded.get("running") == "transfer" and recorded.get("transfer_abstains"):
            reason += f"; it abstained: {recorded['transfer_abstains']}"
        return str(recorded.get("running") or recorded.get("name") or "auto"), reason or "as the monitor recorded it"
    if isinstance(recorded, dict) and recorded.get("name"):
        return str(recorded["name"]), str(recorded.get("reason") or "as the monitor recorded it")
    if isinstance(recorded, str) and recorded:
        return recorded, "as the monitor recorded it"
    if warning is not None and warning.get("detector"):
        return str(warning["detector"]), "named by its warning"
    return None, ""


def _series(run: RunDir) -> tuple[dict[str, np.ndarray] | None, str]:
    """The detector's inputs per defect measurement, and where they come from."""
    if run.has_table(DETECTOR_TABLE):
        t = run.table(DETECTOR_TABLE).sort_values("step")
        if len(t):
            return ({k: t[k].to_numpy(dtype=float) for k in t.columns if pd.api.types.is_numeric_dtype(t[k])},
                    "as the monitor recorded them")  # numbers only: the clock's kind is a name
    s = run_series(run) if run.has_table(DEFECT_TABLE) else None
    return s, "rebuilt from the stored defect and metrics (the record keeps no detector inputs)"


def _why_not(cfg: DetectorConfig, series: dict[str, np.ndarray], scores: np.ndarray) -> str:
    """Why a multi-signal detector gave no warning over `series`."""
    acc = series.get("train_acc")
    if cfg.gate and (acc is None or not np.isfinite(acc).any()):
        return ("no train accuracy was logged (`mon.step(step, metrics={'train_acc': ...})`): the detector's "
                "memorisation gate held the score at 0")
    if cfg.gate and float(np.nanmax(acc)) < cfg.acc_gate:
        return (f"train accuracy peaked at {float(np.nanmax(acc)):.3f} < acc_gate {cfg.acc_gate:g}: the run never "
                "memorised its training set, so the gate held the score at 0")
    finite = np.isfinite(scores)
    if not finite.any():
        return "no finite score (too few measurements for the defect baseline)"
    i = int(np.nanargmax(np.where(finite, scores, -np.inf)))
    if scores[i] <= 0:
        return f"the score stayed at 0 over {int(finite.sum())} measurements, below the threshold {cfg.threshold:.3g}"
    at = int(series["step"][i])
    return f"the score peaked at {scores[i]:.3g} (step {at}), below the threshold {cfg.threshold:.3g}"


def _outcome(w: dict[str, Any] | None, grok: int | None, last: int | None) -> str:
    """The warning against the grok step and the predicted window."""
    until = f"by step {last}" if last is not None else "in the record"
    if w is None:
        return f"grokked at step {grok} with no warning before it" if grok is not None else \
            f"no warning, and no grokking {until}"
    at, lo, hi = int(w["step"]), _num(w.get("window_lo")), _num(w.get("window_hi"))
    window = f"[{lo:.0f}, {hi:.0f}]" if lo is not None and hi is not None else None
    if grok is None:
        if window is None:
            return f"warned at step {at}; not grokked {until}"
        left = "the window passed without grokking" if last is not None and hi < last else \
            "the window reaches past the last recorded step"
        return f"warned at step {at}; not grokked {until}: {left} (predicted window {window})"
    if grok <= at:
        return f"grokked at step {grok}, before the warning at step {at} (a late warning)"
    where = "" if window is None else (" inside the predicted window " if lo <= grok <= hi else
                                        " before the predicted window " if grok < lo else
                                        " after the predicted window ") + window
    return f"warned at step {at}, {grok - at} steps before grokking at step {grok}{where}"


def warning_view(run: RunDir, name: str, cfg: Any, summary: dict[str, Any]) -> WarningView | None:
    """What the early warning did in `run` (None: not a monitored run)."""
    if cfg is None or cfg.model.kind != EXTERNAL:
        return None
    settings = (read_json(run.file(MONITOR)) if run.file(MONITOR).exists() else {}).get("settings", {})
    grok = [g for g in (summary.get("grok_step") or {}).values() if g is not None]
    view = WarningView(name, "", "", grok_step=min(grok) if grok else None, last_step=summary.get("steps_trained"))
    warning = _recorded_warning(run, summary)
    named, note = _named_detector(summary, warning)
    if settings.get("warn") is False and named is None:
        view.why = "the early warning was off (Monitor warn=False)"
        view.outcome = _outcome(None, view.grok_step, view.last_step)
        return view
    series, view.inputs = _series(run)
    if series is None:
        view.detector, view.detector_note = named or "", note
        view.why = "no commutator defect was measured (Monitor defect_every=0): the detector had nothing to score"
        view.outcome = _outcome(None, view.grok_step, view.last_step)
        return view
    evidence = _evidence(warning) if warning else {}
    if named is None:
        named, note = DEFAULT_DETECTOR.name, "not recorded (no warning fired): the default detector, replayed"
    view.detector, view.detector_note = named, note
    dcfg = _detector_config(named, evidence)
    view.steps = np.asarray(series["step"], dtype=float)
    if warning is not None:
        view.warning = {"step": int(warning["step"]), "score": _num(evidence.get("score")),
                        **{k: _num(warning.get(k)) for k in ("predicted_grok", "window_lo", "window_hi")}}
    if dcfg is None:  # a detector with no score to replay (P2's onset rule, a user's own)
        view.why = (f"{named}: its warning as recorded ({warning.get('detector')} at step {warning['step']})"
                    if warning else f"no warning from the {named} detector")
        view.outcome = _outcome(view.warning, view.grok_step, view.last_step)
        return view
    view.scores, replayed = replay_multi(series, dcfg)
    view.threshold = dcfg.threshold
    if warning is None and replayed is not None:  # the record holds no warning, the replay would have fired
        view.why = (f"none recorded, although the replayed score reaches {dcfg.threshold:.3g} at step {replayed.step}"
                    " (the record was written by another detector or settings)")
    elif warning is None:
        view.why = _why_not(dcfg, series, view.scores)
    else:
        sig = ", ".join(f"{k} {v:.3g}" for k, v in (evidence.get("signals") or {}).items() if v is not None)
        score = view.warning["score"]
        view.why = (f"score {score:.3g} ≥ threshold {dcfg.threshold:.3g}" if score is not None else "fired") + \
            (f" ({sig})" if sig else "")
        if replayed is None or replayed.step != view.warning["step"]:
            view.why += "; the replayed scores do not fire at that step (the record's inputs differ from the live ones)"
    view.outcome = _outcome(view.warning, view.grok_step, view.last_step)
    return view


def _detector_config(name: str, evidence: dict[str, Any]) -> DetectorConfig | None:
    """The multi-signal detector's settings: the warning's own, else the named preset (None: another kind)."""
    recorded = evidence.get("config")
    if isinstance(recorded, dict):
        try:
            return DetectorConfig(**recorded)
        except (TypeError, ValueError, ConfigError):
            pass
    return MULTI_DETECTORS.get(name)


def warning_table(views: list[WarningView]) -> pd.DataFrame:
    """One row per monitored run: detector, warning step, window, grok step, outcome and why."""
    rows = []
    for v in views:
        w = v.warning or {}
        lo, hi = w.get("window_lo"), w.get("window_hi")
        rows.append({"run": v.run, "detector": v.detector or "—", "warned at": w.get("step"),
                     "threshold": v.threshold,
                     "predicted window": f"{lo:.0f}–{hi:.0f}" if lo is not None and hi is not None else None,
                     "predicted grok": None if w.get("predicted_grok") is None else round(w["predicted_grok"]),
                     "grok step": v.grok_step, "outcome": v.outcome,
                     "why": v.why, "detector source": v.detector_note, "scored inputs": v.inputs})
    return pd.DataFrame(rows)
