"""Commutator defect (docs/papers.md §4): how much two plain gradient steps on independent minibatches fail to commute.

With minibatches A, B and plain steps of size η (no Adam, no weight decay, no clipping):
    θ_AB = θ − η g_A(θ) − η g_B(θ − η g_A(θ)),   θ_BA likewise with A, B swapped,
    δ = θ_AB − θ_BA,   D = ‖δ‖ / (‖η g_A‖ · ‖η g_B‖),
reported as the median over K draws. To leading order δ = η²(H_B g_A − H_A g_B), so D measures curvature
acting across the two gradients. Integrability ρ = ‖δ⊥‖/‖δ‖, δ⊥ the part of δ orthogonal to the execution
basis B, against the same for random bases of equal rank.

δ is computed as η[(g_B(θ) − g_B(θ − ηg_A)) − (g_A(θ) − g_A(θ − ηg_B))], which equals θ_AB − θ_BA exactly
in exact arithmetic but does not subtract two O(1) parameter vectors to get an O(η²) one (float32 would
lose most of δ that way).

All K draws of all R runs are one batched program: θ is repeated K times on the run axis (row k·R + r is
run r, draw k) and the A and B halves share a call, so a measurement costs two batched gradient calls
(4 gradient evaluations per draw), whatever K and R.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from grokscope.errors import StoreError
from grokscope.geometry.pca import exec_basis, flat_layout, flatten_snapshots, random_basis, weight_svd_basis
from grokscope.store import DEFECT_TABLE, RunDir
from grokscope.training import Probe
from grokscope.training import model as M
from grokscope.training.problem import Params, Problem

GradFn = Callable[[torch.Tensor], torch.Tensor]


@dataclass
class DefectResult:
    """Per-run defects [R] (median over draws), all draws [R, K], the median draw's δ [R, P] and, given a
    basis, integrability ρ, its random-basis control and the exec/random projection ratio."""

    defect: torch.Tensor  # [R]
    defects: torch.Tensor  # [R, K]
    delta: torch.Tensor  # [R, P]
    rho: torch.Tensor | None = None  # [R]
    rho_random: torch.Tensor | None = None  # [R]
    proj_ratio: torch.Tensor | None = None  # [R]


# ---- the pure core -----------------------------------------------------------------------------

def defect_from_grad_fn(grad_a: GradFn, grad_b: GradFn, theta: torch.Tensor,
                        eta: float = 1e-3) -> tuple[torch.Tensor, torch.Tensor]:
    """(D [N], δ [N, P]) for flat points θ [N, P] and per-row gradient functions of minibatches A and B."""
    ga, gb = grad_a(theta), grad_b(theta)
    gb_after_a = grad_b(theta - eta * ga)
    ga_after_b = grad_a(theta - eta * gb)
    delta = eta * ((gb - gb_after_a) - (ga - ga_after_b))
    return _normalise(delta, ga, gb, eta), delta


def _normalise(delta: torch.Tensor, ga: torch.Tensor, gb: torch.Tensor, eta: float) -> torch.Tensor:
    """D = ‖δ‖ / (‖η g_A‖ ‖η g_B‖) per row."""
    return delta.norm(dim=-1) / ((eta * ga.norm(dim=-1)) * (eta * gb.norm(dim=-1)))


def _flat_grad_fn(problem: Problem, like: Params, pairs: torch.Tensor, targets: torch.Tensor,
                  weights: torch.Tensor, runs: torch.Tensor | None = None) -> GradFn:
    """θ [N, P] -> per-row gradient [N, P] of Σ_t w[n, t]·loss_t on row n's own minibatch, each row under
    the loss of its run (`runs` [N]; default row n mod R, see `Problem.per_task_loss`). Differentiates
    per parameter tensor (views of θ made leaves) and concatenates once: through the slicing of θ the
    backward would build and sum one zero [N, P] buffer per tensor (half the time of a P1 measurement)."""

    def grad(theta: torch.Tensor) -> torch.Tensor:
        with torch.enable_grad():
            leaves = {k: v.detach().requires_grad_() for k, v in M.unflatten_views(theta.contiguous(), like).items()}
            out = M.forward(leaves, pairs, problem.model, problem.data)
            per_task = problem.per_task_loss(out, targets, runs)
            total = (per_task * weights.to(per_task.dtype)).sum()
            grads = torch.autograd.grad(total, list(leaves.values()))
        return torch.cat([g.flatten(1) for g in grads], 1)

    return grad


def _task_weights(problem: Problem, mode: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Loss weights [T] for minibatch A and B: all ones ('total') or task 1 for A, task 2 for B ('cross')."""
    T = len(problem.tasks)
    ones = torch.ones(T, device=problem.device)
    if mode == "total":
        return ones, ones
    if mode == "cross":
        if T < 2:
            raise ValueError("cross-task defect needs at least 2 tasks")
        return torch.eye(T, device=problem.device)[0], torch.eye(T, device=problem.device)[1]
    raise ValueError(f"unknown defect mode {mode!r}; choose 'total' or 'cross'")


