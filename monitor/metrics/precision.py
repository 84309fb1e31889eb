"""Precision of the positive class: true positives over predicted positives (a success rate over them)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

import numpy as np

from decaywatch.monitor.metric import LabeledOutcomes, MetricSeries, Trajectory, ratio
from decaywatch.monitor.metrics.confusion import PREDICTED_POSITIVE, TRUE_POSITIVE, present


class Precision:
    name: Final = "precision"
    higher_is_better: Final = True
    success_rate: Final = True
    binomial: Final = True
    needs_positive_class: Final = True
    rings: Final = (TRUE_POSITIVE, PREDICTED_POSITIVE)

    def series(self, trajectories: Mapping[str, Trajectory], outcomes: LabeledOutcomes) -> MetricSeries:
        tp, predicted = trajectories[TRUE_POSITIVE.name].total, trajectories[PREDICTED_POSITIVE.name].total
        trials = np.flatnonzero(present(outcomes.predicted_positive))
        return MetricSeries(tp, predicted, predicted, trials, present(outcomes.actual_positive)[trials])

    def value(self, totals: Mapping[str, int], count: int) -> float | None:
        return ratio(totals[TRUE_POSITIVE.name], totals[PREDICTED_POSITIVE.name])
