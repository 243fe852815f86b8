"""The typed configs of a run (data, model, optimiser, grokking method), their limits and batch key."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field, fields
from numbers import Integral, Real
from typing import Any

from grokscope.errors import ConfigError

# Limits that refuse absurd values before anything allocates (far above every preset and paper setting).
MAX_P = 2048  # the (a, b) table holds ~p² pairs per task
MAX_STEPS = 10_000_000
MAX_BATCH = 1 << 20
MAX_WIDTH = 1 << 14  # d_model, d_ff, mlp width
MAX_GRID_RUNS = 100_000  # runs one grid (run or sweep) may expand to


EXTERNAL = "external"  # model kind of runs recorded by grokscope.Monitor

# Grokking methods a run may add to its optimiser (`MethodConfig.name` joins them with '+').
METHODS = ("grokfast-ema", "grokfast-ma", "stablemax", "orthograd")
METHOD_ALIASES = {"none": "baseline", "grokfast": "grokfast-ema", "⊥grad": "orthograd", "perpgrad": "orthograd"}


@dataclass(frozen=True)
class DataConfig:
    """Which operations, over which modulus, and how the (a, b) pairs are split."""

    tasks: tuple[str, ...] = ("add",)  # operations trained together on one shared model (add, sub, mul, ...)
    p: int = 97  # the modulus: operands and answers in 0..p-1 (prime when a task multiplies, divides or squares)
    train_frac: float = 0.5  # fraction of the (a, b) pairs in the training split; the rest is the test split
    exclude_zero: bool = True  # papers' code: a, b in 1..p-1 (paper text: 0..p-1)
    unordered: bool = False  # P3: keep pairs a <= b only
    # None: `exclude_zero` decides for every task. A tuple: zero is excluded iff one of the run's tasks is
    # listed, whatever `exclude_zero` says (P2's grok_sweep.py: restrict_nonzero for mul only).
    nonzero_tasks: tuple[str, ...] | None = None
    split: str = "randperm"  # "randperm" (torch.randperm, sorted) or "authors" (random.Random(seed).shuffle)

    @property
    def zero_excluded(self) -> bool:
        """Whether operands run over 1..p-1 (True) or 0..p-1 for this run's tasks."""
        if self.nonzero_tasks is None:
            return self.exclude_zero
        return any(t in self.nonzero_tasks for t in self.tasks)


@dataclass(frozen=True)
class ModelConfig:
    """`trunk`: P1/P2 shared-trunk pre-norm encoder; `transformer1`: the 1-layer [a, b, =] grokking
    transformer; `mlp`: P3's two-layer ReLU MLP without biases on one-hot-sum inputs; `external`: a user's
    own model recorded by `grokscope.Monitor` (grokscope cannot build it; its sizes are 0 = not applicable)."""

    kind: str = "trunk"  # trunk | transformer1 | mlp | external (see the class doc)
    d_model: int = 128  # residual-stream width
    n_heads: int = 4  # attention heads per layer
    d_ff: int = 256  # hidden width of each feed-forward block
    n_layers: int = 2  # transformer layers
    width: int = 128  # mlp hidden width


@dataclass(frozen=True)
class OptimConfig:
    """`adamw` (decoupled decay on all parameters) or `sgd` (plain/momentum GD with L2 decay).
    batch = None means full-batch gradient descent."""

    name: str = "adamw"  # adamw | sgd
    lr: float = 1e-3  # learning rate (per run)
    wd: float = 1.0  # weight decay (per run): decoupled for adamw, L2 in the gradient for sgd
    beta1: float = 0.9  # Adam first-moment decay
    beta2: float = 0.98  # Adam second-moment decay
    eps: float = 1e-8  # Adam denominator epsilon
    clip: float = 1.0  # grad-norm clip; 0 disables
    momentum: float = 0.0  # sgd momentum (0: plain gradient descent)
    batch: int | None = 512  # minibatch size; None: full-batch gradient descent


