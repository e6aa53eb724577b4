"""An interleaved median timer for a shared, noisy host.

The method of ``shared/notes/perf-cpu-baselines.md`` ("Method"): every subject is timed in each of
several rounds, the subjects taking turns inside a round (round-robin: round r starts with the
subject after the one that opened round r − 1, so none always runs first). In a round a subject gets
``warmup`` untimed calls, then timed calls until it has at least ``min_reps`` and ``min_time``
seconds of them (at most ``max_reps``); the round's figure is their median. The reported figure is
the lowest round median: interference from other processes on the host only ever adds time, and a
round that met none is the closest to the machine's own speed. The worst round is kept beside it.
"""
from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field
from typing import Callable, Hashable, Mapping

from .config import TimerConfig


@dataclass
class Timing:
    """One subject's medians, one per round, in seconds."""
    round_medians: list[float] = field(default_factory=list)
    reps: list[int] = field(default_factory=list)

    @property
    def best(self) -> float:
        return min(self.round_medians)

    @property
    def worst(self) -> float:
        return max(self.round_medians)


def time_interleaved(subjects: Mapping[Hashable, Callable[[], object]], timer: TimerConfig = TimerConfig(), *,
                     clock: Callable[[], float] = time.perf_counter,
                     on_round: Callable[[int, dict], None] | None = None) -> dict[Hashable, Timing]:
    """Time every callable of ``subjects`` (key -> function of no arguments) by the method above.

    ``clock`` is injectable for tests; ``on_round(r, timings)`` is called after each round r (from 1).
    """
    names = list(subjects)
    timings = {name: Timing() for name in names}
    for r in range(timer.rounds):
        start = r % len(names) if names else 0
        for name in names[start:] + names[:start]:
            median, reps = _median_of_repeats(subjects[name], timer, clock)
            timings[name].round_medians.append(median)
            timings[name].reps.append(reps)
        if on_round is not None:
            on_round(r + 1, timings)
    return timings


def _median_of_repeats(function: Callable[[], object], timer: TimerConfig,
                       clock: Callable[[], float]) -> tuple[float, int]:
    for _ in range(timer.warmup):
        function()
    times: list[float] = []
    began = clock()
    while len(times) < timer.min_reps or (clock() - began < timer.min_time and len(times) < timer.max_reps):
        t0 = clock()
        function()
        times.append(clock() - t0)
    return statistics.median(times), len(times)
