"""What a run stores about the software and machine that trained it (summary.json's `environment`). It is not
part of the run's config or identity: resuming on another machine or with another thread count is the same run."""

from __future__ import annotations

import platform
from functools import cache
from pathlib import Path
from typing import Any

import torch

__all__ = ["environment", "processor"]


@cache
def processor() -> str:
    """The CPU's model name as lscpu reports it (from /proc/cpuinfo; the platform's description elsewhere): float
    results and grok steps of one seed move with the processor, so every figure says which one gave it."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def environment(device: str | torch.device) -> dict[str, Any]:
    """Versions, processor, device and torch's CPU thread count in this process, for a run's summary (speed and
    the last bits of results depend on them)."""
    return {"torch": torch.__version__, "python": platform.python_version(), "processor": processor(),
            "device": str(device), "threads": torch.get_num_threads()}
