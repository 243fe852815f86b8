"""Commutator defect: the two-step definition, its quadratic closed form, batching, ρ and the probe."""

import math

import pytest
import torch

from grokscope.config import preset
from grokscope.geometry.commutator import (
    batched_defects,
    commutator_defect,
    defect_from_grad_fn,
    defect_precision,
    defect_probe,
)
from grokscope.geometry.pca import random_basis
from grokscope.training import model as M
from grokscope.training.problem import Problem

ETA = 1e-3


def _problem(tasks=("add",), seeds=(1, 2), batch=32):
    cfgs = [preset("quick", seed=s, data=dict(p=7, tasks=tasks), model=dict(d_model=8, n_heads=2, d_ff=16),
                   optim=dict(batch=batch), defect_every=0) for s in seeds]
    return Problem(cfgs)


def _flat_grad(problem, like, pairs, targets, weights=None):
    """Gradient as a flat [R, P] vector through the trainer's own Problem.grads."""

    def g(theta):
        grads, _ = problem.grads(M.unflatten(theta, like), pairs, targets, weights)
        return M.flatten(grads)

    return g


def test_defect_equals_hand_written_two_steps():
    pb = _problem(seeds=(3,))
    params = {k: v.double() for k, v in pb.init_params().items()}
    step = 40
    A, B = pb.minibatch(step, salt=1), pb.minibatch(step, salt=2)  # draw 0 of the measurement
    gA, gB = _flat_grad(pb, params, *A), _flat_grad(pb, params, *B)
    theta = M.flatten(params)
    theta_AB = theta - ETA * gA(theta) - ETA * gB(theta - ETA * gA(theta))
    theta_BA = theta - ETA * gB(theta) - ETA * gA(theta - ETA * gB(theta))
    delta = theta_AB - theta_BA
    D = delta.norm() / ((ETA * gA(theta)).norm() * (ETA * gB(theta)).norm())
    res = commutator_defect(pb, params, step=step, draws=1, eta=ETA)
    assert res.defect.item() == pytest.approx(D.item(), rel=1e-6)
    torch.testing.assert_close(res.delta[0], delta[0], rtol=1e-6, atol=1e-14)
    assert res.defect.item() > 0


def test_quadratic_closed_form():
    g = torch.Generator().manual_seed(0)
    P = 12

    def sym(seed_scale):
        X = torch.randn(P, P, generator=g, dtype=torch.float64)
        return (X + X.T) * seed_scale

    HA, HB = sym(1.0), sym(0.7)
    bA, bB = torch.randn(2, P, generator=g, dtype=torch.float64)
    theta = torch.randn(3, P, generator=g, dtype=torch.float64)
    D, delta = defect_from_grad_fn(lambda t: t @ HA + bA, lambda t: t @ HB + bB, theta, ETA)
    ga, gb = theta @ HA + bA, theta @ HB + bB
    closed = ETA**2 * ((ga @ HB) - (gb @ HA)).norm(dim=1) / (ETA**2 * ga.norm(dim=1) * gb.norm(dim=1))
    torch.testing.assert_close(D, closed, rtol=1e-7, atol=0)
    torch.testing.assert_close(delta, ETA**2 * (ga @ HB - gb @ HA), rtol=1e-6, atol=1e-18)


