"""The Ray executor: one Ray task per batch (a GPU each on CUDA), all writing to the shared store."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from grokscope.config import RunConfig
from grokscope.errors import ConfigError, GrokscopeError
from grokscope.sweep.packing import plan
from grokscope.sweep.spec import SweepSpec
from grokscope.training.progress_bars import BatchProgress, Report

__all__ = ["import_ray", "execute_ray"]

BatchFn = Callable[..., list[str]]


def import_ray() -> Any:
    """The ray module (an optional dependency: a one-line ConfigError when it is not installed)."""
    try:
        import ray  # optional: only the ray executor needs it
    except ImportError:
        raise ConfigError("the ray executor needs Ray: pip install 'grokscope[ray]' or 'ray>=2.9'") from None
    return ray


def execute_ray(ray: Any, cfgs: list[RunConfig], spec: SweepSpec, out: Path, address: str | None,
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
        with BatchProgress(batches, progress) as bar:
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


def _actor_reporter(actor: Any, i: int) -> Report:
    def report(info: dict[str, Any]) -> None:
        actor.update.remote(i, info)

    return report
