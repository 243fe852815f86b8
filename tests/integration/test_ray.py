"""The Ray executor on a real local Ray instance: one task per batch into a shared store, and a task whose
worker dies is retried and resumes from its checkpoint."""

from __future__ import annotations

import copy
import json
import os
import sys
from pathlib import Path

import pytest

ray = pytest.importorskip("ray", reason="the Ray executor tests need the ray extra: pip install -e '.[dev,ray]'")

from grokscope.store import RunDir  # noqa: E402
from grokscope.sweep import expand, run_sweep, spec_from_dict, train_batch  # noqa: E402

BASE = {"preset": "quick", "steps": 100, "eval_every": 50, "attn_every": 50, "checkpoint_every": 50,
        "defect_every": 0, "data": {"p": 11}, "model": {"d_model": 32, "n_heads": 2, "d_ff": 64},
        "optim": {"batch": 64}}


@pytest.fixture(scope="module")
def ray_local():
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    ray.init(num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1", log_to_driver=False,
             configure_logging=False)
    # Tasks defined in this module run in Ray workers, which cannot import it: ship it by value.
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    yield ray
    ray.shutdown()


def crash_once(cfgs, out, device, resume=False, analyses=(), report=None):
    """A batch function whose first attempt kills its worker after the step-50 checkpoint; the retry
    notes the checkpoint step it finds, then trains normally."""
    from grokscope.sweep.batch import train_with_probes

    marker = Path(out) / f"crashed-{cfgs[0].name}.json"
    if not marker.exists():
        def die(e):
            if e.step == 100:
                marker.write_text(json.dumps({"pid": os.getpid()}))
                os._exit(1)

        train_with_probes(cfgs, out, device, resume=resume, on_eval=die)
    found = {c.name: RunDir(Path(out) / c.name).checkpoint()[1]["step"] for c in cfgs}
    (Path(out) / f"retry-{cfgs[0].name}.json").write_text(json.dumps({"pid": os.getpid(), "found": found}))
    return train_batch(cfgs, out, device, resume, analyses, report)


@pytest.mark.slow
def test_ray_sweep_runs_batches_as_tasks_and_retries_a_dead_worker(ray_local, tmp_path):
    raw = {"name": "r", "base": copy.deepcopy(BASE), "grid": {"p": [11, 13], "seeds": [1, 2]},
           "out": str(tmp_path / "store"), "device": "cpu", "max_retries": 2}
    spec = spec_from_dict(raw)
    names = [c.name for c in expand(spec)]
    df = run_sweep(spec, executor="ray", progress=True, batch_fn=crash_once)
    assert sorted(df.name) == sorted(names) and set(df.status) == {"trained"}
    assert list(df.steps_trained) == [100] * 4
    assert ray.is_initialized()  # the sweep leaves a Ray instance it did not start running

    for first in ("add-p11-trunk-wd1-lr0.005-s1", "add-p13-trunk-wd1-lr0.005-s1"):  # one per batch
        crashed = json.loads((tmp_path / "store" / f"crashed-{first}.json").read_text())
        retry = json.loads((tmp_path / "store" / f"retry-{first}.json").read_text())
        assert retry["pid"] != crashed["pid"] and retry["pid"] != os.getpid()  # a new worker retried it
        assert set(retry["found"].values()) == {50}  # it found the dead attempt's step-50 checkpoints
    for path in df.path:
        run = RunDir(path)
        assert run.checkpoint()[1]["step"] == 100
        m = run.metrics()
        assert not m.duplicated(["step", "task", "split"]).any() and sorted(m.step.unique()) == [0, 50, 100]

    again = run_sweep(spec, executor="ray", progress=False)  # everything finished: no task trains
    assert set(again.status) == {"skipped"}
    cols = ["name", "steps_trained", "train_acc.add", "test_acc.add"]
    assert again[cols].equals(df[cols])
