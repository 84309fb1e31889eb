"""Streams of labeled outcomes whose true accuracy is known: the benchmark's scenarios.

A scenario is a pure function of a numpy ``Generator``: it returns a
:class:`Stream`, one bit per labeled event (True = the prediction was right)
and the true probability of that bit.  Everything the benchmark measures
(when the model really crossed the contract's line, when it recovered) is read
off ``accuracy``, never assumed by the detectors.

>>> import numpy as np
>>> s = piecewise(np.random.default_rng(0), [(3, 0.85, 0.85), (4, 0.85, 0.65)])
>>> s.accuracy.tolist()
[0.85, 0.85, 0.85, 0.85, 0.8, 0.75, 0.7]
>>> s.correct.dtype, len(s)
(dtype('bool'), 7)
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

BASELINE = 0.85
THRESHOLD = 0.1
LINE = round(BASELINE - THRESHOLD, 12)
"""The contract: degraded when true accuracy is below 0.75."""
EARLY = 0.77
"""An alert while true accuracy is at least this is a false (or premature) alarm."""
EVENTS_PER_WEEK = 5000


@dataclass(frozen=True)
class Stream:
    """Outcome bits of one model's labeled events, with the true accuracy at each."""

    correct: npt.NDArray[np.bool_]
    accuracy: npt.NDArray[np.float64]

    def __len__(self) -> int:
        return int(self.correct.shape[0])


Segments = Sequence[tuple[int, float, float]]
"""``(count, from, to)``: ``count`` events whose accuracy moves linearly from ``from`` towards ``to``."""


def curve(segments: Segments) -> npt.NDArray[np.float64]:
    """The true accuracy of every event; rounded to 1e-12 so the lines 0.75 and 0.77 are met exactly."""
    parts = [a + (b - a) * np.arange(n) / n for n, a, b in segments]
    return np.asarray(np.round(np.concatenate(parts), 12), dtype=np.float64)


def piecewise(rng: np.random.Generator, segments: Segments) -> Stream:
    """Bernoulli outcomes along the accuracy curve of ``segments``."""
    accuracy = curve(segments)
    return Stream(rng.random(accuracy.shape[0]) < accuracy, accuracy)


def bursty(rng: np.random.Generator, segments: Segments, stick: float) -> Stream:
    """Outcomes along the accuracy curve of ``segments`` whose errors come in runs: a wrong prediction is followed by
    another with probability ``stick`` (a two-state Markov chain whose long-run error rate is the curve's).

    Generated a run at a time: a run of rights ends with probability ``q (1 - stick) / (1 - q)`` per event (``q``
    the error rate where the run starts), a run of wrongs with ``1 - stick``.

    >>> s = bursty(np.random.default_rng(1), [(200_000, 0.85, 0.85)], 0.9)
    >>> round(float(s.correct.mean()), 2)
    0.85
    """
    accuracy = curve(segments)
    n = accuracy.shape[0]
    correct = np.ones(n, dtype=bool)
    i, wrong = 0, bool(n and rng.random() >= accuracy[0])
    while i < n:
        q = 1.0 - float(accuracy[i])
        leave = (1.0 - stick) if wrong else min(1.0, q * (1.0 - stick) / (1.0 - q))
        length = int(rng.geometric(leave)) if leave > 0.0 else n - i
        correct[i : i + length] = not wrong
        i += length
        wrong = not wrong
    return Stream(correct, accuracy)


def lesson(rng: np.random.Generator) -> Stream:
    """The producer's ``lesson`` stream (0.85 on 2024-01-01 to 0.65 by June); truth is its population curve."""
    from decaywatch.producer.scenario import parse_models
    from decaywatch.producer.stream import generate

    stream = generate(parse_models("m=lesson")[0], rng)
    if not stream.labeled.all():
        raise ValueError("the lesson benchmark expects every event labeled (weeks are counted in events)")
    return Stream(stream.correct, np.asarray(stream.population_accuracy, dtype=np.float64))


@dataclass(frozen=True)
class Scenario:
    """A named stream generator; ``weekly`` scenarios are judged by the week of their first alert."""

    name: str
    generate: Callable[[np.random.Generator], Stream]
    weekly: bool = False

    def stream(self, seed: int) -> Stream:
        """This scenario's stream for ``seed``: the same seed always gives the same stream."""
        return self.generate(np.random.default_rng([seed, zlib.crc32(self.name.encode())]))


def _segments(*segments: tuple[int, float, float]) -> Callable[[np.random.Generator], Stream]:
    return lambda rng: piecewise(rng, segments)


def scenarios(stable_events: int = 200_000, episodes: int = 3) -> list[Scenario]:
    """The benchmark's scenarios (``stable_events`` and ``episodes`` shrink for a quick run)."""
    steady = (50_000, BASELINE, BASELINE)
    return [
        Scenario("stable", _segments((stable_events, BASELINE, BASELINE))),
        Scenario("sudden", _segments(steady, (10_000, 0.65, 0.65))),
        Scenario("sub-threshold", _segments(steady, (100_000, 0.80, 0.80))),
        Scenario("gradual", _segments(steady, (20_000, BASELINE, 0.65), (10_000, 0.65, 0.65))),
        Scenario("recovery", _segments(steady, *[(10_000, 0.65, 0.65), (20_000, BASELINE, BASELINE)] * episodes)),
        Scenario("lesson", lesson, weekly=True),
        *(Scenario(f"bursty {stick}", _bursty(stick, (stable_events, BASELINE, BASELINE))) for stick in BURSTY_STICKS),
        Scenario("bursty sudden", _bursty(0.7, steady, (10_000, 0.65, 0.65))),
        Scenario("sparse stable", _segments((30 * SPARSE_PER_DAY, BASELINE, BASELINE))),
        Scenario("sparse fall", _segments((15 * SPARSE_PER_DAY, BASELINE, BASELINE), (15 * SPARSE_PER_DAY, 0.65, 0.65))),
    ]


SPARSE_PER_DAY = 1200
"""Labels a day of the sparse scenarios (50 an hour): 30 days hold 36,000 labeled events."""


BURSTY_STICKS = (0.5, 0.7, 0.9)
"""Chances that a wrong prediction is followed by another in the steady bursty scenarios (mean runs of 2, 3.3, 10)."""


def _bursty(stick: float, *segments: tuple[int, float, float]) -> Callable[[np.random.Generator], Stream]:
    return lambda rng: bursty(rng, segments, stick)
