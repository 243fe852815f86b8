"""Sweeps: a YAML spec → a grid of runs → batched programs that fit the device → an executor.

A sweep is a table of runs. `load_spec` reads and validates a spec, `expand` turns it into run configs,
`plan` packs runs that share a `batch_key` into batched programs no larger than the device holds, and
`run_sweep` trains them in-process (default) or as Ray tasks (one task per batch, for clusters), runs the
post-training analyses the spec names, and returns one row per run. Everything lands in one store
(`out/<run name>/`); rerunning a sweep skips finished runs and resumes partial ones from their checkpoints.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

import pandas as pd

from grokscope.config import (
    PRESETS,
    DataConfig,
    ModelConfig,
    OptimConfig,
    RunConfig,
    batch_key,
    validate,
    with_overrides,
)
from grokscope.errors import ConfigError, GrokscopeError, StoreError
from grokscope.store import RunDir, read_json, write_json

__all__ = ["ANALYSES", "SweepSpec", "load_spec", "spec_from_dict", "expand", "plan", "run_bytes",
           "run_sweep", "pending", "train_batch", "resolve_analysis", "sweep_status"]

ANALYSES_FILE = "analyses.json"  # {analysis name: its summary dict}, next to each run
GRID_KEYS = ("tasks", "p", "model", "wd", "lr", "seeds", "steps", "steps_by")
SPEC_KEYS = ("name", "base", "grid", "analyses", "out", "device", "resume", "max_runs", "max_retries")
CPU_MAX_RUNS = 64  # generous cap on CPU: beyond this a batch gains nothing but latency
GPU_FALLBACK_BYTES = 16 << 30  # device memory assumed when the driver cannot see the GPU (Ray clusters)
MEMORY_FRACTION = 0.8  # share of free device memory a batch may plan for
EVAL_CHUNK = 1 << 16  # pairs per evaluation chunk (Problem.evaluate's default)


# ---- the spec ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SweepSpec:
    """A validated sweep: the base config, the grid axes (empty = keep the base value), the per-wd (or
    per-lr) step budgets, the analyses to run after training, where the store lives and on what device."""

    name: str
    base: RunConfig
    tasks: tuple[tuple[str, ...], ...] = ()
    p: tuple[int, ...] = ()
    model: tuple[str, ...] = ()  # model kinds
    wd: tuple[float, ...] = ()
    lr: tuple[float, ...] = ()
    seeds: tuple[int, ...] = ()
    steps: int | tuple[tuple[float, int], ...] | None = None  # one budget, or (key, budget) pairs
    steps_by: str = "wd"  # what a steps mapping is keyed by: wd or lr
    analyses: tuple[str, ...] = ()
    out: Path = Path("runs")
    device: str = "auto"
    resume: bool = False  # continue stored runs whose config differs (e.g. a larger budget)
    max_runs: int | None = None
    max_retries: int = 2  # Ray: retries of a failed batch (it resumes from its checkpoints)


def load_spec(path: str | os.PathLike) -> SweepSpec:
    """Read a YAML sweep spec and validate every value (one-line ConfigError naming the bad one)."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"sweep spec {str(path)!r} does not exist")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        raise ConfigError(f"{path}: not valid YAML{where}: {getattr(e, 'problem', None) or e}") from None
    return spec_from_dict(raw, default_name=path.stem)


