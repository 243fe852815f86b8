"""No host sync in the training step, proven without a GPU: every call that would make the host wait for a device
(a value read back, a mask turned into indices, host data copied in) is recorded while a step runs.

On a GPU each of these stalls the host until the device's queue drains: `.item()`, `.tolist()`, `bool()` / `float()`
/ `int()` of a tensor, `.cpu()`, `.numpy()`, `nonzero`, indexing with a boolean mask, `torch.tensor` of host data
(a blocking host-to-device copy). On the CPU they cost nothing, so a CPU run cannot feel them; these tests see them
by name, through a `TorchFunctionMode` (Python-level calls) and a `TorchDispatchMode` (the operators underneath,
e.g. `_local_scalar_dense` behind every scalar read). What an evaluation step may do is listed in
`ALLOWED_AT_EVALUATION` and in docs/performance.md.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import torch
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode

from grokscope.config import preset, with_overrides
from grokscope.monitor import Monitor
from grokscope.training import model as M
from grokscope.training.optim import STEPS, adamw_rows_
from grokscope.training.problem import Problem

from conftest import tiny_config

T = importlib.import_module("grokscope.training.loop")

HOST_READS = {"item", "tolist", "__bool__", "__float__", "__int__", "__index__", "cpu", "numpy", "nonzero",
              "argwhere", "masked_select", "unique", "unique_consecutive"}
HOST_DATA = {"tensor", "as_tensor"}  # a tensor made from host values (then copied to the device)
# Calls whose value reads happen on the CPU only: torch's fused AdamW kernel (the CPU's per-run update, never taken
# on a GPU) reads its step and skip flag from host memory; one_hot checks its classes' range on the CPU only (on
# CUDA it relies on the scatter's device assert and reads nothing back when num_classes is given).
CPU_ONLY_READS = {"_fused_adamw_", "one_hot"}
SYNC_OPS = {"aten._local_scalar_dense.default": "scalar read", "aten.nonzero.default": "nonzero",
            "aten.masked_select.default": "masked_select", "aten._unique2.default": "unique",
            "aten.repeat_interleave.Tensor": "repeat_interleave"}  # output sizes read back from the device
MASK_INDEX_OPS = {"aten.index.Tensor", "aten.index_put.default", "aten.index_put_.default"}

# What an evaluation step reads back (each a sync on a GPU, once per evaluation, not per step): the metrics and
# stop flags copied to the host (`.cpu()`, `.numpy()`, `.tolist()`, `bool()`), the runs still training found
# (`nonzero`, `.tolist()`) and handed back to the device (`torch.tensor`), the attention / snapshot records
# (one `.to("cpu")` per batched tensor) and the checkpoint's per-run values (`int()`, `float()`, `.tolist()`).
ALLOWED_AT_EVALUATION = {"tolist", "__bool__", "__float__", "__int__", "__index__", "cpu", "numpy", "nonzero",
                         "tensor", "to cpu", "scalar read", "bool-mask index"}


def _bool_index(index: Any) -> bool:
    items = index if isinstance(index, tuple) else (index,)
    return any(isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in items)


def _to_host(args: tuple, kwargs: dict) -> bool:
    """A `.to(...)` whose target is the CPU."""
    dev = kwargs.get("device", args[1] if len(args) > 1 else None)
    return isinstance(dev, str | torch.device) and torch.device(dev).type == "cpu"


class _Calls(TorchFunctionMode):
    def __init__(self, audit: SyncAudit) -> None:
        super().__init__()
        self.audit = audit

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = getattr(func, "__name__", str(func))
        if name in HOST_READS or name in HOST_DATA:
            self.audit.note(name)
        elif name in ("__getitem__", "__setitem__") and len(args) > 1 and _bool_index(args[1]):
            self.audit.note("bool-mask index")
        elif name == "to" and kwargs.get("non_blocking"):
            self.audit.note("async copy")  # the authors' stream's block: pinned host memory, no wait on a GPU
        elif name == "to" and _to_host(args, kwargs):
            self.audit.note("to cpu")
        elif name in CPU_ONLY_READS:
            if name == "one_hot" and (args[1] if len(args) > 1 else kwargs.get("num_classes", -1)) == -1:
                self.audit.note("one_hot without num_classes")  # reads the max back on every device
            outer, self.audit.phase = self.audit.phase, "cpu only"
            self.audit.note(f"call {name}")
            try:
                return func(*args, **kwargs)
            finally:
                self.audit.phase = outer
        return func(*args, **kwargs)


class _Ops(TorchDispatchMode):
    def __init__(self, audit: SyncAudit) -> None:
        super().__init__()
        self.audit = audit

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if str(func) in SYNC_OPS:
            self.audit.note(SYNC_OPS[str(func)])
        elif str(func) in MASK_INDEX_OPS and _bool_index(tuple(i for i in args[1] if i is not None)):
            self.audit.note("bool-mask index")  # a mask turned into indices underneath (nonzero on a GPU)
        return func(*args, **(kwargs or {}))


class SyncAudit:
    """Records (phase, kind) of every host read / host-data call made inside `watch()`; the phase is "main" unless a
    test marks one ("step": inside a training step; "cpu only": inside a call in `CPU_ONLY_READS`)."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []
        self.phase = "main"

    def note(self, kind: str) -> None:
        self.events.append((self.phase, kind))

    def kinds(self, phase: str | None = None) -> set[str]:
        return {k for p, k in self.events if phase is None or p == phase}

    @contextmanager
    def watch(self) -> Iterator[SyncAudit]:
        with _Calls(self), _Ops(self):
            yield self


