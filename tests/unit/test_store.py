import pytest
import torch

from grokscope.errors import StoreError
from grokscope.store import TRAJECTORY, RunDir, find_runs, load_metrics, read_tensors, write_tensors
from grokscope.training import train

from conftest import tiny_config


def test_tensors_roundtrip_with_metadata(tmp_path):
    write_tensors(tmp_path / "x.safetensors", {"a": torch.arange(3.0)}, {"step": 7})
    t, meta = read_tensors(tmp_path / "x.safetensors")
    assert torch.equal(t["a"], torch.arange(3.0)) and meta == {"step": 7}
    assert [f.name for f in tmp_path.iterdir()] == ["x.safetensors"]  # no temp files left


def test_truncated_checkpoint_is_a_clear_error(tmp_path):
    cfg = tiny_config(steps=100)
    train([cfg], tmp_path)
    ck = RunDir(tmp_path / cfg.name).file("checkpoint.safetensors")
    data = ck.read_bytes()
    ck.write_bytes(data[: len(data) // 2])
    with pytest.raises(StoreError, match="corrupt or truncated"):
        train([cfg], tmp_path)
    assert ck.read_bytes() == data[: len(data) // 2]  # nothing rewritten


def test_different_config_is_refused_unless_forced(tmp_path):
    cfg = tiny_config(steps=100)
    train([cfg], tmp_path)
    other = tiny_config(steps=100, eval_every=25, attn_every=25, checkpoint_every=50)
    with pytest.raises(StoreError, match="different config"):
        train([other], tmp_path)
    (res,) = train([other], tmp_path, force=True)
    assert res.metrics.step.tolist()[:4] == [0, 0, 25, 25]


def test_rerun_of_finished_run_is_a_noop_and_metrics_api(tmp_path):
    cfgs = [tiny_config(steps=100, seed=s) for s in (1, 2)]
    first = train(cfgs, tmp_path)
    again = train(cfgs, tmp_path)
    for a, b in zip(first, again):
        assert a.metrics.equals(b.metrics)
    df = load_metrics([tmp_path])
    assert set(df.run) == {c.name for c in cfgs} and len(df) == 2 * len(first[0].metrics)


def _traj(steps):
    return {"attn_steps": torch.tensor(steps), "snap_steps": torch.tensor(steps[:1]),
            "attn.W": torch.stack([torch.full((2, 2), float(s)) for s in steps]),
            "snap.W": torch.full((1, 2, 2), float(steps[0]))}


def test_segments_and_an_older_single_file_read_as_one_trajectory(tmp_path):
    run = RunDir(tmp_path)
    write_tensors(run.file(TRAJECTORY), _traj([0, 50]))  # a store written before segments
    run.append_trajectory(150, _traj([100, 150]))
    run.append_trajectory(250, _traj([200, 250]))
    t, _ = run.trajectory()
    assert t["attn_steps"].tolist() == [0, 50, 100, 150, 200, 250] and t["snap_steps"].tolist() == [0, 100, 200]
    assert t["attn.W"][:, 0, 0].tolist() == [0, 50, 100, 150, 200, 250]
    run.truncate_trajectory(200)  # resume from a checkpoint at 200: the straddling segment is cut
    t, _ = run.trajectory()
    assert t["attn_steps"].tolist() == [0, 50, 100, 150, 200] and t["attn.W"].shape[0] == 5
    run.truncate_trajectory(30)
    t, _ = run.trajectory()
    assert t["attn_steps"].tolist() == [0] and t["snap_steps"].tolist() == [0]
    run.truncate_trajectory(-1)
    assert not run.has_trajectory()


def test_training_appends_one_segment_per_checkpoint_and_resumes_an_older_store(tmp_path):
    cfg = tiny_config(steps=300, checkpoint_every=100)
    train([cfg], tmp_path / "seg")
    run = RunDir(tmp_path / "seg" / cfg.name)
    assert [p.stem for p in sorted(run.file("trajectory").iterdir())] == ["0000000100", "0000000200", "0000000300"]
    full, _ = run.trajectory()
    assert full["attn_steps"].tolist() == list(range(0, 301, 50))
    # an older store: the whole trajectory in one file, up to a checkpoint at 200; resuming it continues exactly
    short = tiny_config(steps=200, checkpoint_every=100)
    train([short], tmp_path / "old")
    old = RunDir(tmp_path / "old" / cfg.name)
    t, _ = old.trajectory()
    for p in old.file("trajectory").iterdir():
        p.unlink()
    write_tensors(old.file(TRAJECTORY), t)
    train([cfg], tmp_path / "old", resume=True)
    got, _ = old.trajectory()
    assert got.keys() == full.keys() and all(torch.equal(got[k], full[k]) for k in full)


def test_runs_grouped_by_symlinks_are_found_once_and_link_loops_end(tmp_path):
    store, group = tmp_path / "store", tmp_path / "group"
    cfgs = [tiny_config(steps=20, seed=s) for s in (1, 2)]
    train(cfgs, store)
    group.mkdir()
    (group / "one").symlink_to(store / cfgs[0].name, target_is_directory=True)
    (group / "loop").symlink_to(group, target_is_directory=True)  # a cycle must not hang or duplicate
    assert [r.path.name for r in find_runs([group])] == ["one"]
    assert sorted(r.path.name for r in find_runs([store])) == sorted(c.name for c in cfgs)
