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

from typing import Any

import numpy as np
import numpy.typing as npt


class CountWindow:
    """Rolling count of correct predictions over the last ``size`` labeled events.

    Public parameter: ``size``.  Learned state (private): the ring of outcome
    bits and their event times, the write position, the fill and the sum.

    The ring grows on demand (doubling, up to ``size``), so a model seen a few
    times costs bytes, not the full window: what matters when a stream invents
    model ids.  Until the window first fills, outcomes sit at ``0..count-1``.
    """

    _INITIAL_CAPACITY = 64

    def __init__(
        self, size: int, dtype: type[np.integer[Any]] = np.uint8, track_times: bool = True, columns: int | None = None
    ) -> None:
        """``dtype`` holds each event's value: bits by default, a wider integer for sums such as squared errors.

        ``track_times=False`` keeps no event times (no ``time_span``): for windows only summed.
        ``columns``: each event holds that many values (a row), summed column by column in one pass;
        ``correct`` is then an array of the column sums.  ``None``: one value per event.
        """
        if size < 1:
            raise ValueError(f"window size must be at least 1, not {size}")
        self.size = size
        self.columns = columns
        capacity = min(size, self._INITIAL_CAPACITY)
        self._row: tuple[int, ...] = () if columns is None else (columns,)
        self._bits = np.zeros((capacity, *self._row), dtype=dtype)
        self._times: npt.NDArray[np.float64] | None = np.zeros(capacity, dtype=np.float64) if track_times else None
        self._next = 0  # where the next outcome is written
        self._count = 0
        self._correct: Any = 0 if columns is None else np.zeros(columns, dtype=np.int64)

    def _ensure_capacity(self, needed: int) -> None:
        """Grow the ring (only ever before it first fills, so its content is ``0..count-1``)."""
        capacity = self._bits.shape[0]
        if needed <= capacity:
            return
        grown = min(self.size, max(needed, 2 * capacity))
        bits = np.zeros((grown, *self._row), dtype=self._bits.dtype)
        bits[:capacity] = self._bits
        self._bits = bits
        if self._times is not None:
            times = np.zeros(grown, dtype=np.float64)
            times[:capacity] = self._times
            self._times = times

    @property
    def count(self) -> int:
        """Labeled events currently in the window (at most ``size``)."""
        return self._count

    @property
    def correct(self) -> Any:
        """Correct predictions among them (with ``columns``: each column's sum, an array)."""
        return self._correct

    @property
    def accuracy(self) -> float | None:
        """Rolling accuracy, or ``None`` while the window is empty."""
        return self._correct / self._count if self._count else None

    @property
    def time_span(self) -> tuple[float, float] | None:
        """Event times of the oldest and newest outcome in the window."""
        if not self._count or self._times is None:
            return None
        oldest = (self._next - self._count) % self.size
        newest = (self._next - 1) % self.size
        return float(self._times[oldest]), float(self._times[newest])

    def state(self) -> dict[str, Any]:
        """The ring as it is held (a ring still filling holds fewer than ``size`` slots)."""
        correct = self._correct if self.columns is None else [int(c) for c in self._correct]
        bits = self._bits.reshape(-1)  # the array section is flat; ``columns`` gives the row shape back
        return {"bits": bits, "times": self._times, "next": self._next, "count": self._count, "correct": correct}

    def restore(self, state: dict[str, Any]) -> None:
        bits, times = state["bits"], state["times"]
        nxt, count, correct = state["next"], state["count"], state["correct"]
        if not isinstance(bits, np.ndarray) or bits.dtype != self._bits.dtype or bits.ndim != 1:
            raise ValueError(f"window ring of {getattr(bits, 'dtype', type(bits))}, this window keeps {self._bits.dtype}")
        width = self.columns or 1
        if bits.size % width:
            raise ValueError(f"a ring of {bits.size} values does not hold rows of {width}")
        bits = bits.reshape(-1, *self._row)
        if self.columns is not None:
            if not isinstance(correct, list) or len(correct) != self.columns or any(type(c) is not int for c in correct):
                raise ValueError(f"window column sums {correct!r}")
            correct = np.array(correct, dtype=np.int64)
        if (times is None) != (self._times is None) or (
            times is not None and (not isinstance(times, np.ndarray) or times.dtype != np.float64)
        ):
            raise ValueError("the window's event times do not match the checkpoint's")
        if any(type(v) is not int for v in (nxt, count)) or (self.columns is None and type(correct) is not int):
            raise ValueError(f"window counters {nxt!r}, {count!r}, {correct!r}")
        slots = bits.shape[0]
        if not (0 <= count <= slots <= self.size and 0 <= nxt < self.size and nxt <= slots) or (
            times is not None and times.size != slots
        ):
            raise ValueError(f"a ring of {slots} at {nxt} holding {count} does not fit size {self.size}")
        self._bits, self._times = bits, times
        self._next, self._count, self._correct = nxt, count, correct

    def extend(
        self, outcomes: npt.NDArray[Any], event_time: npt.NDArray[np.float64]
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
        """Add a batch of outcomes (True = correct), oldest first.

        Returns ``(correct, count)``: the window's correct count and size
        after each event of the batch.
        """
        correct, count = self.trajectory(outcomes)
        self.write(outcomes, event_time, correct, count)
        return correct, count

    def trajectory(self, outcomes: npt.NDArray[Any]) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
        """What ``extend`` would return, without changing the window (then call ``write``)."""
        m = int(outcomes.shape[0])
        if m == 0:
            return np.zeros((0, *self._row), dtype=np.int64), np.zeros(0, dtype=np.int64)
        before = self._count
        added = np.cumsum(outcomes, axis=0, dtype=np.int64)
        seen = before + np.arange(1, m + 1, dtype=np.int64)
        count = np.minimum(seen, self.size)
        dropped = seen - count  # how many of (old window + batch), oldest first, have left by each event
        correct = self._correct + added - self._dropped_correct(dropped, added, before)
        return correct, count

    def write(
        self,
        outcomes: npt.NDArray[Any],
        event_time: npt.NDArray[np.float64],
        correct: npt.NDArray[np.int64],
        count: npt.NDArray[np.int64],
    ) -> None:
        """Store a batch whose ``trajectory`` was ``(correct, count)``."""
        if not outcomes.shape[0]:
            return
        self._write(outcomes, event_time)
        self._count = int(count[-1])
        self._correct = int(correct[-1]) if self.columns is None else correct[-1].copy()

    def oldest_time(self, j: int, count_j: int, event_time: npt.NDArray[np.float64]) -> float:
        """Event time of the oldest outcome in the window after event ``j`` of a batch not yet written."""
        first = j - count_j + 1
        if first >= 0:
            return float(event_time[first])
        assert self._times is not None, "this window keeps no event times"
        return float(self._times[(self._next + first) % self.size])

    def _dropped_correct(
        self, dropped: npt.NDArray[np.int64], added: npt.NDArray[np.int64], before: int
    ) -> npt.NDArray[np.int64]:
        """Correct outcomes among the first ``dropped[j]`` of (old window, then batch)."""
        longest = int(dropped[-1])
        from_old = min(longest, before)
        old_prefix = np.zeros((from_old + 1, *self._row), dtype=np.int64)
        if from_old:
            oldest = self._next - before
            idx = (oldest + np.arange(from_old)) % self.size
            np.cumsum(self._bits[idx], axis=0, dtype=np.int64, out=old_prefix[1:])
        in_old = np.minimum(dropped, before)
        result = old_prefix[in_old]
        past_old = dropped - before
        spill = past_old > 0
        if spill.any():
            result[spill] = self._correct + added[past_old[spill] - 1]
        return result

    def _write(self, bits: npt.NDArray[Any], event_time: npt.NDArray[np.float64]) -> None:
        m, size = bits.shape[0], self.size
        if self._count + m > self._bits.shape[0] < size:
            self._ensure_capacity(min(size, self._count + m))
        if m >= size:
            self._bits[:] = bits[-size:]
            if self._times is not None:
                self._times[:] = event_time[-size:]
            self._next = 0
            return
        start, end = self._next, self._next + m
        if end <= size:  # one slice (always so while the ring fills: it holds 0..count-1)
            self._bits[start:end] = bits
            if self._times is not None:
                self._times[start:end] = event_time
        else:
            split = size - start
            self._bits[start:] = bits[:split]
            self._bits[: end - size] = bits[split:]
            if self._times is not None:
                self._times[start:] = event_time[:split]
                self._times[: end - size] = event_time[split:]
        self._next = end % size
