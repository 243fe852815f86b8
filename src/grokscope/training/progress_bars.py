"""Live training progress on stderr (rich): the bar of `grokscope run` and one bar per batch of a sweep.

Both show the same thing: steps done of the budget, elapsed time, and per task how many runs grokked.
`eval_reporter` turns the trainer's `on_eval` calls into small plain dicts, so a batch trained in another
process (a Ray task) can send its progress to the driver's display.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from grokscope.config import RunConfig
from grokscope.training.contract import EvalInfo

__all__ = ["progress_bar", "eval_bar", "describe_eval", "eval_reporter", "BatchProgress", "working"]

Report = Callable[[dict[str, Any]], None]


def progress_bar(label: str) -> Progress:
    """A rich progress display on stderr: label, bar, steps done/total, elapsed time, a description."""
    return Progress(TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    TextColumn("{task.description}"), console=Console(stderr=True), transient=False)


@contextmanager
def working(label: str, enabled: bool = True) -> Iterator[Callable[[str], None]]:
    """A spinner with the elapsed time on stderr, for long commands without a step count (analyses, figures);
    yields a function that sets the text beside it (what is being done now). Gone when the block ends; not
    shown when stderr is no terminal (a log or a pipe would keep only a blank line of it)."""
    console = Console(stderr=True)
    if not enabled or not console.is_terminal:
        yield lambda text: None
        return
    bar = Progress(SpinnerColumn(), TextColumn(label), TimeElapsedColumn(), TextColumn("{task.description}"),
                   console=console, transient=True)
    with bar:
        task = bar.add_task("", total=None)
        yield lambda text: bar.update(task, description=text)


@contextmanager
def eval_bar(label: str, enabled: bool = True, note: str = "") -> Iterator[Callable[[EvalInfo], None] | None]:
    """`progress_bar` for one batched program, with `note` printed above it; yields its `on_eval` hook (None
    when disabled: nothing is shown)."""
    if not enabled:
        yield None
        return
    with progress_bar(label) as bar:
        if note:
            bar.console.print(note)
        task = bar.add_task("", total=None)

        def hook(e: EvalInfo) -> None:
            bar.update(task, total=e.max_steps, completed=e.step, description=describe_eval(e))

        yield hook


def describe_eval(e: EvalInfo) -> str:
    """Live per-task accuracy: mean over runs of train/test, and how many runs grokked each task."""
    parts = []
    for ti, t in enumerate(e.tasks):
        grokked = int((e.grok_step[:, ti] >= 0).sum())
        parts.append(f"{t} train {e.train_acc[:, ti].mean():.2f} test {e.test_acc[:, ti].mean():.2f}"
                     + (f" grokked {grokked}/{len(e.stopped)}" if len(e.stopped) > 1 or grokked else ""))
    return " | ".join(parts)


def eval_reporter(report: Report) -> Callable[[EvalInfo], None]:
    """An `on_eval` hook that sends a small progress dict (runs done, grokked per task, steps/s)."""
    t0: list[float] = []
    s0: list[int] = []

    def on_eval(e: EvalInfo) -> None:
        now = time.perf_counter()
        if not t0:
            t0.append(now)
            s0.append(e.step)
        rate = (e.step - s0[0]) / (now - t0[0]) if now > t0[0] else 0.0
        report({"step": int(e.step), "max_steps": int(e.max_steps), "runs": int(len(e.stopped)),
                "done": int(e.stopped.sum()), "steps_per_s": float(rate),
                "grokked": {t: int((e.grok_step[:, i] >= 0).sum()) for i, t in enumerate(e.tasks)}})

    return on_eval


class BatchProgress:
    """One bar per batch of a sweep: steps, runs done, grokked per task, steps/s."""

    def __init__(self, batches: list[list[RunConfig]], enabled: bool = True) -> None:
        self.enabled = enabled and bool(batches)
        self.batches = batches
        self._ids: list[Any] = []
        self._bar: Progress | None = None

    def __enter__(self) -> BatchProgress:
        if self.enabled:
            self._bar = progress_bar("[bold]{task.fields[label]}")
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
        """Show batch `i`'s latest report (from `eval_reporter`)."""
        if self._bar is None:
            return
        grok = " ".join(f"{t} {n}/{info['runs']}" for t, n in info["grokked"].items())
        if not self._bar.tasks[self._ids[i]].started:
            self._bar.start_task(self._ids[i])
        self._bar.update(self._ids[i], completed=info["step"], total=info["max_steps"],
                         description=f"done {info['done']}/{info['runs']} | grokked {grok} | "
                                     f"{info['steps_per_s']:.0f} steps/s")

    def finish(self, i: int, trained: int) -> None:
        """Mark batch `i` done (`trained` = runs it trained; 0: everything was already stored)."""
        if self._bar is None:
            return
        t = self._bar.tasks[self._ids[i]]
        if not t.started:
            self._bar.start_task(self._ids[i])
        self._bar.update(self._ids[i], completed=t.total,
                         description=(t.description if trained else "already done"))