def test_nonquadratic_defect_tends_to_hessian_form():
    """For a non-quadratic loss the closed form holds to leading order: the error shrinks ∝ η."""
    g = torch.Generator().manual_seed(1)
    W = torch.randn(6, 5, generator=g, dtype=torch.float64)
    yA, yB = torch.randn(2, 6, generator=g, dtype=torch.float64)

    def loss(t, y):
        return (torch.tanh(W @ t) - y).pow(2).sum()

    def grad_fn(y):
        return lambda th: torch.vmap(torch.func.grad(lambda t: loss(t, y)))(th)

    theta = torch.randn(2, 5, generator=g, dtype=torch.float64)
    ga, gb = grad_fn(yA)(theta), grad_fn(yB)(theta)
    closed = []
    for i in range(2):
        HA = torch.func.hessian(lambda t: loss(t, yA))(theta[i])
        HB = torch.func.hessian(lambda t: loss(t, yB))(theta[i])
        closed.append((HB @ ga[i] - HA @ gb[i]).norm() / (ga[i].norm() * gb[i].norm()))
    closed = torch.stack(closed)
    errs = []
    for eta in (1e-2, 1e-3, 1e-4):
        D, _ = defect_from_grad_fn(grad_fn(yA), grad_fn(yB), theta, eta)
        errs.append(float(((D - closed).abs() / closed).max()))
    assert errs[1] < errs[0] / 5 and errs[2] < errs[1] / 5  # the error is first order in η
    assert errs[2] < 1e-2


def test_batched_draws_and_runs_equal_a_loop():
    pb = _problem(seeds=(1, 5))
    params = pb.init_params()
    draws, step = 3, 700
    res = commutator_defect(pb, params, step=step, draws=draws, eta=ETA)
    assert res.defects.shape == (2, draws) and res.delta.shape == (2, M.count_params(params))
    for r in range(pb.R):
        sub = pb.subset([r])
        one = {k: v[r:r + 1] for k, v in params.items()}
        theta = M.flatten(one)
        for k in range(draws):
            A, B = sub.minibatch(step, salt=2 * k + 1), sub.minibatch(step, salt=2 * k + 2)
            D, _ = defect_from_grad_fn(_flat_grad(sub, one, *A), _flat_grad(sub, one, *B), theta, ETA)
            assert res.defects[r, k].item() == pytest.approx(D.item(), rel=1e-4)
        assert res.defect[r] == res.defects[r].median()
    assert len(set(res.defects.flatten().tolist())) == res.defects.numel()  # draws really differ


def test_cross_mode_uses_task1_for_A_and_task2_for_B():
    pb = _problem(tasks=("add", "mul"), seeds=(4,))
    params = {k: v.double() for k, v in pb.init_params().items()}
    step = 10
    A, B = pb.minibatch(step, salt=1), pb.minibatch(step, salt=2)
    e0, e1 = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])
    D, _ = defect_from_grad_fn(_flat_grad(pb, params, *A, e0), _flat_grad(pb, params, *B, e1),
                               M.flatten(params), ETA)
    cross = commutator_defect(pb, params, step=step, draws=1, eta=ETA, mode="cross")
    total = commutator_defect(pb, params, step=step, draws=1, eta=ETA, mode="total")
    assert cross.defect.item() == pytest.approx(D.item(), rel=1e-6)
    assert not math.isclose(cross.defect.item(), total.defect.item(), rel_tol=1e-3)
    with pytest.raises(ValueError):
        commutator_defect(_problem(seeds=(1,)), _problem(seeds=(1,)).init_params(), mode="cross")


def test_rho_against_basis_containing_delta_and_random_control():
    pb = _problem(seeds=(1, 2))
    params = pb.init_params()
    P = M.count_params(params)
    first = commutator_defect(pb, params, step=3, draws=1)
    # per-run basis whose first direction is that run's δ: δ lies in span(B), so ρ = 0
    bases = []
    for r in range(2):
        X = torch.cat([first.delta[r][:, None], random_basis(P, 3, seed=r)], 1)
        bases.append(torch.linalg.qr(X.double())[0].float())
    res = commutator_defect(pb, params, step=3, draws=1, basis=torch.stack(bases), n_random=3)
    assert res.rho.max() < 1e-3
    assert (res.rho_random > 0.9).all() and (res.rho_random <= 1 + 1e-6).all()
    assert (res.proj_ratio > 5).all()
    # a random basis of equal rank leaves δ almost wholly orthogonal: ρ ≈ 1
    rand = commutator_defect(pb, params, step=3, draws=1, basis=random_basis(P, 4, seed=9))
    assert (rand.rho > 0.9).all()