def test_the_audit_sees_what_a_gpu_would_wait_for():
    """The recorder itself: each kind of sync is seen, a device-only computation is not."""
    x = torch.arange(6.0)
    with SyncAudit().watch() as a:
        y = (x * 2 + 1).sum(0, keepdim=True) / torch.full((1,), 3.0)  # device work only
    assert a.events == []
    with SyncAudit().watch() as a:
        y.item()
        bool(x.any())
        x.tolist()
        x[x > 2]
        x.nonzero()
        torch.tensor([1, 2])
        x.to("cpu")
        float(x.sum())
    assert {"item", "__bool__", "tolist", "bool-mask index", "nonzero", "tensor", "to cpu", "__float__",
            "scalar read"} <= a.kinds()


def _p1_batch() -> list:
    """A P1-like batch (the authors' stream and θ₀, AdamW, clipping), tiny: runs differing in seed, lr and wd."""
    base = preset("p1-dual", data={"p": 11}, model={"d_model": 16, "n_heads": 2, "d_ff": 32}, optim={"batch": 32},
                  eval_every=10, steps=30)
    return [with_overrides(base, seed=s, lr=lr, wd=wd) for s, lr, wd in [(1, 1e-3, 1.0), (2, 3e-3, 0.3),
                                                                         (3, 1e-3, 0.0)]]


def _loop(cfgs: list) -> T._Loop:
    return T._Loop(Problem(cfgs), None, (), None, None, compile=False)


def _audit_step(loop: T._Loop, s: int) -> SyncAudit:
    step_fn = STEPS[loop.base.optim.name]
    active = (~loop.stopped) & (loop.resumed_at <= s) & (s < loop.budget)
    with SyncAudit().watch() as audit:
        loop._step(s, step_fn, active)
    return audit


