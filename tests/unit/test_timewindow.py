"""Event-time windows and lateness against brute force, in any batch split."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from decaywatch.monitor.config import ModelPolicy, MonitorConfig
from decaywatch.monitor.engine import Monitor
from decaywatch.monitor.schema import validate
from decaywatch.monitor.timewindow import TimeWindow, late_mask, parse_duration


@settings(max_examples=300, deadline=None)
@given(
    events=st.lists(st.tuples(st.floats(0, 5000, allow_nan=False), st.booleans()), max_size=120),
    span=st.sampled_from([60.0, 600.0, 3600.0]),
    buckets=st.integers(1, 30),
    lateness=st.sampled_from([0.0, 30.0, 1e9]),
    cuts=st.lists(st.integers(0, 120), max_size=6),
)
def test_time_window_and_lateness_equal_brute_force(
    events: list[tuple[float, bool]], span: float, buckets: int, lateness: float, cuts: list[int]
) -> None:
    window, watermark, late_total = TimeWindow(span, buckets), None, 0
    bounds = sorted({0, len(events), *(c for c in cuts if c <= len(events))})
    for lo, hi in itertools.pairwise(bounds):
        times = np.array([t for t, _ in events[lo:hi]], dtype=np.float64)
        ok = np.array([c for _, c in events[lo:hi]], dtype=bool)
        late, watermark = late_mask(times, watermark, lateness)
        late_total += int(late.sum())
        window.add(ok[~late], times[~late])

    # brute force: an event is late if older than (newest before it) - lateness; the window holds the
    # on-time events whose bucket is among the last `buckets` buckets up to the newest event's bucket
    newest, on_time, late_count = -math.inf, [], 0
    for t, c in events:
        if t < newest - lateness:
            late_count += 1
        else:
            on_time.append((t, c))
        newest = max(newest, t)
    assert late_total == late_count
    width = span / buckets
    if on_time:
        top = max(math.floor(t / width) for t, _ in on_time)
        inside = [c for t, c in on_time if math.floor(t / width) > top - buckets]
        assert (window.count, window.correct) == (len(inside), sum(inside))
    else:
        assert window.count == 0 and window.accuracy is None


@pytest.mark.parametrize(
    ("text", "seconds"), [("30s", 30), ("5m", 300), ("1h", 3600), ("1d", 86400), ("7d", 604800), ("2w", 1209600), ("1.5h", 5400)]
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "7", "1y", "-1h", "0s", "h"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


def test_late_events_are_counted_and_left_out_of_time_windows_only() -> None:
    monitor = Monitor(MonitorConfig(ModelPolicy(baseline=0.85, time_windows=("1h",), allowed_lateness="10m")))
    day = 86400.0
    events = [{"model": "m", "prediction": 1, "label": 1, "ts": day + i} for i in range(10)]
    events.append({"model": "m", "prediction": 1, "label": 0, "ts": day - 3600.0})  # an hour late
    events.append({"model": "m", "prediction": 1, "label": 0, "ts": day - 60.0})  # a minute late: fine
    batch, _ = validate(events, np.zeros(len(events)))
    monitor.process(batch)
    snap = monitor.snapshot()["m"]
    assert snap.late_events == 1
    assert (snap.window("1h").labeled, snap.window("1h").correct) == (11, 10)
    assert snap.window(1000).labeled == 12  # count windows keep every labeled event


def test_weekly_decline_of_the_lesson_is_visible_in_a_7d_window() -> None:
    from decaywatch.producer.encode import event_dicts
    from decaywatch.producer.scenario import parse_models
    from decaywatch.producer.stream import generate_all

    [stream] = generate_all(parse_models("m=lesson"), seed=1)
    monitor = Monitor(MonitorConfig(ModelPolicy(baseline=0.85, baseline_date="2024-01-01")))
    weekly: list[float] = []
    objects = event_dicts(stream)
    for week in range(21):
        part = objects[week * 5000 : (week + 1) * 5000]
        batch, _ = validate(part, np.zeros(len(part)))
        monitor.process(batch)
        accuracy = monitor.snapshot()["m"].window("7d").accuracy
        assert accuracy is not None, f"no 7d accuracy in week {week}"
        weekly.append(accuracy)
    assert weekly[0] == pytest.approx(0.85, abs=0.02)
    assert weekly[-1] == pytest.approx(0.65, abs=0.03)
    assert all(later < earlier + 0.02 for earlier, later in itertools.pairwise(weekly))
