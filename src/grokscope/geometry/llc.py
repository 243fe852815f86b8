"""The local learning coefficient (LLC) through devinterp's SGLD estimator (the `grokscope[llc]` extra).

grokscope writes no sampler: `estimate_llc` hands a model, a per-example loss and the training rows to
`devinterp.slt.llc.llc` and reads back its per-chain LLCs. The sampler's settings follow devinterp's guidance:
nβ starts at B / log B for minibatch size B (`devinterp.utils.default_nbeta`), and `calibrate_llc` sweeps the
step size ε and nβ (as devinterp's EpsilonBetaAnalyzer does) at a weak and a strong localisation γ, and keeps
the setting whose chains are finite, level off (no drift over the second half of the loss trace), stay in the
snapshot's basin (mean loss within `MAX_RISE` nats of the snapshot's) and give a positive LLC: the weakest γ,
then the smallest nβ that has such an ε, then the largest ε. The chosen settings are stored with every
estimate.
"""

from __future__ import annotations

import tempfile
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from grokscope.errors import ConfigError

LLC_LRS = (1e-7, 1e-6, 1e-5)  # the step sizes the calibration tries
LOCALIZATIONS = (1e2, 1e4)  # and the localisation strengths γ
NBETA_FACTORS = (1.0, 10.0, 100.0)  # the nβ it tries, in units of devinterp's default B / log B
DRIFT = 0.2  # a chain "levels off" when its last-quarter mean loss moves < DRIFT × its loss rise since the start
MAX_RISE = 1.0  # nats: a chain whose mean loss rises more than this has left the snapshot's basin

ExampleLoss = Callable[[nn.Module, torch.Tensor], torch.Tensor]  # (module, row indices [B]) -> losses [B]


def require_devinterp() -> Any:
    """The devinterp LLC entry point, or a one-line ConfigError naming the extra."""
    try:
        from devinterp.slt.llc import llc
    except ImportError:
        raise ConfigError("the LLC needs devinterp: pip install 'grokscope[llc]'") from None
    return llc


@dataclass(frozen=True)
class LLCSettings:
    """devinterp's SGLD settings for one estimate (n_beta None: B / log B, devinterp's default_nbeta)."""

    lr: float = 1e-6
    localization: float = 100.0
    n_beta: float | None = None
    chains: int = 4
    draws: int = 100
    burnin: int = 0
    batch: int = 64
    seed: int = 0

    def resolved(self, n_rows: int) -> LLCSettings:
        """These settings with the minibatch capped at the rows and n_beta filled in (B / log B)."""
        b = min(self.batch, n_rows)
        return replace(self, batch=b, n_beta=self.n_beta if self.n_beta is not None else float(b / np.log(b)))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class ParamsModule(nn.Module):
    """An nn.Module around a params dict and a `loss(params, rows)` function: what devinterp samples over."""

    def __init__(self, params: dict[str, torch.Tensor], loss: Callable[[dict[str, torch.Tensor], torch.Tensor],
                                                                       torch.Tensor]) -> None:
        super().__init__()
        self.names = list(params)
        self.p = nn.ParameterList([nn.Parameter(v.detach().clone()) for v in params.values()])
        self.loss = loss

    def params(self) -> dict[str, torch.Tensor]:
        """The current parameters by their original names."""
        return dict(zip(self.names, self.p))

    def forward(self, rows: torch.Tensor) -> torch.Tensor:
        """Per-example losses [B] of the rows (indices into the loss function's data)."""
        return self.loss(self.params(), rows)


def module_loss(module: nn.Module, rows: torch.Tensor) -> torch.Tensor:
    """The per-example loss of a ParamsModule (the ExampleLoss for grokscope's own models)."""
    return module(rows)


def _dataset(rows: Sequence[int]) -> Any:
    """devinterp's input: a HuggingFace Dataset whose input_ids [row, row] name one example each."""
    from datasets import Dataset

    return Dataset.from_dict({"input_ids": [[int(r), int(r)] for r in rows]}).with_format("torch")