@pytest.mark.parametrize("program", ["cpu", "batched"], ids=["cpu-fused-adamw", "gpu-batched-adamw"])
def test_a_batched_p1_step_makes_no_host_sync(program):
    loop = _loop(_p1_batch())
    if program == "batched":  # the one-program update a GPU runs, here on the CPU (in the compiled function's slot)
        loop.adamw = adamw_rows_
    first = _audit_step(loop, 0)  # fetches the first block of the authors' stream
    assert first.kinds("main") == {"async copy"}
    for s in (1, 2):
        _audit_step(loop, s)
    for s in (3, 4):  # inside a block of the authors' stream
        audit = _audit_step(loop, s)
        assert audit.kinds("main") == set(), s  # nothing outside the CPU-only reads
        assert audit.kinds("cpu only") == {"call one_hot", "scalar read"} | (
            {"call _fused_adamw_"} if program == "cpu" else set())


def test_a_compacted_step_and_every_method_make_no_host_sync():
    cfgs = [tiny_config(seed=r, method=dict(name=m, window=3))
            for r, m in enumerate(("baseline", "orthograd", "grokfast-ema", "grokfast-ma", "stablemax"))]
    loop = _loop(cfgs)
    for s in range(4):
        _audit_step(loop, s)
    assert _audit_step(loop, 4).kinds("main") == set()
    loop.stopped[1] = True  # run 1 stopped: the others train as a compacted batch
    live = loop._live_runs(5)  # at an evaluation step: allowed to read the stop flags
    active = (~loop.stopped) & (loop.resumed_at <= 5)
    loop._compact_step(5, STEPS["adamw"], active, live)
    with SyncAudit().watch() as audit:
        loop._compact_step(6, STEPS["adamw"], active, live)
    assert audit.kinds("main") == set()
    assert audit.kinds("cpu only") <= {"scalar read", "call _fused_adamw_", "call one_hot"}


def test_a_whole_run_syncs_only_at_evaluation_steps(monkeypatch):
    """train() of the P1-like batch, one run stopping early (compaction): no sync inside a step; the evaluation
    steps make only the documented kinds."""
    cfgs = _p1_batch()
    cfgs[1] = with_overrides(cfgs[1], steps=10)
    audit = SyncAudit()
    for name in ("_step", "_compact_step"):
        real = getattr(T._Loop, name)

        def phased(self, *args, _real=real, **kw):
            audit.phase = "step"
            try:
                return _real(self, *args, **kw)
            finally:
                audit.phase = "main"

        monkeypatch.setattr(T._Loop, name, phased)
    with audit.watch():
        results = T.train(cfgs)
    assert [r.summary["steps_trained"] for r in results] == [30, 10, 30]
    # nothing in a step but the stream's asynchronous block copy (CPU-only reads are phase "cpu only")
    assert audit.kinds("step") == {"async copy"}
    # outside the steps: the evaluations (and the start and end of the run), only the documented kinds
    assert audit.kinds("main") and audit.kinds("main") <= ALLOWED_AT_EVALUATION


def test_a_monitored_step_makes_no_host_sync_between_measurements(tmp_path):
    torch.manual_seed(0)
    pb = Problem([tiny_config(seed=1)])
    params = {k: v[0].clone().requires_grad_() for k, v in pb.init_params().items()}
    X, y = pb.split("train")
    data = (X[0], y[0, :, 0])

    def forward(p, pairs):
        return M.forward({k: v[None] for k, v in p.items()}, pairs[None], pb.model, pb.data)[0][:, 0]

    mon = Monitor(params, torch.nn.functional.cross_entropy, data, tmp_path / "m", forward=forward, batch_size=16,
                  defect_every=4, watch_every=4, snapshot_every=4, verbose=False)
    with SyncAudit().watch() as audit:
        for s in (1, 2, 3):
            mon.step(s)
        batch = mon.source.draw(5, 1)  # the monitor's counter sampler draws on the data's device
    assert audit.kinds("main") == set() and len(batch) == 2
    with SyncAudit().watch() as audit:
        mon.step(4)  # a measurement step: the defect's values and the records come back to the host
    assert audit.kinds("main") and audit.kinds("main") <= ALLOWED_AT_EVALUATION | {"item"}
    mon.close()
