"""The early-warning corpus: which runs exist (groups of runs sharing everything but seed, weight decay and their
never-grokking controls), where each is stored, its budget, and the order in which they train.

A `Group` is one family's runs: its weight decays × seeds, plus per seed the controls that should never grok
(too little data: `small_frac`; too small a learning rate: `small_lr`; no decay is a wd of 0 in `wds`). Part
`calib` / `eval` is the split of issue 24's corpus (docs/early-warning.md); part `v2` holds the families added
for issue 38 (the model classes researchers bring), for leave-one-family-out evaluation.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

PARTS = ("calib", "eval", "v2")
GROKSCOPE_MODELS = ("trunk", "mlp")  # trained by grokscope's batched trainer; every other model by user code


@dataclass(frozen=True)
class Run:
    """One run of a group: seed, weight decay, learning rate, train fraction, and its role (`grok?` for a run
    that may grok, else the control it is: `no-decay`, `small-data`, `small-lr`)."""

    seed: int
    wd: float
    lr: float
    train_frac: float
    role: str


@dataclass(frozen=True)
class Group:
    """A batch of runs sharing everything but seed, weight decay and controls: `part` calib/eval/v2, `family`
    its label, `model` the model class (see `GROKSCOPE_MODELS`; the others are built in `ew_models`)."""

    part: str
    family: str
    task: str  # a grokscope operation, or "parity" / "s4" / "s5" (plain-PyTorch families)
    model: str
    wds: tuple[float, ...]
    seeds: tuple[int, ...]
    train_frac: float = 0.7
    steps: int = 7000  # the budget (the least one, where `max_steps` lets it grow)
    lr: float = 5e-3
    optimizer: str = "adamw"  # adamw (decoupled decay), adam (L2 in the gradient), sgd (momentum 0.9, L2)
    beta2: float = 0.98  # Adam's second-moment decay (plain-PyTorch runs; grokscope's runs use the preset's)
    p: int = 0  # modulus of a modular task of user code
    batch: int = 0  # minibatch size of user code (0: full batch)
    small_frac: float | None = None  # the too-little-data control's train fraction
    small_lr: float | None = None  # the too-small-learning-rate control's learning rate
    control_seeds: int = 0  # how many of `seeds` get the controls (wd 0, small data, small lr; 0: all)
    max_steps: int = 0  # the budget may grow to 3 × the slowest stored grok of the group, up to this (0: fixed)
    late_controls: bool = False  # its controls train after every other run of the corpus (they cost the most)

    def runs(self) -> Iterator[Run]:
        """Seed by seed: the runs that may grok (largest decay first), no decay, then the other controls."""
        if self.model in GROKSCOPE_MODELS and (self.small_frac or self.small_lr):
            raise ValueError(f"{self.family}: grokscope-trained groups take no controls but wd 0")
        top = max(self.wds)
        for i, seed in enumerate(self.seeds):
            controls = not self.control_seeds or i < self.control_seeds
            for wd in sorted(self.wds, reverse=True):
                if wd > 0 or controls:
                    yield Run(seed, wd, self.lr, self.train_frac, "grok?" if wd > 0 else "no-decay")
            if not controls:
                continue
            if self.small_lr is not None:
                yield Run(seed, top, self.small_lr, self.train_frac, "small-lr")
            if self.small_frac is not None:
                yield Run(seed, top, self.lr, self.small_frac, "small-data")

    def run_name(self, r: Run) -> str:
        """A user-code run's directory name (issue 24's names, plus what a control changes)."""
        betas = "" if self.beta2 == 0.98 else f"-b{self.beta2:g}"
        name = f"{self.task}-{self.model}-{self.optimizer}{betas}-wd{r.wd:g}-s{r.seed}"
        name += f"-lr{r.lr:g}" if r.lr != self.lr else ""
        return name + (f"-f{r.train_frac:g}" if r.train_frac != self.train_frac else "")

    @property
    def decay(self) -> str:
        """How the optimiser applies weight decay: decoupled (AdamW) or as an L2 term in the gradient."""
        return "decoupled" if self.optimizer == "adamw" else "l2"


def group_dir(store: Path, g: Group) -> Path:
    """Where a group's runs live: STORE/<part>/<family>."""
    return store / g.part / g.family