def test_defect_probe_rows():
    pb = _problem(tasks=("add", "mul"), seeds=(1, 2))
    probe = defect_probe(every=100, draws=2)
    assert probe.name == "defect" and probe.every == 100
    rows = probe.measure(pb, pb.init_params(), 0)
    assert [r["r"] for r in rows] == [0, 1]
    for row in rows:
        assert set(row) == {"r", "defect", "defect_cross"}
        assert math.isfinite(row["defect"]) and row["defect"] > 0
        assert math.isfinite(row["defect_cross"]) and row["defect_cross"] > 0
    one = _problem(seeds=(1,))
    single = defect_probe(every=100, draws=2).measure(one, one.init_params(), 0)
    assert set(single[0]) == {"r", "defect"}


def test_defect_precision_three_ways():
    """Gradient-difference δ in float32 matches the float64 defect; subtracting θ_AB − θ_BA in float32
    is off by at most a few round-off floors 2⁻²⁴‖θ‖/(‖ηg_A‖‖ηg_B‖) (docs/fidelity.md item 13)."""

    pb = _problem()
    params = pb.init_params()
    res = defect_precision(pb, params, step=3, draws=4)
    assert res.reference.shape == (2, 4)
    ref = res.reference.float()
    assert float(((res.gradient_difference - ref).abs() / ref).max()) < 1e-3
    err = (res.subtraction - ref).abs()
    assert bool((err <= 4 * res.roundoff_floor + 1e-3 * ref).all())
    # at this tiny scale the floor is ~half the defect, and subtraction's error is 100× gradient difference's
    assert float(err.mean()) > 100 * float((res.gradient_difference - ref).abs().mean())


def test_chunked_rows_equal_all_rows_at_once_with_mixed_losses():
    """`batched_defects` in chunks of rows gives the numbers of one call over all rows, and each row keeps its
    run's loss when the runs of a batch differ in it (StableMax next to cross-entropy, rows n mod R)."""
    cfgs = [preset("quick", seed=s, data=dict(p=7, tasks=("add",)), model=dict(d_model=8, n_heads=2, d_ff=16),
                   optim=dict(batch=32), defect_every=0, method=dict(name=m))
            for s, m in ((1, "baseline"), (2, "stablemax"), (3, "baseline"))]
    pb = Problem(cfgs)
    params = pb.init_params()
    draws = 3
    theta = M.flatten(params).repeat(draws, 1)
    pa, ta = (torch.cat(x) for x in zip(*[pb.minibatch(5, salt=2 * k + 1) for k in range(draws)], strict=True))
    qb, tb = (torch.cat(x) for x in zip(*[pb.minibatch(5, salt=2 * k + 2) for k in range(draws)], strict=True))
    ones = torch.ones(1)
    whole = batched_defects(pb, theta, params, pa, ta, qb, tb, ones, ones, ETA, chunk=theta.shape[0])
    for chunk in (1, 2, 4):
        D, delta = batched_defects(pb, theta, params, pa, ta, qb, tb, ones, ones, ETA, chunk=chunk)
        torch.testing.assert_close(D, whole[0], rtol=1e-6, atol=0)
        torch.testing.assert_close(delta, whole[1], rtol=1e-5, atol=1e-12)
    for r in range(pb.R):  # run 1's rows (1, 4, 7) under StableMax, as that run measured alone
        sub, one = pb.subset([r]), {k: v[r:r + 1] for k, v in params.items()}
        rows = torch.arange(r, theta.shape[0], pb.R)
        D, _ = batched_defects(sub, theta[rows], one, pa[rows], ta[rows], qb[rows], tb[rows], ones, ones, ETA)
        torch.testing.assert_close(D, whole[0][rows], rtol=1e-5, atol=0)
