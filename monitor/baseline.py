"""A model's baseline accuracy: fixed (as measured offline, maybe with a date) or learned.

The lesson's baseline is a fixed figure with the date it was measured
(0.85 on 2024-01-01).  When a team has no such figure, the monitor learns one
from the model's first N labeled events in production.

Values are kept as exact fractions so that the rule's comparisons are exact:
a drop exactly equal to the threshold is *stable*, as the lesson says, even
where binary floating point would make 0.85 - 0.75 a hair less than 0.1.

>>> import numpy as np
>>> b = Baseline.learned(4)
>>> b.observe(np.array([True, True, False]), np.array([1.0, 2.0, 3.0]))
3
>>> b.value is None
True
>>> b.observe(np.array([True, False]), np.array([4.0, 5.0]))
1
>>> float(b.value), b.measured_at
(0.75, 4.0)
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any

import numpy as np
import numpy.typing as npt


def exact(value: float) -> Fraction:
    """The decimal a user wrote (0.85), as an exact fraction (17/20), not the nearest binary float."""
    return Fraction(repr(float(value)))


class Baseline:
    """Baseline accuracy of one model.

    ``value`` is ``None`` until it is known.  ``measured_at`` is the date the
    user gave (a string) for a fixed baseline, or the event time (epoch
    seconds) of the last event used to learn it.
    """

    def __init__(self, value: float | None, measured_at: str | float | None, learn_from: int) -> None:
        if value is not None and not 0.0 <= value <= 1.0:
            raise ValueError(f"baseline accuracy must be in [0, 1], not {value}")
        if value is None and learn_from < 1:
            raise ValueError(f"a learned baseline needs at least 1 labeled event, not {learn_from}")
        self.learn_from = learn_from
        self.value: Fraction | None = None if value is None else exact(value)
        self.measured_at = measured_at
        self._seen = 0
        self._correct = 0

    @classmethod
    def fixed(cls, value: float, measured_at: str | None = None) -> Baseline:
        return cls(value, measured_at, 0)

    @classmethod
    def learned(cls, learn_from: int) -> Baseline:
        return cls(None, None, learn_from)

    @property
    def is_learned(self) -> bool:
        return self.learn_from > 0

    def state(self) -> dict[str, Any]:
        """What was learned (a fixed baseline's value and date come from the policy)."""
        return {
            "value": None if self.value is None else [self.value.numerator, self.value.denominator],
            "measured_at": self.measured_at if isinstance(self.measured_at, float) else None,
            "seen": self._seen,
            "correct": self._correct,
        }

    def restore(self, state: dict[str, Any]) -> None:
        value, seen, correct = state["value"], state["seen"], state["correct"]
        if type(seen) is not int or type(correct) is not int or not 0 <= correct <= seen:
            raise ValueError(f"baseline learned {correct!r} of {seen!r} events")
        if self.is_learned and seen > self.learn_from:
            raise ValueError(f"baseline learned from {seen} of {self.learn_from} events")
        if value is not None:
            numerator, denominator = value
            if type(numerator) is not int or type(denominator) is not int or denominator <= 0:
                raise ValueError(f"baseline value {value!r} is not a fraction")
            self.value = Fraction(numerator, denominator)
        elif self.is_learned:
            self.value = None
        if self.is_learned:
            measured = state["measured_at"]
            if measured is not None and type(measured) not in (int, float):
                raise ValueError(f"baseline measured at {measured!r}")
            self.measured_at = None if measured is None else float(measured)
        self._seen, self._correct = seen, correct

    def observe(self, outcomes: npt.NDArray[np.bool_], event_time: npt.NDArray[np.float64]) -> int:
        """Feed labeled outcomes; returns how many leading ones went into learning.

        Rules must not judge those events: the baseline did not exist yet.
        """
        if self.value is not None:
            return 0
        take = min(self.learn_from - self._seen, int(outcomes.shape[0]))
        self._seen += take
        self._correct += int(np.count_nonzero(outcomes[:take]))
        if self._seen == self.learn_from:
            self.value = Fraction(self._correct, self._seen)
            self.measured_at = float(event_time[take - 1])
        return take
