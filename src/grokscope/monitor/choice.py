"""The default early warning: the best detector the logged data allows, and a statement of which and why.

`AutoDetector` (what `Monitor(detector=None)` runs) watches what the run logs. As soon as a held-out loss is logged
(`test_loss` / `val_loss`, per task too; the HF Trainer's `eval_loss` and Lightning's `val_loss` map to it) it runs
the validation detector (`multi-val`: the held-out loss falling while the training set stays fitted, with the norm
decline); until then, the test-free transfer detector (`monitor.transfer`, on the optimiser's clock). The choice is
made at the first measurement after any train or held-out metric was logged (before that there is nothing to judge)
and upgraded once if a held-out loss appears later; it is a function of the logged data alone, so a resumed record
replays to the same choice. Every warning carries a forecast (`monitor.forecast`) and the choice in its evidence.
Where train accuracy is not logged, memorisation is read off the train loss (`TransferConfig.loss_gate`).
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np

from grokscope.errors import ConfigError
from grokscope.monitor.defaults import DEFAULT_CONSTANTS, WarnConstants
from grokscope.monitor.detector import score, signals
from grokscope.monitor.transfer import TransferDetector
from grokscope.monitor.warning import WarningEvent

MODES = ("auto", "multi-val", "transfer")


def _finite(v: Any) -> bool:
    return v is not None and isinstance(v, int | float) and math.isfinite(v)


class AutoDetector:
    """See the module doc. `mode` forces one detector ("multi-val" / "transfer"; "auto": the choice);
    `on_choice(choice)` is called when the choice is made or upgraded (the monitor prints it)."""

    def __init__(self, constants: WarnConstants | None = None, mode: str = "auto",
                 on_choice: Callable[[dict[str, Any]], None] | None = None) -> None:
        if mode not in MODES:
            raise ConfigError(f"detector mode {mode!r}; choose from {', '.join(MODES)}")

        self.k = constants or DEFAULT_CONSTANTS
        self.mode, self.on_choice = mode, on_choice
        self.free = TransferDetector(self.k.transfer)
        self.val_cfg = replace(self.k.validation, name="multi-val")
        self.steps: list[int] = []
        self.val_inputs: dict[str, list[float]] = {k: [] for k in ("defect", "weight_norm", "train_acc", "test_loss")}
        self.val_scores: list[float] = []
        self._scores: list[float] = []
        self.choice: dict[str, Any] | None = None
        self.seen_test = self.seen_metric = False
        self.fired: WarningEvent | None = None

    @property
    def scores(self) -> list[float]:
        """The running detector's score per measurement (NaN while undecided or abstaining)."""
        return self._scores

    # ---- one measurement ----------------------------------------------------------------------------------
    def observe(self, step: int, defect: float, weight_norm: float | None = None, train_acc: float | None = None,
                test_loss: float | None = None, train_loss: float | None = None, clock_rate: float | None = None,
                clock_kind: str | None = None, **other: Any) -> WarningEvent | None:
        """Add one measurement (inputs None where not logged); the warning the first time the running detector's
        score reaches its threshold."""
        self.steps.append(int(step))
        self.seen_test = self.seen_test or _finite(test_loss)
        self.seen_metric = self.seen_metric or self.seen_test or _finite(train_acc) or _finite(train_loss)
        s_free = self.free.observe(step, weight_norm=weight_norm, train_acc=train_acc, train_loss=train_loss,
                                   clock_rate=clock_rate, clock_kind=clock_kind)
        acc = train_acc if _finite(train_acc) else (
            float(train_loss <= self.k.transfer.loss_gate) if _finite(train_loss) else None)
        for key, v in zip(self.val_inputs, (defect, weight_norm, acc, test_loss)):
            self.val_inputs[key].append(float(v) if _finite(v) else math.nan)
        sig = signals(**{k: np.asarray(v) for k, v in self.val_inputs.items()}, cfg=self.val_cfg)
        s_val = float(score(sig, self.val_cfg)[-1]) if self.seen_test else math.nan
        self.val_scores.append(s_val)
        self._choose(step)
        running = self.running
        s = s_val if running == "multi-val" else (s_free if running == "transfer" else math.nan)
        self._scores.append(s)
        thr = self.val_cfg.threshold if running == "multi-val" else self.k.transfer.threshold
        if self.fired is not None or not (math.isfinite(s) and s >= thr):
            return None
        self.fired = self._event(step, defect, s, thr, sig if running == "multi-val" else self.free.signals())
        return self.fired

    @property
    def running(self) -> str | None:
        """The detector that scores now ("multi-val" / "transfer"), None before the choice."""
        if self.mode != "auto":
            return self.mode
        return self.choice["detector"] if self.choice else None

    def _choose(self, step: int) -> None:
        if self.mode != "auto" or not self.seen_metric:
            return
        want = "multi-val" if self.seen_test else "transfer"
        if self.choice and self.choice["detector"] == want:
            return
        if want == "multi-val":
            reason = ("a held-out loss is logged (test_loss / val_loss / eval_loss): the validation detector, which "
                      "reads it, is the most reliable one")
        else:
            reason = ("no held-out loss is logged: the test-free transfer detector (train metric and weight norm on "
                      "the optimiser's decay clock); log test_loss or val_loss to switch to the validation detector")
        self.choice = {"detector": want, "reason": reason, "step": int(step)}
        if self.on_choice is not None:
            self.on_choice(self.describe())

    # ---- the warning ------------------------------------------------------------------------------------
    def _event(self, step: int, defect: float, s: float, thr: float, sig: dict[str, np.ndarray]) -> WarningEvent:
        name = self.running or "transfer"
        st = self.free.state()
        fc = (self.k.forecast_validation if name == "multi-val" else self.k.forecast_transfer)
        f = fc.predict(step, st["tau"], st["rate"])
        last = {k: (None if not math.isfinite(float(v[-1])) else round(float(v[-1]), 4)) for k, v in sig.items()}
        return WarningEvent(
            step=int(step), onset=int(step), detector=name, defect=float(defect), baseline=math.nan, ratio=math.nan,
            predicted_grok=f["predicted"], window_lo=f["lo"], window_hi=f["hi"],
            evidence={"score": round(s, 4), "threshold": thr, "signals": last, "forecast": f["how"],
                      "clock_tau": st["tau"], "clock_rate": st["rate"],
                      "choice": dict(self.choice) if self.choice else {"detector": name, "reason": "forced"},
                      "n_measurements": len(self.steps)})

    def describe(self) -> dict[str, Any]:
        """What summary.json stores: the detector running, why, since which step, and the transfer's abstention."""
        c = self.choice or {}
        return {"name": "auto" if self.mode == "auto" else self.mode, "running": self.running,
                "reason": c.get("reason", "no train or held-out metric logged yet: nothing to judge"),
                "since_step": c.get("step"), "transfer_abstains": self.free.abstain,
                "message": self.message()}

    def message(self) -> str:
        c = self.choice
        if c is None:
            return "grokscope early warning: waiting for logged metrics to choose a detector"
        text = f"grokscope early warning: running the {c['detector']} detector from step {c['step']}: {c['reason']}"
        if c["detector"] == "transfer" and self.free.abstain:
            text += f". It abstains for now: {self.free.abstain}"
        return text


def detector_kwargs(detector: Any, inputs: dict[str, Any]) -> dict[str, Any]:
    """The inputs a detector's `observe` takes: all of them where it takes **kwargs, else those it names (a user's
    detector written to the older protocol, step/defect/weight_norm/train_acc/test_loss, keeps working)."""
    try:
        params = inspect.signature(detector.observe).parameters.values()
    except (TypeError, ValueError):
        return inputs
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return inputs
    names = {p.name for p in params}
    return {k: v for k, v in inputs.items() if k in names}


def replay_auto(series: dict[str, Any], mode: str = "auto", constants: WarnConstants | None = None
                ) -> tuple[AutoDetector, WarningEvent | None]:
    """Feed a run's detector inputs (`monitor.evaluate.auto_series`) to an `AutoDetector` measurement by measurement,
    as it ran live: (the detector, its warning or None)."""
    det = AutoDetector(constants, mode)
    event = None
    keys = [k for k in series if k not in ("step", "defect")]
    for i, step in enumerate(series["step"]):
        inputs = {k: series[k][i] for k in keys}
        inputs = {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in inputs.items()}
        event = det.observe(int(step), float(series["defect"][i]), **inputs) or event
    return det, event
