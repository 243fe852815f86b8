import torch

from grokscope.config import DataConfig, ModelConfig
from grokscope.training import model as M


def _params(tasks, kind="trunk", p=97, **kw):
    m, d = ModelConfig(kind=kind, **kw), DataConfig(tasks=tasks, p=p)
    return m, d, M.stack_params([M.init_params(m, d, 0)])


def test_parameter_counts_match_the_papers():
    assert abs(M.count_params(_params(("add", "mul"))[2]) - 303_000) < 1_000
    assert abs(M.count_params(_params(("add", "mul", "sq"))[2]) - 315_000) < 1_000


def test_stable_parameter_names():
    m, _, params = _params(("add", "mul"))
    assert M.attention_names(m)[:4] == [f"layers.0.attn.{x}" for x in ("W_Q", "W_K", "W_V", "W_O")]
    for k in ("embed.W_E", "embed.W_pos", "layers.1.attn.W_O", "ln_f.w", "head.add.W", "head.mul.b"):
        assert k in params


def test_forward_shapes_for_every_model_kind():
    for kind, kw in (("trunk", {}), ("transformer1", dict(d_ff=512, n_layers=1)), ("mlp", dict(width=16))):
        m, d, params = _params(("add", "mul"), kind=kind, p=11, **kw)
        out = M.forward(params, torch.randint(0, 11, (1, 5, 2)), m, d)
        assert out.shape == (1, 5, 2, 11), kind
        assert torch.isfinite(out).all()


def test_init_depends_only_on_seed():
    m, d = ModelConfig(d_model=32, n_heads=2), DataConfig(p=11)
    a, b, c = M.init_params(m, d, 1), M.init_params(m, d, 1), M.init_params(m, d, 2)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["embed.W_E"], c["embed.W_E"])


def test_runs_are_independent_in_a_batch():
    m, d = ModelConfig(d_model=32, n_heads=2), DataConfig(p=11)
    p = M.stack_params([M.init_params(m, d, s) for s in (1, 2)])
    x = torch.randint(0, 11, (2, 7, 2))
    y = torch.randint(0, 11, (2, 7, 1))
    g = torch.func.grad(lambda q: M.loss(q, x, y, m, d).sum())(p)
    g0 = torch.func.grad(lambda q: M.loss(q, x[:1], y[:1], m, d).sum())({k: v[:1] for k, v in p.items()})
    for k in p:
        torch.testing.assert_close(g[k][:1], g0[k], rtol=1e-5, atol=1e-6)


def test_flatten_roundtrip():
    _, _, params = _params(("add",), p=11, d_model=16, n_heads=2, d_ff=8)
    flat = M.flatten(params)
    assert flat.shape == (1, M.count_params(params))
    back = M.unflatten(flat, params)
    assert all(torch.equal(back[k], params[k]) for k in params)
    sl = M.param_slices(params)
    assert torch.equal(flat[0, sl["head.add.W"]], params["head.add.W"][0].flatten())

