"""--threads: the rule (idle cores unless the environment says), bad values, what a run records, and that only
the CLI changes torch's thread count."""

from __future__ import annotations

import json

import pytest
import torch

import grokscope as gs
from grokscope.cli import THREADED, build_parser, command_parsers, main
from grokscope.runtime.threads import machine_threads, pick_threads
from grokscope.store import RunDir

from cli_args import tiny_args
from conftest import tiny_config

TINY = tiny_args(steps=20, eval_every=10, d_model=16, defect_every=0, no_geometry=True, json=True)


@pytest.mark.parametrize("cores,load,env,want", [
    (2, 0.0, {}, 2),                                  # idle: every core
    (2, 0.3, {}, 2),                                  # 1.7 rounds to 2
    (2, 0.5, {}, 2),                                  # 1.5 rounds half up
    (2, 0.6, {}, 1),                                  # 1.4
    (2, 2.7, {}, 1),                                  # busier than the cores: still 1
    (2, 40.0, {}, 1),
    (8, 3.2, {}, 5),                                  # 4.8
    (8, 2.5, {}, 6),                                  # 5.5 half up
    (4, -1.0, {}, 4),                                 # never more than the cores
    (1, 0.0, {}, 1),
    (0, 0.0, {}, 1),                                  # a machine reporting no core still gets 1
    (4, None, {}, 4),                                 # no load average (Windows): the cores
    (4, float("nan"), {}, 4),
    (4, 3.0, {"OMP_NUM_THREADS": "3"}, None),         # the user's environment decides
    (4, 0.0, {"MKL_NUM_THREADS": "2"}, None),
    (4, 1.0, {"OMP_NUM_THREADS": " "}, 3),            # blank is unset
    (4, 1.0, {"GOMP_SPINCOUNT": "0"}, 3),             # other variables do not count
])
def test_pick_threads(cores, load, env, want):
    assert pick_threads(cores, load, env) == want


def test_machine_threads_names_its_reason():
    assert machine_threads(3) == (3, "--threads 3")
    assert machine_threads("auto", {"OMP_NUM_THREADS": "1"}) == (None, "OMP_NUM_THREADS=1")
    n, why = machine_threads("auto", {})
    assert n is not None and n >= 1 and "cores, load" in why


@pytest.mark.parametrize("bad", ["0", "-1", "x", "1.5", "5000", ""])
def test_bad_threads_is_one_line_exit_2_nothing_written(tmp_path, capsys, bad):
    out = tmp_path / "store"
    assert main(["run", "--out", str(out), *TINY, "--threads", bad]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("grokscope: error:") and f"threads {bad!r}" in err, err
    assert not out.exists()


def test_every_computing_command_takes_threads():
    commands = dict(command_parsers(build_parser()))
    with_device = {p for p, c in commands.items() if any("--device" in a.option_strings for a in c._actions)}
    with_threads = {p for p, c in commands.items() if any("--threads" in a.option_strings for a in c._actions)}
    assert with_device <= with_threads == set(THREADED)


def test_run_records_its_threads_and_main_restores_torchs(tmp_path, capsys):
    before = torch.get_num_threads()
    assert main(["run", *TINY, "--threads", "2", "--out", str(tmp_path)]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)  # stdout stays pure JSON
    assert captured.err.strip().splitlines() == (["threads: 2 (--threads 2)"] if before != 2 else [])
    assert torch.get_num_threads() == before
    (run,) = (RunDir(p) for p in tmp_path.iterdir())
    env = run.summary()["environment"]
    assert env["threads"] == 2 and env["torch"] == torch.__version__ and env["device"] == "cpu"
    assert "threads" not in json.dumps(run.summary()["config"])  # not part of the run's identity
    # a resume with another thread count is the same run: accepted, and the summary says the latest count
    assert main(["run", *TINY, "--steps", "30", "--threads", "1", "--resume", "--out", str(tmp_path)]) == 0
    assert run.summary()["environment"]["threads"] == 1 and run.summary()["steps_trained"] == 30


def test_auto_leaves_torch_alone_when_the_environment_sets_threads(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    before = torch.get_num_threads()
    assert main(["run", *TINY, "--out", str(tmp_path)]) == 0
    assert capsys.readouterr().err == ""
    (run,) = (RunDir(p) for p in tmp_path.iterdir())
    assert run.summary()["environment"]["threads"] == before


def test_library_never_changes_threads(tmp_path):
    before = torch.get_num_threads()
    (res,) = gs.train([tiny_config(steps=20, eval_every=10, checkpoint_every=10)], out=tmp_path)
    assert torch.get_num_threads() == before
    assert res.summary["environment"]["threads"] == before