def spec_from_dict(raw: Any, default_name: str = "sweep") -> SweepSpec:
    """A SweepSpec from the parsed YAML mapping, validated (every grid point is built and checked)."""
    if not isinstance(raw, dict):
        raise ConfigError(f"a sweep spec must be a mapping with keys {', '.join(SPEC_KEYS)}")
    unknown = sorted(set(raw) - set(SPEC_KEYS), key=str)
    if unknown:
        raise ConfigError(f"unknown sweep key {unknown[0]!r}; choose from {', '.join(SPEC_KEYS)}")
    grid = raw.get("grid") or {}
    if not isinstance(grid, dict):
        raise ConfigError(f"grid must be a mapping of {', '.join(GRID_KEYS)}, not {grid!r}")
    bad = sorted(set(grid) - set(GRID_KEYS), key=str)
    if bad:
        raise ConfigError(f"unknown grid key {bad[0]!r}; choose from {', '.join(GRID_KEYS)}")
    steps_by = grid.get("steps_by", "wd")
    if steps_by not in ("wd", "lr"):
        raise ConfigError(f"grid.steps_by={steps_by!r} must be wd or lr")
    spec = SweepSpec(
        name=str(raw.get("name") or default_name),
        base=_base_config(raw.get("base", "quick")),
        tasks=tuple(_task_list(v) for v in _as_list(grid.get("tasks"), "grid.tasks")),
        p=tuple(_int(v, "grid.p") for v in _as_list(grid.get("p"), "grid.p")),
        model=tuple(_model_kind(v) for v in _as_list(grid.get("model"), "grid.model")),
        wd=tuple(_float(v, "grid.wd") for v in _as_list(grid.get("wd"), "grid.wd")),
        lr=tuple(_float(v, "grid.lr") for v in _as_list(grid.get("lr"), "grid.lr")),
        seeds=tuple(_int(v, "grid.seeds") for v in _as_list(grid.get("seeds"), "grid.seeds")),
        steps=_steps(grid.get("steps"), steps_by),
        steps_by=steps_by,
        analyses=tuple(_analysis_name(v) for v in _as_list(raw.get("analyses"), "analyses")),
        out=Path(str(raw.get("out") or Path("runs") / str(raw.get("name") or default_name))),
        device=_device(raw.get("device", "auto")),
        resume=_bool(raw.get("resume", False), "resume"),
        max_runs=None if raw.get("max_runs") is None else _positive(raw.get("max_runs"), "max_runs"),
        max_retries=_int(raw.get("max_retries", 2), "max_retries", minimum=0),
    )
    expand(spec)  # builds and validates every grid point
    return spec


def _as_list(v: Any, where: str) -> list:
    """A scalar or a list → a list. For `tasks` each entry is one run's task set: `add`, `add+mul`
    or `[add, mul]`; so `tasks: [add, mul]` means two single-task runs, `[add+mul]` one dual-task run."""
    if v is None:
        return []
    if isinstance(v, dict):
        raise ConfigError(f"{where} must be a value or a list, not a mapping")
    if not isinstance(v, list):
        return [v]
    if not v:
        raise ConfigError(f"{where} is an empty list; leave it out to keep the base value")
    return v


def _task_list(v: Any) -> tuple[str, ...]:
    if isinstance(v, str):
        items = [s.strip() for s in v.replace("+", ",").split(",") if s.strip()]
    elif isinstance(v, list) and all(isinstance(x, str) for x in v):
        items = [s.strip() for s in v]
    else:
        raise ConfigError(f"grid.tasks entry {v!r} must be a task name, 'add+mul', or a list of names")
    if not items:
        raise ConfigError(f"grid.tasks entry {v!r} names no task")
    return tuple(items)


def _float(v: Any, where: str) -> float:
    if isinstance(v, bool):
        raise ConfigError(f"{where}: {v!r} is not a number")
    try:
        x = float(v)  # YAML 1.1 reads 1e-3 as a string
    except (TypeError, ValueError):
        raise ConfigError(f"{where}: {v!r} is not a number") from None
    if not math.isfinite(x):
        raise ConfigError(f"{where}: {v!r} is not a finite number")
    return x


def _int(v: Any, where: str, minimum: int | None = None) -> int:
    if isinstance(v, bool) or not (isinstance(v, int) or (isinstance(v, float) and v.is_integer())):
        if isinstance(v, str):
            try:
                return _int(int(float(v)) if float(v).is_integer() else v, where, minimum)
            except ValueError:
                pass
        raise ConfigError(f"{where}: {v!r} is not an integer")
    if minimum is not None and v < minimum:
        raise ConfigError(f"{where}={int(v)} must be >= {minimum}")
    return int(v)


def _positive(v: Any, where: str) -> int:
    return _int(v, where, minimum=1)


def _bool(v: Any, where: str) -> bool:
    if not isinstance(v, bool):
        raise ConfigError(f"{where}={v!r} must be true or false")
    return v


