"""The canonical grokking setups of issue 41's table: where each one's runs live (groups of the early-warning
corpus, or the runs `beyond_train` trains), its paper's configuration and grok step, how it was scaled to the CPU,
and the structure its measurements need (which trajectories PCA reads, whether it has attention, its token
embedding); and how to rebuild each monitored model so that λ_min and ρ can be measured at its snapshots."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from beyond_train import FAMILIES as OWN_FAMILIES  # noqa: E402
from beyond_train import META as OWN_META  # noqa: E402

CORPUS_META = "ew_run.json"


@dataclass(frozen=True)
class Setup:
    """One row of the table: `groups` are folders under a store ("corpus:<part>/<family>" or "own:<family>"),
    `paper` its configuration and reference grok step as published (or as its demo gives it), `scaled` how the
    runs here differ, `watch` the trajectories of PC1% (None: the attention matrices the run watched),
    `attention` whether P2's execution basis (hence ρ) is defined, `embedding` (name, token axis, p) or None."""

    key: str
    label: str
    groups: tuple[str, ...]
    paper: str
    scaled: str
    watch: str | None
    attention: bool
    embedding: tuple[str, int, int] | None = None
    canonical: bool = True
    control_groups: tuple[str, ...] = ()  # groups whose controls (only) join this setup's


SETUPS: tuple[Setup, ...] = (
    Setup("nanda", "Nanda et al. 1-layer transformer (TransformerLens 4 bridge), p 53",
          ("corpus:v2/tl-bridge-add", "own:nanda-bridge"),
          "p 113, 30 % train, full batch, AdamW lr 1e-3 wd 1, d 128, 4 heads, ReLU MLP 512; test ≥ 90 % near 10k "
          "steps, cleanup 9.4k–13k (Nanda et al. 2023); at p 53 / 50 % (Liu et al.'s Fig. 1 setting) test ≥ 90 % "
          "near 1.6k",
          "p 53, 50 % train (p 113 at 30 % costs ~3× more per step and ~5× more steps: hours on two shared cores); "
          "seeds 1–2 and their controls are the early-warning corpus' runs, seed 3 trained here",
          "*attn*", True, ("model.embed._original_component.weight", 0, 53)),
    Setup("gromov", "Gromov 2-layer MLP (quadratic activation, one-hot inputs)", ("own:gromov-mlp",),
          "p 97, N 500, x², MSE, full batch, AdamW; groks within ~10²–10³ full-batch steps, and without any "
          "decay too (Gromov 2023; the step itself not quoted here)",
          "the paper's sizes; 30 % train (at 50 % it generalises 20 steps after fitting: no delay); lr 1e-2, wd 5 "
          "(the authors' group's code)", "fc1.weight", False, ("fc1.weight", 1, 97)),
    Setup("p3-mlp", "P3's MLP on modular arithmetic (grokscope's MLP)",
          ("corpus:calib/add-mlp-f0.3", "corpus:eval/sub-mlp-f0.3"),
          "P3 App. D: p 11, e_a + e_b inputs, ReLU, MSE, full-batch GD lr 1, L2 1e-4; grokscope's cpu scale: "
          "memorised at 120–140, grok 28k–56k (4 of 5 seeds)",
          "p 31, 30 % train, AdamW lr 5e-3 wd 1, batch 256 (the corpus' quick preset), add and sub",
          "mlp.W_in", False, None),
    Setup("parity-adamw", "Sparse parity, MLP, AdamW (Barak et al.)", ("corpus:eval/parity-plain-mlp-b0.999",),
          "n 30, k 3, 1000 train, width 256, AdamW wd 1 (torch's betas): test ≥ 98 % around step 3000 "
          "(examples/sparse_parity.py; Barak et al. 2022 report n 50 and larger)",
          "the demo's configuration; no-decay controls from the β2 0.98 group (the β2 0.999 group has none)",
          "0.weight", False, None, control_groups=("corpus:eval/parity-plain-mlp",)),
    Setup("parity-sgd", "Sparse parity, MLP, SGD (Barak et al.)", ("corpus:eval/parity-plain-mlp-sgd",),
          "as above with SGD (momentum 0.9, lr 0.1, L2 1e-3), batch 128", "the corpus' configuration",
          "0.weight", False, None),
    Setup("s4", "Composition in S4, small transformer (Chughtai et al.)", ("own:s4-trunk",),
          "S5 (and other groups), one-layer transformer or MLP, AdamW wd 1 (Chughtai et al. 2023; no grok step "
          "quoted for S4 here)",
          "S4 (24 elements, 576 pairs), 80 % train, the P1 trunk d 64, full batch, AdamW lr 3e-3 wd 1 (at 50 % "
          "train it stays at chance for 20k steps, at 70 % it oscillates at 86–99 %); small-data controls at 50 %",
          None, True, None),
    Setup("trunk", "The papers' own trunk (grokscope, quick preset)",
          ("corpus:calib/add", "corpus:calib/mul", "corpus:eval/sub"),
          "P1/P2: p 97, 2 layers d 128; grok 13.3k (P1 dual, wd 1); P2 single task lr 1e-3: 2.5k–3.6k",
          "p 31, 1 layer d 64, 70 % train, lr 5e-3, batch 256", None, True, None, canonical=False),
    Setup("embed-mlp", "Embedding MLP, Adam with L2 decay", ("corpus:v2/embed-mlp-adam-l2",),
          "(the corpus' own: no paper step)", "p 47, 40 % train, Adam lr 1e-3, L2 1e-3, batch 256",
          "net.0.weight", False, ("embed.weight", 0, 47), canonical=False),
    Setup("gpt2", "GPT-2 (HF Trainer)", ("corpus:v2/hf-gpt2-mul",), "(the corpus' own: no paper step)",
          "1 layer d 64, a·b mod 43, 30 % train, AdamW lr 3e-3 wd 1, batch 256", "*attn*", True,
          ("transformer.wte.weight", 0, 43), canonical=False),
    Setup("lightning", "P1 trunk as a LightningModule", ("corpus:v2/lightning-trunk-sub",),
          "(the corpus' own: no paper step)", "a−b mod 41, 50 % train, AdamW lr 5e-3 wd 1, batch 256", None, True,
          ("net.embed.weight", 0, 41), canonical=False),
)


