"""Event-time windows: accuracy over the last hour, day or week of *event* time, in a ring of time buckets.

Count windows answer "how good were the last N predictions"; time windows
answer "how good was last week", which is how the lesson reports decay (0.85
on 2024-01-01, 0.65 on 2024-06-01).  Time is the events' own time, never the
wall clock: a window ends at the newest event time seen (the watermark).

The span is cut into ``buckets`` equal buckets (60 by default: a 7-day window
has 2.8-hour buckets), each holding (correct, labeled) counts, so a batch is
added with two ``bincount`` calls and the window moves by zeroing the buckets
it passes.  Events older than the watermark minus the allowed lateness are
*late*: the caller counts them and leaves them out (``late_mask``).

>>> import numpy as np
>>> w = TimeWindow(3600.0, buckets=4)
>>> w.add(np.array([True, False, True]), np.array([0.0, 100.0, 3599.0]))
>>> (w.correct, w.count)
(2, 3)
>>> w.add(np.array([False]), np.array([3600.0 + 900.0]))   # an hour later: the first bucket has left
>>> (w.correct, w.count)
(1, 2)
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any, Final

import numpy as np
import numpy.typing as npt

_UNITS: Final = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_DURATION: Final = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")


def parse_duration(text: str) -> float:
    """Seconds in a duration like ``30s``, ``5m``, ``1h``, ``1d``, ``7d`` or ``2w``."""
    match = _DURATION.match(text)
    if not match:
        raise ValueError(f"{text!r} is not a duration like 30s, 5m, 1h, 1d, 7d or 2w")
    seconds = float(match.group(1)) * _UNITS[match.group(2)]
    if seconds <= 0:
        raise ValueError(f"duration {text!r} must be positive")
    return seconds


def late_mask(
    event_time: npt.NDArray[np.float64], watermark: float | None, allowed_lateness: float
) -> tuple[npt.NDArray[np.bool_], float | None]:
    """Which events are later than ``allowed_lateness`` behind the newest event time before them.

    Returns the mask and the new watermark (the newest event time seen).
    """
    if not event_time.size:
        return np.zeros(0, dtype=bool), watermark
    start = -math.inf if watermark is None else watermark
    before = np.maximum.accumulate(np.concatenate(([start], event_time[:-1])))
    late = event_time < before - allowed_lateness
    newest = float(max(start, float(event_time.max())))
    return late, newest


class TimeWindow:
    """Correct and labeled counts over the last ``span`` seconds of event time."""

    def __init__(self, span: float, buckets: int = 60) -> None:
        if span <= 0 or buckets < 1:
            raise ValueError(f"need a positive span and at least one bucket, not span={span}, buckets={buckets}")
        self.span = span
        self.buckets = buckets
        self.width = span / buckets
        self._correct = np.zeros(buckets, dtype=np.int64)
        self._count = np.zeros(buckets, dtype=np.int64)
        self._predicted = np.zeros(buckets, dtype=np.int64)  # predictions (labeled yet or not): for label coverage
        self._newest: int | None = None  # bucket number (event time // width) of the newest event
        self._total_correct = 0  # the buckets' sums, kept as they change (snapshots read them per batch)
        self._total_count = 0
        self._total_predicted = 0

    @property
    def correct(self) -> int:
        return self._total_correct

    @property
    def count(self) -> int:
        return self._total_count

    @property
    def predicted(self) -> int:
        """On-time predictions in the window, labeled yet or not."""
        return self._total_predicted

    @property
    def coverage(self) -> float | None:
        """Share of the window's predictions whose outcome is in (``None`` before any prediction)."""
        return min(1.0, self._total_count / self._total_predicted) if self._total_predicted else None

    @property
    def accuracy(self) -> float | None:
        count = self.count
        return self.correct / count if count else None

    @property
    def time_span(self) -> tuple[float, float] | None:
        """Event-time range the window covers now (bucket edges)."""
        if self._newest is None:
            return None
        return (self._newest - self.buckets + 1) * self.width, (self._newest + 1) * self.width

    def state(self) -> dict[str, Any]:
        return {
            "span": self.span,
            "buckets": self.buckets,
            "correct": self._correct,
            "count": self._count,
            "predicted": self._predicted,
            "newest": self._newest,
        }

    def restore(self, state: dict[str, Any]) -> None:
        if state["span"] != self.span or state["buckets"] != self.buckets:
            raise ValueError(
                f"{state['buckets']} buckets over {state['span']} s in the checkpoint, {self.buckets} over {self.span} s now"
            )
        correct, count, predicted, newest = state["correct"], state["count"], state["predicted"], state["newest"]
        for array in (correct, count, predicted):
            if not isinstance(array, np.ndarray) or array.dtype != np.int64 or array.shape != (self.buckets,):
                raise ValueError(f"time window buckets {getattr(array, 'shape', array)!r}, not {self.buckets}")
        if not (newest is None or type(newest) is int):
            raise ValueError(f"time window newest bucket {newest!r}")
        self._correct, self._count, self._predicted, self._newest = correct, count, predicted, newest
        self._total_correct, self._total_count = int(correct.sum()), int(count.sum())
        self._total_predicted = int(predicted.sum())

    def add(self, outcomes: npt.NDArray[np.bool_], event_time: npt.NDArray[np.float64]) -> None:
        """Add labeled outcomes that are not late (the caller filters with ``late_mask``)."""
        if outcomes.size:
            add_together([self], np.zeros(1, np.intp), np.array([outcomes.size]), outcomes, event_time)

    def add_predictions(self, event_time: npt.NDArray[np.float64]) -> None:
        """Count on-time predictions (labeled yet or not): they move the window and measure its label coverage."""
        if event_time.size:
            add_together([self], np.zeros(1, np.intp), np.array([event_time.size]), None, event_time)

    def _advance(self, newest: int) -> None:
        assert self._newest is not None
        passed = newest - self._newest
        if passed >= self.buckets:
            self._correct[:] = 0
            self._count[:] = 0
            self._predicted[:] = 0
            self._total_correct = self._total_count = self._total_predicted = 0
        else:
            slots = (self._newest + 1 + np.arange(passed)) % self.buckets
            self._total_correct -= int(self._correct[slots].sum())
            self._total_count -= int(self._count[slots].sum())
            self._total_predicted -= int(self._predicted[slots].sum())
            self._correct[slots] = 0
            self._count[slots] = 0
            self._predicted[slots] = 0
        self._newest = newest


