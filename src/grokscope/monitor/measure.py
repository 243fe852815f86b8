"""The monitor's measurements of the user's model at its current parameters: the commutator defect's draws (with
each parameter group's share), λ_min/λ_max of the Hessian and of its blocks, and devinterp's LLC.

Each is grokscope's own math (`geometry.commutator.defect_from_grad_fn`, `geometry.hessian.lanczos`,
`geometry.llc.estimate_llc`) over `Target`'s pure functions, inside `Target.measuring` (which checks the model was
not written); the minibatches, Lanczos starts and SGLD seeds are functions of (seed, step), so a measurement is
the same in any process. Recording, scheduling and the store are the `Monitor`'s.
"""

from __future__ import annotations

import time
from typing import Any

import torch

from grokscope.geometry.commutator import defect_from_grad_fn
from grokscope.geometry.hessian import lanczos
from grokscope.geometry.llc import LLCSettings, ParamsModule, chains_level_off, estimate_llc, module_loss
from grokscope.monitor.batches import BatchSource
from grokscope.monitor.divergence import all_finite
from grokscope.monitor.functional import Params, Target
from grokscope.monitor.groups import Groups
from grokscope.monitor.settings import MonitorConfig

__all__ = ["Measurer"]


class Measurer:
    """Measures `target` on batches of `source` with the settings `cfg` and the monitor's `seed`.

    Args:
        target: the user's model as pure functions.
        source: the monitor's batch source (minibatches per step and salt, fixed samples).
        cfg: the monitor's settings (draws, eta, batch sizes, Lanczos iterations, LLC settings, eval mode).
        seed: the monitor's seed (Lanczos starts and SGLD chains are drawn from it and the step).
    """

    def __init__(self, target: Target, source: BatchSource, cfg: MonitorConfig, seed: int) -> None:
        self.target, self.source, self.cfg, self.seed = target, source, cfg, seed
        self.groups = Groups(target.names, target.sizes)  # one group per layer: the defect's shares
        self.hessian_groups = (Groups(target.names, target.sizes, list(cfg.hessian_groups))
                               if cfg.hessian_groups else None)
        self.hessian_batch: Any = None  # the fixed sample of the Hessian, drawn at its first use

    def defect_draws(self, step: int) -> tuple[torch.Tensor, dict[str, torch.Tensor], bool]:
        """(D [K], per group ‖δ_g‖²/‖δ‖² [K], whether every δ is finite) of the K draws at `step`: minibatches
        A_k, B_k = salts 2k+1, 2k+2 (as `geometry.commutator`)."""
        cfg, target = self.cfg, self.target
        theta = target.theta()[None]
        out, shares, finite = [], [], True
        with target.measuring(cfg.eval_mode):
            for k in range(cfg.draws):
                a = self.source.draw(step, 2 * k + 1, cfg.defect_batch)
                b = self.source.draw(step, 2 * k + 2, cfg.defect_batch)
                D, delta = defect_from_grad_fn(target.grad_fn(a), target.grad_fn(b), theta, cfg.eta)
                out.append(D[0].detach())
                finite = finite and all_finite([delta])
                if cfg.defect_groups:
                    total = delta.detach().pow(2).sum()
                    shares.append({g: float(v[0] / total) for g, v in self.groups.square_norms(delta.detach()).items()})
        per_group = {g: torch.tensor([s[g] for s in shares], dtype=torch.float64) for g in shares[0]} if shares else {}
        return torch.stack(out).cpu(), per_group, finite

    def defect_rows(self, run: str, step: int, D: torch.Tensor,
                    shares: dict[str, torch.Tensor]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """The rows of defect.parquet and defect_groups.parquet of the draws `D` and `shares` of `defect_draws`:
        the median (the lower one for even K, as commutator_defect), and per group D_g = D·‖δ_g‖/‖δ‖ per draw (so
        Σ_g D_g² = D²), its median."""
        row = {"run": run, "step": step, "defect": float(D.median()), "defect_draws": [float(d) for d in D]}
        return row, [{"run": run, "step": step, "group": g, "n_params": self.groups.size(g),
                      "share": float(share.median()), "defect": float((D.double() * share.sqrt()).median())}
                     for g, share in shares.items()]

    def _hessian_sample(self) -> Any:
        if self.hessian_batch is None:
            self.hessian_batch = self.source.fixed_sample(self.cfg.hessian_samples)
        return self.hessian_batch

    def _start(self, step: int, n: int, theta: torch.Tensor) -> torch.Tensor:
        """Lanczos's start vector [1, n] at `step`: a function of the seed and the step alone."""
        g = torch.Generator().manual_seed(self.seed * 7919 + step)
        return torch.randn(1, n, generator=g, dtype=theta.dtype).to(theta.device)

    def lambda_min(self, step: int, k: int = 5) -> dict[str, Any]:
        """Bottom/top Hessian eigenvalues of the loss on the fixed sample (`hessian_samples` examples), with the
        loss there: a row of hessian.parquet."""
        batch, target = self._hessian_sample(), self.target
        theta = target.theta()
        with target.measuring(self.cfg.eval_mode):
            res = lanczos(target.hvp(theta, batch), self._start(step, theta.numel(), theta), self.cfg.hessian_iters, k)
            with torch.no_grad():
                value = float(target.loss(target.unflatten(theta), batch))
        nan = float("nan")
        return {"step": step, "loss": "total", "lambda_min": float(res.bottom[0, 0]),
                "lambda_max": float(res.top[0, 0]), "bottom": res.bottom[0].tolist(), "top": res.top[0].tolist(),
                "exec_curv": nan, "perp_curv": nan, "exec_max": nan, "perp_max": nan,
                "lambda_min_residual": float(res.bottom_residual[0, 0]), "loss_value": value}

    def group_lambda_min(self, step: int, group: str, k: int = 5) -> dict[str, Any]:
        """λ_min/λ_max of the Hessian block of one parameter group (a glob, as `hessian_groups`) on the fixed
        sample: Lanczos on H_gg v = (H [v_g; 0])_g. With the seconds it took."""
        t0 = time.perf_counter()
        target = self.target
        groups = self.hessian_groups if self.hessian_groups and group in self.hessian_groups.slices else \
            Groups(target.names, target.sizes, [group])
        batch, theta = self._hessian_sample(), target.theta()
        with target.measuring(self.cfg.eval_mode):
            hvp = groups.block(group, target.hvp(theta, batch))
            res = lanczos(hvp, self._start(step, groups.size(group), theta), self.cfg.hessian_iters, k)
        return {"step": step, "group": group, "n_params": groups.size(group),
                "lambda_min": float(res.bottom[0, 0]), "lambda_max": float(res.top[0, 0]),
                "lambda_min_residual": float(res.bottom_residual[0, 0]), "iters": self.cfg.hessian_iters,
                "seconds": round(time.perf_counter() - t0, 4)}

    def llc(self, step: int, device: torch.device) -> dict[str, Any]:
        """devinterp's LLC on a fixed training sample (`llc_samples` rows; the settings llc_*) over the user's own
        loss: a row of llc.parquet."""
        cfg = self.cfg
        batch = tuple(self.source.fixed_sample(cfg.llc_samples))
        settings = LLCSettings(lr=cfg.llc_lr, n_beta=cfg.llc_nbeta, localization=cfg.llc_localization,
                               chains=cfg.llc_chains, draws=cfg.llc_draws, seed=self.seed + step)

        def loss(params: Params, rows: torch.Tensor) -> torch.Tensor:
            return self.target.loss(params, tuple(t[rows.to(t.device)] for t in batch)).expand(len(rows))

        with self.target.measuring(cfg.eval_mode):
            est = estimate_llc(ParamsModule(self.target.live, loss), module_loss, range(len(batch[0])), settings,
                               str(device))
        return {"step": step, "llc": est["llc_mean"], "llc_std": est["llc_std"],
                "llc_per_chain": est["llc_per_chain"], "init_loss": est["init_loss"],
                "levels_off": chains_level_off(est["loss_trace"], est["init_loss"])}
