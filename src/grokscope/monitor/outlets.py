"""Where the monitor says what it found besides its store: the terminal (with `verbose`), a live TensorBoard writer,
the user's `on_warning` / `on_divergence` callbacks and their logger (`sinks.Signals`).

Nothing here measures or writes the store; the `Monitor` decides what is said and when.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from grokscope.monitor.divergence import DivergenceEvent
from grokscope.monitor.sinks import Recorded, Signals
from grokscope.monitor.tensorboard import open_writer
from grokscope.monitor.warning import WarningEvent

__all__ = ["Outlets", "signals_of", "writer_of"]


def signals_of(log: Callable[..., Any] | Signals | None, after: int) -> Signals | None:
    """The user's logger as `Signals` forwarding the rows of steps after `after` (None: no logger)."""
    if log is None:
        return None
    signals = log if isinstance(log, Signals) else Signals(log)
    signals.after = after
    return signals


def writer_of(tensorboard: bool | str, default: Path, purge_step: int | None) -> Any:
    """The live TensorBoard writer: into `default` (True) or the folder given (None: False). Continuing a record,
    it hides the events a stopped process wrote after the step it continues from (`purge_step`)."""
    if not tensorboard:
        return None
    return open_writer(default if tensorboard is True else Path(tensorboard), purge_step)


class Outlets:
    """The monitor's outlets besides its store.

    Args:
        tb: a TensorBoard `SummaryWriter` (None: no events).
        verbose: print the warning (stdout), the detector's choice and a divergence (stderr).
        on_warning: called with the `WarningEvent` when the early warning fires.
        on_divergence: called once with the `DivergenceEvent` when the run turns non-finite.
        signals: the user's logger (None: none).
    """

    def __init__(self, tb: Any, verbose: bool, on_warning: Callable[[WarningEvent], None] | None,
                 on_divergence: Callable[[DivergenceEvent], None] | None, signals: Signals | None) -> None:
        self.tb, self.verbose, self.signals = tb, verbose, signals
        self.on_warning, self.on_divergence = on_warning, on_divergence

    def scalar(self, tag: str, value: float, step: int) -> None:
        """One measurement into TensorBoard."""
        if self.tb is not None:
            self.tb.add_scalar(tag, value, step)

    def choice(self, message: str, step: int) -> None:
        """The default detector's choice (and its upgrade), when made."""
        if self.verbose:
            print(message, file=sys.stderr, flush=True)
        if self.tb is not None:
            self.tb.add_text("early_warning", message, step)

    def warning(self, event: WarningEvent) -> None:
        """The early warning: printed, into TensorBoard, then to `on_warning`."""
        if self.verbose:
            print(event.message(), flush=True)
        if self.tb is not None:
            self.tb.add_text("early_warning", event.message(), event.step)
        if self.on_warning is not None:
            self.on_warning(event)

    def divergence(self, event: DivergenceEvent, write: Callable[[], None]) -> None:
        """A divergence: printed, into TensorBoard, `write()` (the store says it before the user hears it), then to
        `on_divergence`."""
        if self.verbose:
            print(event.message(), file=sys.stderr, flush=True)
        if self.tb is not None:
            self.tb.add_text("divergence", event.message(), event.step)
        write()
        if self.on_divergence is not None:
            self.on_divergence(event)

    def forward(self, mon: Recorded) -> None:
        """The new measurements into the user's logger."""
        if self.signals is not None:
            self.signals.forward(mon)

    def flush(self) -> None:
        if self.tb is not None:
            self.tb.flush()

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()