@dataclass(frozen=True)
class MethodConfig:
    """A grokking method on top of the optimiser, per run, so one batch can hold a baseline and each method.
    `name` is 'baseline' or '+'-joined parts: grokfast-ema / grokfast-ma (Lee et al. 2024: g + lamb·EMA_alpha(g),
    g + lamb·mean of the last `window` g), stablemax (StableMax cross-entropy) and orthograd (⊥Grad: the
    gradient of each parameter tensor made orthogonal to it, its norm kept), both Prieto et al. 2025.
    lamb None: the authors' defaults, 2 for EMA and 5 for MA."""

    name: str = "baseline"  # baseline, or '+'-joined methods (grokfast-ema, grokfast-ma, stablemax, orthograd)
    alpha: float = 0.98  # Grokfast-EMA decay α of the gradient average
    lamb: float | None = None  # Grokfast amplification λ of the filtered gradient (None: 2 for EMA, 5 for MA)
    window: int = 100  # Grokfast-MA window: the last `window` gradients averaged

    @property
    def parts(self) -> tuple[str, ...]:
        return () if self.name == "baseline" else tuple(self.name.split("+"))

    @property
    def loss(self) -> str:
        """'stablemax' or 'ce' (the model's usual loss: cross-entropy, or MSE for the MLP)."""
        return "stablemax" if "stablemax" in self.parts else "ce"

    @property
    def grad_filter(self) -> str | None:
        """'ema', 'ma' or None."""
        return next((p.split("-")[1] for p in self.parts if p.startswith("grokfast-")), None)

    @property
    def orthograd(self) -> bool:
        return "orthograd" in self.parts

    @property
    def amplification(self) -> float:
        """Grokfast's lamb (0 without a filter)."""
        if self.grad_filter is None:
            return 0.0
        return float(self.lamb) if self.lamb is not None else (2.0 if self.grad_filter == "ema" else 5.0)

    @property
    def label(self) -> str:
        """The method with any non-default filter hyper-parameter, e.g. `grokfast-ema-a0.95-l5`."""
        extra = ""
        if self.grad_filter == "ema" and self.alpha != 0.98:
            extra += f"-a{self.alpha:g}"
        if self.grad_filter == "ma" and self.window != 100:
            extra += f"-w{self.window}"
        if self.grad_filter is not None and self.lamb is not None:
            extra += f"-l{self.lamb:g}"
        return self.name + extra


def method_config(name: str, **kw: Any) -> MethodConfig:
    """A MethodConfig from a user-facing name ('⊥grad', 'grokfast', 'stablemax+orthograd', ...), validated."""
    parts = [METHOD_ALIASES.get(p.strip().lower(), p.strip().lower()) for p in str(name).split("+")]
    canon = "baseline" if parts == ["baseline"] else "+".join(sorted(parts, key=lambda p: METHODS.index(p)
                                                                        if p in METHODS else -1))
    return validate_method(MethodConfig(name=canon, **kw))


def validate_method(m: MethodConfig) -> MethodConfig:
    """Raise ConfigError (one line) on an unknown method or a bad filter hyper-parameter."""
    for p in m.parts:
        if p not in METHODS:
            raise ConfigError(f"unknown method {p!r}; choose baseline or '+'-joined {', '.join(METHODS)}")
    if len(set(m.parts)) != len(m.parts) or ("grokfast-ema" in m.parts and "grokfast-ma" in m.parts):
        raise ConfigError(f"method {m.name!r} repeats a part or combines both Grokfast filters")
    if not 0.0 <= m.alpha < 1.0:
        raise ConfigError(f"Grokfast alpha={m.alpha!r} must lie in [0, 1)")
    if m.lamb is not None and not (m.lamb >= 0 and m.lamb < float("inf")):
        raise ConfigError(f"Grokfast lamb={m.lamb!r} must be a finite number >= 0")
    if not isinstance(m.window, int) or m.window < 1:
        raise ConfigError(f"Grokfast-MA window={m.window!r} must be an integer >= 1")
    return m


