"""Trains the early-warning corpus into a resumable store: grokscope's batched trainer for its own models, a plain
loop recorded by `grokscope.Monitor` for user code, and the HF / Lightning callbacks for framework code
(`ew_frameworks`). Every run records train/test loss and accuracy, the weight norm and the commutator defect every
100 steps, stops when it groks, and gets `ew_run.json` in its folder when it ends (family, role, optimiser kind,
lr, decay)."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from ew_corpus import CORPUS, GROKSCOPE_MODELS, Group, Run, budget, group_dir, schedule
from ew_export import exported_groks
from torch import nn

EVERY = 100  # steps between evaluations and defect measurements
META = "ew_run.json"


def run_meta(g: Group, r: Run, steps: int, framework: str, **extra: Any) -> dict[str, Any]:
    """What a detector may need about a run beyond the store's config: its family and role, and the optimiser on
    its own clock (kind, lr, weight decay and whether it is decoupled or an L2 term)."""
    return {"part": g.part, "family": g.family, "task": g.task, "model": g.model, "framework": framework,
            "role": r.role, "seed": r.seed, "train_frac": r.train_frac, "budget": steps, "p": g.p or None,
            "batch": g.batch or "full",
            "optimizer": {"kind": g.optimizer, "lr": r.lr, "weight_decay": r.wd,
                          "decay": g.decay if r.wd > 0 else "none",
                          "momentum": 0.9 if g.optimizer == "sgd" else None,
                          "betas": None if g.optimizer == "sgd" else [0.9, g.beta2]},
            **extra}


def write_meta(path: Path, meta: dict[str, Any]) -> None:
    """`ew_run.json` in a run directory, once the run has trained (a restarted run's store is recreated), written
    whole, then renamed: never half a file."""
    tmp = path / (META + ".tmp")
    tmp.write_text(json.dumps(meta, indent=1))
    tmp.replace(path / META)


def stored_budget(path: Path, default: int) -> int:
    """The budget a stored run was trained to (its `ew_run.json`), else `default`."""
    meta = path / META
    return int(json.loads(meta.read_text())["budget"]) if meta.exists() else default


def stored_groks(store: Path, g: Group) -> list[int]:
    """Grok steps of the group's finished runs in the store and in the export (`ew_export`)."""
    from grokscope.store import find_runs

    d = group_dir(store, g)
    out = [step for step in exported_groks(g).values() if step is not None]
    for run in find_runs([d]) if d.exists() else []:
        if run.has_summary() and run.summary().get("finished"):
            step = (run.summary().get("grok_step") or {}).get(g.task)
            if step is not None:
                out.append(int(step))
    return out


def done(path: Path, task: str, steps: int) -> bool:
    """A run is done when it finished and either grokked or trained its whole budget (a run that did not grok
    within a shorter budget trains again to the longer one; an interrupted run starts over)."""
    from grokscope.store import RunDir

    run = RunDir(path)
    if not (run.exists() and run.has_summary() and run.summary().get("finished")):
        return False
    s = run.summary()
    return (s.get("grok_step") or {}).get(task) is not None or (s.get("steps_trained") or 0) >= steps


def make_optimizer(g: Group, params: Any, r: Run) -> torch.optim.Optimizer:
    """The group's optimiser: AdamW (decoupled decay), Adam with decay as L2, or SGD with momentum 0.9 (L2)."""
    if g.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=r.lr, weight_decay=r.wd, betas=(0.9, g.beta2))
    if g.optimizer == "adam":
        return torch.optim.Adam(params, lr=r.lr, weight_decay=r.wd, betas=(0.9, g.beta2))
    if g.optimizer == "sgd":
        return torch.optim.SGD(params, lr=r.lr, momentum=0.9, weight_decay=r.wd)
    raise ValueError(f"unknown optimizer {g.optimizer!r}")


