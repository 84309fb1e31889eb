"""More than accuracy: precision, recall and F1 of a positive class, and the Brier score, per count window.

A fraud model can keep its accuracy while missing every fraud, so a rule may
watch any of these with a baseline and threshold of its own.  All are counted
over the same last-N labeled events as accuracy, with the same ring buffers:

* precision = TP / predicted positives, recall = TP / actual positives,
  F1 = 2 TP / (predicted positives + actual positives);
* Brier score = mean of (score - actual)^2 over the events that carry a
  score (lower is better: its rule fires on a *rise* above the baseline).

Squared errors are stored as integers (millionths), so window sums are exact
and alerts do not depend on batch sizes.

Precision and recall are success rates over a subsequence (recall: the events
that really were positive, success = predicted positive), so their rules can
use the same sequential test as accuracy.  F1 and Brier are not, so their
rules judge the window's value (``decision = "window"``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from decaywatch.monitor.episode import EpisodeState
from decaywatch.monitor.window import CountWindow

BRIER_SCALE: Final = 1_000_000
METRICS: Final = ("accuracy", "precision", "recall", "f1", "brier")
SEQUENTIAL_METRICS: Final = ("accuracy", "precision", "recall")


@dataclass(frozen=True, slots=True)
class BinaryOutcomes:
    """One batch's labeled events of a model, as bits against the positive class."""

    predicted: npt.NDArray[np.bool_]
    actual: npt.NDArray[np.bool_]
    squared_error: npt.NDArray[np.int64]
    """(score - actual)^2 in millionths; 0 where there is no score."""
    scored: npt.NDArray[np.bool_]

    @classmethod
    def of(
        cls, predictions: npt.NDArray[np.object_], labels: npt.NDArray[np.object_], score: npt.NDArray[np.float64], positive: Any
    ) -> BinaryOutcomes:
        """Bits against ``positive`` (Python ``==`` per element, run by numpy over the object arrays)."""
        predicted = np.asarray(predictions == positive, dtype=bool)
        actual = np.asarray(labels == positive, dtype=bool)
        scored = ~np.isnan(score)
        error = np.where(scored, score - actual, 0.0)
        return cls(predicted, actual, np.rint(error * error * BRIER_SCALE).astype(np.int64), scored)


@dataclass(frozen=True, slots=True)
class MetricValues:
    """Per event of a batch (after it): each metric's value over the window, NaN where undefined, and its support."""

    values: dict[str, npt.NDArray[np.float64]]
    support: dict[str, npt.NDArray[np.int64]]


class BinaryWindow:
    """TP, predicted-positive, actual-positive and squared-error rings over the last ``size`` labeled events."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.tp = CountWindow(size, track_times=False)
        self.predicted = CountWindow(size, track_times=False)
        self.actual = CountWindow(size, track_times=False)
        self.squared_error = CountWindow(size, dtype=np.int32, track_times=False)  # at most 10^6 per event
        self.scored = CountWindow(size, track_times=False)

    def _parts(self, batch: BinaryOutcomes) -> list[tuple[CountWindow, npt.NDArray[Any]]]:
        return [
            (self.tp, batch.predicted & batch.actual),
            (self.predicted, batch.predicted),
            (self.actual, batch.actual),
            (self.squared_error, batch.squared_error),
            (self.scored, batch.scored),
        ]

    def update(self, batch: BinaryOutcomes, event_time: npt.NDArray[np.float64]) -> MetricValues:
        """Add a batch; returns every metric's value after each of its events."""
        sums = []
        for window, values in self._parts(batch):
            correct, count = window.extend(values, event_time)
            sums.append(correct)
        tp, predicted, actual, squared, scored = sums
        with np.errstate(invalid="ignore", divide="ignore"):
            values = {
                "precision": tp / predicted,
                "recall": tp / actual,
                "f1": 2.0 * tp / (predicted + actual),
                "brier": squared / scored / BRIER_SCALE,
            }
        support = {"precision": predicted, "recall": actual, "f1": predicted + actual, "brier": scored}
        return MetricValues(values, support)

    def current(self) -> dict[str, float | None]:
        tp, predicted, actual = self.tp.correct, self.predicted.correct, self.actual.correct
        scored = self.scored.correct
        return {
            "precision": tp / predicted if predicted else None,
            "recall": tp / actual if actual else None,
            "f1": 2.0 * tp / (predicted + actual) if predicted + actual else None,
            "brier": self.squared_error.correct / scored / BRIER_SCALE if scored else None,
        }


@dataclass(frozen=True, slots=True)
class ValueJudgement:
    index: int
    firing: bool
    value: float
    support: int


class ValueWindowJudge:
    """A window rule on a metric's value: fires when it is ``threshold`` worse than its baseline.

    Worse means lower, except for the Brier score (a loss), where it means higher.
    """

    def __init__(
        self, metric: str, baseline: float, threshold: float, min_samples: int, recovery_margin: float, cooldown: int
    ) -> None:
        self.metric, self.baseline, self.threshold = metric, baseline, threshold
        self.min_samples, self.recovery_margin, self.cooldown = min_samples, recovery_margin, cooldown
        self._episode = EpisodeState()
        self._quiet = 0  # events still to wait, after a resolution in an earlier batch

    @property
    def firing(self) -> bool:
        return self._episode.firing

    def worsening(self, value: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        return value - self.baseline if self.metric == "brier" else self.baseline - value

    def advance(self, value: npt.NDArray[np.float64], support: npt.NDArray[np.int64]) -> list[ValueJudgement]:
        defined = ~np.isnan(value) & (support >= self.min_samples)
        worse = np.where(defined, self.worsening(np.nan_to_num(value)), 0.0)
        breach = defined & (worse > self.threshold)
        clear = defined & (worse <= self.threshold - self.recovery_margin)
        moves = self._episode.advance_with_cooldown(breach, clear, self._quiet, self.cooldown)
        m = int(value.shape[0])
        resolved = [j for j, firing in moves if not firing]
        self._quiet = max(0, self.cooldown - (m - 1 - resolved[-1])) if resolved else max(0, self._quiet - m)
        return [ValueJudgement(j, firing, float(value[j]), int(support[j])) for j, firing in moves]
