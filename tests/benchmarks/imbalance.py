"""Class imbalance: 2% positives, and a fall in recall that accuracy hardly shows.

A fraud or churn model with 2% positives can stop catching half the positives
while its accuracy moves by less than half a point: accuracy is mostly the
negatives.  Per seed, a recall in [0.6, 0.95] and a false positive rate in
[0.002, 0.02] (so accuracy 0.97 to 0.997), and two streams of 200,000
labeled events:

- *steady*: every event at those rates (any alert is a false page);
- *fall*: 100,000 events at them, then recall lower by 0.2 (twice the recall
  rule's threshold); accuracy falls by 0.004.

decaywatch runs its default policy on the model as a user would set it up:
the accuracy contract at the true accuracy with the tightest threshold the
issue names (0.02), plus a rule on recall (baseline the true recall,
threshold 0.1).  river's ADWIN, for comparison, reads the error bit of every
event, then only the positives' misses (what a recall rule reads).  Delays
are labeled events from the fall to the first alert, and the positives among
them.
"""

from __future__ import annotations

import statistics
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from decaywatch.monitor.config import MetricRule, MonitorConfig
from decaywatch.monitor.engine import Monitor
from decaywatch.monitor.schema import EventBatch
from tests.benchmarks.detector import DriftDetector, policy

EVENTS = 200_000
FALL_AT = 100_000
POSITIVES = 0.02
RECALL_THRESHOLD = 0.1
ACCURACY_THRESHOLD = 0.02
CHUNK = 5000

Bits = npt.NDArray[np.bool_]


@dataclass(frozen=True)
class Draw:
    recall: float
    false_positive_rate: float

    def accuracy(self, recall: float) -> float:
        """The model's true accuracy at ``recall``: hits among positives, true negatives among the rest."""
        return round(POSITIVES * recall + (1 - POSITIVES) * (1 - self.false_positive_rate), 6)


def draw(seed: int) -> Draw:
    rng = np.random.default_rng([seed, zlib.crc32(b"imbalance")])
    return Draw(round(float(rng.uniform(0.6, 0.95)), 3), round(float(rng.uniform(0.002, 0.02)), 4))


@dataclass(frozen=True)
class Labeled:
    """A binary model's labeled events: the truth and the prediction of each."""

    actual: Bits
    predicted: Bits

    @property
    def correct(self) -> Bits:
        return np.asarray(self.actual == self.predicted)


def stream(rng: np.random.Generator, d: Draw, fall_at: int | None) -> Labeled:
    """``EVENTS`` labeled events; from ``fall_at`` on (if given) recall is 0.2 lower."""
    actual = rng.random(EVENTS) < POSITIVES
    recall = np.full(EVENTS, d.recall)
    if fall_at is not None:
        recall[fall_at:] -= 2 * RECALL_THRESHOLD
    hit = rng.random(EVENTS) < np.where(actual, recall, d.false_positive_rate)
    return Labeled(actual, hit)


def decaywatch(d: Draw, discount_bursts: bool = True) -> Callable[[Labeled], dict[str, list[int]]]:
    """The monitor's core with the accuracy contract and a recall rule: each rule's firing positions."""
    settings = policy(
        baseline=d.accuracy(d.recall),
        threshold=ACCURACY_THRESHOLD,
        rules=(MetricRule("recall", d.recall, RECALL_THRESHOLD),),
        discount_bursts=discount_bursts,
    )

    def run(events: Labeled) -> dict[str, list[int]]:
        monitor = Monitor(MonitorConfig(settings))
        firing: dict[str, list[int]] = {}
        for start in range(0, EVENTS, CHUNK):
            actual, predicted = events.actual[start : start + CHUNK], events.predicted[start : start + CHUNK]
            n = len(actual)
            source = np.arange(start, start + n, dtype=np.int64)
            batch = EventBatch(
                models=("m",),
                model_codes=np.zeros(n, np.int32),
                labeled=np.ones(n, bool),
                correct=actual == predicted,
                event_time=source.astype(np.float64),
                source_index=source,
                predictions=predicted.astype(np.int64).astype(object),
                labels=actual.astype(np.int64).astype(object),
            )
            for t in monitor.process(batch):
                if t.status == "firing":
                    firing.setdefault(t.rule, []).append(t.source_index)
        return firing

    return run


