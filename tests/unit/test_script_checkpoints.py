"""A paper-exact run's post-hoc analyses read the checkpoints the authors' scripts read.

The reference side is the scripts' rule written out: a state_dict at step 0 and every CHECKPOINT_EVERY steps
(none at the stop step off that grid), subsampled by `np.linspace(0, n - 1, m, dtype=int)` (defect 120,
Hessian 30, trajectory PCs 100) and `checkpoints[-1]` as the final model.
"""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from grokscope.analyses import analyze_defect
from grokscope.config import preset
from grokscope.geometry.checkpoints import paper_exact, script_checkpoints, select_snapshots
from grokscope.geometry.commutator import after_training_draw, batched_defects, defects_from_snapshots
from grokscope.geometry.compress import final_and_init
from grokscope.geometry.hessian import analyze_hessian, checkpoint_indices
from grokscope.geometry.pca import trajectory_pcs
from grokscope.store import POSTHOC_TABLE, RunDir
from grokscope.training import model as M
from grokscope.training import train
from grokscope.training.problem import Problem

SPACING, STOP = 20, 110  # snapshots 0, 20, ..., 100 on the grid, and the stop step 110 off it


def _tiny(sampler: str):
    return preset("p1-dual", seed=5, steps=STOP, sampler=sampler, data={"p": 11},
                  model={"d_model": 16, "n_heads": 2, "d_ff": 32}, optim={"batch": 32}, eval_every=10,
                  attn_every=10, checkpoint_every=40, snapshot_spacing=SPACING, stop_on_grok=False)


def _script_list(stop: int, every: int) -> list[int]:
    """The scripts' checkpoint steps: step 0, then every `every` steps of training up to the stop step."""
    return [0] + [s for s in range(1, stop + 1) if s % every == 0]


def _script_pick(ckpts: list[int], m: int) -> list[int]:
    if len(ckpts) > m:
        return [ckpts[i] for i in np.linspace(0, len(ckpts) - 1, m, dtype=int)]
    return list(ckpts)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    exact, = train([_tiny("authors")], out / "exact")
    other, = train([_tiny("counter")], out / "counter")
    return RunDir(out / "exact" / exact.config.name), RunDir(out / "counter" / other.config.name)


def test_selection_is_the_scripts_list_and_linspace():
    cfg = _tiny("authors")
    steps = np.array(_script_list(STOP, SPACING) + [STOP])  # what a paper-exact run stores
    assert paper_exact(cfg) and not paper_exact(_tiny("counter")) and not paper_exact(preset("p2-single"))
    assert steps[script_checkpoints(cfg, steps)].tolist() == _script_list(STOP, SPACING)
    for m in (2, 3, 4, 5, 120):
        assert steps[select_snapshots(cfg, steps, m)].tolist() == _script_pick(_script_list(STOP, SPACING), m)
    long = np.arange(0, 40_001, 200)  # a 40k-step run: 201 checkpoints, the defect's 120 and the Hessian's 30
    for m in (120, 30, 100):
        assert long[select_snapshots(cfg, long, m)].tolist() == _script_pick(long.tolist(), m)
    # another run keeps grokscope's own choice, stop step included
    assert select_snapshots(_tiny("counter"), steps, 3, checkpoint_indices).tolist() == checkpoint_indices(7, 3)


def test_analyses_of_a_paper_exact_run_read_the_scripts_checkpoints(runs):
    exact, other = runs
    stored, _ = exact.snapshots()
    assert stored.tolist() == _script_list(STOP, SPACING) + [STOP]
    hess = analyze_hessian(exact, n_checkpoints=3, iters=5, k=2, subspace=False)
    assert sorted(set(hess.step)) == _script_pick(_script_list(STOP, SPACING), 3) == [0, 40, 100]
    assert STOP in set(analyze_hessian(other, n_checkpoints=3, iters=5, k=2, subspace=False).step)

    analyze_defect(exact, draws=2, max_points=4)
    assert exact.table(POSTHOC_TABLE).step.tolist() == _script_pick(_script_list(STOP, SPACING), 4)

    theta0, theta, step = final_and_init(exact)  # fragility's final model: the script's checkpoints[-1]
    _, snaps = exact.snapshots()
    assert step == 100 and all(torch.equal(theta[k], snaps[k][-2]) for k in theta)
    assert all(torch.equal(theta0[k], snaps[k][0]) for k in theta0)
    assert final_and_init(other)[2] == STOP

    assert trajectory_pcs(exact, 3).steps.tolist() == _script_list(STOP, SPACING)
    assert trajectory_pcs(other, 3).steps.tolist() == _script_list(STOP, SPACING) + [STOP]


def test_p2_posthoc_defects_continue_the_training_stream_as_the_multiseed_script(tmp_path):
    """grok_multiseed_commutator.py trains (np.random.seed(seed), one np.random.randint batch per step), then
    at each of ≤ 30 checkpoints (every 200 steps, integer linspace) draws K commutator pairs A, B from the
    same global numpy stream. A p2-single run with its snapshots on that grid measures on those batches."""
    seed, p, K, stop = 3, 23, 3, 100
    cfg = preset("p2-single", seed=seed, steps=stop, data={"p": p}, model={"d_model": 16, "n_heads": 2, "d_ff": 32},
                 optim={"batch": 32}, eval_every=10, attn_every=10, checkpoint_every=50, snapshot_spacing=SPACING,
                 stop_on_grok=False)
    res, = train([cfg], tmp_path)
    run = RunDir(tmp_path / res.config.name)
    steps, snaps = run.snapshots()
    which = select_snapshots(cfg, steps.numpy(), 30)
    got = defects_from_snapshots(run, draws=K, which=which, n_random=0)

    pairs = [(a, b) for a in range(p) for b in range(p)]
    random.Random(seed).shuffle(pairs)
    tr = pairs[: int(0.5 * len(pairs))]
    rng = np.random.RandomState(seed)
    for _ in range(stop):  # the training draws
        rng.randint(0, len(tr), size=32)
    pb = Problem([cfg])
    like = {k: v[:1] for k, v in pb.init_params().items()}
    for c, i in enumerate(which):
        ab = [torch.tensor([tr[j] for j in rng.randint(0, len(tr), size=32)]) for _ in range(2 * K)]
        pa, pb_ = torch.stack(ab[0::2]), torch.stack(ab[1::2])  # A_k, B_k alternate in the stream
        ta, tb = ((x[..., :1] + x[..., 1:]) % p for x in (pa, pb_))
        theta = M.flatten({k: snaps[k][i:i + 1] for k in like}).repeat(K, 1)
        w = torch.ones(1)
        D, _ = batched_defects(pb, theta, like, pa, ta, pb_, tb, w, w, 1e-3)
        assert got.step.iloc[c] == int(steps[i])
        assert got.defect.iloc[c] == pytest.approx(float(D.median()), rel=1e-5), c
    assert after_training_draw(run, pb) == stop
