"""The shipped constants of the default early warning (`AutoDetector`), fitted on the whole stored corpus with the
rule `monitor.lofo.fit_constants` applies to each leave-one-family-out fold (docs/early-warning.md says when, on how
many runs; `python studies/early_warning.py lofo` prints them)."""

from __future__ import annotations

from grokscope.monitor.choice import WarnConstants

DEFAULT_CONSTANTS = WarnConstants()