def _model_kind(v: Any) -> str:
    if v not in ("trunk", "transformer1", "mlp"):
        raise ConfigError(f"grid.model: unknown model kind {v!r}; choose trunk, transformer1 or mlp")
    return v


def _device(v: Any) -> str:
    if not isinstance(v, str) or not (v in ("auto", "cpu", "cuda") or v.startswith("cuda:")):
        raise ConfigError(f"device={v!r} must be auto, cpu, cuda or cuda:N")
    return v


def _steps(v: Any, by: str) -> int | tuple[tuple[float, int], ...] | None:
    """One budget, or a mapping {wd (or lr) value: budget}."""
    if v is None:
        return None
    if isinstance(v, dict):
        if not v:
            raise ConfigError("grid.steps mapping is empty")
        return tuple((_float(k, f"grid.steps key ({by})"), _positive(n, f"grid.steps[{k}]"))
                     for k, n in v.items())
    return _positive(v, "grid.steps")


def _analysis_name(v: Any) -> str:
    if v not in ANALYSES:
        raise ConfigError(f"unknown analysis {v!r}; choose from {', '.join(ANALYSES)}")
    return v


def _base_config(raw: Any) -> RunConfig:
    """`base: quick` or `base: {preset: quick, steps: 200, optim: {wd: 0.5}, ...}` → a RunConfig."""
    if isinstance(raw, str):
        raw = {"preset": raw}
    if not isinstance(raw, dict):
        raise ConfigError(f"base must be a preset name or a mapping, not {raw!r}")
    raw = dict(raw)
    name = raw.pop("preset", "quick")
    if name not in PRESETS:
        raise ConfigError(f"base.preset: unknown preset {name!r}; choose from {', '.join(PRESETS)}")
    cfg = PRESETS[name]
    sections = {"data": DataConfig, "model": ModelConfig, "optim": OptimConfig}
    top = {f.name for f in fields(RunConfig)} - set(sections)
    for key, value in raw.items():
        if key in sections:
            if not isinstance(value, dict):
                raise ConfigError(f"base.{key} must be a mapping of fields, not {value!r}")
            known = {f.name for f in fields(sections[key])}
            bad = sorted(set(value) - known, key=str)
            if bad:
                raise ConfigError(f"base.{key}: unknown field {bad[0]!r}; "
                                  f"choose from {', '.join(sorted(known))}")
            value = dict(value)
            if key == "data" and "tasks" in value:
                value["tasks"] = _task_list(value["tasks"])
            if key == "optim" and value.get("batch") == "full":
                value["batch"] = None
            for f in ("lr", "wd", "beta1", "beta2", "eps", "clip", "momentum", "train_frac"):
                if f in value:
                    value[f] = _float(value[f], f"base.{key}.{f}")
            cfg = replace(cfg, **{key: replace(getattr(cfg, key), **value)})
        elif key in top:
            cfg = replace(cfg, **{key: value})
        else:
            raise ConfigError(f"base: unknown field {key!r}; give a RunConfig field, data, model or optim")
    try:
        return validate(cfg)
    except (TypeError, ValueError) as e:
        if isinstance(e, ConfigError):
            raise ConfigError(f"base: {e}") from None
        raise ConfigError(f"base: bad value ({e})") from None


# ---- expansion and packing ---------------------------------------------------------------------------


def expand(spec: SweepSpec) -> list[RunConfig]:
    """Every grid point as a validated RunConfig, in grid order (tasks × p × model × wd × lr × seeds)."""
    b = spec.base
    axes = itertools.product(spec.tasks or [b.data.tasks], spec.p or [b.data.p], spec.model or [b.model.kind],
                             spec.wd or [b.optim.wd], spec.lr or [b.optim.lr], spec.seeds or [b.seed])
    out: list[RunConfig] = []
    for tasks, p, kind, wd, lr, seed in axes:
        cfg = with_overrides(b, tasks=tuple(tasks), p=int(p), kind=kind, wd=float(wd), lr=float(lr),
                             seed=int(seed), steps=_budget(spec, wd, lr))
        try:
            out.append(validate(cfg))
        except ConfigError as e:
            raise ConfigError(f"run {cfg.name}: {e}") from None
    seen: dict[str, int] = {}
    for c in out:
        seen[c.name] = seen.get(c.name, 0) + 1
        if seen[c.name] > 1:
            raise ConfigError(f"the grid gives two runs named {c.name!r}; remove the repeated value")
    return out


