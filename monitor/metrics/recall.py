"""Recall of the positive class: true positives over actual positives (a success rate over them)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

import numpy as np

from decaywatch.monitor.metric import LabeledOutcomes, MetricSeries, Trajectory, ratio
from decaywatch.monitor.metrics.confusion import ACTUAL_POSITIVE, TRUE_POSITIVE, present


class Recall:
    name: Final = "recall"
    higher_is_better: Final = True
    success_rate: Final = True
    binomial: Final = True
    needs_positive_class: Final = True
    rings: Final = (TRUE_POSITIVE, ACTUAL_POSITIVE)

    def series(self, trajectories: Mapping[str, Trajectory], outcomes: LabeledOutcomes) -> MetricSeries:
        tp, actual = trajectories[TRUE_POSITIVE.name].total, trajectories[ACTUAL_POSITIVE.name].total
        trials = np.flatnonzero(present(outcomes.actual_positive))
        return MetricSeries(tp, actual, actual, trials, present(outcomes.predicted_positive)[trials])

    def value(self, totals: Mapping[str, int], count: int) -> float | None:
        return ratio(totals[TRUE_POSITIVE.name], totals[ACTUAL_POSITIVE.name])
