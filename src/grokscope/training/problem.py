"""A batched training problem: R runs' data, splits, loss and evaluation on one device.

The trainer, the inline probes and every post-hoc analysis use this one object, so none of them
re-implements the model, the loss or the data order.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import torch

from grokscope.config import RunConfig, batch_key, validate
from grokscope.data.sampler import AuthorsStream, sample_indices
from grokscope.data.tasks import make_split
from grokscope.errors import ConfigError
from grokscope.training import model as M
from grokscope.training.init_authors import initial_params
from grokscope.training.methods import stablemax_per_task_loss

Params = M.Params
STREAM_BLOCK = 64  # training steps of the authors' sampler drawn, and copied to the device, at once


class Problem:
    """R runs that share data shape and model; each has its own split seed and data order."""

    def __init__(self, cfgs: list[RunConfig], device: str | torch.device = "cpu",
                 dtype: torch.dtype = torch.float32) -> None:
        if not cfgs:
            raise ConfigError("no runs to train")
        for c in cfgs:
            validate(c)
        keys = {batch_key(c) for c in cfgs}
        if len(keys) > 1:
            raise ConfigError("runs in one batch must share tasks, p, model, optimiser and batch size")
        self.cfgs = cfgs
        self.device = torch.device(device)
        if dtype not in (torch.float32, torch.float64):
            raise ConfigError(f"dtype {dtype} is not supported; use torch.float32 or torch.float64")
        self.dtype = dtype  # the parameters' and the arithmetic's precision (float64: equivalence tests)
        base = cfgs[0]
        self.model, self.data = base.model, base.data
        d = self.data
        splits = [make_split(d.tasks, d.p, d.train_frac, c.split_seed, d.zero_excluded, d.unordered, d.split)
                  for c in cfgs]
        self.pairs = splits[0].pairs.to(self.device)
        self.targets = splits[0].targets.to(self.device)
        self.train_idx = torch.stack([s.train_idx for s in splits]).to(self.device)
        self.test_idx = torch.stack([s.test_idx for s in splits]).to(self.device)
        self.seeds = torch.tensor([c.seed for c in cfgs], device=self.device, dtype=torch.int64)
        self.batch = base.optim.batch or self.n_train
        # The papers' numpy stream (sampler "authors"): one stateful stream per run, host-side.
        # With defect_stream "training", inline defects draw their A/B batches from that stream too (P2 GD).
        probe = base.defect_stream == "training" and base.defect_every > 0
        self.stream = (AuthorsStream([c.seed for c in cfgs], self.n_train, self.batch,
                                     base.defect_every if probe else 0, 2 * base.defect_draws if probe else 0)
                       if base.sampler == "authors" and base.optim.batch is not None else None)
        self._block: torch.Tensor | None = None  # prefetched stream indices [steps, R, batch] on the device
        self._block_first = 0
        stablemax = [c.method.loss == "stablemax" for c in cfgs]
        self.stablemax = torch.tensor(stablemax, device=self.device)
        self.n_stablemax = sum(stablemax)  # a host int: no device sync in the loss

    @property
    def R(self) -> int:
        return len(self.cfgs)

    @property
    def n_train(self) -> int:
        return self.train_idx.shape[1]

    @property
    def tasks(self) -> tuple[str, ...]:
        return self.data.tasks

    def init_params(self) -> Params:
        """Each run's initial parameters from its own seed (by its config's `init` scheme), on the device, in the
        problem's dtype (drawn in float32 either way, so a float64 run starts from the float32 run's θ₀)."""
        runs = [initial_params(self.model, self.data, c.seed, c.init) for c in self.cfgs]
        return {k: v.to(self.device, self.dtype) for k, v in M.stack_params(runs).items()}

    def minibatch(self, step: int, salt: int = 0, batch: int | None = None,
                  runs: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Training pairs [R, B, 2] and targets [R, B, T] for `step`; the full training set for full-batch
        runs. `salt` > 0 gives other, independent draws (commutator minibatches A and B, always from the
        counter sampler); `runs` (indices) restricts to some runs, whose draws are the same as in the full
        batch. With sampler "authors" the training draws (salt 0) come from each run's numpy stream."""
        batch = batch or self.batch
        train_idx = self.train_idx if runs is None else self.train_idx.index_select(0, runs)
        if self.cfgs[0].optim.batch is None and salt == 0 and batch == self.n_train:
            idx = train_idx
        elif self.stream is not None and salt == 0 and batch == self.batch:
            block = self._stream_block(step)
            idx = train_idx.gather(1, block if runs is None else block.index_select(0, runs))
        else:
            seeds = self.seeds if runs is None else self.seeds.index_select(0, runs)
            seeds = seeds if salt == 0 else seeds ^ (0x5F3759DF * salt)
            idx = train_idx.gather(1, sample_indices(seeds, step, batch, self.n_train))
        return self.pairs[idx], self.targets[idx]

    def _stream_block(self, step: int) -> torch.Tensor:
        """The authors' stream's training indices [R, batch] at `step`, from a block of up to `STREAM_BLOCK` steps
        drawn at once on the host and copied to the device in one (pinned, asynchronous) copy. A block never
        crosses an evaluation step, so at every checkpoint the streams stand where the steps so far left them."""
        n = 0 if self._block is None else self._block.shape[0]
        if not self._block_first <= step < self._block_first + n:
            every = self.cfgs[0].eval_every
            host = torch.from_numpy(self.stream.block(step, min(STREAM_BLOCK, every - step % every)))
            if self.device.type == "cuda":
                host = host.pin_memory()
            self._block, self._block_first = host.to(self.device, non_blocking=True), step
        return self._block[step - self._block_first]

    def probe_minibatch(self, step: int, j: int, batch: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Minibatch j of an inline measurement at `step` (commutator A_k = 2k, B_k = 2k + 1): the next draws
        of each run's training stream when the config says so (defect_stream "training", as P2's
        grok_generalization_dynamics.py), else independent draws (`minibatch` with salt j + 1)."""
        if self.stream is not None and self.stream.probe_every and (batch or self.batch) == self.batch:
            idx = self.train_idx.gather(1, self.stream.probe_indices(step, j).to(self.device))
            return self.pairs[idx], self.targets[idx]
        return self.minibatch(step, salt=j + 1, batch=batch)

    def stream_minibatch(self, number: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Draw `number` of each run's training stream (sampler "authors"), e.g. one past the training draws:
        the minibatches of a script that keeps drawing from its stream after training."""
        if self.stream is None:
            raise ValueError("stream_minibatch needs the authors' sampler and a minibatch size")
        idx = self.train_idx.gather(1, self.stream.numbered(number).to(self.device))
        return self.pairs[idx], self.targets[idx]

    def split(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        idx = self.train_idx if name == "train" else self.test_idx
        return self.pairs[idx], self.targets[idx]

    def per_task_loss(self, outputs: torch.Tensor, targets: torch.Tensor,
                      runs: torch.Tensor | None = None) -> torch.Tensor:
        """Per-row, per-task loss [N, T] of outputs [N, B, T, p], each row under its run's loss (the model's
        cross-entropy / MSE, or StableMax cross-entropy). Row i belongs to run `runs[i]`; without `runs`, to
        run i mod R: rows are the runs themselves or run-minor stacks of them (draws, checkpoints), as the
        analyses lay them out. The one loss the trainer, the evaluation and every analysis call."""
        n_sm = self.n_stablemax
        if n_sm == 0:
            return M.per_task_loss(outputs, targets, self.model)
        sm = stablemax_per_task_loss(outputs, targets)
        if n_sm == self.R:
            return sm
        runs = torch.arange(outputs.shape[0], device=self.device) % self.R if runs is None else runs
        return torch.where(self.stablemax[runs][:, None], sm, M.per_task_loss(outputs, targets, self.model))

    def loss(self, params: Params, pairs: torch.Tensor, targets: torch.Tensor,
             task_weights: torch.Tensor | None = None, attend_fn: Callable | None = None,
             runs: torch.Tensor | None = None) -> torch.Tensor:
        """Per-run loss [R] (sum of task losses, or weighted by `task_weights` [T]); `attend_fn` replaces the
        model's attention core (the trainer's compiled one); `runs`: which runs the rows are (`per_task_loss`)."""
        per_task = self.per_task_loss(M.forward(params, pairs, self.model, self.data, attend_fn), targets, runs)
        return per_task.sum(-1) if task_weights is None else per_task @ task_weights.to(per_task.dtype)

    def grads(self, params: Params, pairs: torch.Tensor, targets: torch.Tensor,
              task_weights: torch.Tensor | None = None) -> tuple[Params, torch.Tensor]:
        """Per-run gradients (runs are independent, so the gradient of the summed loss is per run)
        and per-run losses [R]."""

        def total(p: Params) -> tuple[torch.Tensor, torch.Tensor]:
            l = self.loss(p, pairs, targets, task_weights)
            return l.sum(), l.detach()

        return torch.func.grad(total, has_aux=True)(params)

    def total_loss(self, params: Params, pairs: torch.Tensor, targets: torch.Tensor,
                   runs: torch.Tensor | None = None, attend_fn: Callable | None = None) -> torch.Tensor:
        """The sum of the per-run losses (a scalar whose gradient is every run's own): what a step differentiates."""
        return self.loss(params, pairs, targets, attend_fn=attend_fn, runs=runs).sum()

    def flat_grads(self, flat: torch.Tensor, like: Params, pairs: torch.Tensor, targets: torch.Tensor,
                   attend_fn: Callable | None = None, runs: torch.Tensor | None = None,
                   total_fn: Callable | None = None) -> torch.Tensor:
        """Per-run gradient [R, P] in the flat layout of `like`, at the parameters `flat` [R, P] of `runs`
        (default: all, in order), by plain autograd (so a compiled `attend_fn`, or a compiled `total_fn` standing
        for `total_loss`, runs compiled, forward and backward). Differentiating per tensor and concatenating once
        is far cheaper than differentiating through the slicing of `flat`, whose backward builds a zero [R, P]
        buffer per parameter tensor."""
        leaves = {k: v.detach().requires_grad_() for k, v in M.unflatten_views(flat, like).items()}
        total = (total_fn or partial(self.total_loss, attend_fn=attend_fn))(leaves, pairs, targets, runs)
        return torch.cat([g.flatten(1) for g in torch.autograd.grad(total, list(leaves.values()))], 1)

    @torch.no_grad()
    def evaluate(self, params: Params, splits: tuple[str, ...] = ("train", "test"), chunk: int | None = None,
                 attend_fn: Callable | None = None) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """Per-split (loss [R, T], acc [R, T]) over the whole split, in chunks of `chunk` examples (all runs
        together; default `training.memory.eval_chunk`: 8192 on the CPU, which keeps activations in cache and is
        1.5x faster there than 65536; on a GPU as many as its free memory holds)."""
        if chunk is None:
            from grokscope.training.memory import eval_chunk

            chunk = eval_chunk(self.cfgs[0], self.device, self.dtype.itemsize)
        out = {}
        for name in splits:
            pairs, targets = self.split(name)
            n = pairs.shape[1]
            step = max(1, chunk // self.R)
            loss_sum = torch.zeros(self.R, len(self.tasks), device=self.device, dtype=self.dtype)
            correct = torch.zeros(self.R, len(self.tasks), device=self.device, dtype=torch.int64)
            for i in range(0, n, step):
                o = M.forward(params, pairs[:, i:i + step], self.model, self.data, attend_fn)
                t = targets[:, i:i + step]
                loss_sum += self.per_task_loss(o, t) * t.shape[1]
                correct += M.per_task_correct(o, t)
            out[name] = (loss_sum / n, correct.double() / n)
        return out

    def subset(self, runs: list[int]) -> Problem:
        """The same problem restricted to some runs (for analyses of one run of a batch)."""
        return Problem([self.cfgs[r] for r in runs], self.device, self.dtype)
