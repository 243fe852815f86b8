"""claims.probe: one timing per distinct batched program, and a rate that is run-steps over summed wall."""

from __future__ import annotations

import pytest

from grokscope.claims.probe import RateProbe
from grokscope.config import preset

TINY = {"data": {"p": 11}, "model": {"d_model": 16, "n_heads": 2, "d_ff": 32}, "steps": 100}


def _cfgs(n: int, **kw):
    return [preset("quick", seed=s, **TINY, **kw) for s in range(n)]


def test_each_distinct_batch_is_timed_once_and_the_rate_sums_run_steps_over_wall():
    probe = RateProbe(seconds=0.05, min_steps=2)
    two, three = _cfgs(2), _cfgs(3)
    rate = probe.rate([two, two])  # two batches of one shape and size: timed once
    assert len(probe.timings) == 1
    t2 = probe.step_seconds(two)
    assert t2 > 0 and rate == pytest.approx(4 / (2 * t2))
    assert probe.rate([two]) == pytest.approx(rate)  # the same batch again: its stored timing, the same rate
    other_seeds = [preset("quick", seed=s, **TINY) for s in (7, 8)]
    probe.step_seconds(other_seeds)  # seeds are per run: the same program
    assert len(probe.timings) == 1
    both = probe.rate([two, three])  # another size is another program
    assert len(probe.timings) == 2
    assert both == pytest.approx(5 / (t2 + probe.step_seconds(three)))
    assert probe.rate([]) is None
