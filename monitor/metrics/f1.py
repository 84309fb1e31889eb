"""F1 of the positive class: 2 TP / (predicted positives + actual positives).

Not a success rate over one subsequence, so its rules judge the window's value.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from decaywatch.monitor.metric import LabeledOutcomes, MetricSeries, Trajectory, ratio
from decaywatch.monitor.metrics.confusion import ACTUAL_POSITIVE, PREDICTED_POSITIVE, TRUE_POSITIVE


class F1:
    name: Final = "f1"
    higher_is_better: Final = True
    success_rate: Final = False
    binomial: Final = True
    needs_positive_class: Final = True
    rings: Final = (TRUE_POSITIVE, PREDICTED_POSITIVE, ACTUAL_POSITIVE)

    def series(self, trajectories: Mapping[str, Trajectory], outcomes: LabeledOutcomes) -> MetricSeries:
        del outcomes
        tp = trajectories[TRUE_POSITIVE.name].total
        both = trajectories[PREDICTED_POSITIVE.name].total + trajectories[ACTUAL_POSITIVE.name].total
        return MetricSeries(2 * tp, both, both)

    def value(self, totals: Mapping[str, int], count: int) -> float | None:
        return ratio(2 * totals[TRUE_POSITIVE.name], totals[PREDICTED_POSITIVE.name] + totals[ACTUAL_POSITIVE.name])
