"""Wilson score intervals: how sure an accuracy estimate is, given how many events stand behind it.

Used for the exported confidence band of every window and for the bounds an
alert carries.  Unlike the normal approximation, the Wilson interval stays
inside [0, 1] and is honest for small counts and for accuracies near 0 or 1.

>>> lower, upper = wilson_interval(85, 100)
>>> round(float(lower), 4), round(float(upper), 4)
(0.7672, 0.9069)
"""

from __future__ import annotations

import math
from typing import Final

import numpy as np
import numpy.typing as npt

Z_95: Final = 1.959963984540054
"""The two-sided 95% normal quantile."""

ArrayLike = npt.NDArray[np.float64] | npt.NDArray[np.int64] | int | float


def wilson_interval(
    correct: ArrayLike, count: ArrayLike, z: float = Z_95
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Lower and upper bound of the success rate ``correct / count`` (NaN where ``count`` is 0)."""
    k = np.asarray(correct, dtype=np.float64)
    n = np.asarray(count, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = k / n
        z2 = z * z
        denominator = 1.0 + z2 / n
        centre = (p + z2 / (2.0 * n)) / denominator
        half = z * np.sqrt(p * (1.0 - p) / n + z2 / (4.0 * n * n)) / denominator
    return np.clip(centre - half, 0.0, 1.0), np.clip(centre + half, 0.0, 1.0)


def wilson_bounds(correct: int, count: int, z: float = Z_95) -> tuple[float, float]:
    """``wilson_interval`` of one pair, in plain floats (the same operations, so the same bits).

    Snapshots take a few of these per model per batch: numpy's per-call cost
    on scalars was most of a snapshot's time.

    >>> wilson_bounds(85, 100) == tuple(float(b) for b in wilson_interval(85, 100))
    True
    >>> wilson_bounds(0, 0)
    (nan, nan)
    """
    if count == 0:
        return math.nan, math.nan
    k, n = float(correct), float(count)
    p = k / n
    z2 = z * z
    denominator = 1.0 + z2 / n
    centre = (p + z2 / (2.0 * n)) / denominator
    half = z * math.sqrt(p * (1.0 - p) / n + z2 / (4.0 * n * n)) / denominator
    return min(max(centre - half, 0.0), 1.0), min(max(centre + half, 0.0), 1.0)