@dataclass
class Rec:
    """One finished run of a setup: where it is, its meta file (family, role, seed, optimiser...), its task."""

    setup: Setup
    path: Path
    meta: dict[str, Any]

    @property
    def role(self) -> str:
        return self.meta["role"]

    @property
    def seed(self) -> int:
        return int(self.meta["seed"])

    @property
    def task(self) -> str:
        return self.meta.get("task", "add")

    @property
    def label(self) -> str:
        """The run in a list of its setup's: its seed, and its task where the setup has several."""
        return f"{self.task} s{self.seed}" if len(self.setup.groups) > 1 else f"s{self.seed}"


def records(setup: Setup, corpus: Path, own: Path) -> list[Rec]:
    """The setup's finished runs in both stores (a run still training, or interrupted, is left out)."""
    from grokscope.store import find_runs

    out = []
    for g in setup.groups + setup.control_groups:
        kind, rel = g.split(":", 1)
        folder = (corpus if kind == "corpus" else own) / rel
        meta_name = CORPUS_META if kind == "corpus" else OWN_META
        for run in find_runs([folder]) if folder.exists() else []:
            if not (run.path / meta_name).exists() or not run.has_summary() or not run.summary().get("finished"):
                continue
            meta = json.loads((run.path / meta_name).read_text())
            if g in setup.control_groups and meta["role"] == "grok?":
                continue
            out.append(Rec(setup, run.path, meta))
    return sorted(out, key=lambda r: (r.role != "grok?", r.seed, r.path.name))


# ---- the monitored models, rebuilt -------------------------------------------------------------------------------

def _corpus_group(family: str) -> Any:
    from ew_corpus import CORPUS

    return next(g for g in CORPUS if g.family == family)


def user_model(rec: Rec) -> Any:
    """A `grokscope.monitor.UserModel` for a monitored run (the model it recorded, its loss and training batches,
    the monitor's seed and batch size), or None for a run of grokscope's own models."""
    from grokscope.monitor import UserModel

    m = rec.meta
    if m.get("family") in OWN_FAMILIES:  # trained here (beyond_train)
        from beyond_train import OwnRun, build

        run = OwnRun(m["family"], m["role"], m["seed"], m["wd"], m["train_frac"], m["budget"])
        model, loss, (X, y, _, _) = build(run)
        return UserModel(model, loss, (X, y), batch_size=len(X), seed=run.seed)
    if m.get("framework") == "grokscope":
        return None
    from ew_corpus import Run
    from ew_models import gpt2, setup

    g = _corpus_group(m["family"])
    seed, frac = int(m["seed"]), float(m["train_frac"])
    if m["model"] == "hf-gpt2":
        from ew_data import modular

        X, y, _, _ = modular(g.task, g.p, frac, seed)
        ids = torch.cat([X, torch.full((len(X), 1), g.p)], 1)
        return UserModel(gpt2(g.p, 64, seed), lambda out, target: F.cross_entropy(out.logits[:, 2], target),
                         (ids, y), batch_size=g.batch, seed=seed)
    net, (X, y, _, _) = setup(g.model, g.task, g.p, frac, seed)
    batch = g.batch or len(X)
    if m["model"] == "lightning-trunk":
        from ew_frameworks import _lightning_module

        r = Run(seed, m["optimizer"]["weight_decay"], m["optimizer"]["lr"], frac, m["role"])
        module = _lightning_module(g, r, net)
        return UserModel(module, module.loss_fn, (X, y), batch_size=batch, seed=seed)
    return UserModel(net, F.cross_entropy, (X, y), batch_size=batch, seed=seed)


def logits_fn(rec: Rec, um: Any) -> tuple[Any, torch.Tensor] | None:
    """The monitored model's logits over the p answers on operand pairs (for the restricted and excluded losses)
    and the run's training pairs, or None where grokscope computes them itself (its own models) or where they are
    not cross-entropy logits (Gromov's squared error)."""
    m = rec.meta
    if um is None or m.get("family") == "gromov-mlp" or rec.setup.embedding is None:
        return None
    p = rec.setup.embedding[2]
    tokens = m["model"] in ("tl-bridge", "hf-gpt2") or m.get("family") == "nanda-bridge"
    X = um.source.tensors[0]
    train = X[:, :2]

    def logits(params: dict[str, torch.Tensor], pairs: torch.Tensor) -> torch.Tensor:
        inputs = torch.cat([pairs, torch.full_like(pairs[:, :1], p)], 1) if tokens else pairs
        out = um.target.outputs({n: params[n].float() for n in um.target.names}, (inputs,))
        return (out.logits[:, 2] if hasattr(out, "logits") else out)[:, :p]

    return logits, train
