"""Minibatch index streams: grokscope's counter-based sampler and the papers' numpy stream.

`sample_indices` (sampler "counter"): indices are a pure hash of (run seed, step, slot): no generator
state to carry, the same for a run whether it trains alone or in a batch, and resuming at step s needs
nothing but s. `AuthorsStream` (sampler "authors"): the scripts' `np.random.seed(seed)` +
`np.random.randint`, one stream per run, whose position is saved in checkpoints.
"""

from __future__ import annotations

from typing import Any, TypeVar

import numpy as np
import torch

_MASK = 0xFFFFFFFF
T = TypeVar("T", torch.Tensor, int)


def _mix32(x: T) -> T:
    """A 32-bit integer finaliser (xorshift-multiply) of an int64 tensor or a Python int (the same numbers:
    multipliers < 2^31 keep int64 products exact)."""
    x = x & _MASK
    x = x ^ (x >> 16)
    x = (x * 0x7FEB352D) & _MASK
    x = x ^ (x >> 15)
    x = (x * 0x5BD1E995) & _MASK
    return x ^ (x >> 16)


def sample_indices(seeds: torch.Tensor, step: int, batch: int, n: int) -> torch.Tensor:
    """Uniform indices in [0, n) with replacement, [R, batch] int64, for per-run `seeds` [R] at `step`, on the
    seeds' device. The step's hash is a host int, so a draw copies nothing to the device and reads nothing back."""
    slot = torch.arange(batch, device=seeds.device, dtype=torch.int64)
    h = _mix32(_mix32(seeds.to(torch.int64)) ^ _mix32(int(step) + 0x3C6EF372))
    h = _mix32(h[:, None] ^ _mix32(slot * 0x27D4EB2F + 0x165667B1)[None, :])
    return h % n


class AuthorsStream:
    """The papers' minibatch indices: per run, the numpy stream of `np.random.seed(seed)` read by
    `np.random.randint(0, n_train, size=batch)` once per step (their step 1 is grokscope's step 0).

    Each run owns a `RandomState`, so a run draws the same indices alone or in any batch. The stream is a
    sequence of draws addressed by number: asking for the next draw draws it, recent draws are kept, a later
    draw skips the ones between (drawn and dropped, as the script would have drawn them), and an earlier
    draw that is no longer kept replays the stream from the seed. With `probe_every` / `probe_draws` > 0,
    every `probe_every` steps (from step 0, before that step's training draw) `probe_draws` batches go to
    an inline measurement first, as P2's grok_generalization_dynamics.py draws its commutator minibatches
    from the training stream. `state()` / `load_state()` carry a run's position through a checkpoint as
    plain arrays (no pickle).
    """

    KEEP = 64  # recent draws kept per run

    def __init__(self, seeds: list[int], n: int, batch: int, probe_every: int = 0, probe_draws: int = 0) -> None:
        self.seeds, self.n, self.batch = [int(s) for s in seeds], int(n), int(batch)
        self.probe_every, self.probe_draws = int(probe_every), int(probe_draws) if probe_every else 0
        self.rngs = [np.random.RandomState(s) for s in self.seeds]
        self.next_draw = [0] * len(self.seeds)
        self.kept: list[dict[int, np.ndarray]] = [{} for _ in self.seeds]

    def train_draw(self, step: int) -> int:
        """Number of the draw that feeds training step `step` (0-based)."""
        if not self.probe_every:
            return step
        return step + self.probe_draws * (step // self.probe_every + 1)

    def probe_draw(self, step: int, j: int) -> int:
        """Number of the inline measurement's draw j at `step` (a multiple of `probe_every`)."""
        if not self.probe_every or step % self.probe_every or not 0 <= j < self.probe_draws:
            raise ValueError(f"no measurement draw {j} at step {step} (every {self.probe_every}, "
                             f"{self.probe_draws} draws)")
        return step + self.probe_draws * (step // self.probe_every) + j

    def draw(self, r: int, i: int) -> np.ndarray:
        """Run r's draw number i: `batch` indices into its (shuffled) training list."""
        kept = self.kept[r]
        if i in kept:
            return kept[i]
        if i < self.next_draw[r]:
            self.rngs[r], self.next_draw[r], kept = np.random.RandomState(self.seeds[r]), 0, {}
            self.kept[r] = kept
        while self.next_draw[r] <= i:
            kept[self.next_draw[r]] = self.rngs[r].randint(0, self.n, size=self.batch)
            self.next_draw[r] += 1
            kept.pop(self.next_draw[r] - 1 - self.KEEP, None)
        return kept[i]

    def block(self, first: int, steps: int) -> np.ndarray:
        """[steps, R, batch] int64 training indices of steps first, ..., first + steps - 1 of every run, each run's
        draws in stream order (the measurement draws between them drawn and kept, as `draw` does): what
        `Problem.minibatch` prefetches, so the host draws and copies once per block, not once per step."""
        return np.stack([np.stack([self.draw(r, self.train_draw(s)) for r in range(len(self.seeds))])
                         for s in range(first, first + steps)]).astype(np.int64)

    def _stack(self, numbers: list[int], runs: list[int] | None) -> torch.Tensor:
        runs = list(range(len(self.seeds))) if runs is None else runs
        return torch.from_numpy(np.stack([self.draw(r, i) for r, i in zip(runs, numbers)]).astype(np.int64))

    def numbered(self, number: int, runs: list[int] | None = None) -> torch.Tensor:
        """[R', batch] int64 indices of draw `number` of `runs` (default: all), whatever it feeds."""
        return self._stack([number] * (len(self.seeds) if runs is None else len(runs)), runs)

    def indices(self, step: int, runs: list[int] | None = None) -> torch.Tensor:
        """[R', batch] int64 training indices of `runs` (default: all) at `step`."""
        k = self.train_draw(step)
        return self._stack([k] * (len(self.seeds) if runs is None else len(runs)), runs)

    def probe_indices(self, step: int, j: int, runs: list[int] | None = None) -> torch.Tensor:
        """[R', batch] int64 indices of the inline measurement's draw j at `step`."""
        k = self.probe_draw(step, j)
        return self._stack([k] * (len(self.seeds) if runs is None else len(runs)), runs)

    def state(self, r: int) -> tuple[torch.Tensor, dict[str, Any]]:
        """Run r's position: the MT19937 key [624] (as int64) and the rest as JSON-able metadata."""
        name, key, pos, has_gauss, gauss = self.rngs[r].get_state()
        return torch.from_numpy(key.astype(np.int64)), {
            "name": name, "pos": int(pos), "has_gauss": int(has_gauss), "cached_gaussian": float(gauss),
            "next_draw": self.next_draw[r]}

    def load_state(self, r: int, key: torch.Tensor, meta: dict[str, Any]) -> None:
        """Restore run r's position saved by `state`."""
        rng = np.random.RandomState()
        rng.set_state((meta["name"], key.numpy().astype(np.uint32), int(meta["pos"]), int(meta["has_gauss"]),
                       float(meta["cached_gaussian"])))
        self.rngs[r], self.next_draw[r], self.kept[r] = rng, int(meta["next_draw"]), {}
