"""Parameter groups (per layer by default) as slices of the flat vector θ: per-group shares of the
commutator δ and Lanczos on the Hessian block of one group."""

from __future__ import annotations

import fnmatch
from collections.abc import Callable

import torch

from grokscope.errors import ConfigError

MatVec = Callable[[torch.Tensor], torch.Tensor]


def layer_of(name: str) -> str:
    """The layer a parameter belongs to: its path up to the first numeric component (`transformer.h.3`,
    `encoder.layers.0`), else its module (the name without the tensor: `transformer.wte`, `head`)."""
    parts = name.split(".")
    for i, p in enumerate(parts):
        if p.isdigit():
            return ".".join(parts[: i + 1])
    return ".".join(parts[:-1]) or name


class Groups:
    """Named groups of parameters, each a list of (start, stop) slices of the flat layout."""

    def __init__(self, names: list[str], sizes: list[int], patterns: list[str] | None = None) -> None:
        offsets, pos = {}, 0
        for n, s in zip(names, sizes):
            offsets[n], pos = (pos, pos + s), pos + s
        self.n_params = pos
        if patterns is None:
            keys = {n: layer_of(n) for n in names}
            groups: dict[str, list[str]] = {}
            for n in names:
                groups.setdefault(keys[n], []).append(n)
        else:
            groups = {p: [n for n in names if fnmatch.fnmatch(n, p)] for p in patterns}
            empty = [p for p, ns in groups.items() if not ns]
            if empty:
                raise ConfigError(f"parameter group {empty[0]!r} matches no parameter; names look like {names[0]!r}")
        self.slices = {g: [offsets[n] for n in ns] for g, ns in groups.items()}

    def size(self, group: str) -> int:
        return sum(b - a for a, b in self.slices[group])

    def square_norms(self, v: torch.Tensor) -> dict[str, torch.Tensor]:
        """‖v_g‖² [N] per group of rows v [N, P]."""
        return {g: sum(v[:, a:b].pow(2).sum(1) for a, b in sl) for g, sl in self.slices.items()}

    def take(self, group: str, v: torch.Tensor) -> torch.Tensor:
        """The group's coordinates of rows v [N, P] -> [N, P_g]."""
        return torch.cat([v[:, a:b] for a, b in self.slices[group]], 1)

    def put(self, group: str, v: torch.Tensor) -> torch.Tensor:
        """Rows v [N, P_g] placed in zeros [N, P] at the group's coordinates."""
        out = v.new_zeros(v.shape[0], self.n_params)
        pos = 0
        for a, b in self.slices[group]:
            out[:, a:b] = v[:, pos:pos + b - a]
            pos += b - a
        return out

    def block(self, group: str, matvec: MatVec) -> MatVec:
        """v [1, P_g] -> H_gg v: the Hessian block of the group (the principal submatrix), from a full HVP."""
        return lambda v: self.take(group, matvec(self.put(group, v)))
