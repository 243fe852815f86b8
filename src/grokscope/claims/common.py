"""What every paper's claims share: the result row, verdict rules, scales, and store-backed sweeps.

A claim is a function `(ctx: ClaimContext) -> ClaimRow`. Verdicts are computed from the measurement
against a stated tolerance by the helpers here (`verdict_range`, `verdict_value`, `verdict_count`,
`combine`), never written by hand. Experiments run through `grokscope.sweep.run_sweep`, so a rerun on the
same store reuses every finished run.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from grokscope.config import RunConfig
from grokscope.errors import ConfigError, GrokscopeError
from grokscope.geometry.interventions import ScanConfig, intervention_scan, resume_note, write_scan
from grokscope.store import INTERVENTION_JSON, RunDir, jsonable, read_json
from grokscope.sweep import run_sweep, spec_from_dict
from grokscope.training.progress_bars import eval_bar

REPRODUCED = "reproduced"
PARTLY = "partly"
NOT_REPRODUCED = "not reproduced"
INCONCLUSIVE = "inconclusive"
NOT_RUN = "not run"
VERDICTS = (REPRODUCED, PARTLY, NOT_REPRODUCED, INCONCLUSIVE, NOT_RUN)
SCALES = ("quick", "cpu", "paper")
QUICK_NOTE = "quick scale (small p and model, few seeds): a smoke test of the claim, not the paper's setup"
CPU_NOTE = "cpu scale: the paper's model, p and hyper-parameters; a cut grid"
PAPER_ONLY = "paper-only"


def default_store(scale: str) -> Path:
    """Where a scale's claim runs live by default: `runs/claims-quick` for the quick scale (minutes, in the
    work tree); for cpu and paper a directory that survives between sessions,
    `$GROKSCOPE_CACHE` or `~/.cache/grokscope`, then `claims-<scale>`."""
    if scale == "quick":
        return Path("runs/claims-quick")
    root = os.environ.get("GROKSCOPE_CACHE") or Path.home() / ".cache" / "grokscope"
    return Path(root) / f"claims-{scale}"


@dataclass
class ClaimRow:
    """One paper claim: what the paper says, what we measured, the verdict and how it was reached."""

    claim: str
    paper: str
    measured: str
    verdict: str
    tolerance: str
    config: str
    scale: str
    note: str = ""
    paper_id: str = ""
    key: str = ""
    values: dict[str, Any] = field(default_factory=dict)  # the raw numbers behind `measured`

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# ---- verdict rules -----------------------------------------------------------------------------------


def _finite(x: float | None) -> bool:
    return x is not None and isinstance(x, (int, float)) and math.isfinite(float(x))


def verdict_range(measured: float | None, lo: float, hi: float, slack: float) -> str:
    """Inside [lo, hi] → reproduced; inside [lo − slack, hi + slack] → partly; else not reproduced;
    no measurement → inconclusive."""
    if not _finite(measured):
        return INCONCLUSIVE
    m = float(measured)
    if lo <= m <= hi:
        return REPRODUCED
    if lo - slack <= m <= hi + slack:
        return PARTLY
    return NOT_REPRODUCED


def verdict_value(measured: float | None, target: float, tol: float, partial: float = 2.0) -> str:
    """|measured − target| ≤ tol → reproduced; ≤ partial·tol → partly; else not reproduced."""
    if tol < 0:
        raise ValueError(f"tolerance {tol} must be >= 0")
    return verdict_range(measured, target - tol, target + tol, (partial - 1.0) * tol)


def verdict_count(k: int, n: int, partly_frac: float = 0.5) -> str:
    """k of n cases agree with the claim: all → reproduced; ≥ partly_frac → partly; none measured →
    inconclusive."""
    if n <= 0:
        return INCONCLUSIVE
    if k == n:
        return REPRODUCED
    return PARTLY if k / n >= partly_frac else NOT_REPRODUCED


def verdict_bool(ok: bool | None) -> str:
    """A yes/no claim: True → reproduced, False → not reproduced, None → inconclusive."""
    return INCONCLUSIVE if ok is None else (REPRODUCED if ok else NOT_REPRODUCED)


def combine(verdicts: Sequence[str]) -> str:
    """One verdict from parts: all reproduced → reproduced; any inconclusive part and none failed →
    inconclusive; all failed → not reproduced; otherwise partly."""
    vs = [v for v in verdicts if v != NOT_RUN]
    if not vs:
        return NOT_RUN
    if all(v == REPRODUCED for v in vs):
        return REPRODUCED
    if all(v == NOT_REPRODUCED for v in vs):
        return NOT_REPRODUCED
    if INCONCLUSIVE in vs and not any(v in (NOT_REPRODUCED, PARTLY) for v in vs):
        return INCONCLUSIVE if not any(v == REPRODUCED for v in vs) else PARTLY
    return PARTLY


def fmt(x: Any, digits: int = 3) -> str:
    """A short human form of a number (None/NaN → '—')."""
    if x is None:
        return "—"
    if isinstance(x, bool):
        return str(x)
    if isinstance(x, int):
        return str(x)
    if isinstance(x, float):
        if not math.isfinite(x):
            return "—"
        return f"{x:.0f}" if abs(x) >= 10**digits else f"{x:.{digits}g}"
    return str(x)


# ---- context: scale, store, device --------------------------------------------------------------------


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


def task_cols(table: pd.DataFrame, prefix: str) -> list[str]:
    """Columns `prefix.<task>` of a sweep table."""
    return [c for c in table.columns if c.startswith(prefix + ".") and c.count(".") == 1]


def grok_value(v: Any) -> int | None:
    """A grok step from a sweep table cell (None/NaN → None)."""
    if v is None:
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return int(f) if math.isfinite(f) else None


@dataclass(frozen=True)
class ScanNeed:
    """An intervention scan a paper's claims train on a base run of one of its sweeps (`role`): the first run
    `pick` accepts that grokked every task, seed 42 first (the seed of the authors' scans)."""

    label: str
    role: str
    pick: Callable[[RunConfig], bool]
    scan: ScanConfig


@dataclass(frozen=True)
class ExperimentNeed:
    """A computation a claim caches whole as `<store>/p3/<name>.json` (not resumable step by step): `runs`
    seeds of `steps` steps each (None: not counted in steps)."""

    name: str
    config: dict[str, Any]
    runs: int
    steps: int | None


def scan_dir(store: Path, run_name: str, scan: ScanConfig) -> Path:
    """Where the scan `scan` of the base run `run_name` is stored under a claims store."""
    return Path(store) / "scans" / f"{scan.kind}-{scan.basis or 'default'}-{run_name}"


def read_stored_scan(store: Path, run_name: str, scan: ScanConfig) -> list[dict[str, Any]] | None:
    """The rows of that scan when exactly it is stored (None otherwise); reads only."""
    f = scan_dir(store, run_name, scan) / INTERVENTION_JSON
    if not f.exists():
        return None
    got = read_json(f)
    return got.get("rows") if got.get("scan") == jsonable(asdict(scan)) else None


def stored_scan(ctx: ClaimContext, run: RunDir, scan: ScanConfig) -> tuple[pd.DataFrame, str]:
    """An intervention scan of `run` (geometry.interventions), reused from `ctx.store/scans/...` when the
    same scan is stored there, else trained there, resuming from the checkpoints a killed one left (how far
    they got is shown with the progress); returns (its table: one row per (value, task)) and its folder."""
    out = scan_dir(ctx.store, run.path.name, scan)
    rows = read_stored_scan(ctx.store, run.path.name, scan)
    if rows is None:
        label = f"{scan.kind} scan of {run.path.name}"
        with eval_bar(label, ctx.progress, resume_note(run, scan, out)) as on_eval:
            write_scan(intervention_scan(run, scan, ctx.device, on_eval=on_eval, out=out), out)
        rows = read_json(out / INTERVENTION_JSON)["rows"]
    return pd.DataFrame(rows), str(out)


def cache_file(store: Path, name: str) -> Path:
    """Where a claim's whole-experiment result `name` is cached (`ExperimentNeed`)."""
    return Path(store) / "p3" / f"{name}.json"


def read_cached(store: Path, name: str, config: dict[str, Any]) -> Any | None:
    """The cached result of experiment `name` when it was computed with exactly `config` (else None)."""
    f = cache_file(store, name)
    if not f.exists():
        return None
    got = read_json(f)
    return got.get("result") if got.get("config") == jsonable(config) else None


def paper_only_row(ctx: ClaimContext, claim: str, paper: str, needs: str) -> ClaimRow:
    """The row of a claim this scale does not run: it needs `needs` (more than the scale's budget)."""
    return ClaimRow(claim=claim, paper=paper, measured="—", verdict=NOT_RUN, tolerance="", config="",
                    scale=ctx.scale, note=f"{PAPER_ONLY}: needs {needs}")


def make_row(
    ctx: ClaimContext,
    claim: str,
    paper: str,
    measured: str,
    verdict: str,
    tolerance: str,
    spec: dict[str, Any] | str,
    values: dict[str, Any],
    note: str = "",
) -> ClaimRow:
    """A result row; `spec` is the sweep spec that produced it (described) or a config string."""
    config = describe_spec(spec) if isinstance(spec, dict) else spec
    return ClaimRow(claim=claim, paper=paper, measured=measured, verdict=verdict, tolerance=tolerance,
                    config=config, scale=ctx.scale, note=note, values=values)


def finite_values(table: pd.DataFrame, col: str) -> tuple[np.ndarray, float | None]:
    """The finite values of a column (empty when the column is absent) and their mean (None when empty)."""
    v = table[col].astype(float).to_numpy() if col in table else np.array([])
    v = v[np.isfinite(v)]
    return v, (float(v.mean()) if len(v) else None)


RHO_TOL = 5e-4  # ρ rounds to the paper's 1.000


def rho_row(ctx: ClaimContext, t: pd.DataFrame, spec: Any, claim: str) -> ClaimRow:
    """ρ ≈ 1 judged with its random-basis null: a random δ has ρ ≈ 1 − K/(2P) too, so the verdict needs
    ρ to read 1.000 (≥ 1 − 5e-4) *and* the basis to catch no more than 10× a random basis's share of δ
    (exec/random projection ratio < 10): a δ lying in the basis fails both."""
    v, mean = finite_values(t, "summary.rho")
    vr, mean_r = finite_values(t, "summary.rho_random")
    vq, ratio = finite_values(t, "summary.proj_ratio")
    ok_rho = verdict_value(mean, 1.0, RHO_TOL, 10.0)
    ok_null = INCONCLUSIVE if ratio is None else (REPRODUCED if ratio < 10 else NOT_REPRODUCED)
    return make_row(
        ctx,
        claim,
        "ρ ≈ 1.000",
        f"ρ = {fmt(mean, 5)} (mean of {len(v)} runs, min {fmt(float(v.min()) if len(v) else None, 5)}); "
        f"random bases of equal rank ρ = {fmt(mean_r, 5)}; exec/random projection ratio {fmt(ratio)}",
        combine([ok_rho, ok_null]),
        f"ρ ≥ 1 − {RHO_TOL:g} (reads 1.000) and exec/random ratio < 10; partly ρ ≥ 0.995",
        spec,
        {"rho": v.tolist(), "rho_random": vr.tolist(), "proj_ratio": vq.tolist()},
    )