def adwin(events: Labeled) -> dict[str, list[int]]:
    """river's ADWIN (defaults) on every event's error bit, and on the misses of the positives alone."""
    from river import drift

    make: Callable[[], DriftDetector] = drift.ADWIN
    found: dict[str, list[int]] = {}
    for name, bits, positions in (
        ("errors", ~events.correct, np.arange(EVENTS)),
        ("misses", ~events.predicted[events.actual], np.flatnonzero(events.actual)),
    ):
        detector = make()
        for position, bit in zip(positions.tolist(), bits.astype(np.int64).tolist(), strict=True):
            detector.update(bit)
            if detector.drift_detected:
                found.setdefault(name, []).append(position)
    return found


@dataclass
class ImbalanceResult:
    draws: list[Draw] = field(default_factory=list)
    steady_alerts: dict[str, int] = field(default_factory=dict)
    """Seeds with any alert on the steady stream, per detector and rule."""
    fall_delays: dict[str, list[int | None]] = field(default_factory=dict)
    """Per detector and rule: labeled events from the fall to the first alert (None: not caught, or fired before)."""
    fall_positives: dict[str, list[int | None]] = field(default_factory=dict)
    """The same delays counted in actual positives."""


def run(seeds: int, with_river: bool = True) -> ImbalanceResult:
    result = ImbalanceResult()
    for seed in range(seeds):
        d = draw(seed)
        result.draws.append(d)
        rng = np.random.default_rng([seed, zlib.crc32(b"imbalance-streams")])
        steady, fall = stream(rng, d, None), stream(rng, d, FALL_AT)
        rules = ("degradation", "recall_degradation")
        found: dict[str, tuple[Callable[[Labeled], dict[str, list[int]]], tuple[str, ...]]] = {
            "decaywatch": (decaywatch(d), rules),
            "decaywatch iid": (decaywatch(d, discount_bursts=False), rules),
        }
        if with_river and _has_river():
            found["river ADWIN"] = (adwin, ("errors", "misses"))
        positives = np.cumsum(fall.actual)
        for name, (detector, read) in found.items():
            quiet, fell = detector(steady), detector(fall)
            for rule in read:
                key = f"{name} / {rule}"
                result.steady_alerts[key] = result.steady_alerts.get(key, 0) + bool(quiet.get(rule))
                delay = _first_after(fell.get(rule, []), FALL_AT)
                result.fall_delays.setdefault(key, []).append(delay)
                result.fall_positives.setdefault(key, []).append(
                    None if delay is None else int(positives[FALL_AT + delay] - positives[FALL_AT - 1])
                )
    return result


def _has_river() -> bool:
    try:
        import river  # noqa: F401
    except ImportError:
        return False
    return True


def _first_after(firing: list[int], start: int) -> int | None:
    """Delay of the first alert at or after ``start``; None if there is none or one came before (a false page)."""
    if firing and firing[0] < start:
        return None
    after = [f for f in firing if f >= start]
    return after[0] - start if after else None


def render(result: ImbalanceResult) -> str:
    seeds = len(result.draws)
    lines = [
        f"class imbalance ({seeds} seeds: 2% positives, recall 0.6-0.95 falling by 0.2, false positives 0.2-2%; "
        f"accuracy falls by 0.004):"
    ]
    for key, alerts in result.steady_alerts.items():
        caught = [x for x in result.fall_delays[key] if x is not None]
        positives = [x for x in result.fall_positives[key] if x is not None]
        median = f"median delay {statistics.median(caught)} events ({statistics.median(positives)} positives)" if caught else ""
        lines.append(f"  {key:36} steady: alerts in {alerts}/{seeds} seeds;  fall: caught in {len(caught)}/{seeds} {median}")
    return "\n".join(lines)


def passed(result: ImbalanceResult) -> tuple[bool, bool]:
    """The default policy's targets: no alert on any steady stream; every fall caught by the recall rule."""
    quiet = all(alerts == 0 for key, alerts in result.steady_alerts.items() if key.startswith("decaywatch /"))
    caught = all(delay is not None for delay in result.fall_delays["decaywatch / recall_degradation"])
    return quiet, caught
