"""The shipped constants of the default early warning (`AutoDetector`), fitted on the whole stored corpus with the
rule `monitor.lofo.fit_constants` applies to each leave-one-family-out fold (96 runs stored on 2026-12-07T16:41Z;
docs/early-warning.md; `python studies/early_warning.py lofo` refits and prints them)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from grokscope.monitor.detector import VALIDATION_DETECTOR, DetectorConfig, variant
from grokscope.monitor.forecast import Forecast
from grokscope.monitor.transfer import TransferConfig


@dataclass(frozen=True)
class WarnConstants:
    """Every fitted number of the default warning: the validation detector, the transfer detector, and the forecast
    of each (fitted on its own calibration warnings)."""

    validation: DetectorConfig = VALIDATION_DETECTOR
    transfer: TransferConfig = field(default_factory=TransferConfig)
    forecast_validation: Forecast = field(default_factory=Forecast)
    forecast_transfer: Forecast = field(default_factory=Forecast)
    source: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


DEFAULT_CONSTANTS = WarnConstants(
    validation=variant(VALIDATION_DETECTOR, threshold=0.895502),
    transfer=TransferConfig(score='loss-drop', threshold=0.24246, tau_star=5.0,
                            window=1.0, acc_gate=0.99, loss_gate=0.176902),
    forecast_validation=Forecast(tau_star=5.0, q_lo=-0.944462, q_mid=0.0, q_hi=0.650588,
                                 r_lo=1.5, r_mid=1.558824, r_hi=2.1, n_clock=27, n_ratio=3),
    forecast_transfer=Forecast(tau_star=5.0, q_lo=-0.944462, q_mid=0.0, q_hi=1.252763,
                                 r_lo=1.1, r_mid=1.5, r_hi=2.5, n_clock=29, n_ratio=0),
    source='whole stored corpus, 96 runs, 2026-12-07T16:41Z')
