"""P3 §4's toy models: gradient descent with L2 decay on ŷ = w₁x₁ + w₂x₂ fit to 1 + 1 = 2 (toy 1) and on
ŷ = w₁x₁ + w₂x₂ + w₃x₃ fit to 1 + 1 + 1 = 3 (toy 2, minimum-norm point (1, 1, 1)), every λ at once; after
the fit, w drifts along the zero-loss set to the minimum-norm point. The curved ŷ = w₃(w₁x₁ + w₂x₂)
(`toy_three`) is grokscope's own extra, not P3's."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import numpy as np

__all__ = ["toy_linear_limit", "toy_linear3_limit", "toy_three_limit", "toy_grad_linear", "toy_grad_three",
           "toy_linear", "toy_linear3", "toy_three", "toy_rows", "run_toys", "TOYS"]


def toy_linear_limit(lam: float) -> np.ndarray:
    """Fixed point of GD on (w₁ + w₂ − 2)² + λ(w₁² + w₂²): w₁ = w₂ = 2/(2 + λ) → (1, 1) as λ → 0."""
    c = 2.0 / (2.0 + lam)
    return np.array([c, c])


def toy_linear3_limit(lam: float) -> np.ndarray:
    """Fixed point of GD on (w₁ + w₂ + w₃ − 3)² + λ‖w‖²: w_i = 3/(3 + λ) → (1, 1, 1) as λ → 0."""
    return np.full(3, 3.0 / (3.0 + lam))


def toy_three_limit(lam: float) -> np.ndarray:
    """Fixed point (positive branch) of (w₃(w₁ + w₂) − 2)² + λ‖w‖²: w₁ = w₂ = a, w₃ = √2 a with
    a² = (2 − λ/√2)/(2√2); λ → 0 gives the minimum-norm point (2^-1/4, 2^-1/4, 2^1/4) of w₃(w₁+w₂) = 2."""
    a = math.sqrt((2 - lam / math.sqrt(2)) / (2 * math.sqrt(2)))
    return np.array([a, a, math.sqrt(2) * a])


def toy_grad_linear(w: np.ndarray, lam: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(gradient, squared error) of (Σw − n)² + λ‖w‖² for the all-ones input of n = len(w) features."""
    r = w.sum(-1) - float(w.shape[-1])
    return 2 * r[:, None] + 2 * lam[:, None] * w, r ** 2


def toy_grad_three(w: np.ndarray, lam: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    s = w[:, 0] + w[:, 1]
    r = w[:, 2] * s - 2.0
    g = np.stack([2 * r * w[:, 2], 2 * r * w[:, 2], 2 * r * s], -1)
    return g + 2 * lam[:, None] * w, r ** 2


def _toy(grad: Callable, w0: tuple[float, ...], lams: tuple[float, ...], lr: float, steps: int,
         record_every: int) -> dict[str, Any]:
    lam = np.asarray(lams, dtype=np.float64)
    w = np.tile(np.asarray(w0, dtype=np.float64), (len(lam), 1))
    traj, losses, rec = [w.copy()], [], [0]
    for t in range(1, steps + 1):
        g, l2 = grad(w, lam)
        if t == 1:
            losses.append(l2)
        w = w - lr * g
        if t % record_every == 0 or t == steps:
            traj.append(w.copy())
            losses.append(grad(w, lam)[1])
            rec.append(t)
    return {"steps": np.array(rec), "w": np.stack(traj, 1), "fit_loss": np.stack(losses, 1), "lams": lam}


def toy_linear(lams: tuple[float, ...] = (0.01, 0.1, 0.2), w0: tuple[float, float] = (-1.0, 1.0),
               lr: float = 0.1, steps: int = 20_000, record_every: int = 10) -> dict[str, Any]:
    """GD on ŷ = w₁x₁ + w₂x₂ fit to 1 + 1 = 2 with L2 penalty λ, every λ at once: the fit is reached in a
    few steps, then w drifts along w₁ + w₂ = 2 (its antisymmetric part decays as (1 − 2ηλ)^t)."""
    return _toy(toy_grad_linear, w0, lams, lr, steps, record_every)


def toy_linear3(lams: tuple[float, ...] = (0.01, 0.1, 0.2), w0: tuple[float, float, float] = (-1.0, 1.0, 1.0),
                lr: float = 0.1, steps: int = 20_000, record_every: int = 10) -> dict[str, Any]:
    """P3's toy 2: GD on ŷ = w₁x₁ + w₂x₂ + w₃x₃ fit to 1 + 1 + 1 = 3 with L2 penalty λ (zero-loss plane
    w₁ + w₂ + w₃ = 3, minimum-norm point (1, 1, 1))."""
    return _toy(toy_grad_linear, w0, lams, lr, steps, record_every)


def toy_three(lams: tuple[float, ...] = (0.01, 0.1, 0.2), w0: tuple[float, float, float] = (-1.0, 1.0, 1.0),
              lr: float = 0.05, steps: int = 40_000, record_every: int = 10) -> dict[str, Any]:
    """The three-parameter toy ŷ = w₃(w₁x₁ + w₂x₂) (curved zero-loss set w₃(w₁ + w₂) = 2)."""
    return _toy(toy_grad_three, w0, lams, lr, steps, record_every)


def toy_rows(name: str, res: dict[str, Any], limit: Callable[[float], np.ndarray],
              grad: Callable) -> list[dict[str, Any]]:
    rows = []
    for i, lam in enumerate(res["lams"]):
        w, loss = res["w"][i], res["fit_loss"][i]
        star = limit(float(lam))
        loss_star = float(grad(star[None], np.array([lam]))[1][0])
        dist = np.linalg.norm(w - star, axis=-1)
        fit = np.flatnonzero(np.abs(loss - loss_star) < 1e-2)
        near = np.flatnonzero(dist < 1e-2)
        rows.append({"model": name, "lam": float(lam), "w_final": w[-1].round(6).tolist(),
                     "limit": star.round(6).tolist(), "dist_final": float(dist[-1]),
                     "fit_step": int(res["steps"][fit[0]]) if len(fit) else None,
                     "near_limit_step": int(res["steps"][near[0]]) if len(near) else None,
                     "min_norm_lam0": limit(0.0).round(6).tolist()})
    return rows


TOYS = {"linear": (toy_linear, toy_linear_limit, toy_grad_linear),
        "linear3": (toy_linear3, toy_linear3_limit, toy_grad_linear),
        "three": (toy_three, toy_three_limit, toy_grad_three)}


def run_toys(lams: tuple[float, ...] = (0.01, 0.1, 0.2), steps: int | None = None,
             models: tuple[str, ...] = ("linear", "linear3")) -> dict[str, Any]:
    """The toys `models` (default P3's two; "three" is the curved extra) for every λ; rows: final w,
    analytic limit, the step the fit is reached (squared error within 1e-2 of its value at the limit) and
    the step w comes within 1e-2 of the limit."""
    t0 = time.perf_counter()
    out: dict[str, Any] = {"rows": []}
    for name in models:
        run, limit, grad = TOYS[name]
        res = run(lams, **({"steps": steps} if steps else {}))
        out[name] = res
        out["rows"] += toy_rows(name, res, limit, grad)
    out["wall_s"] = time.perf_counter() - t0
    return out
