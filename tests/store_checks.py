"""A monitored store read back by every CLI verb a user would try: shared by the integration tests."""

from __future__ import annotations

from pathlib import Path

from grokscope.cli import main as cli
from grokscope.store import RunDir


def assert_cli_reads(store: Path, run: RunDir, capsys) -> None:
    """`runs list/show`, `analyze`, `runs warnings` and `report` all succeed on the store holding `run`."""
    assert cli(["runs", "list", str(store), "--json"]) == 0
    assert cli(["runs", "show", str(run.path)]) == 0
    assert cli(["analyze", str(run.path), "--json"]) == 0
    assert '"source": "inline (Monitor)"' in capsys.readouterr().out
    assert cli(["runs", "warnings", str(run.path)]) == 0
    assert cli(["report", str(store)]) == 0
    html = (store / "report" / "index.html").read_text()
    assert "defect.png" in html and "Per-layer commutator" in html


def tensorboard_scalars(logdir: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar TensorBoard shows from the event files in `logdir` (events a restart purged left out)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(logdir))
    acc.Reload()
    return {t: [(e.step, e.value) for e in acc.Scalars(t)] for t in acc.Tags()["scalars"]}


def assert_same_record(ref: Path, got: Path, tensorboard: bool = False, timings: tuple[str, ...] = ()) -> None:
    """Two monitored runs' stores hold the same record: the same files, tables equal (the timings of λ_min of
    groups aside, and logged scalars whose names hold one of `timings`), trajectories and their thinning equal bit
    for bit, the same summary apart from times, and the same TensorBoard scalars."""
    import json

    import pandas as pd
    import torch

    from grokscope.store import read_tensors

    def names(p: Path) -> list[str]:
        return sorted(f.name for f in p.iterdir() if f.name != "tensorboard")

    assert names(ref) == names(got)
    assert not [f for f in got.rglob("*") if f.name.endswith(".tmp")]
    for f in ref.glob("*.parquet"):
        a, b = pd.read_parquet(f), pd.read_parquet(got / f.name)
        if f.name == "scalars.parquet":
            a, b = ([df[~df["name"].str.contains("|".join(timings))] for df in (a, b)] if timings else (a, b))
        pd.testing.assert_frame_equal(a.drop(columns="seconds", errors="ignore"),
                                      b.drop(columns="seconds", errors="ignore"), obj=f.name)
    (ta, ma), (tb, mb) = read_tensors(ref / "trajectory.safetensors"), read_tensors(got / "trajectory.safetensors")
    assert ma == mb and ta.keys() == tb.keys() and all(torch.equal(ta[k], tb[k]) for k in ta)
    for name in ("config.json", "monitor.json"):
        assert json.loads((ref / name).read_text()) == json.loads((got / name).read_text()), name
    sa, sb = RunDir(ref).summary(), RunDir(got).summary()
    for k in ("config", "grok_step", "grok_step_90", "final_acc", "steps_trained", "finished", "diverged"):
        assert sa[k] == sb[k], k
    assert sa["monitor"]["warnings"] == sb["monitor"]["warnings"]
    a, b = (json.loads((p / "monitor_state.json").read_text()) for p in (ref, got))
    assert (a["first_step"], a["step"]) == (b["first_step"], b["step"])
    if tensorboard:
        assert tensorboard_scalars(ref / "tensorboard") == tensorboard_scalars(got / "tensorboard")
