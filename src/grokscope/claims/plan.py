"""What a paper's claims still need at one scale, read from the store without training or writing anything.

`claims_plan(paper, ctx)` lists every sweep run, intervention scan and cached experiment the paper's claims
use at `ctx.scale` (the same specs the claims run: `SWEEPS`, `scans`, `experiments` of each paper module,
`--specs` overrides included), how far each got in `ctx.store` (a scan: its result, else its runs'
checkpoints), and the run-steps still to go. Budgets are upper bounds: a run stops once every task has
grokked. Rates come first from what runs record: a sweep's or a scan's run `wall_time` (summary.json: the wall
time of its batched program while the run was live); an item with none recorded (a new store: the store need not
exist) gets, when a `RateProbe` is given, a rate timed now on this machine (`claims.probe`). P3's cached
experiments record none and are not probed (their per-step probe, not the update, is their cost).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any

from grokscope.claims import p1, p2, p3
from grokscope.claims.cache import ExperimentNeed, ScanNeed, cache_file, read_cached, read_stored_scan, scan_dir
from grokscope.claims.context import ClaimContext
from grokscope.claims.probe import RateProbe
from grokscope.config import RunConfig
from grokscope.errors import ConfigError
from grokscope.experiments.intervention_scan import scan_configs
from grokscope.store import RunDir
from grokscope.store.scan_store import ScanDir
from grokscope.sweep import expand, plan, spec_from_dict

__all__ = ["RunState", "ItemPlan", "claims_plan", "plan_totals", "run_state", "scan_base", "measured_rate"]

PAPER_NEEDS = {"p1": p1, "p2": p2, "p3": p3}


@dataclass
class RunState:
    """One run a claim needs: its step budget, the last step stored, and the run-steps it may still take."""

    name: str
    budget: int | None  # None: not counted in steps (P3's numpy toys)
    last_step: int  # 0 when nothing is stored
    state: str  # new | partial | stopped | conflict (stored under another config) | done (a scan or experiment)
    reason: str = ""  # why it stopped: grokked (every task), budget, diverged
    to_go: int = 0  # run-steps left, at most (budget − last step; 0 once stopped by grokking or divergence)
    wall_time: float | None = None  # seconds, as the run recorded it
    missing: list[str] = field(default_factory=list)  # analyses its sweep names that are not stored yet


@dataclass
class ItemPlan:
    """A sweep, a scan or a cached experiment of the claims, with its runs and what they still need."""

    kind: str  # sweep | scan | experiment
    role: str  # the claims' role (dual, single, ...), the scan's label or the experiment's name
    name: str
    where: str  # its folder or file in the store
    runs: list[RunState]
    rate: float | None = None  # run-steps per wall second: measured from the stored runs, else probed
    note: str = ""
    rate_source: str = ""  # stored (the runs' own wall time) | probe (timed now by claims.probe) | "" (no rate)

    @property
    def budget(self) -> int:
        return sum(r.budget or 0 for r in self.runs)

    @property
    def done(self) -> int:
        return sum(r.last_step for r in self.runs)

    @property
    def to_go(self) -> int:
        return sum(r.to_go for r in self.runs)

    @property
    def eta_s(self) -> float | None:
        """Seconds left at the measured rate (an upper bound, as to_go is); 0 when nothing is left."""
        if self.to_go == 0:
            return 0.0
        return self.to_go / self.rate if self.rate else None

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "budget": self.budget, "done": self.done, "to_go": self.to_go,
                "eta_s": self.eta_s, "stopped": sum(r.state in ("stopped", "done") for r in self.runs)}


def run_state(run: RunDir, cfg: RunConfig, analyses: tuple[str, ...] = ()) -> RunState:
    """Where the run `cfg` stands in its store folder `run` (read only)."""
    if not run.exists():
        return RunState(cfg.name, cfg.steps, 0, "new", to_go=cfg.steps, missing=list(analyses))
    s = run.summary() if run.has_summary() else {}
    last = int(s.get("steps_trained") or 0)
    grokked = bool(s.get("grok_step")) and all(v is not None for v in s["grok_step"].values())
    reason = ""
    if s.get("finished"):
        reason = "diverged" if s.get("diverged") else "grokked" if grokked and cfg.stop_on_grok else "budget"
    same = run.config() == cfg
    state = "conflict" if not same else "stopped" if reason else "partial"
    # a resumed run stays stopped once grokked or diverged; otherwise it trains on to this config's budget
    to_go = 0 if reason in ("grokked", "diverged") or (same and reason) else max(0, cfg.steps - last)
    done = run.analyses()
    return RunState(cfg.name, cfg.steps, last, state, reason, to_go, s.get("wall_time"),
                    [a for a in analyses if a not in done])


def _steps_and_wall(runs: list[RunState]) -> tuple[int, float]:
    """One batched program's stored run-steps and its wall time (the longest of its timed runs': they trained
    side by side); (0, 0.0) when none recorded a wall time."""
    timed = [r for r in runs if r.wall_time]
    return sum(r.last_step for r in timed), max((float(r.wall_time or 0.0) for r in timed), default=0.0)


def _rate(steps: int, wall: float) -> float | None:
    return steps / wall if wall > 0 and steps > 0 else None


def measured_rate(cfgs: list[RunConfig], runs: list[RunState]) -> float | None:
    """Run-steps per wall second over the stored runs: per batched program (`sweep.plan`, as `run_sweep`
    packs them), the steps its runs stored over its wall time, summed over programs. None when no run
    recorded a wall time."""
    by = {r.name: r for r in runs}
    per_batch = [_steps_and_wall([by[c.name] for c in batch]) for batch in plan(cfgs, "cpu")]
    return _rate(sum(s for s, _ in per_batch), sum(w for _, w in per_batch))


def _with_rate(item: ItemPlan, batches: list[list[RunConfig]], probe: RateProbe | None) -> ItemPlan:
    """`item` with its rate's source, probed when nothing stored gives one and work is left."""
    if item.rate is not None:
        item.rate_source = "stored"
    elif probe is not None and item.to_go > 0 and batches:
        item.rate, item.rate_source = probe.rate(batches), "probe"
    return item


