"""What a logger wrote, read back from its own files: a CSV logger's metrics.csv, TensorBoard's event files, a W&B
offline run's `.wandb` log, an MLflow file store. Shared by the logger tests."""

from __future__ import annotations

import csv
import json
import math
import struct
import time
from collections.abc import Iterator
from pathlib import Path


def csv_metrics(path: Path) -> dict[str, dict[int, float]]:
    """name → {step: value} from a Lightning CSVLogger's metrics.csv (empty cells skipped)."""
    out: dict[str, dict[int, float]] = {}
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            step = int(row["step"])
            for k, v in row.items():
                if k != "step" and v not in ("", None):
                    out.setdefault(k, {})[step] = float(v)
    return out


def tensorboard_events(logdir: Path) -> tuple[dict[str, dict[int, float]], dict[str, dict[int, str]]]:
    """(scalars name → {step: value}, texts name → {step: text}) from the event files under `logdir`."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(logdir), size_guidance={"tensors": 0, "scalars": 0})
    acc.Reload()
    scalars = {t: {e.step: e.value for e in acc.Scalars(t)} for t in acc.Tags()["scalars"]}
    texts: dict[str, dict[int, str]] = {}
    for t in acc.Tags().get("tensors", []):  # add_text writes a string tensor under "<tag>/text_summary"
        for e in acc.Tensors(t):
            if e.tensor_proto.string_val:
                texts.setdefault(t.removesuffix("/text_summary"), {})[e.step] = e.tensor_proto.string_val[0].decode()
    return scalars, texts


def _wandb_records(path: Path) -> Iterator[bytes]:
    """The records of a W&B run log (`run-<id>.wandb`): a LevelDB-style log of 32 KiB blocks after a 7-byte header
    (":W&B", magic, version); each piece has a 7-byte header (CRC, length, type: 1 full, 2 first, 3 middle, 4 last)."""
    data = path.read_bytes()
    assert data[:4] == b":W&B", path
    pos, block, buf = 7, 32768, b""
    while pos + 7 <= len(data):
        left = block - pos % block
        if left < 7:
            pos += left
            continue
        _crc, n, kind = struct.unpack("<IHB", data[pos:pos + 7])
        pos += 7
        buf += data[pos:pos + n]
        pos += n
        if kind in (1, 4):
            yield buf
            buf = b""


def wandb_run(folder: str | Path) -> tuple[list[dict], dict]:
    """(history rows, the final summary) of the offline run in `folder` (its `offline-run-*` folder: the parent of
    `run.dir`)."""
    from wandb.proto import wandb_internal_pb2 as pb

    (log,) = list(Path(folder).glob("run-*.wandb"))
    for _ in range(300):  # W&B's service may still be writing after `finish()` returns: read once it wrote the exit
        records = []
        for raw in _wandb_records(log):
            r = pb.Record()
            r.ParseFromString(raw)
            records.append(r)
        if any(r.WhichOneof("record_type") == "exit" for r in records):
            break
        time.sleep(0.1)
    history, summary = [], {}
    for r in records:
        kind = r.WhichOneof("record_type")
        if kind == "history":
            history.append({i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in r.history.item})
        elif kind == "summary":
            summary.update({i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in r.summary.update})
    return history, summary


def wandb_series(history: list[dict], name: str, step_key: str = "_step") -> dict[int, float]:
    """{step: value} of one history key (the step from `step_key`: W&B's own, or the Trainer's global step)."""
    return {int(h[step_key]): h[name] for h in history if name in h and h.get(step_key) is not None}


def mlflow_run(uri: str) -> tuple[dict[str, dict[int, float]], dict[str, str]]:
    """(metrics name → {step: value}, tags) of the one run in the MLflow store at `uri`."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    (run,) = [r for e in client.search_experiments() for r in client.search_runs([e.experiment_id])]
    metrics = {k: {m.step: m.value for m in client.get_metric_history(run.info.run_id, k)} for k in run.data.metrics}
    return metrics, dict(run.data.tags)


def same(a: dict[int, float], b: dict[int, float], rel: float = 0.0) -> bool:
    """Two {step: value} series agree: the same steps, values equal (within `rel`, for float32 stores)."""
    return a.keys() == b.keys() and all(math.isclose(a[s], b[s], rel_tol=rel, abs_tol=0.0) or a[s] == b[s]
                                        for s in a)