@dataclass(frozen=True)
class RunConfig:
    """One training run. Runs that agree on everything but the per-run fields
    (seed, data_seed, lr, wd, clip, steps, betas) train together as one batched program."""

    data: DataConfig = field(default_factory=DataConfig)  # the operations, modulus and split
    model: ModelConfig = field(default_factory=ModelConfig)  # the architecture and its sizes
    optim: OptimConfig = field(default_factory=OptimConfig)  # the optimiser, its hyper-parameters and batch size
    method: MethodConfig = field(default_factory=MethodConfig)  # a grokking method on top of the optimiser
    seed: int = 42  # initialisation, minibatch order and (unless data_seed) the split
    data_seed: int | None = None  # None: the split follows `seed`, as in the papers' scripts
    steps: int = 30_000  # step budget (a run stops earlier once every task has grokked, with stop_on_grok)
    eval_every: int = 100  # train/test loss and accuracy every N steps (the grok step's resolution)
    attn_every: int = 100  # attention matrices into the trajectory (trajectory/<step>.safetensors)
    n_snapshots: int = 100  # full parameter snapshots per run (at most)
    checkpoint_every: int = 2000  # a resumable checkpoint every N steps
    grok_acc: float = 0.98  # test accuracy a task must hold to count as grokked
    grok_patience: int = 3  # for this many consecutive evaluations (the grok step is the first of them)
    grok_acc_90: float = 0.90  # the first evaluation at this test accuracy is also recorded (grok_step_90)
    stop_on_grok: bool = True  # stop a run once every task has grokked
    defect_every: int = 0  # inline commutator defect every N steps (0: off)
    defect_draws: int = 3  # commutator draws K averaged per inline defect
    preset: str = "custom"  # the preset the config was built from (a label; "custom" otherwise)
    tag: str = ""  # appended to the run name: tells apart runs that differ only in an intervention, say
    # Paper-exact switches (defaults: grokscope's own schemes, as stored before these fields existed).
    init: str = "independent"  # "authors": the scripts' module after torch.manual_seed(seed), layers copied
    sampler: str = "counter"  # "authors": np.random.seed(seed) + np.random.randint per step
    snapshot_spacing: int = 0  # 0: `n_snapshots` spread over the budget; N > 0: every N steps (P1: 200)
    defect_stream: str = "counter"  # "training": inline defects draw A/B from the training stream (sampler authors)

    @property
    def split_seed(self) -> int:
        return self.seed if self.data_seed is None else self.data_seed

    @property
    def snapshot_every(self) -> int:
        """Steps between full snapshots: `snapshot_spacing` if set, else spaced so a run that uses its whole
        budget keeps at most `n_snapshots`."""
        if self.snapshot_spacing > 0:
            return self.snapshot_spacing
        k = max(1, -(-self.steps // max(1, self.n_snapshots - 1)))
        return -(-k // self.eval_every) * self.eval_every

    @property
    def max_snapshots(self) -> int:
        """Most full snapshots a run can store (every `snapshot_every` steps, plus its stop step)."""
        return self.steps // self.snapshot_every + 2

    @property
    def name(self) -> str:
        """Readable directory name from the fields a sweep varies; a store refuses a second config
        under the same name (unless told to resume or overwrite)."""
        if self.model.kind == EXTERNAL:
            return self.tag
        o = self.optim
        return (
            f"{'+'.join(self.data.tasks)}-p{self.data.p}-{self.model.kind}"
            f"-wd{o.wd:g}-lr{o.lr:g}-s{self.seed}"
            + (f"-{self.method.label}" if self.method.name != "baseline" else "")
            + (f"-{self.tag}" if self.tag else "")
        )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def digest(self) -> str:
        return hashlib.sha1(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RunConfig:
        """The config a `to_dict` mapping describes; unknown fields or wrong types are a ConfigError naming
        the field (a hand-edited config.json, or one written by another version)."""
        if not isinstance(d, dict):
            raise ConfigError(f"a run config must be a mapping, not {type(d).__name__}")
        d = dict(d)
        sections = {}
        sections_of = (("data", DataConfig), ("model", ModelConfig), ("optim", OptimConfig), ("method", MethodConfig))
        for name, kind in sections_of:  # a run stored before methods existed has no "method": the baseline
            raw = d.pop(name, {})
            if not isinstance(raw, dict):
                raise ConfigError(f"config field {name!r} must be a mapping, not {raw!r}")
            if name == "data":
                for key in ("tasks", "nonzero_tasks"):
                    if isinstance(raw.get(key), list):
                        raw = {**raw, key: tuple(raw[key])}
            _check_fields(kind, raw, f"{name}.")
            sections[name] = kind(**raw)
        _check_fields(cls, dict(d), "")
        return cls(**sections, **d)


_TYPES: dict[str, tuple[type, ...]] = {"int": (Integral,), "float": (Real,), "str": (str,), "bool": (bool,),
                                       "int | None": (Integral, type(None)), "tuple[str, ...]": (tuple,)}


def _check_fields(kind: type, raw: dict[str, Any], prefix: str) -> None:
    """Refuse unknown field names and values of the wrong type (bools are not numbers here)."""
    known = {f.name: f for f in fields(kind)}
    unknown = sorted(set(raw) - set(known), key=str)
    if unknown:
        raise ConfigError(f"unknown config field {prefix}{unknown[0]} (written by another version of grokscope?)")
    for name, value in raw.items():
        ok = _TYPES.get(str(known[name].type))
        if ok is None:
            continue
        if (isinstance(value, bool) and bool not in ok) or not isinstance(value, ok):
            raise ConfigError(f"config field {prefix}{name}={value!r} must be {known[name].type}")
        if isinstance(value, tuple) and not all(isinstance(x, str) for x in value):
            raise ConfigError(f"config field {prefix}{name}={list(value)!r} must be a list of names")


# Fields that may differ between runs of one batched program.
PER_RUN_FIELDS = ("seed", "data_seed", "steps", "checkpoint_every", "preset", "tag")
PER_RUN_OPTIM = ("lr", "wd", "clip", "beta1", "beta2", "eps", "momentum")


def batch_key(cfg: RunConfig) -> str:
    """Runs with equal keys share shapes and can train as one batched program."""
    d = cfg.to_dict()
    for k in PER_RUN_FIELDS:
        d.pop(k)
    for k in PER_RUN_OPTIM:
        d["optim"].pop(k)
    d.pop("method")  # methods are per run: a batch may hold a baseline and each method
    return json.dumps(d, sort_keys=True)
