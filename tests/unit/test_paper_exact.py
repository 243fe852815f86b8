"""Paper presets are the authors' scripts: θ₀, split and minibatch stream equal what the scripts build.

The reference side is written here the way the scripts do it (multitask-grokking train_multitask.py /
train_tritask.py, grokking-integrability grok_sweep.py): pairs as a Python list, `random.Random(seed)`
shuffle, `torch.manual_seed(seed)` then an nn.Module with nn.TransformerEncoder, `np.random.seed(seed)`
then `np.random.randint` per step.
"""

from __future__ import annotations

import json
import math
import random

import numpy as np
import pytest
import torch
from torch import nn

from grokscope import cli
from grokscope.commands.run import configs_from_args
from grokscope.config import RunConfig, preset, validate
from grokscope.data.sampler import AuthorsStream
from grokscope.errors import ConfigError
from grokscope.store import RunDir, read_tensors
from grokscope.sweep import expand, spec_from_dict
from grokscope.training import model as M
from grokscope.training import train
from grokscope.training.init_authors import authors_init
from grokscope.training.problem import Problem

from equivalence import FLOAT64_RTOL, assert_moved_close, assert_params_close, assert_same_run

PRESETS = ("p1-dual", "p1-tri", "p2-single")


class ScriptModel(nn.Module):
    """The scripts' model: tok_emb, pos_emb, one norm-first GELU encoder layer deep-copied by
    nn.TransformerEncoder, a final LayerNorm and one nn.Linear head per task, built in this order."""

    def __init__(self, p: int, d: int, heads: int, d_ff: int, layers: int, tasks: tuple[str, ...]) -> None:
        super().__init__()
        self.tok_emb = nn.Embedding(p, d)
        self.pos_emb = nn.Parameter(torch.randn(2, d) / math.sqrt(d))
        enc = nn.TransformerEncoderLayer(d_model=d, nhead=heads, dim_feedforward=d_ff, dropout=0.0,
                                         activation="gelu", batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(enc, num_layers=layers, enable_nested_tensor=False)
        self.ln = nn.LayerNorm(d)
        self.heads = [nn.Linear(d, p) for _ in tasks]
        for t, h in zip(tasks, self.heads):
            self.add_module(f"head_{t}", h)


def script_theta0(cfg: RunConfig) -> dict[str, torch.Tensor]:
    """θ₀ of the script with seed cfg.seed, under grokscope's names (x @ W: weights transposed)."""
    m = cfg.model
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        mod = ScriptModel(cfg.data.p, m.d_model, m.n_heads, m.d_ff, m.n_layers, cfg.data.tasks)
    return _script_names(mod, cfg)


def _script_names(mod: ScriptModel, cfg: RunConfig) -> dict[str, torch.Tensor]:
    """The script module's tensors under grokscope's names, detached copies."""
    d = cfg.model.d_model
    out = {"embed.W_E": mod.tok_emb.weight, "embed.W_pos": mod.pos_emb}
    for i, layer in enumerate(mod.encoder.layers):
        pre, attn = f"layers.{i}", layer.self_attn
        out[f"{pre}.ln1.w"], out[f"{pre}.ln1.b"] = layer.norm1.weight, layer.norm1.bias
        for j, q in enumerate("QKV"):
            out[f"{pre}.attn.W_{q}"] = attn.in_proj_weight[j * d:(j + 1) * d].T
            out[f"{pre}.attn.b_{q}"] = attn.in_proj_bias[j * d:(j + 1) * d]
        out[f"{pre}.attn.W_O"], out[f"{pre}.attn.b_O"] = attn.out_proj.weight.T, attn.out_proj.bias
        out[f"{pre}.ln2.w"], out[f"{pre}.ln2.b"] = layer.norm2.weight, layer.norm2.bias
        out[f"{pre}.mlp.W_in"], out[f"{pre}.mlp.b_in"] = layer.linear1.weight.T, layer.linear1.bias
        out[f"{pre}.mlp.W_out"], out[f"{pre}.mlp.b_out"] = layer.linear2.weight.T, layer.linear2.bias
    out["ln_f.w"], out["ln_f.b"] = mod.ln.weight, mod.ln.bias
    for t, h in zip(cfg.data.tasks, mod.heads):
        out[f"head.{t}.W"], out[f"head.{t}.b"] = h.weight.T, h.bias
    return {k: v.detach().clone() for k, v in out.items()}


def script_split(p: int, frac: float, seed: int, nonzero: bool) -> tuple[list, list]:
    lo = 1 if nonzero else 0
    pairs = [(a, b) for a in range(lo, p) for b in range(lo, p)]
    random.Random(seed).shuffle(pairs)
    n = int(frac * len(pairs))
    return pairs[:n], pairs[n:]


def script_batches(train_pairs: list, batch: int, seed: int, n_steps: int) -> list[np.ndarray]:
    """The first `n_steps` minibatches of the scripts' sample_batch, from the global numpy stream."""
    saved = np.random.get_state()
    try:
        np.random.seed(seed)
        return [np.array([train_pairs[i] for i in np.random.randint(0, len(train_pairs), size=batch)])
                for _ in range(n_steps)]
    finally:
        np.random.set_state(saved)


def assert_params_equal(ours: dict[str, torch.Tensor], theirs: dict[str, torch.Tensor]) -> None:
    assert set(ours) == set(theirs)
    for k in theirs:
        assert ours[k].shape == theirs[k].shape, k
        assert torch.equal(ours[k], theirs[k]), k


@pytest.mark.parametrize("name", PRESETS)
def test_theta0_is_the_scripts_module_tensor_for_tensor(name):
    cfg = preset(name, seed=42)
    assert (cfg.init, cfg.sampler, cfg.data.split) == ("authors", "authors", "authors")
    theirs = script_theta0(cfg)
    ours = authors_init(cfg.model, cfg.data, 42)
    assert_params_equal(ours, theirs)
    assert list(ours) == list(M.init_params(cfg.model, cfg.data, 42))  # the flat layout's order
    # the copied layers start identical; another seed gives another θ₀
    assert torch.equal(theirs["layers.0.attn.W_Q"], theirs["layers.1.attn.W_Q"])
    other = authors_init(cfg.model, cfg.data, 137)
    assert not torch.equal(other["embed.W_E"], theirs["embed.W_E"])
    assert_params_equal({k: v[0].cpu() for k, v in Problem([cfg]).init_params().items()}, theirs)


@pytest.mark.parametrize("name", PRESETS)
def test_split_and_first_100_minibatches_are_the_scripts(name):
    cfg = preset(name, seed=42)
    nonzero = name.startswith("p1")
    tr, te = script_split(cfg.data.p, cfg.data.train_frac, 42, nonzero)
    pb = Problem([cfg])
    assert pb.split("train")[0][0].tolist() == [list(x) for x in tr]  # same pairs, in their order
    assert sorted(map(tuple, pb.split("test")[0][0].tolist())) == sorted(te)
    theirs = script_batches(tr, cfg.optim.batch, 42, 100)
    for step, ab in enumerate(theirs):
        pairs, targets = pb.minibatch(step)
        assert np.array_equal(pairs[0].numpy(), ab), step
        a, b = pairs[0, :, 0], pairs[0, :, 1]
        assert torch.equal(targets[0, :, 0], (a + b) % cfg.data.p)


def test_p2_single_has_four_heads_and_excludes_zero_for_mul_only():
    add = preset("p2-single")
    mul = preset("p2-single", data={"tasks": ("mul",)})
    assert add.model.n_heads == 4 and add.defect_draws == 5
    assert Problem([add]).pairs.shape[0] == 97 * 97
    assert Problem([mul]).pairs.shape[0] == 96 * 96
    assert preset("p1-dual").data.zero_excluded and preset("p1-dual").defect_draws == 9


def test_inline_defect_draws_follow_the_scripts_that_measure_inline():
    """K of the inline defect: p1-tri 5 (tri_task/generalization_dynamics.py COMM_K, P1's inline tri leads),
    p2-single 5 (grok_generalization_dynamics.py); p1-dual keeps P1 §2's K = 9 (its leads are post-hoc)."""
    assert preset("p1-tri").defect_draws == 5 and preset("p2-single").defect_draws == 5
    assert preset("p1-dual").defect_draws == 9
    assert preset("quick").defect_draws == 3 and preset("quick").optim.batch == 256  # grokscope's own preset


def test_a_run_in_a_batch_draws_what_it_draws_alone():
    cfgs = [preset("p1-dual", seed=s, data={"p": 13}) for s in (42, 7, 2024)]
    both, alone = Problem(cfgs), Problem(cfgs[1:2])
    for step in range(6):
        runs = torch.tensor([1, 2]) if step >= 3 else None  # compacted batches after a run stops
        x, _ = both.minibatch(step, runs=runs)
        y, _ = alone.minibatch(step)
        assert torch.equal(x[0 if runs is not None else 1], y[0])


def test_stream_state_round_trips_and_out_of_order_steps_replay():
    a = AuthorsStream([5], n=50, batch=8)
    first = [a.indices(s).clone() for s in range(4)]
    key, meta = a.state(0)
    json.dumps(meta)  # the metadata is plain JSON
    b = AuthorsStream([5], n=50, batch=8)
    b.load_state(0, key, meta)
    assert torch.equal(b.indices(4), a.indices(4))
    assert torch.equal(a.indices(1), first[1])  # an earlier step replays the stream from the seed
    assert torch.equal(AuthorsStream([5], 50, 8).indices(3), first[3])  # a later step skips ahead


def _tiny_exact(**kw) -> RunConfig:
    return preset("p1-dual", data={"p": 11}, model={"d_model": 16, "n_heads": 2, "d_ff": 32},
                  optim={"batch": 32}, eval_every=20, attn_every=20, checkpoint_every=40, snapshot_spacing=20,
                  stop_on_grok=False, **kw)


def test_batched_equals_alone_and_resume_is_exact(tmp_path):
    cfgs = [_tiny_exact(seed=s, steps=120) for s in (1, 2)]
    # in a batch vs alone: other GEMM shapes, so equal to rounding, checked in float64 (tests/equivalence.py)
    assert_same_run(train(cfgs, dtype=torch.float64)[1], train(cfgs[1:], dtype=torch.float64)[0])
    alone = train(cfgs[1:])
    # stop at 40 steps, then continue to 120 from the checkpoint (sampler state restored): the same shapes on the
    # same processor, so bit for bit
    train([_tiny_exact(seed=2, steps=40)], tmp_path)
    (run,) = [p for p in tmp_path.iterdir()]
    tensors, meta = read_tensors(run / "checkpoint.safetensors")
    assert "sampler.key" in tensors and meta["sampler"]["next_draw"] == 40
    resumed = train(cfgs[1:], tmp_path, resume=True)
    for k, v in alone[0].params.items():
        assert torch.equal(resumed[0].params[k], v), k


def test_cli_run_stores_the_scripts_theta0_and_records_the_schemes(tmp_path):
    out = tmp_path / "runs"
    assert cli.main(["run", "--preset", "p1-dual", "--seeds", "42", "--steps", "2", "--no-geometry", "--json",
                     "--out", str(out)]) == 0
    (run,) = [RunDir(p) for p in out.iterdir()]
    snaps, _ = run.trajectory()
    assert int(snaps["snap_steps"][0]) == 0
    theirs = script_theta0(preset("p1-dual", seed=42))
    for k, v in theirs.items():
        assert torch.equal(snaps[f"snap.{k}"][0], v), k
    saved = json.loads(run.file("config.json").read_text())
    assert (saved["init"], saved["sampler"], saved["data"]["split"]) == ("authors", "authors", "authors")


def test_old_configs_load_with_grokscopes_own_schemes_and_bad_values_are_refused():
    d = RunConfig().to_dict()
    for k in ("init", "sampler", "snapshot_spacing"):
        d.pop(k)
    d["data"].pop("split")
    d["data"].pop("nonzero_tasks")
    cfg = RunConfig.from_dict(d)
    assert (cfg.init, cfg.sampler, cfg.data.split, cfg.snapshot_spacing) == ("independent", "counter", "randperm", 0)
    assert RunConfig.from_dict(preset("p2-single").to_dict()) == preset("p2-single")  # tuples survive JSON
    with pytest.raises(ConfigError, match="sampler"):
        validate(preset("p1-dual", sampler="numpy"))
    with pytest.raises(ConfigError, match="trunk"):
        validate(preset("p3-mlp", init="authors"))
    assert cli.main(["run", "--preset", "p1-dual", "--init", "copied"]) == 2


def test_independent_init_and_counter_sampler_remain_available():
    cfg = preset("p1-dual", data={"p": 13}, init="independent", sampler="counter", seed=42)
    theirs = authors_init(cfg.model, cfg.data, 42)
    ours = Problem([cfg]).init_params()
    assert not torch.equal(ours["layers.0.attn.W_Q"][0], ours["layers.1.attn.W_Q"][0])
    assert not torch.equal(ours["layers.0.attn.W_Q"][0], theirs["layers.0.attn.W_Q"])
    assert torch.equal(ours["embed.W_E"][0], M.init_params(cfg.model, cfg.data, 42)["embed.W_E"])


@pytest.mark.parametrize("name, tasks, p, nonzero", [
    ("p2-single", ("add",), 23, False),  # grok_generalization_dynamics.py (P2's leads)
    ("p1-tri", ("add", "mul", "sq"), 13, True),  # tri_task/generalization_dynamics.py (P1's 27 tri leads)
])
def test_inline_defects_draw_from_the_training_stream_as_the_dynamics_scripts(name, tasks, p, nonzero):
    """Both dynamics scripts: K = 5 commutator pairs (A, B) from the training stream at step 0, then one
    training batch per step and K more pairs after every 100th step (COMM_EVERY, COMM_K)."""
    cfg = preset(name, seed=137, defect_every=100, defect_stream="training", data={"p": p, "tasks": tasks})
    assert cfg.defect_draws == 5  # the preset's own K: the scripts' COMM_K
    tr, _ = script_split(p, 0.5, 137, nonzero=nonzero)
    saved = np.random.get_state()
    try:
        np.random.seed(137)

        def draw():
            return np.array([tr[i] for i in np.random.randint(0, len(tr), size=cfg.optim.batch)])

        expected = {("probe", 0, j): draw() for j in range(10)}
        for step in range(1, 251):
            expected[("train", step - 1)] = draw()
            if step % 100 == 0:
                expected.update({("probe", step, j): draw() for j in range(10)})
    finally:
        np.random.set_state(saved)
    pb = Problem([cfg])
    for key in sorted(expected, key=lambda k: (k[1], k[0] == "train", k[-1])):  # the trainer's order
        got = pb.minibatch(key[1])[0] if key[0] == "train" else pb.probe_minibatch(key[1], key[2])[0]
        assert np.array_equal(got[0].numpy(), expected[key]), key
    assert not Problem([preset(name, seed=137, data={"p": p, "tasks": tasks})]).stream.probe_every  # no defects
    with pytest.raises(ConfigError, match="defect_stream"):
        validate(preset(name, defect_stream="numpy"))


def scripts_loop(cfg: RunConfig, dtype: torch.dtype, wd: float = 1.0) -> dict[str, torch.Tensor]:
    """θ after cfg.steps steps of the scripts' loop written out (their module, split, numpy batches, summed per-task
    mean cross-entropy, clip_grad_norm_(1.0), torch.optim.AdamW on every tensor), in `dtype`, as float64."""
    p, m = cfg.data.p, cfg.model
    tr, _ = script_split(p, cfg.data.train_frac, cfg.seed, nonzero=True)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        mod = ScriptModel(p, m.d_model, m.n_heads, m.d_ff, m.n_layers, cfg.data.tasks).to(dtype)
    opt = torch.optim.AdamW(mod.parameters(), lr=1e-3, weight_decay=wd, betas=(0.9, 0.98))
    ce = nn.CrossEntropyLoss()
    for ab in script_batches(tr, cfg.optim.batch, cfg.seed, cfg.steps):
        ab = torch.from_numpy(ab)
        a, b = ab[:, 0], ab[:, 1]
        z = mod.ln(mod.encoder(mod.tok_emb(ab) + mod.pos_emb.unsqueeze(0))[:, 0])
        loss = ce(mod.heads[0](z), (a + b) % p) + ce(mod.heads[1](z), (a * b) % p)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(mod.parameters(), 1.0)
        opt.step()
    return {k: v.double() for k, v in _script_names(mod, cfg).items()}


def test_training_follows_the_scripts_loop():
    """grokscope's trainer against the scripts' loop on a small trunk, 30 steps. In float64 (where kernels agree to
    ~1e-16) the two are the same arithmetic: equal to FLOAT64_RTOL. In float32 grokscope's run is within
    FLOAT32_TRAIN_RTOL of the float64 one, relative to how far each tensor moved: the spread float32 rounding gave
    over kernel paths (tests/equivalence.py), which the scripts' own float32 loop meets too and a 1 % wrong weight
    decay does not."""
    cfg = preset("p1-dual", seed=3, steps=30, eval_every=10, attn_every=10, checkpoint_every=10,
                 snapshot_spacing=10, data={"p": 11}, model={"d_model": 16, "n_heads": 2, "d_ff": 32},
                 optim={"batch": 32})
    exact = scripts_loop(cfg, torch.float64)
    (ours64,) = train([cfg], dtype=torch.float64)
    assert_params_close(ours64.params, exact, FLOAT64_RTOL, null_bound=2 * cfg.optim.lr * cfg.steps)
    start = authors_init(cfg.model, cfg.data, 3)
    (ours,) = train([cfg])
    assert_moved_close(ours.params, exact, start, label="grokscope float32")
    assert_moved_close(scripts_loop(cfg, torch.float32), exact, start, label="scripts float32")
    with pytest.raises(AssertionError):
        assert_moved_close(scripts_loop(cfg, torch.float64, wd=0.99), exact, start)


def test_paper_presets_default_to_their_scripts_budgets():
    """STEPS of the scripts: train_multitask.py 300k (wd 1), hessian_wd*.py 200k (wd 0.1–0.5), hessian_analysis.py
    50k (wd 0); train_tritask.py 300k, 50k at wd 0; grok_sweep.py 200k, 50k at wd 0. `grokscope run` and a sweep
    without a budget give each run its wd's; an explicit budget (--steps, grid.steps, base.steps) wins."""
    assert [preset(n).steps for n in PRESETS] == [300_000, 300_000, 200_000]
    parser = cli.build_parser()

    def budgets(*argv: str) -> dict[float, int]:
        return {c.optim.wd: c.steps for c in configs_from_args(parser.parse_args(["run", *argv]))}

    assert budgets("--preset", "p1-dual", "--wd", "0,0.1,0.3,0.5,1") == {
        0.0: 50_000, 0.1: 200_000, 0.3: 200_000, 0.5: 200_000, 1.0: 300_000}
    assert budgets("--preset", "p1-tri", "--wd", "0,0.2,1") == {0.0: 50_000, 0.2: 300_000, 1.0: 300_000}
    assert budgets("--preset", "p2-single", "--wd", "0,1") == {0.0: 50_000, 1.0: 200_000}
    assert budgets("--preset", "p1-dual", "--wd", "0,1", "--steps", "200") == {0.0: 200, 1.0: 200}
    assert budgets("--preset", "quick", "--wd", "0,1") == {0.0: 3000, 1.0: 3000}  # no script: its own
    assert budgets("--preset", "p3-mlp") == {1e-4: preset("p3-mlp").steps}

    def sweep(base, grid) -> dict[float, int]:
        return {c.optim.wd: c.steps for c in expand(spec_from_dict({"base": base, "grid": grid}))}

    assert sweep("p2-single", {"wd": [0, 1], "seeds": [1]}) == {0.0: 50_000, 1.0: 200_000}
    assert sweep({"preset": "p2-single", "steps": 500}, {"wd": [0, 1]}) == {0.0: 500, 1.0: 500}
    assert sweep("p1-dual", {"wd": [0, 1], "steps": {0: 700, 1: 900}}) == {0.0: 700, 1.0: 900}
