"""Count windows: the last N labeled outcomes of one model, in a numpy ring buffer.

A rule must give the same answer whatever the batch size (a batch that crosses
the line in its middle alerts at the same event as one event at a time would),
so ``extend`` returns the window's state *after every event* of the batch, not
only at its end.  It does so in O(batch) numpy work: a cumulative sum of the
new bits, minus a cumulative sum of the bits that fall out of the window.

>>> import numpy as np
>>> w = CountWindow(3)
>>> correct, count = w.extend(np.array([1, 1, 0, 0], dtype=bool), np.arange(4.0))
>>> correct.tolist(), count.tolist()
([1, 2, 2, 1], [1, 2, 3, 3])
>>> w.accuracy
0.3333333333333333
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt


class CountWindow:
    """Rolling count of correct predictions over the last ``size`` labeled events.

    Public parameter: ``size``.  Learned state (private): the ring of outcome
    bits and their event times, the write position, the fill and the sum.
    """

    def __init__(self, size: int, dtype: type[np.integer] = np.uint8) -> None:  # type: ignore[type-arg]
        """``dtype`` holds each event's value: bits by default; a wider integer for sums such as squared errors."""
        if size < 1:
            raise ValueError(f"window size must be at least 1, not {size}")
        self.size = size
        self._bits = np.zeros(size, dtype=dtype)
        self._times = np.zeros(size, dtype=np.float64)
        self._reset()

    def _reset(self) -> None:
        self._bits[:] = 0
        self._times[:] = 0.0
        self._next = 0  # where the next outcome is written
        self._count = 0
        self._correct = 0

    @property
    def count(self) -> int:
        """Labeled events currently in the window (at most ``size``)."""
        return self._count

    @property
    def correct(self) -> int:
        """Correct predictions among them."""
        return self._correct

    @property
    def accuracy(self) -> float | None:
        """Rolling accuracy, or ``None`` while the window is empty."""
        return self._correct / self._count if self._count else None

    @property
    def time_span(self) -> tuple[float, float] | None:
        """Event times of the oldest and newest outcome in the window."""
        if not self._count:
            return None
        oldest = (self._next - self._count) % self.size
        newest = (self._next - 1) % self.size
        return float(self._times[oldest]), float(self._times[newest])

    def extend(
        self, outcomes: npt.NDArray[np.bool_], event_time: npt.NDArray[np.float64]
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
        """Add a batch of outcomes (True = correct), oldest first.

        Returns ``(correct, count)``: the window's correct count and size
        after each event of the batch.
        """
        correct, count = self.trajectory(outcomes)
        self.write(outcomes, event_time, correct, count)
        return correct, count

    def trajectory(self, outcomes: npt.NDArray[np.bool_]) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
        """What ``extend`` would return, without changing the window (then call ``write``)."""
        m = int(outcomes.shape[0])
        if m == 0:
            empty = np.zeros(0, dtype=np.int64)
            return empty, empty
        before = self._count
        added = np.cumsum(outcomes, dtype=np.int64)
        seen = before + np.arange(1, m + 1, dtype=np.int64)
        count = np.minimum(seen, self.size)
        dropped = seen - count  # how many of (old window + batch), oldest first, have left by each event
        correct = self._correct + added - self._dropped_correct(dropped, added, before)
        return correct, count

    def write(
        self,
        outcomes: npt.NDArray[np.bool_],
        event_time: npt.NDArray[np.float64],
        correct: npt.NDArray[np.int64],
        count: npt.NDArray[np.int64],
    ) -> None:
        """Store a batch whose ``trajectory`` was ``(correct, count)``."""
        if not outcomes.shape[0]:
            return
        self._write(outcomes.astype(self._bits.dtype, copy=False), event_time)
        self._count = int(count[-1])
        self._correct = int(correct[-1])

    def oldest_time(self, j: int, count_j: int, event_time: npt.NDArray[np.float64]) -> float:
        """Event time of the oldest outcome in the window after event ``j`` of a batch not yet written."""
        first = j - count_j + 1
        if first >= 0:
            return float(event_time[first])
        return float(self._times[(self._next + first) % self.size])

    def _dropped_correct(
        self, dropped: npt.NDArray[np.int64], added: npt.NDArray[np.int64], before: int
    ) -> npt.NDArray[np.int64]:
        """Correct outcomes among the first ``dropped[j]`` of (old window, then batch)."""
        longest = int(dropped[-1])
        from_old = min(longest, before)
        old_prefix = np.zeros(from_old + 1, dtype=np.int64)
        if from_old:
            oldest = self._next - before
            idx = (oldest + np.arange(from_old)) % self.size
            np.cumsum(self._bits[idx], dtype=np.int64, out=old_prefix[1:])
        in_old = np.minimum(dropped, before)
        result = old_prefix[in_old]
        past_old = dropped - before
        spill = past_old > 0
        if spill.any():
            result[spill] = self._correct + added[past_old[spill] - 1]
        return result

    def _write(self, bits: npt.NDArray[np.integer], event_time: npt.NDArray[np.float64]) -> None:
        m, size = bits.shape[0], self.size
        if m >= size:
            self._bits[:] = bits[-size:]
            self._times[:] = event_time[-size:]
            self._next = 0
            return
        idx = (self._next + np.arange(m)) % size
        self._bits[idx] = bits
        self._times[idx] = event_time
        self._next = int((self._next + m) % size)
