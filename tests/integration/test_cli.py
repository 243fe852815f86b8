"""CLI: --json prints only JSON; a store holding another config or a damaged file is refused, unchanged
(every other bad input: test_bad_input.py)."""

import json

from grokscope.cli import main

from cli_args import TINY


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
