"""grokscope: train whole grokking sweeps at once and measure the geometry of training."""

from grokscope.config import DataConfig, ModelConfig, OptimConfig, RunConfig, preset
from grokscope.store import RunDir, find_runs, load_metrics, load_summaries
from grokscope.train import train

__all__ = ["DataConfig", "ModelConfig", "OptimConfig", "RunConfig", "RunDir", "find_runs", "load_metrics",
           "load_summaries", "preset", "train"]
__version__ = "0.1.0"