@torch.no_grad()
def evaluate(model: nn.Module, X: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    """Cross-entropy and accuracy on (X, y), in eval mode."""
    was = model.training
    model.eval()
    out = model(X)
    model.train(was)
    return float(F.cross_entropy(out, y)), float((out.argmax(1) == y).float().mean())


def train_plain(g: Group, r: Run, out: Path, steps: int) -> None:
    """A plain PyTorch loop (minibatches drawn with replacement, or the full batch) recorded by `Monitor`
    (defects every 100 steps, the detector off: it is replayed later)."""
    from ew_models import setup

    from grokscope.monitor import Monitor

    model, (X, y, Xt, yt) = setup(g.model, g.task, g.p, r.train_frac, r.seed)
    batch = g.batch or len(X)
    opt = make_optimizer(g, model.parameters(), r)
    gen = torch.Generator().manual_seed(r.seed + 1)
    mon = Monitor(model, F.cross_entropy, (X, y), out=out, optimizer=opt, tasks=(g.task,), batch_size=batch,
                  seed=r.seed, steps=steps, overwrite=True, defect_every=EVERY, warn=False, verbose=False)
    for step in range(1, steps + 1):
        if batch >= len(X):
            xb, yb = X, y
        else:
            idx = torch.randint(0, len(X), (batch,), generator=gen)
            xb, yb = X[idx], y[idx]
        loss = F.cross_entropy(model(xb), yb)
        opt.zero_grad()
        loss.backward()
        opt.step()
        metrics = None
        if step % EVERY == 0:
            tr, te = evaluate(model, X, y), evaluate(model, Xt, yt)
            metrics = {"train_loss": tr[0], "train_acc": tr[1], "test_loss": te[0], "test_acc": te[1]}
        mon.step(step, metrics)
        if mon.grok_step()[g.task] is not None:
            break
    mon.close()
    write_meta(out, run_meta(g, r, steps, "plain", n_train=len(X)))


def grokscope_config(g: Group, r: Run) -> Any:
    """A grokscope-trained run's RunConfig: the quick preset with the group's task, model and optimiser."""
    from grokscope.config import preset, with_overrides

    return with_overrides(preset("quick"), tasks=(g.task,), kind=g.model, train_frac=g.train_frac, lr=g.lr,
                          steps=g.steps, defect_every=EVERY, checkpoint_every=1000, seed=r.seed, wd=r.wd)


def run_dir(store: Path, g: Group, r: Run) -> Path:
    """Where a run is stored: grokscope's run name for its own models, the group's for user code."""
    return group_dir(store, g) / (grokscope_config(g, r).name if g.model in GROKSCOPE_MODELS else g.run_name(r))


def train_grokscope(g: Group, runs: list[Run], store: Path) -> None:
    """The runs as one batched grokscope program (quick preset; resumes from the runs' checkpoints)."""
    from grokscope.sweep.batch import train_with_probes

    cfgs = [grokscope_config(g, r) for r in runs]
    t0 = time.process_time()
    train_with_probes(cfgs, group_dir(store, g), resume=True, compile=False)
    share = round((time.process_time() - t0) / len(runs), 1)  # one batched program: its CPU time split evenly
    for c, r in zip(cfgs, runs, strict=True):
        write_meta(group_dir(store, g) / c.name, run_meta(g, r, g.steps, "grokscope", cpu_seconds=share))


def trainer_for(g: Group) -> Any:
    """The function training one user-code run of `g` (plain loop, HF Trainer or Lightning)."""
    if g.model.startswith(("hf-", "lightning-")):
        from ew_frameworks import train_hf, train_lightning

        return train_hf if g.model.startswith("hf-") else train_lightning
    return train_plain


def train_runs(g: Group, runs: list[Run], store: Path) -> int:
    """Train the runs of `g` that are not done; the number trained."""
    from grokscope.store import RunDir

    exported = exported_groks(g)
    runs = [r for r in runs if run_dir(store, g, r).name not in exported]  # measured in an earlier session
    if g.model in GROKSCOPE_MODELS:
        todo = [r for r in runs if not done(run_dir(store, g, r), g.task, g.steps)]
        if todo:
            train_grokscope(g, todo, store)
        return len(todo)
    n = 0
    for r in runs:
        steps = budget(g, stored_groks(store, g))
        out = run_dir(store, g, r)
        if done(out, g.task, steps):
            continue
        if out.exists():  # interrupted (or trained to a shorter budget): start over, even if killed before a store
            shutil.rmtree(out)  # was written (the monitor refuses a folder that holds no run)
        t0 = time.process_time()
        trainer_for(g)(g, r, out, steps)
        cpu = time.process_time() - t0
        write_meta(out, {**json.loads((out / META).read_text()), "cpu_seconds": round(cpu, 1)})
        grok = (RunDir(out).summary().get("grok_step") or {}).get(g.task)
        print(f"  {g.family}/{out.name} ({r.role}, budget {steps}): grok {grok}, {cpu:.0f} CPU-s", flush=True)
        n += 1
    return n


def status(store: Path, only: str | None = None, groups: tuple[Group, ...] = CORPUS) -> str:
    """Per group: runs done of all, each done run's grok step (— none within its budget) and CPU seconds."""
    from grokscope.store import RunDir

    lines = []
    for g in groups:
        if only and g.part != only:
            continue
        runs, steps = list(g.runs()), budget(g, stored_groks(store, g))
        cells, cpu, exported = [], 0.0, exported_groks(g)
        for r in runs:
            path = run_dir(store, g, r)
            if path.name in exported and not path.exists():
                grok = exported[path.name]
                cells.append(f"\n    s{r.seed} {r.role} wd{r.wd:g} lr{r.lr:g} f{r.train_frac:g}: grok "
                             f"{grok if grok is not None else '—'} (exported)")
            elif done(path, g.task, steps):
                grok = (RunDir(path).summary().get("grok_step") or {}).get(g.task)
                meta = json.loads((path / META).read_text()) if (path / META).exists() else {}
                cpu += meta.get("cpu_seconds", 0.0)
                cells.append(f"\n    s{r.seed} {r.role} wd{r.wd:g} lr{r.lr:g} f{r.train_frac:g}: grok "
                             f"{grok if grok is not None else '—'}, {meta.get('cpu_seconds', 0):.0f} CPU-s")
        lines.append(f"{g.part}/{g.family}: {len(cells)}/{len(runs)} done, budget {steps}, {cpu:.0f} CPU-s"
                     + "".join(cells))
    return "\n".join(lines)


def train_corpus(store: Path, only: str | None = None, groups: tuple[Group, ...] = CORPUS,
                 roles: tuple[str, ...] = ()) -> None:
    """Train every run of the corpus (or of one part, of some `roles`) that is not done, in `schedule` order."""
    for g, runs in schedule(tuple(x for x in groups if not only or x.part == only)):
        runs = [r for r in runs if not roles or r.role in roles]
        if not runs:
            continue
        t0 = time.process_time()
        n = train_runs(g, runs, store)
        if n:
            print(f"[{g.part}] {g.family} seed {runs[0].seed}: {time.process_time() - t0:.0f} CPU-s", flush=True)
