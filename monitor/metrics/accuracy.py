"""Accuracy: correct predictions over labeled events; the contract's metric."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

import numpy as np

from decaywatch.monitor.metric import LabeledOutcomes, MetricSeries, Ring, Trajectory, ratio

CORRECT: Final = Ring("correct", np.uint8, lambda o: o.correct, keep_times=True)


class Accuracy:
    name: Final = "accuracy"
    higher_is_better: Final = True
    success_rate: Final = True
    binomial: Final = True
    needs_positive_class: Final = False
    rings: Final = (CORRECT,)

    def series(self, trajectories: Mapping[str, Trajectory], outcomes: LabeledOutcomes) -> MetricSeries:
        t = trajectories[CORRECT.name]
        return MetricSeries(t.total, t.count, t.count, np.arange(len(outcomes)), outcomes.correct)

    def value(self, totals: Mapping[str, int], count: int) -> float | None:
        return ratio(totals[CORRECT.name], count)