def _sweep(ctx: ClaimContext, role: str, spec: dict[str, Any], probe: RateProbe | None
           ) -> tuple[ItemPlan, list[RunConfig]]:
    out = ctx.store / spec["name"]
    s = spec_from_dict({**spec, "out": str(out), "device": "cpu"}, default_name=spec["name"])
    cfgs = expand(s)
    runs = [run_state(RunDir(out / c.name), c, s.analyses) for c in cfgs]
    todo = [c for c, r in zip(cfgs, runs, strict=True) if r.to_go > 0]
    item = ItemPlan("sweep", role, s.name, str(out), runs, measured_rate(cfgs, runs))
    return _with_rate(item, plan(todo, "cpu"), probe), cfgs


def scan_base(cfgs: list[RunConfig], runs: list[RunState], need: ScanNeed) -> tuple[RunConfig, bool] | None:
    """The scan's base run as the claim picks it: the first accepted run that grokked every task, seed 42
    first; before any has, the first candidate (False: not grokked yet). None: the sweep has no candidate."""
    by = {r.name: r for r in runs}
    cands = sorted((c for c in cfgs if need.pick(c)), key=lambda c: c.seed != 42)
    for c in cands:
        if by[c.name].reason == "grokked":
            return c, True
    return (cands[0], False) if cands else None


