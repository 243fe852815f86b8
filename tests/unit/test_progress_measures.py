"""Progress measures (Nanda et al. 2023): closed-form embeddings and logits, the stored analysis, where they
do not apply."""

from __future__ import annotations

import math

import pytest
import torch

from grokscope.analyses import run_analysis
from grokscope.analyses.progress_measures import progress_table
from grokscope.cli import main
from grokscope.config import preset
from grokscope.errors import NotApplicable
from grokscope.geometry.fourier import (
    fourier_basis,
    frequency_norms,
    gini,
    group_embedding,
    group_map,
    key_frequencies,
    restricted_excluded,
)
from grokscope.store import RunDir
from grokscope.training import train

P = 23
K = (P - 1) // 2


def _wave(x: torch.Tensor, k: int, n: int) -> torch.Tensor:
    """[len(x), 2]: cos and sin of 2πk x / n."""
    w = 2 * math.pi * k * x.double() / n
    return torch.stack([torch.cos(w), torch.sin(w)], 1)


def test_fourier_basis_is_orthonormal():
    for n in (P, P - 1):
        B = fourier_basis(n)
        assert torch.allclose(B @ B.T, torch.eye(n, dtype=torch.float64), atol=1e-12)


@pytest.mark.parametrize("keys", [(3, 7), (1, 5, 11), (4,)])
def test_hand_built_embedding_gives_its_frequencies_and_gini(keys):
    x = torch.arange(P)
    W = torch.cat([_wave(x, k, P) for k in keys] + [torch.zeros(P, 3, dtype=torch.float64)], 1)
    norms = frequency_norms(W, P)
    assert sorted(key_frequencies(norms)) == sorted(keys)
    on = torch.tensor([k - 1 for k in keys])
    assert torch.allclose(norms[on], torch.full((len(keys),), math.sqrt(P), dtype=torch.float64))  # ‖cos‖² + ‖sin‖² = P
    # m equal norms among K, the rest zero: Gini = (K - m) / K
    assert gini(norms) == pytest.approx((K - len(keys)) / K, abs=1e-12)


def test_key_frequencies_strongest_first_and_none_for_a_flat_spectrum():
    x = torch.arange(P)
    small = 0.01 * torch.randn(P, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    W = torch.cat([3 * _wave(x, 2, P), _wave(x, 9, P), small], 1)
    assert key_frequencies(frequency_norms(W, P)) == [2, 9]
    assert gini(torch.ones(K)) == pytest.approx(0.0)
    assert key_frequencies(torch.ones(K)) == []  # all equal: none stands out
    noise = torch.randn(P, 64, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    assert key_frequencies(frequency_norms(noise, P)) == []


def test_mul_reads_the_embedding_through_the_discrete_log():
    gm = group_map("mul", P)
    assert gm.n == P - 1 and int(gm.index[0]) == -1 and int(gm.index[1]) == 0
    assert sorted(gm.index[1:].tolist()) == list(range(P - 1))  # a bijection onto Z_{p-1}
    W = torch.zeros(P, 2, dtype=torch.float64)
    W[1:] = _wave(gm.index[1:], 5, P - 1)  # frequency 5 of the multiplicative group
    norms = frequency_norms(group_embedding(W, gm), gm.n)
    assert key_frequencies(norms) == [5]
    assert key_frequencies(frequency_norms(W, P)) != [5]  # read over Z_p (token order) it is not frequency 5


@pytest.mark.parametrize("exclude_zero", [False, True])
def test_restricted_keeps_and_excluded_removes_key_frequency_logits(exclude_zero):
    lo = 1 if exclude_zero else 0
    a, b = torch.meshgrid(torch.arange(lo, P), torch.arange(lo, P), indexing="ij")
    s = ((a + b) % P).flatten()
    c = torch.arange(P, dtype=torch.float64)
    w = 2 * math.pi / P
    key = 4 * torch.cos(w * 3 * (s[:, None] - c[None, :]))  # the paper's cos(w_k(a + b - c)) logits
    # another frequency: orthogonal to the key's on the full grid; on the grid without 0 it is not, so a least-squares
    # split would share it, and the test leaves it out there
    other = 0.5 * torch.cos(w * 8 * (s[:, None] - c[None, :])) * (0 if exclude_zero else 1)
    const = torch.linspace(-1, 1, P, dtype=torch.float64)[None, :]
    restricted, excluded = restricted_excluded(key + other + const, s, P, [3])
    assert torch.allclose(restricted, (key + const).double(), atol=1e-9)
    # the constant is each output's mean over the pairs present: the key wave's mean is 0 on the full grid only
    assert torch.allclose(excluded, other + const + key.mean(0, keepdim=True), atol=1e-9)
    assert torch.allclose(key.mean(0), torch.zeros(P, dtype=torch.float64), atol=1e-9) != exclude_zero
    restricted, excluded = restricted_excluded(key + other + const, s, P, [])
    assert torch.allclose(excluded, (key + other + const).double(), atol=1e-9)


def test_not_a_group_operation_is_refused():
    for task in ("sq", "sq_ab", "cube_ab"):
        with pytest.raises(NotApplicable, match="not one"):
            group_map(task, P)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("progress")
    cfgs = [preset("quick", steps=100, data=dict(p=11, tasks=tasks), model=dict(d_model=16, n_heads=2, d_ff=32),
                   optim=dict(batch=32), defect_every=0, n_snapshots=3, eval_every=50, checkpoint_every=100)
            for tasks in (("add", "mul"), ("add", "sq"))]
    for cfg in cfgs:
        train([cfg], out)
    return [RunDir(out / c.name) for c in cfgs]


def test_progress_per_task_on_a_dual_run(runs):
    df = progress_table(runs[0])
    assert set(df["task"]) == {"add", "mul"}
    steps = sorted(set(df["step"]))
    assert len(steps) == 3 and steps[0] == 0
    mul = df[df["task"] == "mul"].iloc[0]
    assert mul["n_group"] == 10 and len(mul["fourier_norms"]) == 5
    # with no key frequency the restricted logits are the constant and the excluded ones the logits themselves
    for _, r in df.iterrows():
        if len(r["key_causal"]) == 0:
            assert r["excluded_loss_causal"] == pytest.approx(r["train_loss"], rel=1e-9)
    res = run_analysis(runs[0], "progress")
    assert set(res["tasks"]) == {"add", "mul"}
    assert res["evaluated_on"]["excluded_loss"] == "training pairs"
    assert runs[0].has_table("progress")


def test_not_applicable_run_cli_exit_2_and_python_error(runs, capsys):
    with pytest.raises(NotApplicable, match="'sq'"):
        progress_table(runs[1])
    assert main(["analyze", str(runs[1].path), "--what", "progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "sq" in err[0]
    # its modular task alone is fine
    assert main(["analyze", str(runs[1].path), "--what", "progress", "--tasks", "add", "--json"]) == 0


def test_report_shows_progress_measures_when_stored(runs, tmp_path):
    from grokscope.report import ReportConfig, build_report

    run_analysis(runs[0], "progress")
    store = runs[0].path.parent
    res = build_report(store, tmp_path / "report", ReportConfig(n_null=0))
    drawn = {f.stem for f in res.figures}
    assert "progress" in drawn and "Progress measures" in res.index.read_text()
    assert "llc" not in drawn  # no llc.parquet in this store: no panel
