"""P3 experiment 4.6: the bias-free ReLU MLP on mod-11 addition, trained with the tangent-cosine probe.

It trains models (R seeds as one batch through the trainer), so it is an experiment, not an analysis: the
probe is `grokscope.geometry.normmin.tangent.tangent_probe`; this module sets the runs up and says where
the cosine peaks relative to memorisation and grokking.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from grokscope.config import P3_TEST, RunConfig, preset, validate, with_overrides
from grokscope.errors import ConfigError
from grokscope.geometry.normmin.stored import memorisation_step
from grokscope.geometry.normmin.tangent import tangent_probe
from grokscope.store import TANGENT_TABLE
from grokscope.training import RunResult, train

__all__ = ["MLPExperiment", "mlp_configs", "mlp_summary", "run_mlp"]


@dataclass(frozen=True)
class MLPExperiment:
    """P3 experiment 4.6 / App. D: e_a + e_b inputs over the unordered pairs a ≤ b (the input is symmetric,
    so ordered pairs would leak a test pair's mirror into training), `n_test` of them held out, one-hot
    targets, squared error, bias-free ReLU MLP (PyTorch's default init), full-batch GD lr 1 with L2 decay
    1e-4, R seeds as one batch; the tangent cosine every `every` steps (P3: every step)."""

    p: int = 11
    width: int = 128
    unordered: bool = True
    n_test: int = P3_TEST
    lr: float = 1.0
    wd: float = 1e-4
    steps: int = 30_000
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    every: int = 1
    horizon: int = 10
    project_steps: int = 100
    project_momentum: float = 0.9
    eval_every: int = 1

    @property
    def n_pairs(self) -> int:
        """Operand pairs: p(p+1)/2 unordered (P3_PAIRS = 66 at p 11), p² ordered."""
        return self.p * (self.p + 1) // 2 if self.unordered else self.p * self.p

    @property
    def train_frac(self) -> float:
        """The fraction that leaves exactly `n_test` pairs for the test set."""
        return (self.n_pairs - self.n_test) / self.n_pairs


def mlp_configs(exp: MLPExperiment) -> list[RunConfig]:
    """One trainer config per seed (never stops on grokking, so the post-grokking cosine is seen too)."""
    if exp.every % exp.eval_every or exp.horizon % exp.eval_every:
        raise ConfigError(f"every={exp.every} and horizon={exp.horizon} must be multiples of "
                          f"eval_every={exp.eval_every}")
    if not 0 < exp.n_test < exp.n_pairs:
        raise ConfigError(f"n_test={exp.n_test} must be between 1 and {exp.n_pairs - 1} (of {exp.n_pairs} pairs)")
    base = preset("p3-mlp", data={"p": exp.p, "train_frac": exp.train_frac, "unordered": exp.unordered},
                  model={"width": exp.width})
    return [validate(with_overrides(
        base, lr=exp.lr, wd=exp.wd, clip=0.0, momentum=0.0, batch=None,
        seed=s, steps=exp.steps, eval_every=exp.eval_every, attn_every=exp.eval_every,
        checkpoint_every=max(exp.eval_every, 2000 - 2000 % exp.eval_every), stop_on_grok=False))
        for s in exp.seeds]



def _window_mean(df: pd.DataFrame, lo: float | None, hi: float | None) -> float:
    """Mean tangent cosine over probe steps in [lo, hi) (NaN when a bound is unknown or nothing falls in)."""
    if lo is None or hi is None:
        return float("nan")
    sel = df[(df.step >= lo) & (df.step < hi)].cos_tangent
    return float(sel.mean()) if len(sel) else float("nan")



def mlp_summary(results: list[RunResult], table: str = TANGENT_TABLE
                ) -> tuple[pd.DataFrame, list[dict[str, Any]]]:
    """Join each run's tangent-cosine rows with its metrics and say where the cosine peaks relative to
    memorisation (train acc 100%) and grokking (test acc >= 98% for 3 evals; also first >= 90%)."""
    frames, rows = [], []
    for res in results:
        m = res.metrics
        df = res.tables[table].copy()
        te = m[m.split == "test"].groupby("step").acc.min()
        tr = m[m.split == "train"].groupby("step").acc.min()
        trl = m[m.split == "train"].groupby("step").loss.sum()
        wn = m.groupby("step").weight_norm.first()
        df["test_acc"] = df.step.map(te)
        df["train_acc"] = df.step.map(tr)
        df["train_loss"] = df.step.map(trl)
        df["weight_norm"] = df.step.map(wn)
        df["seed"] = res.config.seed
        frames.append(df)
        t_mem = memorisation_step(m)
        t_grok = next(iter(res.summary["grok_step"].values()))
        t_grok90 = next(iter(res.summary["grok_step_90"].values()))
        smooth = df.cos_tangent.rolling(5, center=True, min_periods=1).mean()
        i = int(np.nanargmax(smooth.to_numpy()))
        t_peak = int(df.step.iloc[i])
        inf = float("inf")
        rows.append({
            "seed": res.config.seed, "mem_step": t_mem, "grok_step": t_grok, "grok_step_90": t_grok90,
            "peak_step": t_peak, "peak_cos": float(smooth.iloc[i]),
            "peak_between_mem_and_grok": bool(t_mem is not None and t_grok is not None
                                              and t_mem <= t_peak <= t_grok),
            "cos_before_mem": _window_mean(df, 0, t_mem if t_mem is not None else inf),
            "cos_mem_to_grok": _window_mean(df, t_mem, t_grok),
            "cos_after_grok": _window_mean(df, t_grok, inf),
            "norm_at_mem": float(wn.get(t_mem, float("nan"))) if t_mem is not None else float("nan"),
            "norm_at_grok": float(wn.get(t_grok, float("nan"))) if t_grok is not None else float("nan"),
            "norm_final": float(wn.iloc[-1]),
            "test_acc_final": float(te.iloc[-1]),
        })
    return pd.concat(frames, ignore_index=True), rows


def run_mlp(exp: MLPExperiment, out: str | None = None, device: str = "cpu") -> dict[str, Any]:
    """Train the P3 MLP runs through the trainer with the tangent-cosine probe on `device`; returns the per-probe
    table, the per-seed summary and the wall time."""
    t0 = time.perf_counter()
    cfgs = mlp_configs(exp)
    probe = tangent_probe(exp.every, exp.horizon, exp.project_steps, exp.project_momentum,
                          eval_every=exp.eval_every)
    results = train(cfgs, out, device, probes=(probe,), force=out is not None)
    table, seeds = mlp_summary(results)
    return {"experiment": exp, "table": table, "seeds": seeds, "results": results,
            "wall_s": time.perf_counter() - t0}
