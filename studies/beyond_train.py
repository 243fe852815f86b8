"""The canonical setups the early-warning corpus lacks, trained as their papers configure them and recorded by
`grokscope.Monitor` into a resumable store (`~/.cache/grokscope/beyond/`, `$GROKSCOPE_BEYOND_STORE`).

Gromov (2023, arXiv 2301.02679): a two-layer MLP on a + b mod 97, inputs the concatenated one-hots of a and b,
N = 500 hidden units with a quadratic activation and no biases, squared error against one-hot targets, full batch,
AdamW (lr 1e-2, betas 0.9 / 0.98, weight decay 5, init N(0, 0.25 / (2N)^(2/3)): the configuration of the
Doshi–He–Gromov code that extends the paper). Gromov's MLP groks without any decay, so its no-decay runs are not
never-grokking controls; the too-little-data runs (10 % train) are.

Nanda et al. (2023): their one-layer transformer (d 128, 4 heads, ReLU MLP 512, no LayerNorm, tokens a b =) as a
TransformerLens 4 `TransformerBridge` from `boot_native` (`ew_models.tl_bridge`), full batch, AdamW lr 1e-3, betas
0.9 / 0.98, wd 1, at p 53 with 50 % train: the setting of Liu et al.'s Fig. 1 in Nanda's architecture (p 113 at 30 %
costs ~6× more per step and groks at ~10k steps; the corpus' p 41 at 40 % did not grok within 15k steps).

Composition in S4 (Chughtai et al. 2023's group-composition setting on a smaller group): the corpus' plain
transformer trunk (d 64, 4 heads) on g∘h over the 576 pairs, full batch, AdamW lr 3e-3, betas 0.9 / 0.98, wd 1, with
80 % train. At 50 % train it did not generalise within 20k steps (lr 1e-3, minibatch 128; test accuracy at chance),
at 70 % (lr 3e-3, minibatch 128) it reached 0.86–0.99 without holding 98 %; at 80 % it memorises by step 100 and
groks at 3.7k–5.7k.

A run stops once it groks (test accuracy ≥ 98 % for 3 evaluations) or at its budget; finished runs are skipped,
interrupted ones start over.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ew_data import modular  # noqa: E402

STORE = Path(os.environ.get("GROKSCOPE_BEYOND_STORE", Path.home() / ".cache" / "grokscope" / "beyond"))
META = "beyond_run.json"


class GromovMLP(nn.Module):
    """Gromov's network: one-hot(a) ⊕ one-hot(b) → N hidden units, x² → p outputs, no biases."""

    def __init__(self, p: int, width: int) -> None:
        super().__init__()
        self.p = p
        self.fc1 = nn.Linear(2 * p, width, bias=False)
        self.fc2 = nn.Linear(width, p, bias=False)
        std = 0.5 / (2 * width) ** (1 / 3)
        nn.init.normal_(self.fc1.weight, 0.0, std)
        nn.init.normal_(self.fc2.weight, 0.0, std)

    def forward(self, pairs: torch.Tensor) -> torch.Tensor:
        x = torch.cat([F.one_hot(pairs[:, 0], self.p), F.one_hot(pairs[:, 1], self.p)], 1).to(self.fc1.weight.dtype)
        return self.fc2(self.fc1(x) ** 2)