def budget(g: Group, grok_steps: list[int]) -> int:
    """Steps a run of `g` trains at most: `steps`, or, where the group may grow (`max_steps`), ≥ 3 × the slowest
    grok step among its stored runs (`grok_steps`), rounded up to 1000, capped at `max_steps`."""
    if not g.max_steps or not grok_steps:
        return g.steps
    need = 1000 * math.ceil(3 * max(grok_steps) / 1000)
    return min(max(g.steps, need), g.max_steps)


# Calibration: seeds 1-3, operations add, mul, sq_ab (and a too-small train fraction of add).
# Evaluation: seeds 11-13, other operations (sub, div, sq, cube_ab), other models (grokscope's MLP on sub; plain
# PyTorch MLP and transformer through Monitor), other tasks (sparse parity, S4 composition), SGD.
ISSUE24: tuple[Group, ...] = (
    Group("calib", "add", "add", "trunk", (0.0, 1.0), (1, 2, 3)),
    Group("calib", "mul", "mul", "trunk", (0.0, 1.0), (1, 2, 3)),
    Group("calib", "sq_ab", "sq_ab", "trunk", (1.0,), (1, 2)),
    Group("calib", "add-small-frac", "add", "trunk", (1.0,), (1, 2), train_frac=0.25),
    Group("calib", "add-mlp", "add", "mlp", (0.0, 1.0), (1, 2)),  # generalises at once (no delay) at 0.7
    Group("calib", "add-mlp-f0.3", "add", "mlp", (0.0, 1.0), (1, 2), train_frac=0.3),
    Group("eval", "sub", "sub", "trunk", (0.0, 1.0), (11, 12, 13)),
    Group("eval", "div", "div", "trunk", (0.0, 0.3, 1.0), (11, 12)),
    Group("eval", "sq", "sq", "trunk", (1.0,), (11, 12)),
    Group("eval", "cube_ab", "cube_ab", "trunk", (1.0,), (11, 12)),
    Group("eval", "sub-small-frac", "sub", "trunk", (1.0,), (11, 12), train_frac=0.25),
    Group("eval", "sub-mlp", "sub", "mlp", (0.0, 1.0), (11, 12)),
    Group("eval", "sub-mlp-f0.3", "sub", "mlp", (0.0, 1.0), (11, 12), train_frac=0.3),
    Group("eval", "parity-plain-mlp", "parity", "plain-mlp", (0.0, 1.0), (11, 12, 13), steps=15000, lr=1e-3,
          batch=128),
    Group("eval", "s4-plain-trunk", "s4", "plain-trunk", (0.0, 1.0), (11, 12), train_frac=0.5, steps=6000, lr=3e-3,
          batch=128),
    # examples/sparse_parity.py's optimiser exactly (torch's default betas), with which sparse parity groks
    Group("eval", "parity-plain-mlp-b0.999", "parity", "plain-mlp", (1.0,), (11, 12, 13), steps=15000, lr=1e-3,
          beta2=0.999, batch=128),
    Group("eval", "parity-plain-mlp-sgd", "parity", "plain-mlp", (0.0, 1e-3), (11, 12), steps=15000, lr=0.1,
          optimizer="sgd", batch=128),
)

# Issue 38: the model classes researchers bring, each with its never-grokking controls, cheapest first. Budgets
# from probes (grok steps 1400-5300; the bridge at p 41 / 40 % train: test accuracy 0.62 at 8700 steps),
# docs/early-warning.md; `max_steps` lets a budget follow a slower grok.
V2: tuple[Group, ...] = (
    # an embedding MLP on a+b mod 47 under Adam with the decay as an L2 term in the gradient (plain loop)
    Group("v2", "embed-mlp-adam-l2", "add", "plain-embed-mlp", (1e-3, 0.0), (1, 2, 3), train_frac=0.4, p=47,
          lr=1e-3, optimizer="adam", batch=256, steps=15000, max_steps=30000, small_frac=0.15, small_lr=1e-4),
    # examples/p1_transformer.py's trunk as a LightningModule on a−b mod 41, through the Lightning callback
    Group("v2", "lightning-trunk-sub", "sub", "lightning-trunk", (1.0, 0.0), (1, 2, 3), train_frac=0.5, p=41,
          lr=5e-3, batch=256, steps=6000, max_steps=15000, small_frac=0.2, small_lr=1e-4, control_seeds=1),
    # a GPT-2 (1 layer, d 64) on `a b = c`, c = a·b mod 43, through the HF Trainer and its callback
    Group("v2", "hf-gpt2-mul", "mul", "hf-gpt2", (1.0, 0.0), (1, 2, 3), train_frac=0.3, p=43, lr=3e-3, batch=256,
          steps=6000, max_steps=15000, small_frac=0.1, small_lr=1e-4, control_seeds=1),
    # Nanda et al.'s one-layer transformer (d 128) as a TransformerLens 4 bridge (boot_native), a+b mod 53, 50 %
    # train, full batch (Liu et al.'s Fig. 1 setting in Nanda's architecture; at p 41 / 40 % it did not grok in 15k)
    Group("v2", "tl-bridge-add", "add", "tl-bridge", (1.0, 0.0), (1, 2), train_frac=0.5, p=53, lr=1e-3,
          steps=9000, max_steps=24000, small_frac=0.15, small_lr=1e-4, control_seeds=1, late_controls=True),
)

# Leave-one-family-out units (issue 38): groups of one model class on one task kind, so a held-out family is unseen
LOFO_FAMILIES: dict[str, str] = {
    **{f: "trunk-modular" for f in ("add", "mul", "sq_ab", "add-small-frac", "sub", "div", "sq", "cube_ab",
                                    "sub-small-frac")},
    **{f: "grokscope-mlp-modular" for f in ("add-mlp", "add-mlp-f0.3", "sub-mlp", "sub-mlp-f0.3")},
    **{f: "plain-mlp-parity" for f in ("parity-plain-mlp", "parity-plain-mlp-b0.999", "parity-plain-mlp-sgd")},
    "s4-plain-trunk": "plain-trunk-s4", "embed-mlp-adam-l2": "embed-mlp-adam-l2",
    "lightning-trunk-sub": "lightning-trunk", "hf-gpt2-mul": "hf-gpt2", "tl-bridge-add": "tl-bridge",
}

# `schedule` trains in this order: v2's cheap families (new), issue 24's, then the costly bridge
CORPUS: tuple[Group, ...] = V2[:-1] + ISSUE24 + V2[-1:]


def schedule(groups: tuple[Group, ...] = CORPUS) -> Iterator[tuple[Group, list[Run]]]:
    """The training order, seed round by seed round: first every group's runs that may grok (they stop when they
    do; a grokscope-trained group's whole seed, one batched program), then the user-code groups' controls (whose
    budgets follow the grok steps stored by then); the controls of `late_controls` groups after everything else.
    So every family has a grokking run early, then its controls, then its other seeds; an interrupted corpus stays
    balanced."""
    late = []
    for k in range(max(len(g.seeds) for g in groups)):
        seeded = [(g, [r for r in g.runs() if r.seed == g.seeds[k]]) for g in groups if k < len(g.seeds)]
        for g, runs in seeded:
            first = runs if g.model in GROKSCOPE_MODELS else [r for r in runs if r.role == "grok?"]
            if first:
                yield g, first
        for g, runs in seeded:
            controls = [r for r in runs if r.role != "grok?"]
            if controls and g.model not in GROKSCOPE_MODELS:
                if g.late_controls:
                    late.append((g, controls))
                else:
                    yield g, controls
    yield from late
