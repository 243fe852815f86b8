"""An intervention scan's folder, so that a scan resumes like a sweep: what it trains, its basis, its runs.

    <out>/scan.json            the scan's config and its base run's name (written before training starts)
    <out>/basis.safetensors    the projection basis [P, K], computed once from the base run and reused on resume
    <out>/runs/<run name>/     one trainer run folder per scanned value (config, checkpoint, metrics, trajectory)
    <out>/intervention.*       the result (`intervention_scan.write_scan`), written once the scan has finished

A folder holding the same scan resumes from the runs' checkpoints; one holding another scan is refused
(`force` starts over; `resume` continues it under a new step budget, the only change a checkpoint survives).
`store.find_runs` does not descend into a scan's folder: its runs are intervened, not plain runs.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from grokscope.config import RunConfig
from grokscope.errors import StoreError
from grokscope.store.admission import check_dirs
from grokscope.store.files import jsonable, read_json, read_tensors, write_json, write_tensors
from grokscope.store.run_dir import (
    INTERVENTION_JSON,
    INTERVENTION_METRICS,
    INTERVENTION_TABLE,
    SCAN_BASIS,
    SCAN_RUNS,
    SCAN_STATE,
    RunDir,
)

RESUMABLE = ("steps",)  # scan fields `resume` may change: a longer or shorter budget continues the same runs


@dataclass
class ValueProgress:
    """How far one scanned value's run got: its last stored step (0: nothing stored) of its budget."""

    name: str
    budget: int
    last_step: int
    finished: bool
    wall_time: float | None


class ScanDir:
    """One intervention scan's folder (see the module docstring)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    @property
    def runs(self) -> Path:
        return self.path / SCAN_RUNS

    def state(self) -> dict[str, Any] | None:
        """The stored scan.json ({"scan": ..., "base": ...}), None when the folder holds no scan in training."""
        f = self.path / SCAN_STATE
        if not f.exists():
            return None
        got = read_json(f)
        if not isinstance(got, dict) or not isinstance(got.get("scan"), dict):
            raise StoreError(f"{f} is not an intervention scan's state")
        return got

    def changed(self, scan: Any, base: str) -> list[str] | None:
        """The scan fields in which the stored scan differs from `scan` (`base` when its base run differs);
        None when the folder holds no scan."""
        st = self.state()
        if st is None:
            return None
        if st.get("base") != base:
            return ["base"]
        want = jsonable(scan)
        return sorted(k for k in set(want) | set(st["scan"]) if want.get(k) != st["scan"].get(k))

    def holds(self, scan: Any, base: str) -> bool:
        """Whether the runs stored here belong to `scan` of base run `base` (the same config up to the step
        budget), i.e. the scan would resume them."""
        changed = self.changed(scan, base)
        return changed is not None and set(changed) <= set(RESUMABLE)

    def check(self, scan: Any, base: str, cfgs: list[RunConfig], resume: bool = False, force: bool = False) -> None:
        """Refuse, writing nothing, a folder holding another scan or another base run's (unless `force`; with
        `resume` only the step budget may differ) and damaged run folders (`admission.check_dirs`)."""
        if self.path.exists() and not self.path.is_dir():
            raise StoreError(f"{self.path} exists and is not a folder")
        if force:
            return
        changed = self.changed(scan, base) or []
        if changed == ["base"]:
            raise StoreError(f"{self.path} holds a scan of base run {self.state().get('base')!r}, not {base!r}; "
                             "choose another --out or pass --force to start over")
        if changed and not resume:
            raise StoreError(f"{self.path} holds a scan with another {', '.join(changed)}; pass --force to start "
                             "over" + (" or --resume to continue it under the new steps" if changed == ["steps"]
                                       else ""))
        if changed and not set(changed) <= set(RESUMABLE):
            raise StoreError(f"{self.path} holds a scan with another {', '.join(changed)}: --resume continues a "
                             "scan only under new steps; pass --force to start over")
        check_dirs(cfgs, self.runs, resume=resume)

    def basis(self) -> torch.Tensor | None:
        """The stored projection basis (None when the scan has none stored yet)."""
        f = self.path / SCAN_BASIS
        return read_tensors(f)[0]["basis"] if f.exists() else None

    def begin(self, scan: Any, base: str, basis: torch.Tensor | None, force: bool = False) -> None:
        """Start (or continue) the scan here: with `force`, first remove what an earlier scan left; then the
        basis, then scan.json (its presence means the basis is stored)."""
        fresh = force or self.state() is None  # a basis without scan.json is a killed start's: not trusted
        if force:
            shutil.rmtree(self.runs, ignore_errors=True)
            for name in (SCAN_STATE, SCAN_BASIS, INTERVENTION_JSON, INTERVENTION_TABLE, INTERVENTION_METRICS):
                (self.path / name).unlink(missing_ok=True)
        if basis is not None and (fresh or not (self.path / SCAN_BASIS).exists()):
            write_tensors(self.path / SCAN_BASIS, {"basis": basis}, {"base": base})
        write_json(self.path / SCAN_STATE, {"scan": jsonable(scan), "base": base})

    def progress(self, cfgs: list[RunConfig]) -> list[ValueProgress]:
        """Each value's run as stored (reads only the runs' summaries)."""
        out = []
        for c in cfgs:
            d = RunDir(self.runs / c.name)
            s = d.summary() if d.has_summary() else {}
            out.append(ValueProgress(c.name, c.steps, int(s.get("steps_trained") or 0), bool(s.get("finished")),
                                     s.get("wall_time")))
        return out


def describe_progress(progress: list[ValueProgress]) -> str:
    """'resuming 4 runs from their checkpoints: at step 12000 of 50000, 1 finished' ('' when none is stored)."""
    started = [p for p in progress if p.last_step > 0]
    if not started:
        return ""
    done = sum(p.finished for p in progress)
    live = [p for p in progress if not p.finished]
    at = f"at step {min(p.last_step for p in live)} of {max(p.budget for p in live)}" if live else "all finished"
    return f"resuming {len(progress)} runs from their checkpoints: {at}" + (f", {done} finished" if done and live
                                                                           else "")
