"""CLI: bad input is one line + exit 2 with nothing written; --json prints only JSON."""

import json

import pytest

from grokscope.cli import main

TINY = ["--p", "11", "--steps", "100", "--eval-every", "50", "--d-model", "32", "--heads", "2",
        "--defect-every", "0", "--no-geometry"]


@pytest.mark.parametrize("argv,needle", [
    (["--tasks", "add,foo"], "'foo'"),
    (["--p", "2"], "p=2"),
    (["--p", "12", "--tasks", "add,mul"], "inverses"),
    (["--train-frac", "1.5"], "1.5"),
    (["--train-frac", "0"], "train fraction 0"),
    (["--lr", "-0.1"], "lr=-0.1"),
    (["--wd", "0.1,-1"], "wd=-1"),
    (["--steps", "0"], "steps=0"),
    (["--batch", "0"], "batch=0"),
    (["--batch", "big"], "'big'"),
    (["--seeds", "1,x"], "'x'"),
    (["--preset", "nope"], "'nope'"),
])
def test_bad_input_is_one_line_exit_2_nothing_written(tmp_path, capsys, argv, needle):
    out = tmp_path / "store"
    assert main(["run", "--out", str(out), *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("grokscope: error:") and needle in err, err
    assert not out.exists()


def test_json_output_and_refusal_of_other_config(tmp_path, capsys):
    out = str(tmp_path / "store")
    assert main(["run", *TINY, "--seeds", "1,2", "--wd", "0.5", "--json", "--out", out]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == 2
    for row in rows:
        assert set(row) >= {"config", "grok_step", "grok_step_90", "final_acc"}
        assert set(row["final_acc"]["add"]) == {"train", "test"}
        assert row["config"]["optim"]["wd"] == 0.5
    # same names, different config: refused, nothing changed
    before = {p: p.stat().st_mtime_ns for p in (tmp_path / "store").rglob("*")}
    assert main(["run", *TINY, "--seeds", "1,2", "--wd", "0.5", "--steps", "150", "--json", "--out", out]) == 2
    assert "different config" in capsys.readouterr().err
    assert before == {p: p.stat().st_mtime_ns for p in (tmp_path / "store").rglob("*")}
    assert main(["runs", "list", out, "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)) == 2


def test_corrupt_trajectory_is_refused(tmp_path, capsys):
    out = tmp_path / "store"
    assert main(["run", *TINY, "--json", "--out", str(out)]) == 0
    capsys.readouterr()
    traj = sorted(out.glob("*/trajectory/*.safetensors"))[0]
    traj.write_bytes(b"garbage")
    assert main(["run", *TINY, "--json", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert traj.name in err and "corrupt" in err


def test_runs_list_of_a_folder_without_runs_says_so(tmp_path, capsys):
    """An empty store is a valid answer (exit 0), said in words rather than as an empty table; --json: []."""
    assert main(["runs", "list", str(tmp_path)]) == 0
    assert capsys.readouterr().out.strip() == f"no grokscope runs under {tmp_path}"
    assert main(["runs", "list", str(tmp_path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == []
