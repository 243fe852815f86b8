"""Where and how claims run: the scale, the store, the device (`ClaimContext`); sweeps run (or reused) through
`grokscope.sweep.run_sweep` into the store, so a rerun reuses every finished run; `run_claims` evaluates a paper's
claim functions `(ctx) -> ClaimRow`, a failed experiment becoming a 'not run' row."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from grokscope.claims.verdicts import NOT_RUN, ClaimRow
from grokscope.errors import ConfigError, GrokscopeError
from grokscope.sweep import run_sweep, spec_from_dict

SCALES = ("quick", "cpu", "paper")
QUICK_NOTE = "quick scale (small p and model, few seeds): a smoke test of the claim, not the paper's setup"
CPU_NOTE = "cpu scale: the paper's model, p and hyper-parameters; a cut grid"


def default_store(scale: str) -> Path:
    """Where a scale's claim runs live by default: `runs/claims-quick` for the quick scale (minutes, in the
    work tree); for cpu and paper a directory that survives between sessions,
    `$GROKSCOPE_CACHE` or `~/.cache/grokscope`, then `claims-<scale>`."""
    if scale == "quick":
        return Path("runs/claims-quick")
    root = os.environ.get("GROKSCOPE_CACHE") or Path.home() / ".cache" / "grokscope"
    return Path(root) / f"claims-{scale}"


@dataclass
class ClaimContext:
    """Where a claims run keeps its runs, on what device, at which scale; `cache` shares sweep tables
    between claims of one invocation."""

    scale: str = "quick"
    store: Path = Path("runs/claims")
    device: str = "cpu"
    progress: bool = False
    specs: dict[str, dict[str, Any]] = field(default_factory=dict)  # role (a paper's SWEEPS: dual, lr, ...) → spec
    cache: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.scale not in SCALES:
            raise ConfigError(f"unknown scale {self.scale!r}; choose from {', '.join(SCALES)}")
        self.store = Path(self.store)

    def optional_spec(self, role: str, default: Callable[[str], dict[str, Any] | None]) -> dict[str, Any] | None:
        """The sweep spec a claim uses for `role`: the user's override, else the scale's default (None for a role
        only some scales have, when neither gives one)."""
        return self.specs.get(role) or default(self.scale)

    def spec(self, role: str, default: Callable[[str], dict[str, Any] | None]) -> dict[str, Any]:
        """As `optional_spec`, for a role every scale has."""
        spec = self.optional_spec(role, default)
        if spec is None:
            raise ConfigError(f"no sweep for role {role!r} at the {self.scale} scale")
        return spec

    @property
    def note(self) -> str:
        return {"quick": QUICK_NOTE, "cpu": CPU_NOTE}.get(self.scale, "paper scale")


def sweep_table(ctx: ClaimContext, spec: dict[str, Any]) -> pd.DataFrame:
    """Run (or reuse from the store) a sweep given as a spec mapping (as a YAML file would hold it) into
    `ctx.store/<spec name>`; returns its result table (one row per run, see grokscope.sweep)."""
    name = spec["name"]
    if name in ctx.cache:
        return ctx.cache[name]
    raw = {**spec, "out": str(ctx.store / name), "device": ctx.device}
    table = run_sweep(spec_from_dict(raw, default_name=name), progress=ctx.progress)
    ctx.cache[name] = table
    return table


def describe_spec(spec: dict[str, Any]) -> str:
    """The exact config of a sweep in one line: base preset + overrides and grid."""
    base = spec.get("base", {})
    base = base if isinstance(base, dict) else {"preset": base}
    over = ", ".join(f"{k}={v}" for k, v in base.items() if k != "preset")
    grid = ", ".join(f"{k}={v}" for k, v in spec.get("grid", {}).items())
    return f"sweep {spec['name']}: preset {base.get('preset', 'quick')} [{over}] grid [{grid}]"


Claim = Callable[[ClaimContext], ClaimRow]


def run_claims(claims: Sequence[Claim], ctx: ClaimContext, paper_id: str) -> list[ClaimRow]:
    """Evaluate each claim; a claim whose experiment fails (anything but a ConfigError/StoreError, which
    propagate as bad input) is reported as 'not run' with the error in its note."""
    rows = []
    for fn in claims:
        try:
            row = fn(ctx)
        except GrokscopeError:  # bad input (a spec, a store holding other configs): one line, exit 2
            raise
        except Exception as e:  # noqa: BLE001 — one failed experiment must not hide the other claims' rows
            doc = (fn.__doc__ or fn.__name__).strip().splitlines()[0]
            row = ClaimRow(
                claim=doc,
                paper="",
                measured="—",
                verdict=NOT_RUN,
                tolerance="",
                config="",
                scale=ctx.scale,
                note=f"{type(e).__name__}: {e}",
            )
        row.paper_id = paper_id
        row.key = row.key or fn.__name__
        if ctx.scale == "quick" and QUICK_NOTE not in row.note:
            row.note = f"{QUICK_NOTE}; {row.note}" if row.note else QUICK_NOTE
        rows.append(row)
    return rows
