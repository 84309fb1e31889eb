"""What a rule watches: a metric, measured over a model's count windows after every labeled event.

A rule never asks which metric it watches.  Every metric hands it the same
shape, a :class:`MetricSeries`: the window's value after each labeled event of
a batch as an exact fraction ``numerator / denominator`` (so a rule compares
exactly, whatever the metric), the events behind it (``support``), and, for a
metric that is a success rate over a subsequence of events (accuracy:
every labeled event; precision: the predicted positives; recall: the actual
positives), those trials and their outcomes, which the sequential test needs.

A metric is built from *rings*: per-event integer columns (correct, true
positive, squared error in millionths, ...) that a count window sums.  A
metric names the rings it needs; the tracker keeps one count window per
(window size, ring), shared by every metric that needs it.

Adding a metric is one module in ``monitor/metrics/`` that defines it, and one
line in ``monitor/metrics/__init__.py`` that registers it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

Counts = npt.NDArray[np.int64]
Mask = npt.NDArray[np.bool_]


@dataclass(frozen=True, slots=True)
class LabeledOutcomes:
    """One model's labeled events of one batch, in stream order, as the columns rings are made of."""

    correct: Mask
    event_time: npt.NDArray[np.float64]
    source_index: npt.NDArray[np.int64]
    predicted_positive: Mask | None = None
    """Predicted the positive class (``None``: the model has no positive class)."""
    actual_positive: Mask | None = None
    squared_error: npt.NDArray[np.int64] | None = None
    """(score - actual)^2 in millionths, 0 where there is no score."""
    scored: Mask | None = None

    def __len__(self) -> int:
        return int(self.correct.shape[0])

    @classmethod
    def concatenate(cls, parts: list[LabeledOutcomes]) -> LabeledOutcomes:
        """Several models' outcomes back to back (they must agree on which columns they have)."""
        if len(parts) == 1:
            return parts[0]

        def join(name: str) -> Any:
            arrays = [getattr(part, name) for part in parts]
            return None if arrays[0] is None else np.concatenate(arrays)

        return cls(*(join(name) for name in cls.__dataclass_fields__))


@dataclass(frozen=True, slots=True)
class Ring:
    """A per-event integer column a count window sums (``dtype`` holds one event's value)."""

    name: str
    dtype: type[np.integer[Any]]
    column: Callable[[LabeledOutcomes], npt.NDArray[Any]]
    keep_times: bool = False
    """Keep event times in the ring (for the judged window's time span and oldest event)."""


@dataclass(frozen=True, slots=True)
class Trajectory:
    """A ring's window after each event of a batch: its sum and its number of events."""

    total: Counts
    count: Counts


@dataclass(frozen=True, slots=True)
class MetricSeries:
    """One metric over one window, after each labeled event of a batch."""

    numerator: Counts
    denominator: Counts
    """The value is ``numerator / denominator`` (undefined where the denominator is 0)."""
    support: Counts
    """Events behind the value (a rule's ``min_samples`` counts these)."""
    trials: npt.NDArray[np.intp] | None = None
    """For a success rate: positions (among the labeled events) of its trials ..."""
    successes: Mask | None = None
    """... and whether each succeeded.  ``None`` for a metric that is not a success rate."""


class Metric(Protocol):
    """A quantity a rule can watch, per count window."""

    @property
    def name(self) -> str: ...

    @property
    def higher_is_better(self) -> bool: ...

    @property
    def success_rate(self) -> bool:
        """A success rate over a subsequence of events (its series has trials): the sequential test can judge it."""
        ...

    @property
    def binomial(self) -> bool:
        """``numerator`` successes out of ``denominator`` trials: it has a Wilson interval."""
        ...

    @property
    def needs_positive_class(self) -> bool: ...

    @property
    def rings(self) -> tuple[Ring, ...]: ...

    def series(self, trajectories: Mapping[str, Trajectory], outcomes: LabeledOutcomes) -> MetricSeries:
        """The metric after each event, from its rings' trajectories over one window."""
        ...

    def value(self, totals: Mapping[str, int], count: int) -> float | None:
        """The metric over a whole window now, from its rings' sums (``None`` where undefined)."""
        ...


def ratio(numerator: int, denominator: int) -> float | None:
    return numerator / denominator if denominator else None
