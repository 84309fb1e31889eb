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
    def rings(self) -> list[Ring]:
        return [ring for members, _window in self._groups for ring in members]

    @property
    def shape(self) -> tuple[tuple[str, ...], ...]:
        """The group layout (ring names per group): ring sets of one shape can be measured together."""
        return tuple(tuple(ring.name for ring in members) for members, _window in self._groups)

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


class FleetMeasure:
    """The count windows of many models of one batch, measured and written together.

    ``RingSet.measure`` costs a dozen numpy calls per model and group; with a
    thousand models in a batch those calls were most of the monitor's time.
    Here every group is one cumulative sum over the whole batch (its labeled
    events sorted by model, ``starts``/``lengths`` marking each model's
    segment, each preceded by the oldest values of its ring that its window
    drops), read at two points per event.  Per model there is only slicing.
    The results equal ``RingSet.measure`` event by event (the property tests
    check it).
    """

    def __init__(self, ringsets: Sequence[RingSet], starts: npt.NDArray[np.intp], lengths: npt.NDArray[np.intp]) -> None:
        self.ringsets = ringsets
        self.starts, self.lengths = starts, lengths
        self._pending: list[tuple[npt.NDArray[Any], npt.NDArray[np.int64], npt.NDArray[np.int64]]] = []

    def measure(self, columns: dict[str, npt.NDArray[Any]]) -> dict[str, Trajectory]:
        """Each ring's trajectory over the whole batch (model segments back to back); ``write`` stores it.

        Per model, the values its window drops during the batch are first the
        oldest of its ring (``from_old`` of them), then its own batch values
        in order.  So each model's segment is laid out as those old values
        followed by the batch's, and one cumulative sum over all segments
        gives both what each event adds and what its window has dropped by
        then: two gathers per event, whatever the number of models.
        """
        first = self.ringsets[0]
        size = first.size
        starts, lengths = self.starts, self.lengths
        n = int(lengths.sum())
        segment = np.repeat(np.arange(len(self.ringsets)), lengths)
        trajectories: dict[str, Trajectory] = {}
        self._pending = []
        for g, (members, _window) in enumerate(first._groups):
            windows = [ringset._groups[g][1] for ringset in self.ringsets]
            rows = np.stack([columns[ring.name] for ring in members])  # one row per ring: sums run along memory
            before = np.fromiter((w._count for w in windows), dtype=np.int64, count=len(windows))
            correct_before = np.array([w._correct for w in windows], dtype=np.int64).reshape(len(windows), -1)
            seen = np.arange(1, n + 1) + (before - starts)[segment]  # events each window has seen, this one included
            count = np.minimum(seen, size)
            dropped = seen - count
            from_old = np.minimum(dropped[starts + lengths - 1], before)  # oldest ring values each model drops
            shift = np.cumsum(from_old)  # each model's batch values sit after its own and every earlier model's old ones
            at = np.arange(n) + shift[segment]
            laid = _laid_out(windows, from_old, rows, starts, lengths)
            sums = np.zeros((len(members), laid.shape[1] + 1), dtype=np.int64)
            np.cumsum(laid, axis=1, out=sums[:, 1:])
            # event i of model k: correct_before[k] + (sums[at[i] + 1] - sums[batch_k]) - (sums[origin_k + dropped[i]]
            # - sums[origin_k]), where the model's segment begins at origin_k and its batch values at batch_k
            batch_at = starts + shift
            origin = batch_at - from_old
            constant = correct_before.T - sums[:, batch_at] + sums[:, origin]
            # np.take runs about twice as fast as fancy indexing here
            total = np.take(sums, at + 1, axis=1)
            total -= np.take(sums, origin[segment] + dropped, axis=1)
            total += np.take(constant, segment, axis=1)
            for c, ring in enumerate(members):
                trajectories[ring.name] = Trajectory(total[c], count)
            self._pending.append((rows.T, total.T, count))
        return trajectories

    def write(self, event_time: npt.NDArray[np.float64]) -> None:
        """Store the batch last measured in every model's windows."""
        for g, (values, total, count) in enumerate(self._pending):
            for k, ringset in enumerate(self.ringsets):
                a, b = int(self.starts[k]), int(self.starts[k] + self.lengths[k])
                ringset._groups[g][1].write(values[a:b], event_time[a:b], total[a:b], count[a:b])
        self._pending = []


def _laid_out(
    windows: Sequence[CountWindow],
    take: npt.NDArray[np.int64],
    rows: npt.NDArray[Any],
    starts: npt.NDArray[np.intp],
    lengths: npt.NDArray[np.intp],
) -> npt.NDArray[np.int64]:
    """Per model, the ``take[k]`` oldest values of its window's ring, then its batch values (``rows``, one row per
    ring): views joined by one concatenate, one column per value."""
    if not take.any():
        return rows.astype(np.int64)
    parts = []
    for window, d, start, length in zip(windows, take.tolist(), starts.tolist(), lengths.tolist(), strict=True):
        if d:
            ring = window._bits
            oldest = (window._next - window._count) % window.size
            end = oldest + d
            if end <= ring.shape[0]:
                parts.append(ring[oldest:end].T)
            else:
                parts.append(ring[oldest:].T)
                parts.append(ring[: end - ring.shape[0]].T)
        parts.append(rows[:, start : start + length])
    return np.concatenate(parts, axis=1, dtype=np.int64)