def _budget(spec: SweepSpec, wd: float, lr: float) -> int:
    if spec.steps is None:
        return spec.base.steps
    if isinstance(spec.steps, int):
        return spec.steps
    key = wd if spec.steps_by == "wd" else lr
    for k, n in spec.steps:
        if math.isclose(k, key, rel_tol=1e-9, abs_tol=1e-12):
            return n
    raise ConfigError(f"grid.steps gives no budget for {spec.steps_by}={key:g}; "
                      f"it has {', '.join(f'{k:g}' for k, _ in spec.steps)}")


_PARAM_COUNTS: dict[str, int] = {}


def _param_count(cfg: RunConfig) -> int:
    """Parameters of one run (built once per shape on the CPU)."""
    from grokscope import model as M

    key = json.dumps([cfg.model.__dict__, cfg.data.tasks, cfg.data.p])
    if key not in _PARAM_COUNTS:
        _PARAM_COUNTS[key] = M.count_params(M.init_params(cfg.model, cfg.data, 0), batched=False)
    return _PARAM_COUNTS[key]


def _n_pairs(cfg: RunConfig) -> int:
    d = cfg.data
    n = d.p - 1 if d.exclude_zero else d.p
    return n * (n + 1) // 2 if d.unordered else n * n


def _act_floats(cfg: RunConfig) -> int:
    """Floats of activations one example keeps for backward (a generous count: residual stream, layer
    norms, Q/K/V, attention scores, MLP hidden before/after GELU, per-task logits and softmax)."""
    m, d = cfg.model, cfg.data
    heads = len(d.tasks) * d.p * 3
    if m.kind == "mlp":
        return d.p + 2 * m.width + heads
    tokens = 3 if m.kind == "transformer1" else 2
    per_layer = tokens * (10 * m.d_model + 3 * m.d_ff + 2 * m.n_heads * tokens)
    return tokens * m.d_model * 2 + m.n_layers * per_layer + heads


def run_bytes(cfg: RunConfig) -> int:
    """Device bytes one run adds to a batch: parameters, gradients, two Adam moments, and the minibatch's
    activations (×2 for their gradients), in float32."""
    n_train = max(1, round(_n_pairs(cfg) * cfg.data.train_frac))
    batch = cfg.optim.batch or n_train
    return 4 * (4 * _param_count(cfg) + 2 * batch * _act_floats(cfg))


