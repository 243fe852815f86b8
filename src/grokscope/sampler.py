"""Minibatch index streams: grokscope's counter-based sampler and the papers' numpy stream.

`sample_indices` (sampler "counter"): indices are a pure hash of (run seed, step, slot): no generator
state to carry, the same for a run whether it trains alone or in a batch, and resuming at step s needs
nothing but s. `AuthorsStream` (sampler "authors"): the scripts' `np.random.seed(seed)` +
`np.random.randint`, one stream per run, whose position is saved in checkpoints.
"""

from __future__ import annotations

from typing import Any

import numpy as np
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


class AuthorsStream:
    """The papers' minibatch indices: per run, the numpy stream of `np.random.seed(seed)` read by
    `np.random.randint(0, n_train, size=batch)` once per step (their step 1 is grokscope's step 0).

    Each run owns a `RandomState`, so a run draws the same indices alone or in any batch. The stream is
    sequential: asking for the next step draws it, asking again for the current step returns it, asking
    for a later step skips the steps between (drawn and dropped, as the script would have drawn them),
    and an earlier step replays the stream from the seed. `state()` / `load_state()` carry a run's
    position through a checkpoint as plain arrays (no pickle).
    """

    def __init__(self, seeds: list[int], n: int, batch: int) -> None:
        self.seeds, self.n, self.batch = [int(s) for s in seeds], int(n), int(batch)
        self.rngs = [np.random.RandomState(s) for s in self.seeds]
        self.next_step = [0] * len(self.seeds)
        self.last: list[np.ndarray | None] = [None] * len(self.seeds)

    def _draw(self, r: int) -> np.ndarray:
        self.last[r] = self.rngs[r].randint(0, self.n, size=self.batch)
        self.next_step[r] += 1
        return self.last[r]

    def run_indices(self, r: int, step: int) -> np.ndarray:
        """Run r's `batch` indices into its (shuffled) training list at 0-based `step`."""
        if step == self.next_step[r] - 1 and self.last[r] is not None:
            return self.last[r]
        if step < self.next_step[r]:
            self.rngs[r], self.next_step[r] = np.random.RandomState(self.seeds[r]), 0
        while self.next_step[r] < step:
            self._draw(r)
        return self._draw(r)

    def indices(self, step: int, runs: list[int] | None = None) -> torch.Tensor:
        """[R', batch] int64 indices of `runs` (default: all) at `step`."""
        runs = range(len(self.seeds)) if runs is None else runs
        return torch.from_numpy(np.stack([self.run_indices(r, step) for r in runs]).astype(np.int64))

    def state(self, r: int) -> tuple[torch.Tensor, dict[str, Any]]:
        """Run r's position: the MT19937 key [624] (as int64) and the rest as JSON-able metadata."""
        name, key, pos, has_gauss, gauss = self.rngs[r].get_state()
        return torch.from_numpy(key.astype(np.int64)), {
            "name": name, "pos": int(pos), "has_gauss": int(has_gauss), "cached_gaussian": float(gauss),
            "next_step": self.next_step[r]}

    def load_state(self, r: int, key: torch.Tensor, meta: dict[str, Any]) -> None:
        """Restore run r's position saved by `state`."""
        rng = np.random.RandomState()
        rng.set_state((meta["name"], key.numpy().astype(np.uint32), int(meta["pos"]), int(meta["has_gauss"]),
                       float(meta["cached_gaussian"])))
        self.rngs[r], self.next_step[r], self.last[r] = rng, int(meta["next_step"]), None