def mse_onehot(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Gromov's loss: mean squared error against the one-hot target."""
    return F.mse_loss(out, F.one_hot(y, out.shape[-1]).to(out.dtype))


@dataclass(frozen=True)
class OwnRun:
    """One run of a setup trained here: its family, role (`grok?`, `no-decay`, `small-data`), seed, weight decay,
    train fraction and step budget."""

    family: str
    role: str
    seed: int
    wd: float
    train_frac: float
    budget: int

    @property
    def name(self) -> str:
        return f"{self.family}-wd{self.wd:g}-f{self.train_frac:g}-s{self.seed}"


GROMOV = {"p": 97, "width": 500, "lr": 1e-2, "betas": (0.9, 0.98), "every": 10, "task": "add"}
NANDA = {"p": 53, "d_model": 128, "lr": 1e-3, "betas": (0.9, 0.98), "every": 100, "task": "add"}
S4 = {"lr": 3e-3, "betas": (0.9, 0.98), "every": 100, "task": "s4"}
FAMILIES = {"gromov-mlp": GROMOV, "nanda-bridge": NANDA, "s4-trunk": S4}  # each family trained here: its settings
RUNS: tuple[OwnRun, ...] = tuple(
    r for s in (1, 2, 3) for r in (OwnRun("gromov-mlp", "grok?", s, 5.0, 0.3, 1000),
                                   OwnRun("gromov-mlp", "no-decay", s, 0.0, 0.3, 2000),
                                   OwnRun("gromov-mlp", "small-data", s, 5.0, 0.1, 1500))
) + (OwnRun("nanda-bridge", "grok?", 3, 1.0, 0.5, 9000),) + tuple(  # seeds 1-2 and controls: the corpus' bridge
    r for s in (1, 2, 3) for r in (OwnRun("s4-trunk", "grok?", s, 1.0, 0.8, 8000),
                                   OwnRun("s4-trunk", "no-decay", s, 0.0, 0.8, 18000),
                                   OwnRun("s4-trunk", "small-data", s, 1.0, 0.5, 18000))
)  # the controls' budget: 3 × the slowest grok of the three seeds (5.7k)


def settings(run: OwnRun) -> dict[str, Any]:
    """The family's optimiser and recording settings, and its task (the monitor's name for it)."""
    return FAMILIES[run.family]


def build(run: OwnRun) -> tuple[nn.Module, Any, tuple[torch.Tensor, ...]]:
    """The seeded model, its loss and its data split (X, y, X_test, y_test)."""
    torch.manual_seed(run.seed)
    if run.family == "gromov-mlp":
        return (GromovMLP(GROMOV["p"], GROMOV["width"]), mse_onehot,
                modular("add", GROMOV["p"], run.train_frac, run.seed))
    from ew_data import with_equals
    from ew_models import setup, tl_bridge

    if run.family == "s4-trunk":
        model, data = setup("plain-trunk", "s4", 0, run.train_frac, run.seed)
        return model, F.cross_entropy, data
    p = NANDA["p"]
    return tl_bridge(p, NANDA["d_model"], run.seed), F.cross_entropy, with_equals(
        modular("add", p, run.train_frac, run.seed), p)


def run_dir(store: Path, run: OwnRun) -> Path:
    return store / run.family / run.name


def done(path: Path) -> bool:
    """A run is done once its monitor closed it and its meta file was written (after training)."""
    return (path / META).exists()


@torch.no_grad()
def _evaluate(model: nn.Module, loss_fn: Any, X: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    out = model(X)
    return float(loss_fn(out, y)), float((out.argmax(1) == y).float().mean())


def train_one(run: OwnRun, out: Path) -> None:
    """Full-batch AdamW, recorded by the monitor (defects, watched tensors, snapshots and evaluations every 10 steps
    for Gromov's MLP, every 100 for the bridge and S4)."""
    from grokscope.monitor import Monitor

    cfg = settings(run)
    every = cfg["every"]
    model, loss_fn, (X, y, Xt, yt) = build(run)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg["lr"], weight_decay=run.wd, betas=cfg["betas"])
    task = cfg["task"]
    mon = Monitor(model, loss_fn, (X, y), out=out, optimizer=opt, tasks=(task,), batch_size=len(X), seed=run.seed,
                  steps=run.budget, overwrite=True, defect_every=every, watch_every=every, snapshot_every=every,
                  n_snapshots=120, sketch_above=1_000_000, warn=False, verbose=False)
    t0 = time.process_time()
    for step in range(1, run.budget + 1):
        loss = loss_fn(model(X), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        metrics = None
        if step % every == 0:
            tr, te = _evaluate(model, loss_fn, X, y), _evaluate(model, loss_fn, Xt, yt)
            metrics = {"train_loss": tr[0], "train_acc": tr[1], "test_loss": te[0], "test_acc": te[1]}
        mon.step(step, metrics)
        if mon.grok_step()[task] is not None:
            break
    mon.close()
    meta = {"family": run.family, "role": run.role, "seed": run.seed, "wd": run.wd, "train_frac": run.train_frac,
            "budget": run.budget, **{k: v for k, v in cfg.items() if k != "betas"}, "betas": list(cfg["betas"]),
            "optimizer": "adamw", "loss": "mse" if run.family == "gromov-mlp" else "cross-entropy", "batch": "full",
            "cpu_seconds": round(time.process_time() - t0, 1)}
    tmp = out / (META + ".tmp")
    tmp.write_text(json.dumps(meta, indent=1))
    tmp.replace(out / META)


def _grok(out: Path, run: OwnRun) -> int | None:
    """The stored run's grok step (None: it did not grok within its budget)."""
    return json.loads((out / "summary.json").read_text()).get("grok_step", {}).get(settings(run)["task"])


def train_all(store: Path = STORE) -> None:
    """Every run not done yet, in order (seed by seed); an interrupted run's folder is removed and it trains again."""
    torch.set_num_threads(1)
    for run in RUNS:
        out = run_dir(store, run)
        if done(out):
            continue
        if out.exists():
            shutil.rmtree(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        train_one(run, out)
        meta = json.loads((out / META).read_text())
        grok = _grok(out, run)
        print(f"  {run.name} ({run.role}): grok {grok}, {meta['cpu_seconds']} CPU-s", flush=True)


def status(store: Path = STORE) -> str:
    """One line per run: done or not, its grok step and CPU seconds."""
    lines = []
    for run in RUNS:
        out = run_dir(store, run)
        if done(out):
            meta = json.loads((out / META).read_text())
            grok = _grok(out, run)
            lines.append(f"{run.name} ({run.role}): grok {grok if grok is not None else '—'}, "
                         f"{meta['cpu_seconds']} CPU-s")
        else:
            lines.append(f"{run.name} ({run.role}): not done")
    return "\n".join(lines)
