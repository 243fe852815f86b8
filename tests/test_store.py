import pytest
import torch

from grokscope.errors import StoreError
from grokscope.store import RunDir, load_metrics, read_tensors, write_tensors
from grokscope.train import train

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
