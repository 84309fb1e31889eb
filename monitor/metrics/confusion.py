"""The rings of a binary model's confusion counts, shared by precision, recall, F1 and the Brier score."""

from __future__ import annotations

from typing import Final, TypeVar

import numpy as np
import numpy.typing as npt

from decaywatch.monitor.metric import LabeledOutcomes, Mask, Ring

T = TypeVar("T", bound=np.generic)

BRIER_SCALE: Final = 1_000_000
"""Squared errors are kept in millionths (integers), so window sums are exact."""


def present(column: npt.NDArray[T] | None) -> npt.NDArray[T]:
    assert column is not None, "a binary metric on a model without a positive class"
    return column


def _true_positive(o: LabeledOutcomes) -> Mask:
    return present(o.predicted_positive) & present(o.actual_positive)


TRUE_POSITIVE: Final = Ring("true_positive", np.uint8, _true_positive)
PREDICTED_POSITIVE: Final = Ring("predicted_positive", np.uint8, lambda o: present(o.predicted_positive))
ACTUAL_POSITIVE: Final = Ring("actual_positive", np.uint8, lambda o: present(o.actual_positive))
SQUARED_ERROR: Final = Ring("squared_error", np.int32, lambda o: present(o.squared_error))  # at most 10^6 per event
SCORED: Final = Ring("scored", np.uint8, lambda o: present(o.scored))
