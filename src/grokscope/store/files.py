"""Atomic, pickle-free file I/O of the store: JSON, safetensors and parquet.

Every write goes to a temporary file in the same directory and is renamed into place, so a killed process leaves
either the old file or the new one, never half of one. Nothing loads through pickle.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from grokscope.errors import StoreError


def atomic_write(path: Path, write) -> None:
    """Call `write(tmp_path)` on a temporary file beside `path`, then rename it into place (readable by all)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_json(path: Path, obj: Any) -> None:
    def w(tmp: str) -> None:
        with open(tmp, "w") as f:
            json.dump(obj, f, indent=2, sort_keys=True)

    atomic_write(Path(path), w)


def jsonable(obj: Any) -> Any:
    """`obj` as strict JSON holds it: numpy/torch scalars and arrays → Python numbers and lists, tuples →
    lists, keys → str, NaN/±inf → None (so every JSON grokscope writes or prints is standard JSON)."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, (str, bool)) or obj is None:
        return obj
    if obj is pd.NA or obj is pd.NaT:
        return None
    if hasattr(obj, "tolist"):  # numpy / torch scalars and arrays
        return jsonable(obj.tolist())
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, int):
        return obj
    if isinstance(obj, os.PathLike):
        return str(obj)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return jsonable(dataclasses.asdict(obj))
    return str(obj)


def read_json(path: Path) -> Any:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise StoreError(f"cannot read {path}: {str(e).splitlines()[0] if str(e) else type(e).__name__}") from None


def write_tensors(path: Path, tensors: dict[str, torch.Tensor], meta: dict[str, Any] | None = None) -> None:
    """safetensors file; `meta` is stored as JSON in the header."""
    data = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    header = {"grokscope": json.dumps(meta or {})}

    def write(tmp: str) -> None:
        try:
            save_file(data, tmp, metadata=header)
        except SafetensorError as e:  # an I/O failure (a full disk): the OSError it wraps, naming the file
            code = re.search(r"os error (\d+)", str(e))
            if code is None:
                raise
            raise OSError(int(code.group(1)), os.strerror(int(code.group(1))), str(path)) from None

    atomic_write(Path(path), write)


def read_tensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(tensors, meta) from a safetensors file; a truncated or corrupt file is a StoreError."""
    path = Path(path)
    if not path.exists():
        raise StoreError(f"{path} does not exist")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = json.loads((f.metadata() or {}).get("grokscope", "{}"))
        return load_file(str(path)), meta
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise StoreError(f"{path} is corrupt or truncated ({str(e).splitlines()[0]})") from None


def last_trajectory_step(path: Path) -> int:
    """The last step a trajectory file records (-1 if none), reading only its step vectors."""
    try:
        with safe_open(str(path), framework="pt") as f:
            steps = [f.get_tensor(k) for k in ("attn_steps", "snap_steps") if k in f.keys()]
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise StoreError(f"{path} is corrupt or truncated ({str(e).splitlines()[0]})") from None
    return max((int(t.max()) for t in steps if t.numel()), default=-1)


def records_upto(t: dict[str, torch.Tensor], upto: int) -> dict[str, torch.Tensor]:
    """A trajectory's records at steps <= upto."""
    keep = {kind: t[f"{kind}_steps"] <= upto for kind in ("attn", "snap")}
    return {k: v[keep[k.split("_")[0] if k.endswith("_steps") else k.split(".")[0]]] for k, v in t.items()}


def write_table(path: Path, rows: pd.DataFrame) -> None:
    table = pa.Table.from_pandas(rows, preserve_index=False)
    atomic_write(Path(path), lambda tmp: pq.write_table(table, tmp))


def read_table(path: Path) -> pd.DataFrame:
    try:
        return pq.read_table(str(path)).to_pandas()
    except (OSError, pa.ArrowException) as e:
        raise StoreError(f"{path} is corrupt or unreadable ({str(e).splitlines()[0]})") from None
