"""The count windows of one size: every ring a model's metrics need, summed in as few numpy passes as possible.

Rings of the same integer type share one multi-column ``CountWindow`` (one
cumulative sum for all of them per batch, instead of one per ring): a binary
model's correct, true-positive, predicted- and actual-positive and scored
bits are one ``uint8`` window with five columns, its squared errors a second
window.  Event times are kept once, by the group that holds ``correct``.

>>> import numpy as np
>>> from decaywatch.monitor.metric import LabeledOutcomes
>>> from decaywatch.monitor.metrics.accuracy import CORRECT
>>> rings = RingSet(3, [CORRECT])
>>> outcomes = LabeledOutcomes(np.array([True, True, False, False]), np.arange(4.0), np.arange(4))
>>> trajectories = rings.measure(outcomes)
>>> trajectories["correct"].total.tolist(), trajectories["correct"].count.tolist()
([1, 2, 2, 1], [1, 2, 3, 3])
>>> rings.write(outcomes.event_time)
>>> rings.totals(), rings.count
({'correct': 1}, 3)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from decaywatch.monitor.metric import LabeledOutcomes, Ring, Trajectory
from decaywatch.monitor.window import CountWindow


class RingSet:
    """Count windows of ``size`` labeled events over ``rings``, grouped by integer type."""

    def __init__(self, size: int, rings: Sequence[Ring]) -> None:
        self.size = size
        groups: dict[Any, list[Ring]] = {}
        for ring in rings:
            groups.setdefault(np.dtype(ring.dtype), []).append(ring)
        self._groups = [
            (tuple(members), CountWindow(size, members[0].dtype, any(r.keep_times for r in members), columns=len(members)))
            for members in groups.values()
        ]
        self._timed = next((window for members, window in self._groups if any(r.keep_times for r in members)), None)
        self._pending: list[tuple[npt.NDArray[Any], npt.NDArray[np.int64], npt.NDArray[np.int64]]] = []

    @property
    def count(self) -> int:
        """Labeled events in the window."""
        return self._groups[0][1].count

    @property
    def time_span(self) -> tuple[float, float] | None:
        return None if self._timed is None else self._timed.time_span

    def totals(self) -> dict[str, int]:
        """Each ring's sum over the window."""
        return {
            ring.name: int(total) for members, window in self._groups for ring, total in zip(members, window.correct, strict=True)
        }

    def measure(self, outcomes: LabeledOutcomes) -> dict[str, Trajectory]:
        """Each ring's trajectory over a batch (its sum and the count after every event); ``write`` then stores it.

        Between the two, :meth:`oldest_time` still sees the events the batch pushes out.
        """
        trajectories: dict[str, Trajectory] = {}
        self._pending = []
        for members, window in self._groups:
            values = np.stack([ring.column(outcomes) for ring in members], axis=1)
            total, count = window.trajectory(values)
            for c, ring in enumerate(members):
                trajectories[ring.name] = Trajectory(total[:, c], count)
            self._pending.append((values, total, count))
        return trajectories

    def write(self, event_time: npt.NDArray[np.float64]) -> None:
        """Store the batch last measured."""
        for (_members, window), (values, total, count) in zip(self._groups, self._pending, strict=True):
            window.write(values, event_time, total, count)
        self._pending = []

    def oldest_time(self, j: int, count_j: int, event_time: npt.NDArray[np.float64]) -> float:
        """Event time of the oldest event in the window after event ``j`` of the batch measured, not yet written."""
        assert self._timed is not None, "these windows keep no event times"
        return self._timed.oldest_time(j, count_j, event_time)

    def state(self) -> list[list[Any]]:
        return [[[ring.name for ring in members], window.state()] for members, window in self._groups]

    def restore(self, state: Any) -> None:
        names = [[ring.name for ring in members] for members, _window in self._groups]
        if not isinstance(state, list) or [group[0] for group in state] != names:
            raise ValueError(f"window groups {[g[0] for g in state] if isinstance(state, list) else state!r}, not {names}")
        for (_members, window), (_names, group) in zip(self._groups, state, strict=True):
            window.restore(group)