def add_together(
    windows: Sequence[TimeWindow],
    starts: npt.NDArray[np.intp],
    lengths: npt.NDArray[np.intp],
    outcomes: npt.NDArray[np.bool_] | None,
    event_time: npt.NDArray[np.float64],
) -> None:
    """Add many models' on-time outcomes (segments back to back) to their windows of one span, in one pass.

    Two ``bincount`` calls over the whole batch fill every model's buckets;
    per model only the moves of its newest bucket and two row additions remain.
    With ``outcomes=None`` the times are predictions' (labeled yet or not):
    they move the windows and fill the buckets label coverage is measured by.
    """
    first = windows[0]
    width, buckets = first.width, first.buckets
    present = lengths > 0
    if not present.any():
        return
    bucket = np.floor(event_time / width).astype(np.int64)
    newest = np.maximum.reduceat(bucket, starts[present]).tolist()
    for window, top in zip([w for w, p in zip(windows, present.tolist(), strict=True) if p], newest, strict=True):
        if window._newest is None:
            window._newest = top
        elif top > window._newest:
            window._advance(top)
    lowest = np.array([(w._newest if w._newest is not None else 0) - buckets for w in windows], dtype=np.int64)
    segment = np.repeat(np.arange(len(windows)), lengths)
    keep = bucket > lowest[segment]
    slots = segment[keep] * buckets + bucket[keep] % buckets
    counts = np.bincount(slots, minlength=len(windows) * buckets).reshape(len(windows), buckets)
    if outcomes is None:
        predicted_totals = counts.sum(axis=1).tolist()
        for k, window in enumerate(windows):
            if predicted_totals[k]:
                window._predicted += counts[k]
                window._total_predicted += predicted_totals[k]
        return
    correct = np.bincount(slots, weights=outcomes[keep], minlength=len(windows) * buckets).astype(np.int64)
    correct = correct.reshape(len(windows), buckets)
    count_totals, correct_totals = counts.sum(axis=1).tolist(), correct.sum(axis=1).tolist()
    for k, window in enumerate(windows):
        if count_totals[k]:
            window._count += counts[k]
            window._correct += correct[k]
            window._total_count += count_totals[k]
            window._total_correct += correct_totals[k]
