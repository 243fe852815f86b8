"""Device names: which ones a config may give (`check_device`) and what `auto` means here (`resolve_device`)."""

from __future__ import annotations

from typing import Any

import torch

from grokscope.errors import ConfigError


def check_device(v: Any) -> str:
    """`v` if it names a device grokscope knows (auto, cpu, cuda, cuda:N), else a one-line ConfigError."""
    if not isinstance(v, str) or not (v in ("auto", "cpu", "cuda") or v.startswith("cuda:")):
        raise ConfigError(f"device={v!r} must be auto, cpu, cuda or cuda:N")
    return v


def resolve_device(device: str) -> str:
    """`auto` → cuda when available, else cpu; a CUDA device this machine lacks is a ConfigError."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device {device!r} is not available on this machine")
    return device
