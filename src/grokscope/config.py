"""Typed configs for data, model, optimiser and runs; presets; every validation lives here."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field, fields, replace
from numbers import Integral, Real
from typing import Any

from grokscope.errors import ConfigError
from grokscope.tasks import OPERATIONS, is_prime

__all__ = ["ConfigError", "DataConfig", "MethodConfig", "ModelConfig", "OptimConfig", "RunConfig", "PRESETS", "preset",
           "validate", "check_axis", "check_grid_size"]

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

    tasks: tuple[str, ...] = ("add",)
    p: int = 97
    train_frac: float = 0.5
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
    attn_every: int = 100  # attention matrices into the trajectory (trajectory/<step>.safetensors)
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


def validate(cfg: RunConfig) -> RunConfig:
    """Raise ConfigError (one line, naming the value) on anything that cannot train, or that would allocate
    absurd amounts of memory or time before training (a huge p, batch or step budget)."""
    data, model, optim = cfg.data, cfg.model, cfg.optim
    if model.kind == EXTERNAL:
        raise ConfigError(f"run {cfg.name!r} was recorded by grokscope.Monitor from the user's own model "
                          "(model kind 'external'): grokscope cannot rebuild, train or re-measure it")
    _check_types(cfg)
    if not data.tasks:
        raise ConfigError("tasks: at least one task is required")
    for t in data.tasks:
        if t not in OPERATIONS:
            raise ConfigError(f"unknown task {t!r}; choose from {', '.join(OPERATIONS)}")
    if len(set(data.tasks)) != len(data.tasks):
        raise ConfigError(f"tasks {','.join(data.tasks)!r} repeat a task")
    if data.p < 3:
        raise ConfigError(f"p={data.p!r} is too small: p must be an integer >= 3")
    if data.p > MAX_P:
        raise ConfigError(f"p={data.p} is too large: its table holds {data.p ** 2:.3g} pairs per task; "
                          f"p must be <= {MAX_P}")
    needs = [t for t in data.tasks if OPERATIONS[t].needs_prime]
    if needs and not is_prime(data.p):
        raise ConfigError(
            f"p={data.p} is not prime, but task {needs[0]!r} needs a prime modulus "
            "(division needs inverses; mul/sq-type ops form a field only mod a prime)"
        )
    for t in data.nonzero_tasks or ():
        if t not in OPERATIONS:
            raise ConfigError(f"unknown task {t!r} in nonzero_tasks; choose from {', '.join(OPERATIONS)}")
    if data.split not in ("randperm", "authors"):
        raise ConfigError(f"unknown split {data.split!r}; choose randperm or authors")
    if cfg.init not in ("independent", "authors"):
        raise ConfigError(f"unknown init {cfg.init!r}; choose independent or authors")
    if cfg.init == "authors" and model.kind != "trunk":
        raise ConfigError(f"init 'authors' exists for model kind 'trunk' only (got {model.kind!r})")
    if cfg.sampler not in ("counter", "authors"):
        raise ConfigError(f"unknown sampler {cfg.sampler!r}; choose counter or authors")
    if cfg.sampler == "authors" and not 0 <= cfg.seed < 2**32:
        raise ConfigError(f"seed={cfg.seed} must lie in [0, 2**32) for the authors' numpy sampler")
    if cfg.defect_stream not in ("counter", "training"):
        raise ConfigError(f"unknown defect_stream {cfg.defect_stream!r}; choose counter or training")
    if not 0.0 < data.train_frac < 1.0:
        raise ConfigError(f"train fraction {data.train_frac!r} must lie strictly between 0 and 1")
    n = n_pairs(cfg)
    n_train = round(data.train_frac * n)
    if not 1 <= n_train <= n - 1:
        raise ConfigError(f"train fraction {data.train_frac!r} of p={data.p}'s {n} pairs leaves "
                          f"{n_train} for training and {n - n_train} for test; both need at least one")
    if model.kind not in ("trunk", "transformer1", "mlp"):
        raise ConfigError(f"unknown model kind {model.kind!r}; choose trunk, transformer1 or mlp")
    if model.kind != "mlp":
        if model.d_model <= 0 or model.n_heads <= 0 or model.d_model % model.n_heads:
            raise ConfigError(f"d_model={model.d_model} must be a positive multiple of n_heads={model.n_heads}")
        if model.n_layers <= 0 or model.d_ff <= 0:
            raise ConfigError(f"n_layers={model.n_layers} and d_ff={model.d_ff} must be positive")
        for name in ("d_model", "d_ff"):
            if getattr(model, name) > MAX_WIDTH:
                raise ConfigError(f"{name}={getattr(model, name)} is too large; at most {MAX_WIDTH}")
        if model.n_layers > 64:
            raise ConfigError(f"n_layers={model.n_layers} is too large; at most 64")
    elif not 0 < model.width <= MAX_WIDTH:
        raise ConfigError(f"mlp width={model.width} must be positive and at most {MAX_WIDTH}")
    if optim.name not in ("adamw", "sgd"):
        raise ConfigError(f"unknown optimiser {optim.name!r}; choose adamw or sgd")
    for name in ("lr", "wd", "clip", "eps", "beta1", "beta2", "momentum"):
        v = getattr(optim, name)
        if not math.isfinite(v):
            raise ConfigError(f"{'weight decay ' if name == 'wd' else ''}{name}={v!r} must be a finite number")
    if not optim.lr >= 0:
        raise ConfigError(f"lr={optim.lr!r} must be >= 0")
    if not optim.wd >= 0:
        raise ConfigError(f"weight decay wd={optim.wd!r} must be >= 0")
    if not optim.clip >= 0:
        raise ConfigError(f"clip={optim.clip!r} must be >= 0 (0 disables clipping)")
    if not optim.eps > 0:
        raise ConfigError(f"eps={optim.eps!r} must be > 0")
    for name in ("beta1", "beta2", "momentum"):
        if not 0 <= getattr(optim, name) < 1:
            raise ConfigError(f"{name}={getattr(optim, name)!r} must lie in [0, 1)")
    if optim.batch is not None and optim.batch <= 0:
        raise ConfigError(f"batch={optim.batch} must be > 0 (or 'full' for full-batch training)")
    if optim.batch is not None and optim.batch > MAX_BATCH:
        raise ConfigError(f"batch={optim.batch} is too large; at most {MAX_BATCH} (or 'full')")
    validate_method(cfg.method)
    if cfg.method.loss == "stablemax" and model.kind == "mlp":
        raise ConfigError("method stablemax replaces softmax cross-entropy; the mlp model trains on squared error")
    if cfg.steps <= 0:
        raise ConfigError(f"steps={cfg.steps} must be > 0")
    if cfg.steps > MAX_STEPS:
        raise ConfigError(f"steps={cfg.steps} is too large; at most {MAX_STEPS}")
    if not -(2**63) <= cfg.seed < 2**63 or not -(2**63) <= cfg.split_seed < 2**63:
        raise ConfigError(f"seed={cfg.seed} does not fit in 64 bits")
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
    if cfg.snapshot_spacing < 0 or cfg.snapshot_spacing % cfg.eval_every:
        raise ConfigError(f"snapshot_spacing={cfg.snapshot_spacing} must be 0 or a multiple of "
                          f"eval_every={cfg.eval_every}")
    if cfg.defect_every and cfg.defect_draws < 1:
        raise ConfigError(f"defect_draws={cfg.defect_draws} must be >= 1")
    for name in ("grok_acc", "grok_acc_90"):
        if not 0 < getattr(cfg, name) <= 1:
            raise ConfigError(f"{name}={getattr(cfg, name)!r} must lie in (0, 1]")
    return cfg


def _check_types(cfg: RunConfig) -> None:
    for prefix, obj in (("data.", cfg.data), ("model.", cfg.model), ("optim.", cfg.optim), ("", cfg)):
        _check_fields(type(obj), {f.name: getattr(obj, f.name) for f in fields(obj)
                                  if f.name not in ("data", "model", "optim")}, prefix)


def n_pairs(cfg: RunConfig) -> int:
    """How many (a, b) pairs the data config's table holds (before the train/test split)."""
    d = cfg.data
    n = d.p - 1 if d.exclude_zero else d.p
    total = n * (n + 1) // 2 if d.unordered else n * n
    if "div" in d.tasks and not d.exclude_zero:
        total -= n if not d.unordered else 1  # pairs with b = 0 are dropped
    return total


