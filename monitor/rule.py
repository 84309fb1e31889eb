"""Alert rules: when a model's rolling accuracy breaks its contract, and when it is back.

Two rules, both from the lesson:

* ``degradation``: ``baseline - accuracy > threshold`` (strictly greater: a drop
  exactly equal to the threshold is stable).
* ``floor``: ``accuracy <= floor`` (the lesson's quiz retrains "at 0.85 accuracy
  or below").

A rule only judges a window holding at least ``min_samples`` labeled events: a
20-event window cannot page anyone.  Recovery needs a margin (``recovery_margin``)
on the good side of the line, so that accuracy hovering at the line does not
fire and resolve over and over.

Comparisons are exact: accuracy is ``correct / count`` (integers) and the line
is a fraction, so ``correct * den < num * count`` decides, with no rounding.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import Final

import numpy as np
import numpy.typing as npt

from monitor.baseline import exact

DEGRADATION: Final = "degradation"
FLOOR: Final = "floor"

Mask = npt.NDArray[np.bool_]
Counts = npt.NDArray[np.int64]


def below(line: Fraction, correct: Counts, count: Counts) -> Mask:
    """``correct / count < line`` for every element, exactly."""
    return correct * line.denominator < line.numerator * count


def at_or_above(line: Fraction, correct: Counts, count: Counts) -> Mask:
    """``correct / count >= line`` for every element, exactly."""
    return ~below(line, correct, count)


def above(line: Fraction, correct: Counts, count: Counts) -> Mask:
    """``correct / count > line`` for every element, exactly."""
    return correct * line.denominator > line.numerator * count


@dataclass(frozen=True, slots=True)
class RuleVerdict:
    """Per event of a batch: does the rule fire here, and may an open episode resolve here."""

    breach: Mask
    clear: Mask


@dataclass(frozen=True, slots=True)
class DegradationRule:
    """Degraded when ``baseline - accuracy > threshold`` in a window of at least ``min_samples``."""

    threshold: float
    min_samples: int
    recovery_margin: float
    name: str = DEGRADATION

    def evaluate(self, baseline: Fraction, correct: Counts, count: Counts) -> RuleVerdict:
        enough = count >= self.min_samples
        line = baseline - exact(self.threshold)
        breach = enough & below(line, correct, count)
        clear = enough & at_or_above(line + exact(self.recovery_margin), correct, count)
        return RuleVerdict(breach, clear)


@dataclass(frozen=True, slots=True)
class FloorRule:
    """Breached when ``accuracy <= floor`` in a window of at least ``min_samples``."""

    floor: float
    min_samples: int
    recovery_margin: float
    name: str = FLOOR

    def evaluate(self, baseline: Fraction | None, correct: Counts, count: Counts) -> RuleVerdict:
        del baseline  # an absolute floor does not depend on the baseline
        enough = count >= self.min_samples
        floor = exact(self.floor)
        breach = enough & ~above(floor, correct, count)
        clear = enough & above(floor, correct, count) & at_or_above(floor + exact(self.recovery_margin), correct, count)
        return RuleVerdict(breach, clear)
