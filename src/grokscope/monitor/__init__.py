"""grokscope on any training loop: `Monitor` records grokscope's measurements of a user's own model."""

from grokscope.monitor.batches import BatchSource, CallableBatches, DatasetBatches, TensorBatches, make_source
from grokscope.monitor.choice import AutoDetector, WarnConstants
from grokscope.monitor.detector import DEFAULT_DETECTOR, DetectorConfig, MultiSignalDetector
from grokscope.monitor.divergence import DivergenceEvent
from grokscope.monitor.external import parse_metric
from grokscope.monitor.monitor import Monitor
from grokscope.monitor.posthoc import UserModel
from grokscope.monitor.settings import MonitorConfig
from grokscope.monitor.sinks import PREFIX, Signals
from grokscope.monitor.warning import DEFAULT_LEAD, LeadModel, OnsetDetector, WarningEvent, replay

__all__ = ["DEFAULT_DETECTOR", "DEFAULT_LEAD", "AutoDetector", "BatchSource", "CallableBatches", "DatasetBatches",
           "DetectorConfig", "DivergenceEvent", "LeadModel", "Monitor", "MonitorConfig", "MultiSignalDetector",
           "OnsetDetector", "PREFIX", "Signals", "TensorBatches", "UserModel", "WarnConstants", "WarningEvent",
           "make_source", "parse_metric", "replay"]
