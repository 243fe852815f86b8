"""Grokking methods as pure maps over per-run tensors, and the Grokfast filter state a batch carries.

- StableMax cross-entropy (Prieto et al. 2025): s(x) = x + 1 for x ≥ 0 and 1/(1 − x) for x < 0 replaces
  exp; StableMax(x)_i = s(x_i) / Σ_j s(x_j) and the loss is −log StableMax(x)_y, averaged over examples.
  s is monotone, so argmax (accuracy) is unchanged.
- ⊥Grad (Prieto et al. 2025): g⊥ = g − (w·g)/(w·w) w removes the component of the gradient along the
  weights. The paper writes it for the parameter vector θ; the authors' `OrthoGrad` optimiser applies it to
  each parameter tensor separately and rescales g⊥ to ‖g‖ of that tensor. We do what their code does
  (per tensor, norm kept, ε = 1e-30 in both denominators).
- Grokfast-EMA (Lee et al. 2024): μ_0 = g_0, μ_t = α μ_{t−1} + (1 − α) g_t, ĝ_t = g_t + λ μ_t
  (the authors' `gradfilter_ema` seeds the EMA with the first gradient).
- Grokfast-MA: ĝ_t = g_t + λ · mean(g_{t−w+1}, …, g_t) once w gradients are held; before that ĝ_t = g_t
  (their `gradfilter_ma` with warm-up, mean filter).

The trainer applies them to the clipped gradient, ⊥Grad first, then the Grokfast filter, before the
optimiser (and before any intervention transform). Every map is per run: rows whose run does not use a
method pass through bit for bit, so one batch holds a baseline and each method.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from grokscope.config import MethodConfig

EPS = 1e-30  # the authors' ε in ⊥Grad and StableMax


# ---- StableMax ---------------------------------------------------------------------------------------

def stablemax_s(x: torch.Tensor) -> torch.Tensor:
    """s(x) = x + 1 (x ≥ 0), 1 / (1 − x) (x < 0); the negative branch never sees x > 0 (no inf in backward)."""
    return torch.where(x >= 0, x + 1, 1 / (1 - x.clamp(max=0)))


def log_stablemax(x: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """log StableMax(x) along `dim`: log s(x) − log Σ s(x)."""
    s = stablemax_s(x)
    return s.log() - s.sum(dim, keepdim=True).log()


def stablemax_per_task_loss(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """StableMax cross-entropy per run and task [R, T] of logits [R, B, T, p] and targets [R, B, T]."""
    x = outputs.float() if outputs.dtype in (torch.float16, torch.bfloat16) else outputs
    return -log_stablemax(x).gather(-1, targets.unsqueeze(-1)).squeeze(-1).mean(1)


# ---- ⊥Grad --------------------------------------------------------------------------------------------

def orthograd(g: torch.Tensor, theta: torch.Tensor, slices: dict[str, slice]) -> torch.Tensor:
    """⊥Grad of flat gradients g [R, P] at flat weights θ [R, P]: per parameter tensor (a slice of the flat
    layout), g − (w·g)/(w·w + ε) w rescaled to ‖g‖ of that tensor."""
    out = torch.empty_like(g)
    for sl in slices.values():
        w, gs = theta[:, sl], g[:, sl]
        proj = (w * gs).sum(1, keepdim=True) / ((w * w).sum(1, keepdim=True) + EPS)
        perp = gs - proj * w
        out[:, sl] = perp * (gs.norm(dim=1, keepdim=True) / (perp.norm(dim=1, keepdim=True) + EPS))
    return out


# ---- Grokfast ----------------------------------------------------------------------------------------

def ema_update(mu: torch.Tensor, g: torch.Tensor, alpha: torch.Tensor, first: torch.Tensor) -> torch.Tensor:
    """μ_t = α μ_{t−1} + (1 − α) g_t per run (α [R]); rows with `first` [R] start at μ = g."""
    a = alpha[:, None]
    return torch.where(first[:, None], g, mu * a + g * (1 - a))


def window_mask(count: torch.Tensor, window: torch.Tensor, size: int, dtype: torch.dtype = torch.float32
                ) -> torch.Tensor:
    """[n, size] mask (in `dtype`, the gradients') of the ring slots holding each run's last `window` gradients,
    after `count` appends (slot of append i: i mod size)."""
    slot = torch.arange(size, device=count.device)
    age = (count[:, None] - 1 - slot[None]) % size  # 0 = newest
    return ((age < window[:, None]) & (age < count[:, None])).to(dtype)


class MethodState:
    """The per-run switches and Grokfast buffers of a batch: EMA μ [R, P] (if any run uses it), a ring of the
    last W gradients [R_ma, W, P] for the MA runs only, and filter step counts [R]. `apply` maps clipped
    gradients to what the optimiser sees; `export` / `restore` move one run's state through checkpoints.
    Which maps run is decided once, from the configs: a step never reads a switch back from the device."""

    def __init__(self, methods: Sequence[MethodConfig], P: int, slices: dict[str, slice],
                 device: torch.device, dtype: torch.dtype = torch.float32) -> None:
        R = len(methods)
        self.slices = slices

        def col(values: list, dtype: torch.dtype) -> torch.Tensor:
            return torch.tensor(values, dtype=dtype, device=device)

        # host copies of the switches (from the configs) decide what runs; the device ones mask rows
        self.ortho_host = [m.orthograd for m in methods]
        self.filter_host = [m.grad_filter for m in methods]
        self.ortho = col(self.ortho_host, torch.bool)
        self.ema_on = col([f == "ema" for f in self.filter_host], torch.bool)
        self.ma_on = col([f == "ma" for f in self.filter_host], torch.bool)
        self.alpha = col([m.alpha for m in methods], dtype)
        self.lamb = col([m.amplification for m in methods], dtype)
        self.window = col([m.window for m in methods], torch.int64)
        self.count = torch.zeros(R, dtype=torch.int64, device=device)
        self.all_runs = torch.arange(R, device=device)
        self.ema = torch.zeros(R, P, device=device, dtype=dtype) if "ema" in self.filter_host else None
        ma_runs = [r for r, f in enumerate(self.filter_host) if f == "ma"]
        self.ma_row_host = {r: i for i, r in enumerate(ma_runs)}
        self.ma_row = col([self.ma_row_host.get(r, -1) for r in range(R)], torch.int64)
        self.ma_run = col(ma_runs, torch.int64)  # the run of each ring row
        self.size = max((methods[r].window for r in ma_runs), default=0)
        self.ma = torch.zeros(len(ma_runs), self.size, P, device=device, dtype=dtype) if ma_runs else None
        self.active = any(self.ortho_host) or self.ema is not None or self.ma is not None

    def apply(self, g: torch.Tensor, theta: torch.Tensor, active: torch.Tensor,
              runs: torch.Tensor | None = None) -> torch.Tensor:
        """Gradients [n, P] of `runs` (indices; None: all R) at weights θ [n, P] after ⊥Grad and the Grokfast
        filter of each run; the filter state of `active` [n] runs advances by one step. Every map a run of the
        batch uses is computed for all n rows and kept where the row's run uses it (no host read of a mask)."""
        if not self.active:
            return g
        runs = self.all_runs if runs is None else runs
        if any(self.ortho_host):
            g = torch.where(self.ortho[runs][:, None], orthograd(g, theta, self.slices), g)
        count = self.count[runs]
        out = g
        if self.ema is not None:
            on = self.ema_on[runs] & active
            mu_old = self.ema.index_select(0, runs)
            mu = torch.where(on[:, None], ema_update(mu_old, g, self.alpha[runs], count == 0), mu_old)
            self.ema.index_copy_(0, runs, mu)
            out = torch.where(on[:, None], g + self.lamb[runs][:, None] * mu, out)
        if self.ma is not None:
            out = self._apply_ma(g, out, active, runs)
        filt = (self.ema_on[runs] | self.ma_on[runs]) & active
        self.count.index_copy_(0, runs, count + filt.to(count.dtype))
        return out

    def _apply_ma(self, g: torch.Tensor, out: torch.Tensor, active: torch.Tensor, runs: torch.Tensor) -> torch.Tensor:
        """Grokfast-MA for every ring row at once: row m (run `ma_run[m]`) takes its run's gradient if that run is
        among `runs` and active, and the filtered gradient goes back to that run's row of `out`."""
        n = g.shape[0]
        where_in = torch.full_like(self.ma_row, -1).index_copy_(0, runs, torch.arange(n, device=g.device))
        pos = where_in[self.ma_run]  # ring row m's row in g (-1: its run is not in this batch)
        src = pos.clamp(min=0)
        on = (pos >= 0) & active[src]
        gm = g.index_select(0, src)
        c = self.count[self.ma_run]
        rows, slot = torch.arange(len(c), device=g.device), c % self.size
        self.ma[rows, slot] = torch.where(on[:, None], gm, self.ma[rows, slot])
        w = self.window[self.ma_run]
        mean = torch.einsum("nw,nwp->np", window_mask(c + 1, w, self.size, self.ma.dtype), self.ma) / w[:, None]
        full = (c + 1 >= w)[:, None]
        filtered = torch.where(full, gm + self.lamb[self.ma_run][:, None] * mean, gm)
        mrow = self.ma_row[runs]  # each batch row's ring row (-1: not an MA run)
        take = (mrow >= 0) & active
        return torch.where(take[:, None], filtered.index_select(0, mrow.clamp(min=0)), out)

    def export(self, r: int) -> dict[str, torch.Tensor]:
        """Run r's filter state as named tensors (none for runs without a filter): the step count, μ, and the
        MA ring's held gradients oldest first. At checkpoints only (it reads the count back)."""
        if self.filter_host[r] is None:
            return {}
        out = {"method.count": self.count[r:r + 1].clone()}
        if self.filter_host[r] == "ema":
            out["method.ema"] = self.ema[r].clone()
        if self.filter_host[r] == "ma":
            c, w = int(self.count[r]), int(self.window[r])
            held = min(c, w)
            if held:
                slots = torch.arange(c - held, c, device=self.count.device) % self.size
                out["method.ma"] = self.ma[self.ma_row_host[r]].index_select(0, slots).clone()
        return out

    def restore(self, r: int, tensors: dict[str, torch.Tensor]) -> None:
        """Load run r's filter state written by `export` (a run without a filter ignores it)."""
        if self.filter_host[r] is None or "method.count" not in tensors:
            return
        c = int(tensors["method.count"][0])
        self.count[r] = c
        if self.filter_host[r] == "ema":
            self.ema[r] = tensors["method.ema"].to(self.ema.device)
        if self.filter_host[r] == "ma" and "method.ma" in tensors:
            held = tensors["method.ma"].to(self.ma.device)
            slots = torch.arange(c - len(held), c, device=self.ma.device) % self.size
            self.ma[self.ma_row_host[r]].index_copy_(0, slots, held)
