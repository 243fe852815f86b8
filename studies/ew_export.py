"""The corpus's measured record, kept in the repository: per finished run, what scoring reads (its outcome and its
detector inputs at every measurement), gzipped JSON under `studies/results/ew-corpus/<part>/<family>/<run>.json.gz`.

Training the corpus costs CPU hours and its store lives outside the work tree; the export makes every finished run
count once: scoring reads the store and the export together, and training skips a run the export already holds.
"""

from __future__ import annotations

import gzip
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
from ew_corpus import Group

EXPORT = Path(__file__).resolve().parent / "results" / "ew-corpus"
FIELDS = ("part", "family", "name", "wd", "grok", "budget", "t_mem")


def _plain(v: Any) -> Any:
    """JSON-ready: arrays as lists, non-finite floats as null."""
    if isinstance(v, np.ndarray | list | tuple):
        return [_plain(x) for x in v]
    if isinstance(v, np.generic):
        v = v.item()
    return None if isinstance(v, float) and not math.isfinite(v) else v


def write_export(record: dict[str, Any], root: Path | None = None) -> Path:
    """One run's record (`FIELDS` and `series`: every measurement) as `root/part/family/name.json.gz` (`root`:
    EXPORT), written whole then renamed."""
    path = (root or EXPORT) / record["part"] / record["family"] / f"{record['name']}.json.gz"
    path.parent.mkdir(parents=True, exist_ok=True)
    body = {**{k: record[k] for k in FIELDS}, "series": {k: _plain(v) for k, v in record["series"].items()}}
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(gzip.compress(json.dumps(body, separators=(",", ":")).encode(), mtime=0))
    tmp.replace(path)
    return path


def read_exports(root: Path | None = None, group: Group | None = None) -> list[dict[str, Any]]:
    """Every exported run under `root` (EXPORT; of `group` only, where given), series as float arrays (`clock_kind`
    a list)."""
    root = root or EXPORT
    base = root / group.part / group.family if group else root
    out = []
    for path in sorted(base.rglob("*.json.gz")) if base.exists() else []:
        rec = json.loads(gzip.decompress(path.read_bytes()))
        rec["series"] = {k: (v if k == "clock_kind" else np.array([math.nan if x is None else x for x in v], float))
                         for k, v in rec["series"].items()}
        out.append(rec)
    return out


def at_cadence(series: dict[str, Any], every: int | None) -> dict[str, Any]:
    """The measurements at multiples of `every` steps (what a monitor with `defect_every=every` would have fed)."""
    if not every:
        return series
    keep = np.flatnonzero(np.asarray(series["step"]) % every == 0)
    return {k: ([v[i] for i in keep] if isinstance(v, list) else np.asarray(v)[keep]) for k, v in series.items()}


def exported_groks(group: Group, root: Path | None = None) -> dict[str, int | None]:
    """The group's exported runs: name → grok step (None: never within its budget)."""
    return {r["name"]: r["grok"] for r in read_exports(root, group)}