def _host_bytes(cfg: RunConfig) -> int:
    """Host bytes one run holds while training: ≤ n_snapshots full snapshots plus the attention trajectory."""
    from grokscope import model as M

    P = _param_count(cfg)
    attn = 0
    if cfg.model.kind != "mlp":
        attn = len(M.attention_names(cfg.model)) * cfg.model.d_model ** 2
    return 4 * (cfg.n_snapshots * P + (cfg.steps // cfg.attn_every + 1) * attn)


def _device_budget(device: str) -> tuple[int | None, int]:
    """(bytes a batch may use on the device, or None for the CPU; the run cap)."""
    import torch

    if device.startswith("cuda"):
        if torch.cuda.is_available():
            free, _ = torch.cuda.mem_get_info(torch.device(device))
            return int(free * MEMORY_FRACTION), 1 << 30
        return int(GPU_FALLBACK_BYTES * MEMORY_FRACTION), 1 << 30
    return None, CPU_MAX_RUNS


def _host_budget() -> int:
    try:
        return int(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") * 0.5)
    except (ValueError, OSError, AttributeError):
        return 1 << 62


def capacity(cfg: RunConfig, device: str, max_runs: int | None = None) -> int:
    """How many runs shaped like `cfg` one batched program may hold on `device`."""
    mem, cap = _device_budget(device)
    if mem is not None:
        fixed = 4 * EVAL_CHUNK * _act_floats(cfg)  # one evaluation chunk, shared by the batch
        cap = min(cap, max(1, (mem - fixed) // run_bytes(cfg)))
    cap = min(cap, max(1, _host_budget() // max(1, _host_bytes(cfg))))
    return max(1, min(cap, max_runs) if max_runs else cap)


def plan(cfgs: Sequence[RunConfig], device: str, max_runs: int | None = None) -> list[list[RunConfig]]:
    """Pack runs into batched programs: runs of one `batch_key` together (similar budgets side by side),
    as few batches per shape as the device allows, split evenly; other shapes go to other batches."""
    if max_runs is not None and max_runs < 1:
        raise ConfigError(f"max_runs={max_runs} must be >= 1")
    groups: dict[str, list[RunConfig]] = {}
    for c in cfgs:
        groups.setdefault(batch_key(c), []).append(c)
    batches: list[list[RunConfig]] = []
    for group in groups.values():
        group = sorted(group, key=lambda c: c.steps)  # stable: grid order within a budget
        cap = capacity(group[0], device, max_runs)
        n = -(-len(group) // cap)
        size, extra = divmod(len(group), n)  # even split: 70 runs, cap 64 → 35 + 35
        start = 0
        for i in range(n):
            stop = start + size + (i < extra)
            batches.append(group[start:stop])
            start = stop
    return batches


# ---- analyses ----------------------------------------------------------------------------------------


def _analysis_summary(run: RunDir, device: str) -> dict[str, Any]:
    from grokscope.geometry.summary import geometry_summary

    return geometry_summary(run, device=device)


def _analysis_pca(run: RunDir, device: str) -> dict[str, Any]:
    from grokscope.commands.analyze import analyze_pca

    return analyze_pca(run)


def _analysis_defect(run: RunDir, device: str) -> dict[str, Any]:
    from grokscope.commands.analyze import analyze_defect

    return analyze_defect(run, device)


def _analysis_hessian(run: RunDir, device: str) -> dict[str, Any]:
    from grokscope.commands.analyze import analyze_hessian_run

    return analyze_hessian_run(run, device)


def _analysis_fragility(run: RunDir, device: str) -> dict[str, Any]:
    """Compression/perturbation table and k* (as `grokscope fragility` stores them)."""
    from grokscope.geometry.compress import FragilityConfig, fragility
    from grokscope.geometry.reconstruct import reconstruction_threshold

    frag = fragility(run, FragilityConfig(), device)
    rec = reconstruction_threshold(run, 20, 0.9, device)
    run.write_table("fragility", frag)
    run.write_table("reconstruction", rec.table)
    summary = {"k_star": rec.k_star, "cumulative_at_k_star": rec.cumulative_at_k_star,
               "threshold": rec.threshold}
    write_json(run.file("fragility.json"), summary)
    return summary


ANALYSES: dict[str, Callable[[RunDir, str], dict[str, Any]]] = {
    "summary": _analysis_summary,  # grokscope.geometry.summary.geometry_summary: PC1%, ρ, onset, lead
    "pca": _analysis_pca,
    "defect": _analysis_defect,
    "hessian": _analysis_hessian,
    "fragility": _analysis_fragility,
}


def resolve_analysis(name: str) -> Callable[[RunDir, str], dict[str, Any]]:
    """The function behind an analysis name (its module is imported only when it runs)."""
    return ANALYSES[_analysis_name(name)]


# ---- one batch (what an executor runs) ---------------------------------------------------------------


def _finished(cfg: RunConfig, out: Path) -> bool:
    """A run is done when its directory holds this exact config and its summary says finished."""
    d = RunDir(out / cfg.name)
    if not (d.exists() and d.file("summary.json").exists()):
        return False
    try:
        return d.config() == cfg and bool(d.summary().get("finished"))
    except (OSError, ValueError, TypeError, StoreError):
        return False


def _missing_analyses(cfg: RunConfig, out: Path, analyses: Sequence[str]) -> list[str]:
    f = out / cfg.name / ANALYSES_FILE
    done = read_json(f) if f.exists() else {}
    return [a for a in analyses if a not in done]


def train_batch(cfgs: list[RunConfig], out: str, device: str, resume: bool = False,
                analyses: Sequence[str] = (), report: Callable[[dict[str, Any]], None] | None = None
                ) -> list[str]:
    """Train the unfinished runs of one batch into `out` (resuming from checkpoints), then run the missing
    analyses of every run; returns the names trained. This is the unit an executor schedules."""
    from grokscope.runner import run_batch

    out_path = Path(out)
    todo = [c for c in cfgs if not _finished(c, out_path)]
    if todo:
        hook = _eval_reporter(report) if report is not None else None
        run_batch(todo, out_path, device, resume=resume, on_eval=hook)
    trained = {c.name for c in todo}
    for c in cfgs:
        missing = list(analyses) if c.name in trained else _missing_analyses(c, out_path, analyses)
        if not missing:
            continue
        run = RunDir(out_path / c.name)
        f = run.file(ANALYSES_FILE)
        results = read_json(f) if f.exists() and c.name not in trained else {}
        for a in missing:
            results[a] = _jsonable(resolve_analysis(a)(run, device))
            write_json(f, results)
    return [c.name for c in todo]


def _eval_reporter(report: Callable[[dict[str, Any]], None]) -> Callable[[Any], None]:
    """An `on_eval` hook that sends a small progress dict (runs done, grokked per task, steps/s)."""
    t0: list[float] = []
    s0: list[int] = []

    def on_eval(e: Any) -> None:
        now = time.perf_counter()
        if not t0:
            t0.append(now)
            s0.append(e.step)
        rate = (e.step - s0[0]) / (now - t0[0]) if now > t0[0] else 0.0
        report({"step": int(e.step), "max_steps": int(e.max_steps), "runs": int(len(e.stopped)),
                "done": int(e.stopped.sum()), "steps_per_s": float(rate),
                "grokked": {t: int((e.grok_step[:, i] >= 0).sum()) for i, t in enumerate(e.tasks)}})

    return on_eval


def _jsonable(x: Any) -> Any:
    return json.loads(json.dumps(x, default=_default))


def _default(x: Any) -> Any:
    try:
        import numpy as np

        if isinstance(x, np.generic):
            return x.item()
    except ImportError:
        pass
    if hasattr(x, "tolist"):
        return x.tolist()
    return str(x)


# ---- progress ----------------------------------------------------------------------------------------


class SweepProgress:
    """A rich display, one bar per batch: steps, runs done, grokked per task, steps/s."""

    def __init__(self, batches: list[list[RunConfig]], enabled: bool = True) -> None:
        self.enabled = enabled and bool(batches)
        self.batches = batches
        self._ids: list[Any] = []
        self._bar = None

    def __enter__(self) -> SweepProgress:
        if self.enabled:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self._bar = Progress(TextColumn("[bold]{task.fields[label]}"), BarColumn(), MofNCompleteColumn(),
                                 TimeElapsedColumn(), TextColumn("{task.description}"),
                                 console=Console(stderr=True), transient=False)
            self._bar.__enter__()
            n = len(self.batches)
            for i, b in enumerate(self.batches):
                self._ids.append(self._bar.add_task(f"{len(b)} runs, waiting", total=max(c.steps for c in b),
                                                    label=f"batch {i + 1}/{n}", start=False))
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._bar is not None:
            self._bar.__exit__(*exc)

    def update(self, i: int, info: dict[str, Any]) -> None:
        """Show batch `i`'s latest report (from `_eval_reporter`)."""
        if self._bar is None:
            return
        grok = " ".join(f"{t} {n}/{info['runs']}" for t, n in info["grokked"].items())
        if not self._bar.tasks[self._ids[i]].started:
            self._bar.start_task(self._ids[i])
        self._bar.update(self._ids[i], completed=info["step"], total=info["max_steps"],
                         description=f"done {info['done']}/{info['runs']} | grokked {grok} | "
                                     f"{info['steps_per_s']:.0f} steps/s")

    def finish(self, i: int, trained: int) -> None:
        if self._bar is None:
            return
        t = self._bar.tasks[self._ids[i]]
        if not t.started:
            self._bar.start_task(self._ids[i])
        self._bar.update(self._ids[i], completed=t.total,
                         description=(t.description if trained else "already done"))


# ---- executors ---------------------------------------------------------------------------------------

BatchFn = Callable[..., list[str]]


def _resolve_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device {device!r} is not available on this machine")
    return device


def _check_store(cfgs: Iterable[RunConfig], out: Path, resume: bool) -> None:
    """Refuse, before anything trains, a stored run of the same name whose config differs (unless resume)."""
    for c in cfgs:
        d = RunDir(out / c.name)
        if d.exists() and not resume and d.config() != c:
            raise StoreError(f"{d.path} holds a run with a different config; set `resume: true` in the spec "
                             "to continue it under the sweep's config, or choose another out")


def sweep_status(spec: SweepSpec) -> pd.DataFrame:
    """Each run of the spec with its state in the store: new, partial, finished or conflict."""
    rows = []
    for c in expand(spec):
        d = RunDir(Path(spec.out) / c.name)
        if not d.exists():
            state = "new"
        elif d.config() != c:
            state = "resume" if spec.resume else "conflict"
        else:
            state = "finished" if _finished(c, Path(spec.out)) else "partial"
        rows.append({"name": c.name, "state": state, "steps": c.steps,
                     "missing_analyses": _missing_analyses(c, Path(spec.out), spec.analyses) if d.exists()
                     else list(spec.analyses)})
    return pd.DataFrame(rows)


def pending(spec: SweepSpec, cfgs: Sequence[RunConfig] | None = None) -> list[RunConfig]:
    """The runs a sweep still has to train or analyse (finished ones with every analysis stored are not)."""
    out = Path(spec.out)
    return [c for c in (expand(spec) if cfgs is None else cfgs)
            if not _finished(c, out) or _missing_analyses(c, out, spec.analyses)]


def run_sweep(spec: SweepSpec, executor: str = "local", address: str | None = None, progress: bool = True,
              *, max_runs: int | None = None, batch_fn: BatchFn | None = None) -> pd.DataFrame:
    """Train every unfinished run of the sweep (batched, in-process or on Ray), run its analyses, and
    return one row per run: name, path, status, grok step and final train/test accuracy per task."""
    if executor not in ("local", "ray"):
        raise ConfigError(f"unknown executor {executor!r}; choose local or ray")
    batch_fn = batch_fn or train_batch
    cfgs = expand(spec)
    out = Path(spec.out).resolve()
    _check_store(cfgs, out, spec.resume)
    before = {c.name for c in cfgs if _finished(c, out)}
    todo = pending(spec, cfgs)
    max_runs = max_runs or spec.max_runs
    if executor == "ray":
        _execute_ray(_import_ray(), todo, spec, out, address, progress, batch_fn, max_runs)
    else:
        device = _resolve_device(spec.device)
        batches = plan(todo, device, max_runs)
        with SweepProgress(batches, progress) as bar:
            for i, b in enumerate(batches):
                report = (lambda info, i=i: bar.update(i, info)) if progress else None
                trained = batch_fn(b, str(out), device, spec.resume, spec.analyses, report)
                bar.finish(i, len(trained))
    return results_table(cfgs, out, before)


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise ConfigError("the ray executor needs Ray: pip install 'grokscope[ray]' or 'ray>=2.9'") from None
    return ray


def _execute_ray(ray: Any, cfgs: list[RunConfig], spec: SweepSpec, out: Path, address: str | None,
                 progress: bool, batch_fn: BatchFn, max_runs: int | None = None) -> None:
    """One Ray task per batch (num_gpus=1 where the sweep runs on CUDA), all writing to the shared store
    `out`; a failed task is retried up to `spec.max_retries` times and resumes from its checkpoints."""
    if not cfgs:
        return
    started = False
    if not ray.is_initialized():
        ray.init(address=address, include_dashboard=False, log_to_driver=False)
        started = True
    try:
        gpu = spec.device.startswith("cuda") or (
            spec.device == "auto" and ray.cluster_resources().get("GPU", 0) > 0)
        worker_device = "cuda" if gpu else "cpu"  # Ray pins the task's GPU via CUDA_VISIBLE_DEVICES
        batches = plan(cfgs, worker_device, max_runs)
        task = ray.remote(num_gpus=1 if gpu else 0, max_retries=spec.max_retries,
                          retry_exceptions=[RuntimeError, OSError])(batch_fn)
        actor = _progress_actor(ray) if progress else None
        refs = {}
        for i, b in enumerate(batches):
            report = _actor_reporter(actor, i) if actor is not None else None
            refs[task.remote(b, str(out), worker_device, spec.resume, spec.analyses, report)] = i
        with SweepProgress(batches, progress) as bar:
            pending = list(refs)
            while pending:
                ready, pending = ray.wait(pending, num_returns=1, timeout=0.5)
                if actor is not None:
                    for i, info in ray.get(actor.snapshot.remote()).items():
                        bar.update(i, info)
                for ref in ready:
                    try:
                        trained = ray.get(ref)  # raises once the task has failed past its retries
                    except ray.exceptions.RayTaskError as e:
                        if isinstance(e.cause, GrokscopeError):  # bad input: its one-line message
                            raise e.cause from None
                        raise
                    bar.finish(refs[ref], len(trained))
    finally:
        if started:
            ray.shutdown()


def _progress_actor(ray: Any) -> Any:
    @ray.remote(num_cpus=0)
    class ProgressBoard:
        """The latest progress report of each batch, written by tasks and read by the driver."""

        def __init__(self) -> None:
            self.latest: dict[int, dict[str, Any]] = {}

        def update(self, i: int, info: dict[str, Any]) -> None:
            self.latest[i] = info

        def snapshot(self) -> dict[int, dict[str, Any]]:
            return dict(self.latest)

    return ProgressBoard.remote()


def _actor_reporter(actor: Any, i: int) -> Callable[[dict[str, Any]], None]:
    def report(info: dict[str, Any]) -> None:
        actor.update.remote(i, info)

    return report


# ---- results -----------------------------------------------------------------------------------------


def results_table(cfgs: Sequence[RunConfig], out: Path, before: set[str] = frozenset()) -> pd.DataFrame:
    """One row per run from the store: config axes, status, grok steps and final accuracies per task, and
    the scalar results of its analyses (`<analysis>.<key>`)."""
    rows = []
    for c in cfgs:
        d = RunDir(out / c.name)
        s = d.summary() if d.file("summary.json").exists() else {}
        row: dict[str, Any] = {"name": c.name, "path": str(d.path), "tasks": "+".join(c.data.tasks),
                               "p": c.data.p, "model": c.model.kind, "wd": c.optim.wd, "lr": c.optim.lr,
                               "seed": c.seed, "steps": c.steps,
                               "status": "skipped" if c.name in before else ("trained" if s else "missing"),
                               "steps_trained": s.get("steps_trained"), "finished": s.get("finished"),
                               "diverged": s.get("diverged"), "wall_time": s.get("wall_time")}
        for t in c.data.tasks:
            row[f"grok_step.{t}"] = (s.get("grok_step") or {}).get(t)
            row[f"grok_step_90.{t}"] = (s.get("grok_step_90") or {}).get(t)
            acc = (s.get("final_acc") or {}).get(t, {})
            row[f"train_acc.{t}"] = acc.get("train")
            row[f"test_acc.{t}"] = acc.get("test")
        f = d.file(ANALYSES_FILE)
        for name, res in (read_json(f) if f.exists() else {}).items():
            row.update(_flat(res, name))
        rows.append(row)
    return pd.DataFrame(rows)


def _flat(d: Any, prefix: str) -> dict[str, Any]:
    """Scalars of a nested dict as `prefix.key.sub` columns (lists are left out)."""
    if not isinstance(d, dict):
        return {prefix: d} if d is None or isinstance(d, (int, float, str, bool)) else {}
    out: dict[str, Any] = {}
    for k, v in d.items():
        out.update(_flat(v, f"{prefix}.{k}"))
    return out
