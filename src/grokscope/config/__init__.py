"""Typed configs for data, model, optimiser and runs (`schema`), their validation (`validation`), the named
presets (`presets`), and the one path from a preset, overrides and a grid to validated RunConfigs (`grid`, reading
loose values through `values`); every name is importable from `grokscope.config`."""

from __future__ import annotations

from grokscope.config.grid import Grid, base_config, build_configs
from grokscope.config.presets import (
    P3_PAIRS,
    P3_TEST,
    P3_TRAIN,
    PRESETS,
    SCRIPT_BUDGETS,
    preset,
    script_budget,
    with_overrides,
    with_script_budget,
)
from grokscope.config.schema import (
    EXTERNAL,
    MAX_BATCH,
    MAX_GRID_RUNS,
    MAX_P,
    MAX_STEPS,
    MAX_WIDTH,
    METHOD_ALIASES,
    METHODS,
    PER_RUN_FIELDS,
    PER_RUN_OPTIM,
    DataConfig,
    MethodConfig,
    ModelConfig,
    OptimConfig,
    RunConfig,
    batch_key,
    method_config,
    validate_method,
)
from grokscope.config.validation import check_axis, check_grid_size, n_pairs, validate
from grokscope.errors import ConfigError

__all__ = ["ConfigError", "MAX_P", "MAX_STEPS", "MAX_BATCH", "MAX_WIDTH", "MAX_GRID_RUNS", "EXTERNAL", "METHODS",
           "METHOD_ALIASES", "DataConfig", "ModelConfig", "OptimConfig", "MethodConfig", "method_config",
           "validate_method", "RunConfig", "PER_RUN_FIELDS", "PER_RUN_OPTIM", "batch_key", "validate", "n_pairs",
           "check_axis", "check_grid_size", "SCRIPT_BUDGETS", "script_budget", "with_script_budget", "P3_PAIRS",
           "P3_TEST", "P3_TRAIN", "PRESETS", "preset", "with_overrides", "Grid", "base_config", "build_configs"]