def check_axis(name: str, values: Sequence[Any]) -> None:
    """Refuse a grid axis that repeats a value (two runs would share one name and directory)."""
    seen: set[Any] = set()
    for v in values:
        if v in seen:
            raise ConfigError(f"{name} {v!r} appears twice; give each value once")
        seen.add(v)


def check_grid_size(axes: dict[str, int]) -> None:
    """Refuse, before expanding it, a grid of more than MAX_GRID_RUNS runs."""
    total = math.prod(max(1, n) for n in axes.values())
    if total > MAX_GRID_RUNS:
        sizes = " × ".join(f"{n} {k}" for k, n in axes.items() if n > 1)
        raise ConfigError(f"the grid expands to {total} runs ({sizes}); at most {MAX_GRID_RUNS} per command")


# The authors' step budgets (STEPS) per paper preset, as (wd 0, 0 < wd < 1, wd ≥ 1); the runs stop once every
# task has grokked, so a budget only matters for a run that does not. P1 dual: train_multitask.py 300k at
# wd 1, hessian_wd0{1,2,3,5}*.py 200k, hessian_analysis.py 50k at wd 0; P1 tri: train_tritask.py and
# train_wd02_03.py 300k, 50k at wd 0; P2: grok_sweep.py 200k, 50k at wd 0.
SCRIPT_BUDGETS: dict[str, tuple[int, int, int]] = {
    "p1-dual": (50_000, 200_000, 300_000),
    "p1-tri": (50_000, 300_000, 300_000),
    "p2-single": (50_000, 200_000, 200_000),
}