def estimate_llc(module: nn.Module, example_loss: ExampleLoss, rows: Sequence[int], settings: LLCSettings,
                 device: str = "cpu") -> dict[str, Any]:
    """devinterp's LLC of `module` at its current parameters over the training `rows`: mean and spread over
    chains, per-chain values, the mean loss trace per step and the settings used."""
    llc = require_devinterp()
    s = settings.resolved(len(rows))

    def loss_fn(model: nn.Module, input_ids: torch.Tensor) -> torch.Tensor:
        return example_loss(model, input_ids[:, 0]).reshape(-1, 1)

    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        data = _dataset(rows)
        res = llc(module, data, {}, lr=s.lr, n_beta=s.n_beta, localization=s.localization, num_chains=s.chains,
                  num_draws=s.draws, num_burnin_steps=s.burnin, batch_size=s.batch, init_seed=s.seed,
                  device=device, loss_fn=loss_fn, output_path=f"{tmp}/samples.zarr")
        per_chain = np.asarray(res["llc_per_chain"].values, dtype=float)
        trace = np.asarray(res["loss_trace"].values, dtype=float)
        init = float(res["init_loss"].values)
    return {"llc_mean": float(per_chain.mean()), "llc_std": float(per_chain.std(ddof=1)) if len(per_chain) > 1
            else 0.0, "llc_per_chain": per_chain.tolist(), "init_loss": init, "loss_trace": trace,
            "settings": s.to_dict()}


