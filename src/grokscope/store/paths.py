"""The path checks of a command's `--out` / `--store`: a writable UTF-8 folder, and not a run directory where a
store of runs belongs."""

from __future__ import annotations

import os
from pathlib import Path

from grokscope.errors import ConfigError
from grokscope.store.run_dir import CONFIG


def check_out(path: str | os.PathLike, what: str = "--out") -> Path:
    """A folder this command may create or write into, checked before anything is written: a UTF-8 name of
    sane length whose nearest existing ancestor is a writable folder (missing folders are created later)."""
    p = Path(path)
    text = os.fspath(p)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ConfigError(f"{what} {text!r} is not valid UTF-8; choose a UTF-8 path") from None
    for part in p.parts:
        if len(part.encode()) > 255:
            raise ConfigError(f"{what}: the name {part[:24]}… is too long ({len(part.encode())} bytes; at most 255)")
    if len(os.fsencode(p.absolute())) > 4000:
        raise ConfigError(f"{what} {text[:40]}… is too long a path")
    if p.exists() and not p.is_dir():
        raise ConfigError(f"{what} {text} exists and is not a folder")
    a = p.absolute()
    while not a.exists() and a != a.parent:
        a = a.parent
    if not a.is_dir():
        raise ConfigError(f"{what} {text}: {a} is a file, not a folder")
    if not os.access(a, os.W_OK | os.X_OK):
        raise ConfigError(f"{what} {text}: {a} is not writable")
    return p


def not_a_run(path: str | os.PathLike, what: str = "--out") -> Path:
    """`path`, refused when it is a run directory (it holds config.json) given where a store of runs belongs:
    runs written into it would nest inside that run."""
    p = Path(path)
    if (p / CONFIG).is_file():
        raise ConfigError(f"{what} {os.fspath(p)} is a run directory, not a store of runs; give the folder that "
                          f"holds it ({os.fspath(p.absolute().parent)})")
    return p


def check_store(path: str | os.PathLike, what: str = "--out") -> Path:
    """`check_out` for a folder that holds runs (`not_a_run`)."""
    return not_a_run(check_out(path, what), what)