def _draws(problem: Problem, step: int, draws: int, batch: int | None, stream: bool = False):
    """Minibatches A and B of every draw stacked on the run axis, rows k·R + r; draw k: salts 2k+1, 2k+2
    (`stream`: the inline measurement's draws 2k, 2k+1 of `problem.probe_minibatch`)."""
    if stream:
        A = [problem.probe_minibatch(step, 2 * k, batch) for k in range(draws)]
        B = [problem.probe_minibatch(step, 2 * k + 1, batch) for k in range(draws)]
    else:
        A = [problem.minibatch(step, salt=2 * k + 1, batch=batch) for k in range(draws)]
        B = [problem.minibatch(step, salt=2 * k + 2, batch=batch) for k in range(draws)]
    return _stack_draws(A, B)


def _stack_draws(A: list, B: list):
    cat = torch.cat
    return cat([a[0] for a in A]), cat([a[1] for a in A]), cat([b[0] for b in B]), cat([b[1] for b in B])


def _numbered_draws(problem: Problem, first: int, draws: int):
    """Minibatches A_k, B_k = draws first + 2k, first + 2k + 1 of each run's training stream."""
    A = [problem.stream_minibatch(first + 2 * k) for k in range(draws)]
    B = [problem.stream_minibatch(first + 2 * k + 1) for k in range(draws)]
    return _stack_draws(A, B)


def after_training_draw(run: RunDir, problem: Problem) -> int | None:
    """The first draw of a run's training stream past its training (and inline) draws, when its
    measurements draw from that stream (`defect_stream` "training" with the authors' sampler: the P2
    preset), else None. P2's grok_multiseed_commutator.py trains, then draws its post-hoc commutator
    minibatches from the same global numpy stream: checkpoint by checkpoint, K pairs (A, B) each."""
    cfg = problem.cfgs[0]
    if cfg.defect_stream != "training" or problem.stream is None:
        return None
    return problem.stream.train_draw(int(run.summary()["steps_trained"]))


