"""Named presets (the quick job and the papers' runs), the authors' step budgets, and overrides."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from grokscope.config.schema import DataConfig, ModelConfig, OptimConfig, RunConfig
from grokscope.errors import ConfigError

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
