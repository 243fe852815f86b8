"""Counter-based minibatch sampling on the device.

Indices are a pure hash of (run seed, step, slot): no generator state to carry, the same for a run
whether it trains alone or in a batch, and resuming at step s needs nothing but s.
"""

from __future__ import annotations

import torch

_MASK = 0xFFFFFFFF


def _mix32(x: torch.Tensor) -> torch.Tensor:
    """A 32-bit integer finaliser (xorshift-multiply); multipliers < 2^31 keep int64 products exact."""
    x = x & _MASK
    x = x ^ (x >> 16)
    x = (x * 0x7FEB352D) & _MASK
    x = x ^ (x >> 15)
    x = (x * 0x5BD1E995) & _MASK
    return x ^ (x >> 16)


def sample_indices(seeds: torch.Tensor, step: int, batch: int, n: int) -> torch.Tensor:
    """Uniform indices in [0, n) with replacement, [R, batch] int64, for per-run `seeds` [R] at `step`."""
    slot = torch.arange(batch, device=seeds.device, dtype=torch.int64)
    h = _mix32(_mix32(seeds.to(torch.int64)) ^ _mix32(torch.tensor(step, device=seeds.device) + 0x3C6EF372))
    h = _mix32(h[:, None] ^ _mix32(slot * 0x27D4EB2F + 0x165667B1)[None, :])
    return h % n
