"""Typed configs for data, model, optimiser and runs; presets; every validation lives here."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field, fields, replace
from typing import Any

from grokscope.errors import ConfigError
from grokscope.tasks import OPERATIONS, is_prime

__all__ = ["ConfigError", "DataConfig", "MethodConfig", "ModelConfig", "OptimConfig", "RunConfig", "PRESETS", "preset",
           "validate"]

# Grokking methods a run may add to its optimiser (`MethodConfig.name` joins them with '+').
METHODS = ("grokfast-ema", "grokfast-ma", "stablemax", "orthograd")
METHOD_ALIASES = {"none": "baseline", "grokfast": "grokfast-ema", "⊥grad": "orthograd", "perpgrad": "orthograd"}


@dataclass(frozen=True)
class DataConfig:
    """Which operations, over which modulus, and how the (a, b) pairs are split."""

    tasks: tuple[str, ...] = ("add",)
    p: int = 97
    train_frac: float = 0.5
    exclude_zero: bool = True  # papers' code: a, b in 1..p-1 (paper text: 0..p-1)
    unordered: bool = False  # P3: keep pairs a <= b only


@dataclass(frozen=True)
class ModelConfig:
    """`trunk`: P1/P2 shared-trunk pre-norm encoder; `transformer1`: the 1-layer [a, b, =] grokking
    transformer; `mlp`: P3's two-layer ReLU MLP without biases on one-hot-sum inputs."""

    kind: str = "trunk"
    d_model: int = 128
    n_heads: int = 4
    d_ff: int = 256
    n_layers: int = 2
    width: int = 128  # mlp hidden width


@dataclass(frozen=True)
class OptimConfig:
    """`adamw` (decoupled decay on all parameters) or `sgd` (plain/momentum GD with L2 decay).
    batch = None means full-batch gradient descent."""

    name: str = "adamw"
    lr: float = 1e-3
    wd: float = 1.0
    beta1: float = 0.9
    beta2: float = 0.98
    eps: float = 1e-8
    clip: float = 1.0  # grad-norm clip; 0 disables
    momentum: float = 0.0
    batch: int | None = 512