def batched_defects(problem: Problem, theta: torch.Tensor, like: Params, pa: torch.Tensor, ta: torch.Tensor,
                    pb: torch.Tensor, tb: torch.Tensor, wa: torch.Tensor, wb: torch.Tensor,
                    eta: float, chunk: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(D [N], δ [N, P]) for N flat points θ [N, P], each with its own minibatches A, B ([N, Bsz, ...]);
    row n belongs to run n mod R (run-minor stacks, as `Problem.per_task_loss`). `chunk` rows at a time,
    each two gradient calls over 2·chunk rows (A and B halves side by side): the same numbers as all rows at
    once, but activations small enough to stay in cache (default `training.memory.defect_chunk`: 4 on the CPU,
    where P1's 18 runs × 9 draws take ≈1.5x less CPU time than all at once; on a GPU as many rows as its free
    memory holds, so a probe is a few large programs instead of N / 4 small ones)."""
    N = theta.shape[0]
    if chunk is None:
        from grokscope.training.memory import defect_chunk

        chunk = defect_chunk(problem.cfgs[0], theta.device, pa.shape[1], theta.dtype.itemsize)
    wa, wb = wa.expand(N, -1), wb.expand(N, -1)
    runs = torch.arange(N, device=theta.device) % problem.R
    out = [_defect_rows(problem, theta[s], like, pa[s], ta[s], pb[s], tb[s], wa[s], wb[s], eta, runs[s])
           for s in (slice(i, i + max(1, chunk)) for i in range(0, N, max(1, chunk)))]
    return torch.cat([d for d, _ in out]), torch.cat([delta for _, delta in out])


def _defect_rows(problem: Problem, theta: torch.Tensor, like: Params, pa: torch.Tensor, ta: torch.Tensor,
                 pb: torch.Tensor, tb: torch.Tensor, wa: torch.Tensor, wb: torch.Tensor, eta: float,
                 runs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """`batched_defects` for one chunk of rows (weights [n, T], `runs` [n] the rows' runs)."""
    N = theta.shape[0]
    both = torch.cat([runs, runs])
    first = _flat_grad_fn(problem, like, torch.cat([pa, pb]), torch.cat([ta, tb]), torch.cat([wa, wb]), both)
    g = first(torch.cat([theta, theta]))
    ga, gb = g[:N], g[N:]
    # second stage: B's gradient after A's step, A's gradient after B's step
    second = _flat_grad_fn(problem, like, torch.cat([pb, pa]), torch.cat([tb, ta]), torch.cat([wb, wa]), both)
    g2 = second(torch.cat([theta - eta * ga, theta - eta * gb]))
    gb_after_a, ga_after_b = g2[:N], g2[N:]
    delta = eta * ((gb - gb_after_a) - (ga - ga_after_b))
    return _normalise(delta, ga, gb, eta), delta


# ---- integrability ρ --------------------------------------------------------------------------

def _rho(delta: torch.Tensor, basis: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(ρ = ‖δ⊥‖/‖δ‖, ‖P_B δ‖/‖δ‖) for δ [..., P], basis [P, K] or [..., P, K] (leading axes as δ's)."""
    basis = basis.to(delta.dtype)
    if basis.dim() == 2:
        coef = delta @ basis
        par = coef @ basis.T
    else:
        coef = torch.einsum("...p,...pk->...k", delta, basis)
        par = torch.einsum("...k,...pk->...p", coef, basis)
    n = delta.norm(dim=-1)
    return (delta - par).norm(dim=-1) / n, par.norm(dim=-1) / n


def integrability(deltas: torch.Tensor, basis: torch.Tensor, n_random: int,
                   seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """ρ, ρ of random bases and exec/random projection ratio [R] from all draws' δ [R, K, P]."""
    R, K, P = deltas.shape
    b = basis if basis.dim() == 2 else basis[:, None]  # [R, P, k] -> [R, 1, P, k] broadcasts over draws
    rho, frac = _rho(deltas, b.to(deltas.device))
    rank = basis.shape[-1]
    rr, rf = [], []
    for i in range(n_random):
        Q = random_basis(P, rank, seed=seed + i).to(deltas.device)
        a, f = _rho(deltas, Q)
        rr.append(a)
        rf.append(f)
    nan = torch.full((R,), float("nan"), dtype=deltas.dtype, device=deltas.device)
    rho_random = torch.stack(rr, -1).flatten(1).median(1).values if rr else nan
    frac_random = torch.stack(rf, -1).flatten(1).median(1).values if rf else nan
    return rho.median(1).values, rho_random, frac.median(1).values / frac_random


# ---- public measurements ------------------------------------------------------------------------

def commutator_defect(problem: Problem, params: Params, step: int = 0, draws: int = 9, eta: float = 1e-3,
                      mode: str = "total", basis: torch.Tensor | None = None, n_random: int = 5,
                      batch: int | None = None, stream: bool = False) -> DefectResult:
    """Commutator defect of each of the R runs in `params` ([R, ...]) with K = `draws` minibatch pairs
    drawn at `step` (batch size: the runs' training batch unless `batch`; `stream`: from the training
    stream, see `Problem.probe_minibatch`), as one batched program.
    `defect` is the median over draws (the lower median for even K, so it is one draw's value and
    `delta` is that draw's δ). With `basis` ([P, k] or per run [R, P, k]): ρ and its controls, each the
    median over draws (and over `n_random` random bases of rank k)."""
    R = problem.R
    theta = M.flatten({k: v.detach() for k, v in params.items()})
    wa, wb = _task_weights(problem, mode)
    pa, ta, pb, tb = _draws(problem, step, draws, batch, stream)
    D, delta = batched_defects(problem, theta.repeat(draws, 1), params, pa, ta, pb, tb, wa, wb, eta)
    D = D.view(draws, R).T.contiguous()
    deltas = delta.view(draws, R, -1).transpose(0, 1)
    med = D.median(1)
    out = DefectResult(defect=med.values, defects=D, delta=deltas[torch.arange(R, device=D.device), med.indices])
    if basis is not None:
        out.rho, out.rho_random, out.proj_ratio = integrability(deltas, basis, n_random)
    return out


def defect_probe(every: int, draws: int = 3, eta: float = 1e-3, stream: bool = False) -> Probe:
    """Inline probe `defect`: every `every` steps, rows (r, defect[, defect_cross] with ≥ 2 tasks);
    `stream`: the total defect's minibatches come from the training stream (P2's inline measurement)."""

    def measure(problem: Problem, params: Params, step: int) -> list[dict]:
        total = commutator_defect(problem, params, step, draws, eta, stream=stream).defect.cpu()
        cross = (commutator_defect(problem, params, step, draws, eta, mode="cross").defect.cpu()
                 if len(problem.tasks) >= 2 else None)
        rows = []
        for r in range(problem.R):
            row = {"r": r, "defect": float(total[r])}
            if cross is not None:
                row["defect_cross"] = float(cross[r])
            rows.append(row)
        return rows

    return Probe(DEFECT_TABLE, every, measure)


BASIS_KINDS = ("exec", "weight_svd")


def defects_from_snapshots(run: RunDir, draws: int = 9, device: str = "cpu", eta: float = 1e-3,
                           chunk: int = 4, n_random: int = 5, which: slice | np.ndarray | None = None,
                           basis_kind: str = "exec", svd_k: int = 3) -> pd.DataFrame:
    """Post-hoc defects at a run's stored snapshots (`which` selects some), `chunk` snapshots per batched
    program, with ρ against `exec_basis(run)` (`basis_kind="exec"`, P1 and docs/papers.md §4) or against P2's weight-SVD
    basis rebuilt at each snapshot from its own attention matrices (`"weight_svd"`, `svd_k` per matrix)
    (columns: step, defect, defect_cross, rho, rho_random, proj_ratio; ρ columns are NaN for models
    without attention). The total defect's minibatches: a run whose measurements draw from its training
    stream (the P2 preset) continues that stream past its training, K pairs per snapshot in order, as
    grok_multiseed_commutator.py does (`after_training_draw`); other runs use independent counter draws."""
    if basis_kind not in BASIS_KINDS:
        raise ValueError(f"basis_kind={basis_kind!r}: choose from {', '.join(BASIS_KINDS)}")
    cfg = run.config()
    problem = Problem([cfg], device)
    steps, snaps = run.snapshots()
    slices = flat_layout(run)
    theta_all = flatten_snapshots(snaps, slices)
    idx = np.arange(len(steps))[which if which is not None else slice(None)]
    if len(idx) == 0:
        raise StoreError(f"{run.path} has no snapshots to measure")
    like = {k: torch.empty((1,) + tuple(snaps[k].shape[1:]), device=device) for k in slices}
    try:
        basis = exec_basis(run).to(device)
    except StoreError:
        basis = None
    modes = ["total"] + (["cross"] if len(problem.tasks) >= 2 else [])
    after = after_training_draw(run, problem)
    rows = []
    for start in range(0, len(idx), chunk):
        part = idx[start:start + chunk]
        theta = theta_all[part].to(device)
        res: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        for mode in modes:
            wa, wb = _task_weights(problem, mode)
            if after is not None and mode == "total":
                batches = [_numbered_draws(problem, after + 2 * draws * (start + j), draws) for j in range(len(part))]
            else:
                batches = [_draws(problem, int(steps[i]), draws, None) for i in part]
            pa, ta, pb, tb = (torch.cat([b[j] for b in batches]) for j in range(4))  # rows i·K + k
            rep = theta.repeat_interleave(draws, 0)
            D, delta = batched_defects(problem, rep, like, pa, ta, pb, tb, wa, wb, eta)
            res[mode] = (D.view(len(part), draws), delta.view(len(part), draws, -1))
        D, deltas = res["total"]
        med = D.median(1).values
        if basis is not None and basis_kind == "weight_svd":
            attn = {k: v for k, v in slices.items() if ".attn.W_" in k}
            per = [weight_svd_basis({k: snaps[k][i] for k in attn}, slices, theta_all.shape[1], svd_k)
                   for i in part]
            rho, rho_random, ratio = integrability(deltas, torch.stack(per).to(device), n_random)
        elif basis is not None:
            rho, rho_random, ratio = integrability(deltas, basis, n_random)
        else:
            rho = rho_random = ratio = torch.full((len(part),), float("nan"), device=device)
        for j, i in enumerate(part):
            row = {"step": int(steps[i]), "defect": float(med[j]), "rho": float(rho[j]),
                   "rho_random": float(rho_random[j]), "proj_ratio": float(ratio[j])}
            if "cross" in res:
                row["defect_cross"] = float(res["cross"][0][j].median())
            rows.append(row)
    df = pd.DataFrame(rows)
    df.insert(0, "run", cfg.name)
    return df


# ---- precision: δ by subtracting two parameter vectors, as the authors do -------------------------------

@dataclass
class DefectPrecision:
    """Per draw [R, K]: D with δ from gradient differences (this module's way) in the params' dtype,
    D with δ = θ_AB − θ_BA formed by subtracting two parameter vectors in the same dtype (the authors'
    way), and a float64 reference of D; also ‖θ‖ and the float32 round-off floor 2⁻²⁴‖θ‖/(‖ηg_A‖‖ηg_B‖)."""

    gradient_difference: torch.Tensor
    subtraction: torch.Tensor
    reference: torch.Tensor
    theta_norm: torch.Tensor
    roundoff_floor: torch.Tensor


def defect_precision(problem: Problem, params: Params, step: int = 0, draws: int = 9,
                     eta: float = 1e-3) -> DefectPrecision:
    """The commutator defect three ways at the same minibatches (docs/fidelity.md item 13)."""
    R = problem.R
    pa, ta, pb, tb = _draws(problem, step, draws, None)
    wa, wb = _task_weights(problem, "total")
    out: dict[str, torch.Tensor] = {}
    for dtype in (None, torch.float64):
        like = {k: v.detach() if dtype is None else v.detach().to(dtype) for k, v in params.items()}
        theta = M.flatten(like).repeat(draws, 1)
        N = theta.shape[0]
        ga = _flat_grad_fn(problem, like, pa, ta, wa.expand(N, -1))(theta)
        gb = _flat_grad_fn(problem, like, pb, tb, wb.expand(N, -1))(theta)
        gb_a = _flat_grad_fn(problem, like, pb, tb, wb.expand(N, -1))(theta - eta * ga)
        ga_b = _flat_grad_fn(problem, like, pa, ta, wa.expand(N, -1))(theta - eta * gb)
        diff = eta * ((gb - gb_a) - (ga - ga_b))
        tag = "ref" if dtype is not None else "low"
        out[f"grad_{tag}"] = _normalise(diff, ga, gb, eta)
        theta_ab = (theta - eta * ga) - eta * gb_a
        theta_ba = (theta - eta * gb) - eta * ga_b
        out[f"sub_{tag}"] = _normalise(theta_ab - theta_ba, ga, gb, eta)
        if dtype is None:
            out["theta"] = theta.norm(dim=1)
            out["floor"] = 2.0 ** -24 * out["theta"] / ((eta * ga.norm(dim=1)) * (eta * gb.norm(dim=1)))
    def shape(x: torch.Tensor) -> torch.Tensor:  # rows k·R + r -> [R, K]
        return x.view(draws, R).T.contiguous()

    return DefectPrecision(gradient_difference=shape(out["grad_low"]), subtraction=shape(out["sub_low"]),
                           reference=shape(out["grad_ref"]), theta_norm=shape(out["theta"]),
                           roundoff_floor=shape(out["floor"]))
