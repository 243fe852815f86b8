"""Configs: a RunConfig survives JSON unchanged, and the one path from a preset, overrides and a grid to
validated RunConfigs (`build_configs`) follows its rules for `grokscope run` and sweep specs alike."""

from __future__ import annotations

import json

import pytest

from grokscope.cli import build_parser
from grokscope.commands.run import configs_from_args
from grokscope.config import (
    PRESETS,
    SCRIPT_BUDGETS,
    Grid,
    RunConfig,
    base_config,
    build_configs,
    method_config,
    preset,
)
from grokscope.errors import ConfigError
from grokscope.sweep import expand, spec_from_dict


@pytest.mark.parametrize("name", list(PRESETS))
def test_every_preset_roundtrips_through_json(name):
    cfg = preset(name, seed=7, tag="x")
    again = RunConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert again == cfg and again.digest() == cfg.digest() and again.data.tasks == cfg.data.tasks


def test_the_grid_runs_in_the_order_of_its_axes():
    seeds_outer = build_configs("quick", {}, Grid.of(seeds=[1, 2], wd=[0.1, 1]))
    seeds_inner = build_configs("quick", {}, Grid.of(wd=[0.1, 1], seeds=[1, 2]))
    assert [(c.seed, c.optim.wd) for c in seeds_outer] == [(1, 0.1), (1, 1.0), (2, 0.1), (2, 1.0)]
    assert [(c.seed, c.optim.wd) for c in seeds_inner] == [(1, 0.1), (2, 0.1), (1, 1.0), (2, 1.0)]


def test_overrides_by_field_name_or_by_section_are_the_same_config():
    flat = base_config("quick", {"wd": 0.5, "p": 13, "batch": "full", "tasks": "add+mul", "steps": 800})
    nested = base_config("quick", {"optim": {"wd": "0.5", "batch": "full"}, "data": {"p": 13, "tasks": ["add", "mul"]},
                                   "steps": 800})
    assert flat == nested
    assert flat.optim.batch is None and flat.data.tasks == ("add", "mul") and flat.optim.wd == 0.5


def test_without_a_budget_a_paper_preset_gets_its_scripts_per_weight_decay():
    zero, below_one, one = SCRIPT_BUDGETS["p2-single"]
    cfgs = build_configs("p2-single", {}, Grid.of(wd=[0, 0.5, 1]))
    assert [c.steps for c in cfgs] == [zero, below_one, one]
    given = build_configs("p2-single", {"steps": 700}, Grid.of(wd=[0, 1]))
    assert [c.steps for c in given] == [700, 700]
    by_lr = build_configs("p2-single", {}, Grid.of(lr=[1e-3, 3e-3], steps=((1e-3, 900), (3e-3, 400)), steps_by="lr"))
    assert [c.steps for c in by_lr] == [900, 400]
    with pytest.raises(ConfigError, match="no budget for wd=0.5"):
        build_configs("quick", {}, Grid.of(wd=[0.5], steps=((1.0, 100),)))


def test_a_short_budget_brings_checkpoint_every_down_unless_given():
    short = base_config("quick", {"steps": 130, "eval_every": 50})
    assert short.checkpoint_every == 150  # 130 rounded up to eval_every, below the preset's 500
    assert base_config("quick", {"steps": 130, "eval_every": 50, "checkpoint_every": 400}).checkpoint_every == 400
    assert base_config("quick", {"steps": 5000}).checkpoint_every == preset("quick").checkpoint_every


def test_repeats_and_the_same_run_twice_are_refused_and_a_fixed_wd_method_is_built_once():
    with pytest.raises(ConfigError, match="seed 1 appears twice"):
        build_configs("quick", {}, Grid.of(seeds=[1, 2, 1]))
    with pytest.raises(ConfigError, match="two runs named"):
        build_configs("quick", {}, Grid.of(method=[method_config("grokfast-ema")] * 2))
    ortho = (method_config("orthograd"), 0.0)
    cfgs = build_configs("quick", {}, Grid.of(wd=[0.5, 1], method=[(method_config("baseline"), None), ortho]))
    assert [(c.method.label, c.optim.wd) for c in cfgs] == [("baseline", 0.5), ("orthograd", 0.0), ("baseline", 1.0)]


def test_bad_overrides_name_the_field_and_where_it_came_from():
    with pytest.raises(ConfigError, match="base: unknown field 'stepz'"):
        base_config("quick", {"stepz": 3}, where="base")
    with pytest.raises(ConfigError, match=r"base\.optim\.lr: 'fast' is not a number"):
        base_config("quick", {"optim": {"lr": "fast"}}, where="base")
    with pytest.raises(ConfigError, match=r"^unknown preset 'huge'"):
        base_config("huge")
    with pytest.raises(ConfigError, match=r"^run mul-p12-.*: p=12 is not prime"):
        build_configs("quick", {"tasks": "mul"}, Grid.of(p=[13, 12]), where="base")


def test_the_command_line_and_a_sweep_spec_build_the_same_runs():
    args = build_parser().parse_args(["run", "--preset", "p1-dual", "--p", "13", "--d-model", "32", "--heads", "2",
                                      "--wd", "0,0.5", "--seeds", "1,2", "--method", "baseline,grokfast-ema"])
    spec = spec_from_dict({"base": {"preset": "p1-dual", "p": 13, "model": {"d_model": 32, "n_heads": 2}},
                           "grid": {"wd": [0, 0.5], "seeds": [1, 2], "method": ["baseline", "grokfast-ema"]}})
    cli, sweep = configs_from_args(args), expand(spec)
    assert len(cli) == 8 and sorted(c.digest() for c in cli) == sorted(c.digest() for c in sweep)
    assert {c.steps for c in cli} == {SCRIPT_BUDGETS["p1-dual"][0], SCRIPT_BUDGETS["p1-dual"][1]}