def script_budget(name: str, wd: float) -> int | None:
    """The step budget the authors' script gives a run of paper preset `name` at weight decay `wd` (None: the
    preset has no script, and keeps its own)."""
    if name not in SCRIPT_BUDGETS:
        return None
    zero, below_one, one = SCRIPT_BUDGETS[name]
    return zero if wd == 0 else (below_one if wd < 1 else one)


def with_script_budget(cfg: RunConfig) -> RunConfig:
    """`cfg` with the step budget its preset's script gives its weight decay (unchanged without a script)."""
    steps = script_budget(cfg.preset, cfg.optim.wd)
    return cfg if steps is None or steps == cfg.steps else replace(cfg, steps=steps)


P3_PAIRS, P3_TEST = 66, 7  # P3 App. D at p 11: n(n+1)/2 unordered pairs, 7 for test
P3_TRAIN = P3_PAIRS - P3_TEST


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
    # The papers' runs, exactly (docs/fidelity.md): the scripts' split, θ₀ and numpy minibatch stream.
    # P2 (grok_sweep.py): 4 heads, zero excluded for mul only, no other task; snapshots every 100 steps
    # (MODEL_LOG_EVERY) through `attn_every`; inline defects with K = 5 draws (P2 §3) taken from the training
    # stream, as grok_generalization_dynamics.py does (it matters only when defect_every > 0).
    "p2-single": _base(
        data=DataConfig(tasks=("add",), exclude_zero=False, nonzero_tasks=("mul",), split="authors"),
        model=ModelConfig(kind="trunk", n_heads=4),
        steps=SCRIPT_BUDGETS["p2-single"][2],  # GS keeps no state dicts: `n_snapshots` spread over the budget
        defect_draws=5,
        init="authors",
        sampler="authors",
        defect_stream="training",
        preset="p2-single",
    ),
    # P1 (train_multitask.py, train_tritask.py): zero excluded for every task; state_dict checkpoints every
    # 200 steps (CHECKPOINT_EVERY). Budgets: SCRIPT_BUDGETS (by wd). Inline defects (`defect_draws`, used only
    # with defect_every > 0): tri K = 5, as tri_task/generalization_dynamics.py (COMM_K), the script of P1's
    # inline tri-task defects; dual K = 9, P1 §2's K (its dual defects are post-hoc, K = 9; docs/fidelity.md).
    "p1-dual": _base(data=DataConfig(tasks=("add", "mul"), split="authors"), steps=SCRIPT_BUDGETS["p1-dual"][2],
                     defect_draws=9, init="authors", sampler="authors", snapshot_spacing=200, preset="p1-dual"),
    "p1-tri": _base(data=DataConfig(tasks=("add", "mul", "sq"), split="authors"),
                    steps=SCRIPT_BUDGETS["p1-tri"][2], defect_draws=5, init="authors", sampler="authors",
                    snapshot_spacing=200, preset="p1-tri"),
    "nanda": _base(
        data=DataConfig(tasks=("add",), p=113, train_frac=0.3, exclude_zero=False),
        model=ModelConfig(kind="transformer1", d_model=128, n_heads=4, d_ff=512, n_layers=1),
        optim=OptimConfig(lr=1e-3, wd=1.0, beta2=0.98, clip=0.0, batch=None),
        steps=40_000,
        preset="nanda",
    ),
    # P3 App. D: e_a + e_b inputs over the unordered pairs 0 ≤ a ≤ b < 11 (§7's dataset, n(n+1)/2 = 66; App. D
    # prints "77", which no pair range gives, see docs/fidelity.md), 7 of them held out: 59/66 rounds to 59.
    "p3-mlp": _base(
        data=DataConfig(tasks=("add",), p=11, train_frac=P3_TRAIN / P3_PAIRS, exclude_zero=False, unordered=True),
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