def _scan(ctx: ClaimContext, need: ScanNeed, base: tuple[RunConfig, bool] | None, probe: RateProbe | None
          ) -> ItemPlan:
    if base is None:
        return ItemPlan("scan", need.label, need.scan.kind, "", [], note=f"no base run in the {need.role} sweep")
    cfg, grokked = base
    where = scan_dir(ctx.store, cfg.name, need.scan)
    cfgs = scan_configs(cfg, need.scan)
    labels = [f"{need.scan.kind} {v:g}" for v in need.scan.values]
    rows = read_stored_scan(ctx.store, cfg.name, need.scan)
    folder = ScanDir(where)
    if rows is not None:  # finished: its result is stored
        runs = []
        for label, c, v in zip(labels, cfgs, need.scan.values, strict=True):
            mine = [r for r in rows if abs(float(r["value"]) - v) < 1e-12]
            last = max(int(r["steps_trained"]) for r in mine)
            why = "grokked" if all(r["grokked"] for r in mine) else "budget"
            wall = folder.progress([c])[0].wall_time
            runs.append(RunState(label, c.steps, last, "done", why, wall_time=wall))
    elif folder.state() is not None and not folder.holds(need.scan, cfg.name):
        runs = [RunState(label, c.steps, 0, "conflict", to_go=c.steps) for label, c in zip(labels, cfgs, strict=True)]
    else:  # new, or killed part-way: its runs' checkpoints say how far it got
        runs = [replace(run_state(RunDir(folder.runs / c.name), c), name=label)
                for label, c in zip(labels, cfgs, strict=True)]
    note = f"base {cfg.name}" + ("" if grokked else " (not grokked yet: the claim waits for a grokked base)")
    note += "; one batched program, checkpointed per value in runs/: a killed scan resumes"
    if any(r.state == "conflict" for r in runs):
        note += "; the folder holds another scan (the claims refuse it: move it away)"
    item = ItemPlan("scan", need.label, need.scan.kind, str(where), runs, _rate(*_steps_and_wall(runs)), note=note)
    return _with_rate(item, [cfgs], probe)


def _experiment(ctx: ClaimContext, need: ExperimentNeed) -> ItemPlan:
    done = read_cached(ctx.store, need.name, need.config) is not None
    steps = need.steps or 0
    runs = [RunState(f"{need.name} {i}", need.steps, steps if done else 0, "done" if done else "new",
                     to_go=0 if done else steps) for i in range(need.runs)]
    return ItemPlan("experiment", need.name, need.name, str(cache_file(ctx.store, need.name)), runs,
                    note="computed and cached whole, not resumable; records no wall time"
                    + ("" if need.steps else "; numpy toys, seconds (not counted in steps)"))


def claims_plan(paper: str, ctx: ClaimContext, probe: RateProbe | None = None) -> list[ItemPlan]:
    """Every sweep, scan and experiment `paper`'s claims need at `ctx.scale`, read from `ctx.store` (a store
    that does not exist yet holds nothing: everything is new). With `probe`, items without a stored rate get
    one timed now (a few update steps in memory; nothing is written)."""
    paper = paper.lower()
    if paper not in PAPER_NEEDS:
        raise ConfigError(f"unknown paper {paper!r}; choose from {', '.join(PAPER_NEEDS)}")
    if ctx.store.exists() and not ctx.store.is_dir():
        raise ConfigError(f"--store {ctx.store} is a file, not a claims store")
    mod = PAPER_NEEDS[paper]
    if paper == "p3":
        return [_experiment(ctx, need) for need in p3.experiments(ctx.scale)]
    items, cfgs_of = [], {}
    for role, default in mod.SWEEPS:
        spec = ctx.optional_spec(role, default)
        if spec:
            item, cfgs = _sweep(ctx, role, spec, probe)
            items.append(item)
            cfgs_of[role] = (cfgs, item.runs)
    for need in mod.scans(ctx.scale):
        cfgs, runs = cfgs_of.get(need.role, ([], []))
        items.append(_scan(ctx, need, scan_base(cfgs, runs, need), probe))
    return items


def plan_totals(items: list[ItemPlan]) -> dict[str, Any]:
    """Run-steps budgeted, stored and to go over every item, and the time left at their rates, stored or probed
    (`eta_complete` False when an item with steps to go has no rate: its time is not in `eta_s`)."""
    etas = [i.eta_s for i in items]
    return {"runs": sum(len(i.runs) for i in items),
            "stopped": sum(r.state in ("stopped", "done") for i in items for r in i.runs),
            "budget": sum(i.budget for i in items), "done": sum(i.done for i in items),
            "to_go": sum(i.to_go for i in items), "eta_s": sum(e for e in etas if e is not None),
            "eta_complete": all(e is not None for e in etas),
            "no_rate": [i.role for i, e in zip(items, etas, strict=True) if e is None]}
