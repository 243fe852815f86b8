"""Store admission: which runs a store lets a command train into, checked before anything is written.

The one guard of `grokscope run`, `train(out=...)`, sweeps and intervention scans: a run directory holding
another config is refused unless resumed or forced, a folder that is no run is refused, and a damaged file
of a run that would be resumed is refused (its header is read, cheaply).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from grokscope.config import RunConfig
from grokscope.errors import ConfigError, StoreError
from grokscope.store.run_dir import RunDir

RESUME_OR_FORCE = "pass --resume to continue it under the new config or --force to start over"


def check_dirs(cfgs: list[RunConfig], out: Path, resume: bool = False, force: bool = False,
               remedy: str = RESUME_OR_FORCE) -> list[RunDir]:
    """Check every run's directory, writing nothing: a directory holding another config is refused unless
    `resume` (continue from its checkpoint under the new config) or `force` (start over), saying `remedy`; a
    damaged file in a run that would be resumed is refused too."""
    names = [c.name for c in cfgs]
    dup = {n for n in names if names.count(n) > 1}
    if dup:
        raise ConfigError(f"two runs share the name {sorted(dup)[0]!r}; give them different seeds or settings")
    dirs = [RunDir(Path(out) / n) for n in names]
    for c, d in zip(cfgs, dirs):
        if d.path.exists() and not d.exists() and any(d.path.iterdir()):
            raise StoreError(f"{d.path} exists and is not a grokscope run; choose another --out")
        if d.exists() and not force and not resume and d.config() != c:
            raise StoreError(f"{d.path} holds a run with a different config; {remedy}")
        if d.exists() and not force:
            d.check()  # a corrupt checkpoint, trajectory or table is refused now, before anything is written
    return dirs


def prepare_dirs(cfgs: list[RunConfig], out: Path, resume: bool = False, force: bool = False) -> list[RunDir]:
    """`check_dirs`, remove temp files a killed writer left behind, then (with `force`) delete the runs that will
    start over."""
    dirs = check_dirs(cfgs, out, resume, force)
    for d in dirs:
        if d.path.is_dir():
            for tmp in d.path.rglob(".*.tmp"):
                tmp.unlink(missing_ok=True)
    if force:
        for d in dirs:
            if d.exists():
                shutil.rmtree(d.path)
    return dirs
