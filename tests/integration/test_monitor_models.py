"""The monitor leaves every user's run unchanged, on the model classes users bring: a TransformerLens 4 bridge, a
Hugging Face GPT-2 with tied embeddings, a `torch.nn` model with a shared module, a params dict; and a model a
measurement does change gets a clear error, not a silently wrong run (issue 30)."""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from grokscope.errors import ModelChangedError
from grokscope.monitor import Monitor

from conftest import extra_module

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # every model here is built from a config: nothing is downloaded
P = 11  # modular addition mod P: tokens (a, b, =), the answer read at the last position
STEPS = 12
MEASURE = dict(defect_every=2, draws=1, hessian_every=5, hessian_iters=3, hessian_samples=32, watch_every=3,
               snapshot_every=4, n_snapshots=2, warn=False, verbose=False)


def _data() -> tuple[torch.Tensor, torch.Tensor]:
    """All P² pairs as token rows [P², 3] and their sums mod P [P²]."""
    a, b = torch.cartesian_prod(torch.arange(P), torch.arange(P)).T
    return torch.stack([a, b, torch.full_like(a, P)], 1), (a + b) % P


def _last_token_loss(out: Any, target: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of the logits at the last position (a bare tensor or a Hugging Face output)."""
    logits = out.logits if hasattr(out, "logits") else out
    return F.cross_entropy(logits[:, -1], target)


def _need(module: str):
    """A module of the `models` extra (`conftest.extra_module`: fails under CI, skips elsewhere)."""
    return extra_module(module, "models")


def _bridge() -> nn.Module:
    """A TransformerLens 4 native bridge (Nanda's grokking shape, tiny: ReLU, no LayerNorm), built offline."""
    TransformerBridgeConfig = _need("transformer_lens.config").TransformerBridgeConfig
    TransformerBridge = _need("transformer_lens.model_bridge").TransformerBridge
    cfg = dict(n_layers=1, d_model=16, n_heads=2, d_head=8, d_mlp=32, act_fn="relu", normalization_type=None,
               d_vocab=P + 1, d_vocab_out=P, n_ctx=3, seed=0, positional_embedding_type="standard")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return TransformerBridge.boot_native(TransformerBridgeConfig.from_dict(cfg))


def _gpt2() -> nn.Module:
    """A Hugging Face GPT-2 from a config: tied input and output embeddings, no dropout."""
    transformers = _need("transformers")
    GPT2Config, GPT2LMHeadModel = transformers.GPT2Config, transformers.GPT2LMHeadModel
    torch.manual_seed(0)
    cfg = GPT2Config(vocab_size=P + 1, n_positions=3, n_embd=16, n_layer=1, n_head=2, resid_pdrop=0.0,
                     embd_pdrop=0.0, attn_pdrop=0.0, bos_token_id=P, eos_token_id=P, tie_word_embeddings=True)
    return GPT2LMHeadModel(cfg)


class SharedBlock(nn.Module):
    """One `block` applied twice and registered under two names (as a bridge's aliases), and an output head tied to
    the embedding (two modules holding one parameter)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.embed = nn.Embedding(P + 1, 16)
        self.block = nn.Linear(16, 16)
        self.alias = self.block
        self.head = nn.Linear(16, P + 1, bias=False)
        self.head.weight = self.embed.weight

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        h = self.embed(tokens)
        h = h + torch.relu(self.block(h))
        return self.head(h + torch.relu(self.alias(h)))


@dataclass
class Copy:
    """One of the two lockstep copies: the model, its optimiser, the losses it saw."""

    model: nn.Module | dict[str, torch.Tensor]
    opt: torch.optim.Optimizer
    forward: Callable[..., Any] | None = None
    losses: list[float] | None = None

    def params(self) -> list[torch.Tensor]:
        """Every tensor the model holds as a parameter, under every name."""
        if isinstance(self.model, dict):
            return list(self.model.values())
        return [p for _, p in self.model.named_parameters(remove_duplicate=False)]

    def train_step(self, X: torch.Tensor, y: torch.Tensor) -> None:
        """One full-batch AdamW step."""
        out = self.forward(self.model, X) if self.forward else self.model(X)
        loss = _last_token_loss(out, y)
        self.opt.zero_grad()
        loss.backward()
        self.opt.step()
        self.losses.append(loss.item())


def _copy(build: Callable[[], Any], forward: Callable[..., Any] | None = None) -> Copy:
    """A fresh model from `build` in train mode, with AdamW (lr 1e-3, wd 1 as Nanda's grokking run)."""
    model = build()
    params = list(model.values()) if isinstance(model, dict) else list(model.parameters())
    if not isinstance(model, dict):
        model.train()
    return Copy(model, torch.optim.AdamW(params, lr=1e-3, weight_decay=1.0), forward, [])


def _state(c: Copy) -> dict[str, torch.Tensor]:
    """The model's parameters and buffers by name (every alias)."""
    if isinstance(c.model, dict):
        return dict(c.model)
    return {**dict(c.model.named_parameters(remove_duplicate=False)),
            **dict(c.model.named_buffers(remove_duplicate=False))}


def _lockstep(tmp_path, build: Callable[[], Any], forward: Callable[..., Any] | None = None) -> tuple[Copy, Copy]:
    """Train an unmonitored and a monitored copy of `build()` side by side, a step of each in turn."""
    X, y = _data()
    plain, seen = _copy(build, forward), _copy(build, forward)
    for name, t in _state(plain).items():
        assert torch.equal(t, _state(seen)[name]), name  # the same start
    mon = Monitor(seen.model, _last_token_loss, (X, y), out=tmp_path / "mon", forward=forward,
                  optimizer=seen.opt, batch_size=32, **MEASURE)
    for step in range(1, STEPS + 1):
        plain.train_step(X, y)
        seen.train_step(X, y)
        mon.step(step, {"train_loss": seen.losses[-1]})
    mon.close()
    assert len(mon.defect_rows) == 7 and len(mon.hessian_rows) == 3  # it did measure, from step 0 on
    return plain, seen


def _assert_unchanged(plain: Copy, seen: Copy) -> None:
    """Bit-identical losses, parameters, buffers and optimiser state, and the model still trains the optimiser's
    tensors."""
    assert plain.losses == seen.losses
    assert plain.losses[-1] < plain.losses[0]  # it learnt: a frozen copy would not tell the two apart
    a, b = _state(plain), _state(seen)
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name
    for sa, sb in zip(plain.opt.state.values(), seen.opt.state.values(), strict=True):
        assert all(torch.equal(sa[k], sb[k]) for k in sa if isinstance(sa[k], torch.Tensor))
    held = {id(p) for g in seen.opt.param_groups for p in g["params"]}
    orphans = [n for n, p in zip(_state(seen), seen.params()) if id(p) not in held]
    assert not orphans, f"parameters the optimiser no longer holds: {orphans[:3]}"


def test_transformerlens_bridge_runs_bit_identical(tmp_path):
    model = _bridge()
    assert len(list(model.named_parameters(remove_duplicate=False))) > len(list(model.parameters()))  # aliased
    _assert_unchanged(*_lockstep(tmp_path, _bridge))


def test_hf_gpt2_with_tied_embeddings_runs_bit_identical(tmp_path):
    model = _gpt2()
    assert model.lm_head.weight is model.transformer.wte.weight
    _assert_unchanged(*_lockstep(tmp_path, _gpt2))


def test_torch_nn_shared_module_runs_bit_identical(tmp_path):
    _assert_unchanged(*_lockstep(tmp_path, SharedBlock))


def test_params_dict_with_forward_runs_bit_identical(tmp_path):
    def build() -> dict[str, torch.Tensor]:
        g = torch.Generator().manual_seed(0)
        return {n: (0.3 * torch.randn(*s, generator=g)).requires_grad_(True)
                for n, s in {"E": (P + 1, 16), "W": (16, 16), "U": (16, P)}.items()}

    def forward(p: dict[str, torch.Tensor], tokens: torch.Tensor) -> torch.Tensor:
        h = p["E"][tokens]
        return (h + torch.relu(h @ p["W"])) @ p["U"]

    _assert_unchanged(*_lockstep(tmp_path, build, forward))


def test_the_monitor_gradient_sees_every_use_of_a_tied_parameter(tmp_path):
    """The evaluated parameters reach every holder: the monitor's gradient equals autograd on the model itself."""
    model = SharedBlock()
    X, y = _data()
    mon = Monitor(model, _last_token_loss, (X, y), out=tmp_path / "g", defect_every=0, warn=False)
    expected = torch.autograd.grad(_last_token_loss(model(X), y), list(model.parameters()))
    got = mon.target.grad(mon.target.theta(), (X, y))
    torch.testing.assert_close(got, torch.cat([g.reshape(-1) for g in expected]))


class Leaky(nn.Module):
    """Built to break the invariant: its forward copies the values it is evaluated at into its own parameter, through
    a reference kept outside the module tree (as a cache of "the real weight" might): by moving the parameter to new
    storage (`how='data'`) or by writing into it (`how='inplace'`)."""

    def __init__(self, how: str) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.how = how
        self.embed = nn.Embedding(P + 1, 8)
        self.head = nn.Linear(8, P)
        self._real = [self.head.weight]  # a plain list: not registered, so never swapped by functional_call

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        real, now = self._real[0], self.head.weight
        if now is not real:  # evaluated at other parameters: "sync" them into the real one
            if self.how == "data":
                real.data = now.detach().clone()
            else:
                with torch.no_grad():
                    real.copy_(now)
        return self.head(self.embed(tokens))


@pytest.mark.parametrize("how, says, restored", [("data", r"was moved to other storage \(restored\)", True),
                                                ("inplace", r"was written in place \(its values cannot be", False)])
def test_a_model_a_measurement_changes_gets_a_clear_error_naming_the_parameter(tmp_path, how, says, restored):
    model = Leaky(how)
    weight, before = model.head.weight, model.head.weight.detach().clone()
    X, y = _data()
    with pytest.raises(ModelChangedError, match=rf"'head\.weight' {says}"):
        Monitor(model, _last_token_loss, (X, y), out=tmp_path / "leak", warn=False)
    assert model.head.weight is weight  # still the optimiser's tensor
    # moved storage is put back, values included; values written in place are lost, as the error says
    assert torch.equal(weight, before) is restored


class TwoPaths(nn.Module):
    """The TransformerLens bridge's shape: one layer registered under two names."""

    def __init__(self) -> None:
        super().__init__()
        self.layer = nn.Linear(4, 3)
        self.original = self.layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer(x)


def test_the_guard_catches_the_default_functional_call_on_aliased_modules(tmp_path):
    """The call shape that broke the bridge, made inside a measurement: replaced parameters are named and put back."""
    model = TwoPaths()
    params = dict(model.named_parameters())
    mon = Monitor(model, F.cross_entropy, (torch.randn(8, 4), torch.zeros(8, dtype=torch.long)),
                  out=tmp_path / "two", defect_every=0, warn=False)
    perturbed = {n: p.detach() + 1 for n, p in params.items()}
    torch.func.functional_call(model, perturbed, (torch.randn(2, 4),))  # unguarded: the module is left changed
    assert model.layer.weight is not params["layer.weight"]
    model.layer.weight, model.layer.bias = params["layer.weight"], params["layer.bias"]
    with pytest.raises(ModelChangedError, match=r"'layer\.weight' was replaced by another tensor \(restored\)"):
        with mon.target.measuring(True):
            torch.func.functional_call(model, perturbed, (torch.randn(2, 4),))
    assert model.layer.weight is params["layer.weight"] and model.layer.bias is params["layer.bias"]
