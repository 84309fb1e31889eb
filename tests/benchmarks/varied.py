"""Bursty errors not tuned to one generator: every seed draws its own accuracy, threshold and run length.

Per seed: a baseline accuracy in [0.7, 0.99], a threshold in [0.02, 0.2],
a chance in [0.3, 0.95] that a wrong prediction is followed by another (mean
runs of 1.4 to 20 errors), and a label rate from 1,200 to 100,000 a day
(log-uniform: the labeled events' times are spaced by it; the rules count
labeled events, the event-time windows see the rate).  Two streams with errors in runs of that kind:

- *steady*: 200,000 labeled events at the baseline (any alert is a false page);
- *fall*: 50,000 at the baseline, then 20,000 at ``baseline - 2 * threshold``
  (the delay is labeled events from the fall to the first alert).

Each is judged by decaywatch's default policy with that baseline and
threshold, and by the same policy counting every event as independent
(``discount_bursts = false``: the rule before the discount).  The fall's
delay is also given as a multiple of the same fall's delay with independent
errors (same seed, same accuracies), beside the stream's true variance
inflation ``phi``: the dependence demands a delay about ``phi`` times longer.
"""

from __future__ import annotations

import statistics
import zlib
from dataclasses import dataclass

import numpy as np

from decaywatch.monitor.rates import markov_phi
from tests.benchmarks.detector import DecaywatchDetector, policy
from tests.benchmarks.scenario import bursty, piecewise

STEADY_EVENTS = 200_000
BEFORE_FALL = 50_000
FALL_EVENTS = 20_000


@dataclass(frozen=True)
class Draw:
    accuracy: float
    threshold: float
    stick: float
    per_day: int
    """Labeled events a day."""

    @property
    def phi(self) -> float:
        """The true variance inflation of the chain at the baseline accuracy."""
        return markov_phi(self.accuracy, self.stick)


def draw(seed: int) -> Draw:
    rng = np.random.default_rng([seed, zlib.crc32(b"varied")])
    return Draw(
        round(float(rng.uniform(0.7, 0.99)), 3),
        round(float(rng.uniform(0.02, 0.2)), 3),
        round(float(rng.uniform(0.3, 0.95)), 2),
        round(10 ** float(rng.uniform(np.log10(1200), 5))),
    )


@dataclass(frozen=True)
class VariedResult:
    draws: list[Draw]
    steady_alerts: dict[str, int]
    """Seeds with any alert on the steady stream, per detector."""
    fall_delays: dict[str, list[int | None]]
    """Per detector and seed: labeled events from the fall to the first alert (None: not caught, or fired before)."""
    independent_delays: list[int | None]
    """The default policy on the same fall with independent errors."""


def _first_after(firing: np.ndarray, start: int) -> int | None:
    """Delay of the first alert at or after ``start``; None if there is none or one came before (a false page)."""
    if firing.size and int(firing[0]) < start:
        return None
    after = firing[firing >= start]
    return int(after[0]) - start if after.size else None


def run(seeds: int) -> VariedResult:
    draws = [draw(seed) for seed in range(seeds)]
    steady_alerts = {"decaywatch": 0, "decaywatch iid": 0}
    fall_delays: dict[str, list[int | None]] = {"decaywatch": [], "decaywatch iid": []}
    independent: list[int | None] = []
    for seed, d in enumerate(draws):
        settings = {"baseline": d.accuracy, "threshold": d.threshold}
        found = {
            "decaywatch": DecaywatchDetector("decaywatch", policy(**settings), seconds_apart=86400 / d.per_day),
            "decaywatch iid": DecaywatchDetector(
                "decaywatch iid", policy(**settings, discount_bursts=False), seconds_apart=86400 / d.per_day
            ),
        }
        rng = np.random.default_rng([seed, zlib.crc32(b"varied-streams")])
        steady = bursty(rng, [(STEADY_EVENTS, d.accuracy, d.accuracy)], d.stick).correct
        low = round(d.accuracy - 2 * d.threshold, 12)
        segments = [(BEFORE_FALL, d.accuracy, d.accuracy), (FALL_EVENTS, low, low)]
        fall = bursty(rng, segments, d.stick).correct
        plain = piecewise(rng, segments).correct
        for name, detector in found.items():
            steady_alerts[name] += bool(detector.run(steady).firing.size)
            fall_delays[name].append(_first_after(detector.run(fall).firing, BEFORE_FALL))
        independent.append(_first_after(found["decaywatch"].run(plain).firing, BEFORE_FALL))
    return VariedResult(draws, steady_alerts, fall_delays, independent)


def render(result: VariedResult) -> str:
    seeds = len(result.draws)
    lines = [
        f"bursty, varied ({seeds} seeds: baseline 0.7-0.99, threshold 0.02-0.2, P(wrong|wrong) 0.3-0.95, "
        "1,200-100,000 labels a day):",
    ]
    for name in result.steady_alerts:
        caught = [x for x in result.fall_delays[name] if x is not None]
        median = statistics.median(caught) if caught else None
        lines.append(
            f"  {name:15} steady: alerts in {result.steady_alerts[name]}/{seeds} seeds;  "
            f"fall by 2x threshold: caught in {len(caught)}/{seeds}, median delay {median}"
        )
    ratios = [
        (delay / plain, d.phi)
        for delay, plain, d in zip(result.fall_delays["decaywatch"], result.independent_delays, result.draws, strict=True)
        if delay is not None and plain
    ]
    if ratios:
        lines.append(
            f"  delay with runs / delay with independent errors (default policy): median "
            f"{statistics.median(r for r, _ in ratios):.2f}x, where the true inflation phi has median "
            f"{statistics.median(p for _, p in ratios):.2f}; above phi in {sum(r > p for r, p in ratios)}/{len(ratios)} seeds"
        )
    return "\n".join(lines)
