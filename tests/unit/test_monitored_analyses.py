"""The analyses on a monitored run, where the user names what grokscope cannot know: the trajectories PCA reads
(`watch`), the token embedding of the progress measures (`embedding`, `modulus`, `token_axis`) and the model
itself for λ_min and ρ (`UserModel`); what still cannot apply says why in one line."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from grokscope.analyses import run_analysis
from grokscope.analyses.progress_measures import Embedding, progress_table
from grokscope.cli import main
from grokscope.errors import ConfigError, NotApplicable
from grokscope.monitor import Monitor, UserModel
from grokscope.store import RunDir

P, D, KEY = 7, 8, 2


class PairNet(nn.Module):
    """Embedding of each operand, concatenated, through a Linear to the p classes."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(P, D)
        self.out = nn.Linear(2 * D, P)

    def forward(self, pairs: torch.Tensor) -> torch.Tensor:
        return self.out(self.embed(pairs).flatten(1))


def _data():
    a, b = torch.cartesian_prod(torch.arange(P), torch.arange(P)).T
    X = torch.stack([a, b], 1)
    return X, (a + b) % P


def _fourier_model() -> PairNet:
    """A model whose embedding is frequency KEY alone: rows cos / sin(2π·KEY·a/p) in its first two columns."""
    torch.manual_seed(0)
    model = PairNet()
    a = torch.arange(P, dtype=torch.float32)
    with torch.no_grad():
        model.embed.weight.zero_()
        model.embed.weight[:, 0] = torch.cos(2 * math.pi * KEY * a / P)
        model.embed.weight[:, 1] = torch.sin(2 * math.pi * KEY * a / P)
    return model


@pytest.fixture(scope="module")
def monitored(tmp_path_factory):
    """20 full-batch steps of the Fourier model on a+b mod 7 under the monitor (every record every 5 steps, λ_min
    every 10), with the data it trained on."""
    torch.set_num_threads(1)
    X, y = _data()
    model = _fourier_model()
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    out = tmp_path_factory.mktemp("mon") / "run"
    mon = Monitor(model, F.cross_entropy, (X, y), out=out, optimizer=opt, tasks=("add",), batch_size=16, seed=4,
                  watch=["out.weight"], watch_every=5, snapshot_every=5, n_snapshots=10, defect_every=5,
                  hessian_every=10, hessian_iters=10, warn=False, verbose=False)
    for step in range(1, 21):
        loss = F.cross_entropy(model(X), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        mon.step(step, {"train_loss": loss.item(), "train_acc": 0.5, "test_acc": 0.1} if step % 5 == 0 else None)
    mon.close()
    return RunDir(out), (X, y)


def test_pca_reads_the_trajectories_the_user_names(monitored):
    run, _ = monitored
    assert run_analysis(run, "pca")["pc1_percent"].keys() == {"out.weight"}  # the watched tensor
    res = run_analysis(run, "pca", watch="embed.*")  # never watched: read from the snapshots
    assert res["source"] == "snapshots" and set(res["pc1_percent"]) == {"embed.weight"}
    assert 0 < res["pc1_percent"]["embed.weight"] <= 100
    with pytest.raises(ConfigError, match="'nothing.here'"):
        run_analysis(run, "pca", watch="nothing.here")
    assert main(["analyze", str(run.path), "--what", "pca", "--watch", "embed.weight", "--json"]) == 0
    assert main(["analyze", str(run.path), "--what", "pca", "--watch", "nothing.here"]) == 2


def test_progress_measures_read_the_named_embedding(monitored):
    run, (X, y) = monitored
    with pytest.raises(NotApplicable, match="--embedding"):
        progress_table(run)  # a monitored run's embedding is not guessed
    df = progress_table(run, embedding=Embedding("embed.weight", P))
    first = df[df["step"] == 0].iloc[0]
    assert first["key_causal"] == [KEY] and first["gini"] > 0.5  # θ₀ is frequency KEY alone
    assert "excluded_loss_final" not in df  # no logits given: the embedding's measures only
    # the same tensor read with tokens on the other axis (a Linear on one-hot inputs) gives the same measures
    W = run.snapshots()[1]["embed.weight"][0]
    assert Embedding("embed.weight", P, 1).rows({"embed.weight": W.T}).equal(W)
    res = run_analysis(run, "progress", embedding="embed.weight", modulus=P)
    assert res["tasks"]["add"]["key_final"] == [KEY] and "losses" in res


def test_progress_losses_with_the_models_logits(monitored):
    run, (X, y) = monitored
    model = _fourier_model()

    def logits(params, pairs):
        return torch.func.functional_call(model, {k: v.float() for k, v in params.items()}, (pairs,))

    train = X[:30]
    df = progress_table(run, embedding=Embedding("embed.weight", P, logits=logits, train_pairs=train))
    last = df.iloc[-1]
    steps, snaps = run.snapshots()
    params = {k: v[-1] for k, v in snaps.items()}
    with torch.no_grad():
        out = torch.func.functional_call(model, params, (X[:30],))
    assert last["train_loss"] == pytest.approx(float(F.cross_entropy(out.double(), y[:30])), rel=1e-5)
    assert {"restricted_loss_final", "excluded_loss_final"} <= set(df.columns)


def test_cli_embedding_needs_its_modulus_and_progress(monitored):
    run, _ = monitored
    assert main(["analyze", str(run.path), "--what", "progress", "--embedding", "embed.weight"]) == 2
    assert main(["analyze", str(run.path), "--what", "pca", "--embedding", "embed.weight", "--modulus", "7"]) == 2
    assert main(["analyze", str(run.path), "--what", "progress", "--embedding", "embed.wieght", "--modulus",
                 "7"]) == 2
    assert main(["analyze", str(run.path), "--what", "progress", "--embedding", "embed.weight", "--modulus",
                 "7", "--json"]) == 0


def test_user_model_measures_what_the_monitor_measured(monitored):
    """Handed the model back, grokscope measures λ_min and the defect at a snapshot as the monitor did live."""
    run, (X, y) = monitored
    um = UserModel(_fourier_model(), F.cross_entropy, (X, y), batch_size=16, seed=4)
    live = run.table("hessian").set_index("step")
    post = um.hessian_table(run, at=[10, 20], iters=10).set_index("step")
    for s in (10, 20):
        assert post.loc[s, "lambda_min"] == pytest.approx(live.loc[s, "lambda_min"], rel=1e-4, abs=1e-6)
    inline = run.table("defect").set_index("step")
    d = um.defect_table(run, draws=3, at=[15]).iloc[0]
    assert d["defect"] == pytest.approx(inline.loc[15, "defect"], rel=1e-4)
    assert 0 <= d["rho"] <= 1 and 0 <= d["rho_random"] <= 1
    res = run_analysis(run, "hessian", model=um, n_checkpoints=2, iters=10)
    assert res["source"].startswith("snapshots") and math.isfinite(res["depth"])


def test_without_the_model_what_needs_it_says_why(monitored):
    run, (X, y) = monitored
    res = run_analysis(run, "defect")
    assert res["source"] == "inline (Monitor)" and "model" in res["rho"]
    other = nn.Sequential(nn.Linear(2, P))
    with pytest.raises(ConfigError, match="lack parameter '0.weight'"):
        UserModel(other, F.cross_entropy, (X.float(), y)).hessian_table(run)