@dataclass(frozen=True)
class MethodConfig:
    """A grokking method on top of the optimiser, per run, so one batch can hold a baseline and each method.
    `name` is 'baseline' or '+'-joined parts: grokfast-ema / grokfast-ma (Lee et al. 2024: g + lamb·EMA_alpha(g),
    g + lamb·mean of the last `window` g), stablemax (StableMax cross-entropy) and orthograd (⊥Grad: the
    gradient of each parameter tensor made orthogonal to it, its norm kept), both Prieto et al. 2025.
    lamb None: the authors' defaults, 2 for EMA and 5 for MA."""

    name: str = "baseline"
    alpha: float = 0.98
    lamb: float | None = None
    window: int = 100

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

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    method: MethodConfig = field(default_factory=MethodConfig)
    seed: int = 42
    data_seed: int | None = None  # None: the split follows `seed`, as in the papers' scripts
    steps: int = 30_000
    eval_every: int = 100
    attn_every: int = 100  # attention matrices into trajectory.safetensors
    n_snapshots: int = 100  # full parameter snapshots per run (at most)
    checkpoint_every: int = 2000
    grok_acc: float = 0.98
    grok_patience: int = 3
    grok_acc_90: float = 0.90
    stop_on_grok: bool = True
    defect_every: int = 0  # inline commutator defect every N steps (0: off)
    defect_draws: int = 3
    preset: str = "custom"
    tag: str = ""  # appended to the run name: tells apart runs that differ only in an intervention, say

    @property
    def split_seed(self) -> int:
        return self.seed if self.data_seed is None else self.data_seed

    @property
    def snapshot_every(self) -> int:
        """Full snapshots spaced so a run that uses its whole budget keeps at most `n_snapshots`."""
        k = max(1, -(-self.steps // max(1, self.n_snapshots - 1)))
        return -(-k // self.eval_every) * self.eval_every

    @property
    def name(self) -> str:
        """Readable directory name from the fields a sweep varies; a store refuses a second config
        under the same name (unless told to resume or overwrite)."""
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
        d = dict(d)
        raw = dict(d.pop("data", {}))
        data = DataConfig(**{**raw, "tasks": tuple(raw.get("tasks", ("add",)))})
        model = ModelConfig(**d.pop("model", {}))
        optim = OptimConfig(**d.pop("optim", {}))
        method = MethodConfig(**d.pop("method", {}))  # runs stored before methods existed: the baseline
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ConfigError(f"unknown config field(s): {', '.join(sorted(unknown))}")
        return cls(data=data, model=model, optim=optim, method=method, **d)


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


def validate(cfg: RunConfig) -> RunConfig:
    """Raise ConfigError (one line, naming the value) on anything that cannot train."""
    data, model, optim = cfg.data, cfg.model, cfg.optim
    if not data.tasks:
        raise ConfigError("tasks: at least one task is required")
    for t in data.tasks:
        if t not in OPERATIONS:
            raise ConfigError(f"unknown task {t!r}; choose from {', '.join(OPERATIONS)}")
    if len(set(data.tasks)) != len(data.tasks):
        raise ConfigError(f"tasks {','.join(data.tasks)!r} repeat a task")
    if not isinstance(data.p, int) or data.p < 3:
        raise ConfigError(f"p={data.p!r} is too small: p must be an integer >= 3")
    needs = [t for t in data.tasks if OPERATIONS[t].needs_prime]
    if needs and not is_prime(data.p):
        raise ConfigError(
            f"p={data.p} is not prime, but task {needs[0]!r} needs a prime modulus "
            "(division needs inverses; mul/sq-type ops form a field only mod a prime)"
        )
    if not 0.0 < data.train_frac < 1.0:
        raise ConfigError(f"train fraction {data.train_frac!r} must lie strictly between 0 and 1")
    if model.kind not in ("trunk", "transformer1", "mlp"):
        raise ConfigError(f"unknown model kind {model.kind!r}; choose trunk, transformer1 or mlp")
    if model.kind != "mlp":
        if model.d_model <= 0 or model.n_heads <= 0 or model.d_model % model.n_heads:
            raise ConfigError(f"d_model={model.d_model} must be a positive multiple of n_heads={model.n_heads}")
        if model.n_layers <= 0 or model.d_ff <= 0:
            raise ConfigError(f"n_layers={model.n_layers} and d_ff={model.d_ff} must be positive")
    elif model.width <= 0:
        raise ConfigError(f"mlp width={model.width} must be positive")
    if optim.name not in ("adamw", "sgd"):
        raise ConfigError(f"unknown optimiser {optim.name!r}; choose adamw or sgd")
    if not optim.lr >= 0:
        raise ConfigError(f"lr={optim.lr!r} must be >= 0")
    if not optim.wd >= 0:
        raise ConfigError(f"weight decay wd={optim.wd!r} must be >= 0")
    if not optim.clip >= 0:
        raise ConfigError(f"clip={optim.clip!r} must be >= 0 (0 disables clipping)")
    if optim.batch is not None and optim.batch <= 0:
        raise ConfigError(f"batch={optim.batch} must be > 0 (or 'full' for full-batch training)")
    validate_method(cfg.method)
    if cfg.method.loss == "stablemax" and model.kind == "mlp":
        raise ConfigError("method stablemax replaces softmax cross-entropy; the mlp model trains on squared error")
    if cfg.steps <= 0:
        raise ConfigError(f"steps={cfg.steps} must be > 0")
    for name in ("eval_every", "attn_every", "n_snapshots", "checkpoint_every", "grok_patience"):
        if getattr(cfg, name) <= 0:
            raise ConfigError(f"{name}={getattr(cfg, name)} must be > 0")
    if cfg.attn_every % cfg.eval_every or cfg.checkpoint_every % cfg.eval_every:
        raise ConfigError(
            f"attn_every={cfg.attn_every} and checkpoint_every={cfg.checkpoint_every} "
            f"must be multiples of eval_every={cfg.eval_every}"
        )
    if cfg.defect_every < 0 or (cfg.defect_every and cfg.defect_every % cfg.eval_every):
        raise ConfigError(f"defect_every={cfg.defect_every} must be 0 or a multiple of eval_every")
    return cfg


def _base(**kw: Any) -> RunConfig:
    return RunConfig(**kw)


PRESETS: dict[str, RunConfig] = {
    # Small enough to grok on 2 CPU cores in well under a minute: P2's single-task mod-add with a smaller
    # modulus (31), 70% train, a narrower one-layer trunk and lr 5e-3 (seeds 42/137/2024/7 grok at
    # 800–1300 steps).
    "quick": _base(
        data=DataConfig(tasks=("add",), p=31, train_frac=0.7),
        model=ModelConfig(kind="trunk", d_model=64, n_heads=4, d_ff=128, n_layers=1),
        optim=OptimConfig(lr=5e-3, wd=1.0, batch=256),
        steps=3000,
        checkpoint_every=500,
        defect_every=100,
        preset="quick",
    ),
    "p2-single": _base(
        data=DataConfig(tasks=("add",)),
        model=ModelConfig(kind="trunk", n_heads=1),
        steps=30_000,
        preset="p2-single",
    ),
    "p1-dual": _base(data=DataConfig(tasks=("add", "mul")), steps=30_000, preset="p1-dual"),
    "p1-tri": _base(data=DataConfig(tasks=("add", "mul", "sq")), steps=50_000, preset="p1-tri"),
    "nanda": _base(
        data=DataConfig(tasks=("add",), p=113, train_frac=0.3, exclude_zero=False),
        model=ModelConfig(kind="transformer1", d_model=128, n_heads=4, d_ff=512, n_layers=1),
        optim=OptimConfig(lr=1e-3, wd=1.0, beta2=0.98, clip=0.0, batch=None),
        steps=40_000,
        preset="nanda",
    ),
    "p3-mlp": _base(
        data=DataConfig(tasks=("add",), p=11, train_frac=0.9, exclude_zero=False),
        model=ModelConfig(kind="mlp", width=128),
        optim=OptimConfig(name="sgd", lr=1.0, wd=1e-4, clip=0.0, batch=None),
        steps=20_000,
        preset="p3-mlp",
    ),
}


def preset(name: str, **overrides: Any) -> RunConfig:
    """A named preset with top-level overrides (`steps=...`) or nested ones (`optim={'wd': 0.1}`)."""
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; choose from {', '.join(PRESETS)}")
    cfg = PRESETS[name]
    nested = {k: overrides.pop(k) for k in ("data", "model", "optim", "method")
              if k in overrides and isinstance(overrides[k], dict)}
    for k, v in nested.items():
        cfg = replace(cfg, **{k: replace(getattr(cfg, k), **v)})
    return replace(cfg, **overrides)


def with_overrides(cfg: RunConfig, **kw: Any) -> RunConfig:
    """`replace` that also reaches into the nested optim/data/model configs by field name."""
    nested: dict[str, dict[str, Any]] = {"optim": {}, "data": {}, "model": {}}
    top = {}
    for k, v in kw.items():
        for sec in nested:
            if k in getattr(cfg, sec).__dataclass_fields__:
                nested[sec][k] = v
                break
        else:
            top[k] = v
    cfg = replace(cfg, **top)
    for sec, vals in nested.items():
        if vals:
            cfg = replace(cfg, **{sec: replace(getattr(cfg, sec), **vals)})
    return cfg
