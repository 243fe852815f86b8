"""The monitor's signals in a user's own logger: every measurement as it is taken, under one prefix, at its step.

`Signals(log)` forwards what a `Monitor` recorded since the last call, grouped by step and in step order, as
`log({"grokscope/defect": ..., ...}, step=step)`, the call `wandb.log` and `mlflow.log_metrics` both take:

- `grokscope/defect` (the median commutator defect), `grokscope/weight_norm` (at each logged metrics step),
  `grokscope/warning_score` (the detector's score at each defect measurement, when it keeps one),
  `grokscope/lambda_min`, `grokscope/lambda_max`, `grokscope/llc`;
- the warning as an event at its step: `grokscope/warning` = 1, with `grokscope/predicted_grok`,
  `grokscope/window_lo`, `grokscope/window_hi` when it predicts them, and its message as `grokscope/warning_message`
  through `text(tag, text, step)` for loggers that show text; a divergence as `grokscope/diverged` = 1.

Only numbers go through `log`. A continued record forwards only what it measures after the step it continues from.
The framework callbacks build theirs over the trainer's loggers (`integrations`).
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable
from typing import Any, Protocol

from grokscope.monitor.divergence import DivergenceWatch
from grokscope.monitor.warning import WarningEvent

__all__ = ["PREFIX", "Signals", "Recorded"]

PREFIX = "grokscope/"
LogFn = Callable[..., Any]  # log(metrics: dict[str, float], step=int)
TextFn = Callable[[str, str, int], Any]  # text(tag, text, step)


class Recorded(Protocol):
    """What `Signals` reads of a `Monitor`: its rows so far, its detector and its events."""

    defect_rows: list[dict[str, Any]]
    rows: list[dict[str, Any]]
    hessian_rows: list[dict[str, Any]]
    llc_rows: list[dict[str, Any]]
    detector_inputs: list[dict[str, Any]]
    detector: Any
    events: list[WarningEvent]
    divergence: DivergenceWatch


def _finite(v: Any) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


class Signals:
    """Forwards a monitor's new measurements to `log` (numbers) and `text` (the warning's message).

    Args:
        log: called as `log({name: value, ...}, step=step)`, one call per step with new signals.
        text: called as `text(tag, text, step)` with the warning's message (None: numbers only).
        after: only rows of steps after this one are forwarded (the monitor sets it: a continued record's step).
    """

    def __init__(self, log: LogFn, text: TextFn | None = None, after: int = -1) -> None:
        self.log, self.text, self.after = log, text, after
        self.seen: dict[str, int] | None = None  # rows already forwarded, per list of the monitor

    def _new(self, name: str, rows: list[Any], step_of: Callable[[Any], int]) -> list[Any]:
        """The rows of one of the monitor's lists not forwarded yet (on the first call: those after `after`)."""
        assert self.seen is not None
        if name not in self.seen:
            self.seen[name] = bisect.bisect_right([step_of(r) for r in rows], self.after)
        start, self.seen[name] = self.seen[name], len(rows)
        return rows[start:]

    def collect(self, mon: Recorded) -> dict[int, dict[str, float]]:
        """The new signals, step → {name: value}; the warnings' messages go to `text` on the way."""
        self.seen = {} if self.seen is None else self.seen
        out: dict[int, dict[str, float]] = {}

        def put(step: int, name: str, value: Any) -> None:
            v = _finite(value)
            if v is not None:
                out.setdefault(int(step), {})[PREFIX + name] = v

        for r in self._new("defect", mon.defect_rows, lambda r: r["step"]):
            put(r["step"], "defect", r["defect"])
        for r in self._new("metrics", mon.rows, lambda r: r["step"]):
            put(r["step"], "weight_norm", r["weight_norm"])
        scores = getattr(mon.detector, "scores", None)
        if isinstance(scores, list) and len(scores) == len(mon.detector_inputs):
            pairs = list(zip(mon.detector_inputs, scores, strict=True))
            for inputs, score in self._new("score", pairs, lambda p: p[0]["step"]):
                put(inputs["step"], "warning_score", score)
        for r in self._new("hessian", mon.hessian_rows, lambda r: r["step"]):
            put(r["step"], "lambda_min", r["lambda_min"])
            put(r["step"], "lambda_max", r["lambda_max"])
        for r in self._new("llc", mon.llc_rows, lambda r: r["step"]):
            put(r["step"], "llc", r["llc"])
        for e in self._new("warning", mon.events, lambda e: e.step):
            put(e.step, "warning", 1.0)
            for name in ("predicted_grok", "window_lo", "window_hi"):
                put(e.step, name, getattr(e, name))
            if self.text is not None:
                self.text(PREFIX + "warning_message", e.message(), int(e.step))
        div = [mon.divergence.event] if mon.divergence.event is not None else []
        for e in self._new("diverged", div, lambda e: e.step):
            put(e.step, "diverged", 1.0)
        return out

    def forward(self, mon: Recorded) -> None:
        """Send everything `mon` recorded since the last call, one `log` call per step, in step order."""
        for step, metrics in sorted(self.collect(mon).items()):
            self.log(metrics, step=step)
