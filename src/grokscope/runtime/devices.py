"""Device names: which ones a config may give (`check_device`) and what `auto` means here (`resolve_device`)."""

from __future__ import annotations

from typing import Any

import torch

from grokscope.errors import ConfigError


def check_device(v: Any) -> str:
    """`v` if it names a device grokscope knows (auto, cpu, cuda, cuda:N), else a one-line ConfigError.
    (Only the name: a spec may name a GPU its Ray cluster has and this machine lacks.)"""
    if not isinstance(v, str) or not (v in ("auto", "cpu", "cuda") or (v.startswith("cuda:") and v[5:].isdigit())):
        raise ConfigError(f"unknown device {v!r}; use auto, cpu, cuda or cuda:N")
    return v


def resolve_device(device: str) -> str:
    """`auto` → cuda when available, else cpu; a device this machine lacks (no CUDA, or cuda:N beyond its GPU
    count) is a one-line ConfigError naming it."""
    device = check_device(device)
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(f"device {device!r} is not available: this torch ({torch.__version__}) sees no CUDA GPU")
        index = torch.device(device).index
        if index is not None and index >= torch.cuda.device_count():
            raise ConfigError(f"device {device!r} is not available: this machine has "
                              f"{torch.cuda.device_count()} CUDA GPU(s)")
    return device
