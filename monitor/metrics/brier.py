"""The Brier score: mean squared error of the score against the actual class, over scored events (lower is better)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from decaywatch.monitor.metric import LabeledOutcomes, MetricSeries, Trajectory
from decaywatch.monitor.metrics.confusion import BRIER_SCALE, SCORED, SQUARED_ERROR


class Brier:
    name: Final = "brier"
    higher_is_better: Final = False
    success_rate: Final = False
    binomial: Final = False
    needs_positive_class: Final = True
    rings: Final = (SQUARED_ERROR, SCORED)

    def series(self, trajectories: Mapping[str, Trajectory], outcomes: LabeledOutcomes) -> MetricSeries:
        del outcomes
        scored = trajectories[SCORED.name].total
        return MetricSeries(trajectories[SQUARED_ERROR.name].total, scored * BRIER_SCALE, scored)

    def value(self, totals: Mapping[str, int], count: int) -> float | None:
        scored = totals[SCORED.name]
        return totals[SQUARED_ERROR.name] / scored / BRIER_SCALE if scored else None
