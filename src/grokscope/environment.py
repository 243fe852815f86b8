"""What a run stores about the software and machine that trained it (summary.json's `environment`). It is not
part of the run's config or identity: resuming on another machine or with another thread count is the same run."""

from __future__ import annotations

import platform
from typing import Any

import torch

__all__ = ["environment"]


def environment(device: str | torch.device) -> dict[str, Any]:
    """Versions, device and torch's CPU thread count in this process, for a run's summary (speed depends on them)."""
    return {"torch": torch.__version__, "python": platform.python_version(), "device": str(device),
            "threads": torch.get_num_threads()}
