"""A monitored run measured after the fact with the user's model handed back: what the monitor did not record
(λ_min, the commutator defect's integrability ρ) measured at its stored snapshots.

grokscope cannot rebuild a user's model from a store, so `analyze` reads only what a monitor recorded. Given the
model again (`UserModel`: the model, its loss and batches, as `Monitor` takes them), the analyses evaluate it at
the stored snapshots through the monitor's own functions (`Target`: copies, buffers restored, the guard) and the
same math as grokscope's runs (`geometry.krylov.lanczos`, `geometry.commutator`). `run_analysis(run, "hessian" or
"defect", model=UserModel(...))` uses it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from grokscope.errors import ConfigError, StoreError, TooLittleData
from grokscope.formatting import num
from grokscope.geometry.commutator import defect_from_grad_fn, integrability
from grokscope.geometry.krylov import lanczos
from grokscope.geometry.onset import posthoc_indices
from grokscope.geometry.pca import exec_basis_from_traj, watched_trajectories
from grokscope.monitor.batches import make_source
from grokscope.monitor.functional import Forward, LossFn, Params, Target
from grokscope.store import RunDir

__all__ = ["UserModel"]


class UserModel:
    """The model a monitored run recorded, its loss and the batches to measure on (as `Monitor` takes them: a
    tuple (X, y), a Dataset, a DataLoader or a function), handed back to the analyses. Its parameter names must be
    those the monitor recorded (`monitor.json`); its current values are never read or changed.

    Args:
        model: the model (an `nn.Module`, or a params dict with `forward`) whose parameters the run recorded.
        loss_fn: the loss, called as `loss_fn(outputs, target)`, as the monitor called it.
        batches: the data to measure on, anything `Monitor` takes.
        forward: the functional forward of a params-dict model (None for an `nn.Module`).
        batch_size: rows per minibatch drawn from `batches` (None: the source's own).
        seed: the seed of grokscope's minibatch sampler.
        eval_mode: measure with the module in eval mode (dropout off).
    """

    def __init__(self, model: nn.Module | Params, loss_fn: LossFn, batches: Any, *, forward: Forward | None = None,
                 batch_size: int | None = None, seed: int = 0, eval_mode: bool = True) -> None:
        self.target = Target(model, loss_fn, forward)
        self.source = make_source(batches, batch_size, seed)
        self.seed = int(seed)
        self.eval_mode = eval_mode

    def _snapshots(self, run: RunDir) -> tuple[np.ndarray, dict[str, torch.Tensor]]:
        steps, snaps = run.snapshots()
        if len(steps) == 0:
            raise TooLittleData(f"{run.path.name} holds no parameter snapshots (Monitor n_snapshots=0)")
        missing = [n for n in self.target.names if n not in snaps]
        if missing:
            raise ConfigError(f"model: {run.path.name}'s snapshots lack parameter {missing[0]!r}; pass the model "
                              f"the run recorded (its snapshots hold {', '.join(list(snaps)[:3])}, ...)")
        for n in self.target.names:
            if tuple(snaps[n].shape[1:]) != self.target.shapes[n]:
                raise ConfigError(f"model: parameter {n!r} has shape {list(self.target.shapes[n])}, the run recorded "
                                  f"{list(snaps[n].shape[1:])}")
        return steps.numpy(), snaps

    def theta(self, snaps: dict[str, torch.Tensor], i: int) -> torch.Tensor:
        """Snapshot i as a flat vector [P] in the model's layout."""
        dtype = next(iter(self.target.live.values())).dtype
        return torch.cat([snaps[n][i].reshape(-1) for n in self.target.names]).to(dtype)

    @staticmethod
    def _which(steps: np.ndarray, at: Sequence[int] | None, max_points: int) -> np.ndarray:
        """Snapshot indices: the ones nearest each step of `at` (sorted, once each), else ≤ max_points spread evenly."""
        if at is None:
            return posthoc_indices(len(steps), max_points)
        return np.unique([int(np.abs(steps - s).argmin()) for s in at])

    def hessian_table(self, run: RunDir, at: Sequence[int] | None = None, max_points: int = 30, iters: int = 25,
                      samples: int = 512, k: int = 5) -> pd.DataFrame:
        """λ_min, λ_max of the loss on a fixed training sample (`samples` examples, the monitor's salt) at the
        stored snapshots nearest the steps `at` (else ≤ max_points spread evenly): rows as the monitor's
        hessian table, so `summarize_hessian` reads them."""
        steps, snaps = self._snapshots(run)
        batch = self.source.fixed_sample(samples)
        rows = []
        for i in self._which(steps, at, max_points):
            theta, step = self.theta(snaps, int(i)), int(steps[i])
            with self.target.measuring(self.eval_mode):
                v0 = torch.randn(1, theta.numel(), generator=torch.Generator().manual_seed(self.seed * 7919 + step),
                                 dtype=theta.dtype)
                res = lanczos(self.target.hvp(theta, batch), v0, iters, k)
            nan = float("nan")
            rows.append({"step": step, "loss": "total", "lambda_min": float(res.bottom[0, 0]),
                         "lambda_max": float(res.top[0, 0]), "exec_curv": nan, "perp_curv": nan,
                         "lambda_min_residual": float(res.bottom_residual[0, 0]), "iters": iters})
        return pd.DataFrame(rows)

    def basis(self, run: RunDir, watch: str | Sequence[str] | None = None, per_matrix: int = 2) -> torch.Tensor:
        """The execution basis B [P, K] of the run: the top `per_matrix` centred directions of each watched
        trajectory (or those `watch` picks) embedded in the model's flat layout (P2's construction)."""
        steps, traj, _ = watched_trajectories(run, watch)
        sizes = dict(zip(self.target.names, self.target.sizes, strict=True))
        full = {n: t for n, t in traj.items() if n in sizes and t[0].numel() == sizes[n]}
        if not full:
            raise StoreError(f"{run.path.name}: no watched trajectory is a whole parameter of this model (sketched "
                             f"or unknown: {', '.join(traj)}); ρ needs one, e.g. watch= a parameter's name")
        if len(steps) < 2:
            raise TooLittleData(f"the execution basis needs the watched tensors at 2+ steps; {run.path.name} has "
                                f"{len(steps)}")
        offsets = np.cumsum([0, *self.target.sizes])
        slices = {n: slice(int(offsets[j]), int(offsets[j + 1])) for j, n in enumerate(self.target.names)}
        return exec_basis_from_traj(full, slices, int(offsets[-1]), per_matrix)

    def defect_table(self, run: RunDir, draws: int = 3, eta: float = 1e-3, at: Sequence[int] | None = None,
                     max_points: int = 30, watch: str | Sequence[str] | None = None,
                     n_random: int = 5) -> pd.DataFrame:
        """The commutator defect (median of `draws` minibatch pairs, the monitor's draws at each step) and
        integrability ρ against the execution basis (`basis`), with its random-basis control and the exec/random
        projection ratio, at the stored snapshots nearest `at` (else ≤ max_points spread evenly)."""
        steps, snaps = self._snapshots(run)
        B = self.basis(run, watch)
        rows = []
        for i in self._which(steps, at, max_points):
            theta, step = self.theta(snaps, int(i))[None], int(steps[i])
            D, deltas = [], []
            with self.target.measuring(self.eval_mode):
                for k in range(draws):
                    a, b = self.source.draw(step, 2 * k + 1), self.source.draw(step, 2 * k + 2)
                    d, delta = defect_from_grad_fn(self.target.grad_fn(a), self.target.grad_fn(b), theta, eta)
                    D.append(float(d[0]))
                    deltas.append(delta[0].detach())
            rho, rho_random, ratio = integrability(torch.stack(deltas)[None].double(), B.double(), n_random)
            rows.append({"step": step, "defect": float(torch.tensor(D).median()), "defect_draws": D, "rho": num(rho[0]),
                         "rho_random": num(rho_random[0]), "proj_ratio": num(ratio[0]), "basis_rank": B.shape[1]})
        return pd.DataFrame(rows)