def trace_shape(trace: np.ndarray, init: float) -> tuple[float, float]:
    """(largest mean rise of a chain's loss above the start, largest relative drift |q4 − q2| / rise of a chain:
    its last quarter's mean against its second quarter's) of loss traces [chains, steps]; NaN if not finite."""
    if not np.isfinite(trace).all():
        return float("nan"), float("nan")
    n = trace.shape[1]
    q2, q4 = trace[:, n // 4:n // 2].mean(1), trace[:, 3 * n // 4:].mean(1)
    rise = trace.mean(1) - init
    drift = np.where(rise > 0, np.abs(q4 - q2) / np.where(rise > 0, rise, 1.0), np.inf)
    return float(rise.max()), float(drift.max())


def chains_level_off(trace: np.ndarray, init: float, drift: float = DRIFT, max_rise: float = MAX_RISE) -> bool:
    """Each chain's loss trace [chains, steps] is finite, above the start on average but by < `max_rise` (still
    in the basin), and its last quarter's mean moves < `drift` × its rise from the second quarter's (no drift)."""
    rise, rel = trace_shape(trace, init)
    n_rise = trace.mean(1) - init if np.isfinite(trace).all() else np.array([np.nan])
    return bool((n_rise > 0).all() and rise < max_rise and rel < drift)


def calibrate_llc(module: nn.Module, example_loss: ExampleLoss, rows: Sequence[int], base: LLCSettings,
                  lrs: Sequence[float] = LLC_LRS, factors: Sequence[float] = NBETA_FACTORS,
                  localizations: Sequence[float] = LOCALIZATIONS,
                  device: str = "cpu") -> tuple[LLCSettings, pd.DataFrame]:
    """Sweep γ × nβ × ε; keep, among the stable settings (`chains_level_off`, positive LLC), the weakest γ, then
    the smallest nβ, then the largest ε. If none is stable: among the settings that stay in the basin (rise <
    MAX_RISE, positive LLC) the one with the least drift, flagged `stable` False in the table (else the first
    setting). Returns (settings, the sweep's table)."""
    nb0 = base.resolved(len(rows)).n_beta
    out = []
    for g in sorted(localizations):
        for f in sorted(factors):
            for lr in sorted(lrs):
                s = replace(base, lr=lr, n_beta=nb0 * f, localization=g)
                est = estimate_llc(module, example_loss, rows, s, device)
                ok = chains_level_off(est["loss_trace"], est["init_loss"]) and est["llc_mean"] > 0
                rise, drift = trace_shape(est["loss_trace"], est["init_loss"])
                out.append({"localization": g, "n_beta": s.n_beta, "lr": lr, "llc_mean": est["llc_mean"],
                            "llc_std": est["llc_std"], "rise": rise, "drift": drift, "stable": ok})
    table = pd.DataFrame(out)
    stable = table[table["stable"]]
    order = ["localization", "n_beta", "lr"]
    inside = table[(table["rise"] < MAX_RISE) & (table["llc_mean"] > 0)]
    if len(stable):
        pick = stable.sort_values(order, ascending=[True, True, False]).iloc[0]
    else:
        pick = (inside.sort_values("drift") if len(inside) else table).iloc[0]
    table["chosen"] = (table[order] == pick[order]).all(axis=1)
    return replace(base, lr=float(pick["lr"]), n_beta=float(pick["n_beta"]),
                   localization=float(pick["localization"])), table


def per_example_loss(cfg: Any, pairs: torch.Tensor, targets: torch.Tensor) -> Callable[[dict[str, torch.Tensor],
                                                                                       torch.Tensor], torch.Tensor]:
    """loss(params without run axis, rows) -> per-example training loss [B] of a grokscope model: the sum over
    tasks of cross-entropy (the MLP: squared error), the trainer's loss per example (plain softmax)."""
    from grokscope.training import model as M

    def loss(params: dict[str, torch.Tensor], rows: torch.Tensor) -> torch.Tensor:
        out = M.forward({k: v[None] for k, v in params.items()}, pairs[rows][None], cfg.model, cfg.data)[0]
        t = targets[rows]
        if cfg.model.kind == "mlp":
            onehot = torch.nn.functional.one_hot(t, out.shape[-1]).to(out.dtype)
            return (out - onehot).pow(2).mean(-1).sum(-1)
        return -out.log_softmax(-1).gather(-1, t[..., None])[..., 0].sum(-1)

    return loss


def llc_table(run: Any, settings: LLCSettings, calibrate: bool = True, max_points: int = 30,
              device: str = "cpu") -> tuple[pd.DataFrame, LLCSettings, pd.DataFrame | None]:
    """The LLC at ≤ `max_points` stored snapshots (evenly spread) of a grokscope run, every one with the same
    settings: calibrated on the last snapshot when `calibrate`. Returns (table, settings, calibration table)."""
    from grokscope.config import EXTERNAL
    from grokscope.data.tasks import make_split
    from grokscope.errors import NotApplicable
    from grokscope.geometry.onset import posthoc_indices

    cfg = run.config()
    if cfg.model.kind == EXTERNAL:
        raise NotApplicable("a run recorded by grokscope.Monitor: grokscope cannot run the user's model after the "
                            "fact; set Monitor(llc_every=N) to record the LLC while it trains")
    require_devinterp()
    steps, snaps = run.snapshots()
    d = cfg.data
    split = make_split(d.tasks, d.p, d.train_frac, cfg.split_seed, d.zero_excluded, d.unordered, d.split)
    loss = per_example_loss(cfg, split.pairs.to(device), split.targets.to(device))
    rows = split.train_idx.tolist()

    def module_at(i: int) -> ParamsModule:
        return ParamsModule({k: v[i].to(device) for k, v in snaps.items()}, loss)

    cal = None
    if calibrate:
        settings, cal = calibrate_llc(module_at(len(steps) - 1), module_loss, rows, settings, device=device)
    out = []
    for i in posthoc_indices(len(steps), max_points):
        est = estimate_llc(module_at(int(i)), module_loss, rows, settings, device)
        out.append({"step": int(steps[int(i)]), "llc": est["llc_mean"], "llc_std": est["llc_std"],
                    "llc_per_chain": est["llc_per_chain"], "init_loss": est["init_loss"],
                    "levels_off": chains_level_off(est["loss_trace"], est["init_loss"])})
    return pd.DataFrame(out), settings.resolved(len(rows)), cal
