"""Count windows against a brute-force reference: any sizes, any batch splits."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from decaywatch.monitor.window import CountWindow


@settings(max_examples=300, deadline=None)
@given(
    size=st.one_of(st.integers(1, 40), st.integers(60, 300)),  # past 64, the ring grows while it fills
    bits=st.lists(st.booleans(), max_size=700),
    cuts=st.lists(st.integers(0, 700), max_size=12),
)
def test_window_equals_brute_force_after_every_event(size: int, bits: list[bool], cuts: list[int]) -> None:
    window = CountWindow(size)
    bounds = sorted({0, len(bits), *(c for c in cuts if c <= len(bits))})
    seen: list[bool] = []
    for lo, hi in itertools.pairwise(bounds):
        chunk = np.array(bits[lo:hi], dtype=bool)
        correct, count = window.extend(chunk, np.arange(lo, hi, dtype=np.float64))
        for j, bit in enumerate(bits[lo:hi]):
            seen.append(bit)
            reference = seen[-size:]
            assert correct[j] == sum(reference)
            assert count[j] == len(reference)
    reference = seen[-size:]
    assert window.count == len(reference)
    assert window.correct == sum(reference)
    if reference:
        assert window.accuracy == sum(reference) / len(reference)
        assert window.time_span == (float(max(0, len(bits) - size)), float(len(bits) - 1))
    else:
        assert window.accuracy is None and window.time_span is None


def test_empty_batch_changes_nothing() -> None:
    window = CountWindow(3)
    window.extend(np.array([True, False]), np.array([1.0, 2.0]))
    correct, count = window.extend(np.zeros(0, dtype=bool), np.zeros(0))
    assert correct.size == count.size == 0
    assert (window.correct, window.count) == (1, 2)


def test_batch_longer_than_window_keeps_the_newest() -> None:
    window = CountWindow(3)
    window.extend(np.array([True] * 2), np.array([0.0, 1.0]))
    correct, count = window.extend(np.array([False, False, True, True, False]), np.arange(2.0, 7.0))
    assert correct.tolist() == [2, 1, 1, 2, 2]
    assert count.tolist() == [3, 3, 3, 3, 3]
    assert window.time_span == (4.0, 6.0)


def test_window_size_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        CountWindow(0)


def test_ring_grows_on_demand_and_summing_windows_keep_no_times() -> None:
    window = CountWindow(10_000)
    window.extend(np.ones(3, dtype=bool), np.arange(3.0))
    assert window._bits.nbytes <= 64 and window._times is not None and window._times.nbytes <= 512
    window.extend(np.ones(20_000, dtype=bool), np.arange(20_000.0))
    assert window._bits.shape == (10_000,) and window.count == 10_000
    summing = CountWindow(100, dtype=np.int32, track_times=False)
    summing.extend(np.array([5, 7], dtype=np.int32), np.zeros(2))
    assert (summing.correct, summing.time_span) == (12, None)


@settings(max_examples=200, deadline=None)
@given(
    size=st.one_of(st.integers(1, 40), st.integers(60, 300)),
    rows=st.lists(st.tuples(st.integers(0, 1), st.integers(0, 1), st.integers(0, 10**6)), max_size=600),
    cuts=st.lists(st.integers(0, 600), max_size=10),
)
def test_a_multi_column_window_sums_each_column_like_its_own_window(
    size: int, rows: list[tuple[int, int, int]], cuts: list[int]
) -> None:
    """One window of three columns (one cumulative sum per batch) equals three one-column windows, event by event."""
    grouped = CountWindow(size, np.int32, columns=3)
    alone = [CountWindow(size, np.int32) for _ in range(3)]
    values = np.array(rows, dtype=np.int32).reshape(-1, 3)
    bounds = sorted({0, len(rows), *(c for c in cuts if c <= len(rows))})
    for lo, hi in itertools.pairwise(bounds):
        times = np.arange(lo, hi, dtype=np.float64)
        total, count = grouped.extend(values[lo:hi], times)
        for c, window in enumerate(alone):
            expected, expected_count = window.extend(values[lo:hi, c], times)
            assert total[:, c].tolist() == expected.tolist()
            assert count.tolist() == expected_count.tolist()
    assert grouped.correct.tolist() == [w.correct for w in alone] and grouped.count == alone[0].count
    restored = CountWindow(size, np.int32, columns=3)
    restored.restore(grouped.state())
    assert restored.correct.tolist() == grouped.correct.tolist() and restored.time_span == grouped.time_span
