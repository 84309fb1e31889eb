"""The sequential rule: exact batch-size independence, evidence before alerting, recovery on evidence."""

from __future__ import annotations

import itertools

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from decaywatch.monitor.alert import DEGRADED_MESSAGE, STABLE_MESSAGE, AlertTransition
from decaywatch.monitor.config import ModelPolicy, MonitorConfig
from decaywatch.monitor.engine import Monitor
from decaywatch.monitor.schema import EventBatch
from decaywatch.monitor.sequential import SequentialTest


def reference(test: SequentialTest, outcomes: list[bool]) -> list[tuple[int, bool, int, int, float | None]]:
    """One event at a time: the textbook recursion S = max(0, S + x) through the same object."""
    out = []
    for i, ok in enumerate(outcomes):
        for t in test.advance(np.array([ok]), np.array([True]), np.array([float(i)])):
            out.append((i, t.firing, t.span_correct, t.span_count, t.span_start_time))
    return out


@settings(max_examples=150, deadline=None)
@given(
    accuracy=st.sampled_from([0.55, 0.7, 0.75, 0.8, 0.9]),
    length=st.integers(0, 2500),
    cuts=st.lists(st.integers(0, 2500), max_size=8),
    seed=st.integers(0, 2**32 - 1),
    cooldown=st.sampled_from([0, 7]),
    line=st.sampled_from([None, 0.75]),
)
def test_batches_give_exactly_the_per_event_result(
    accuracy: float, length: int, cuts: list[int], seed: int, cooldown: int, line: float | None
) -> None:
    outcomes = (np.random.default_rng(seed).random(length) < accuracy).tolist()
    expected = reference(SequentialTest(0.8, 0.7, 4.0, cooldown, line=line, z=1.0), outcomes)
    test = SequentialTest(0.8, 0.7, 4.0, cooldown, line=line, z=1.0)
    got = []
    bounds = sorted({0, length, *(c for c in cuts if c <= length)})
    for lo, hi in itertools.pairwise(bounds):
        times = np.arange(lo, hi, dtype=np.float64)
        for t in test.advance(np.array(outcomes[lo:hi], dtype=bool), np.ones(hi - lo, dtype=bool), times):
            got.append((lo + t.index, t.firing, t.span_correct, t.span_count, t.span_start_time))
    assert got == expected
    for index, _firing, _correct, count, began in got:
        assert began == float(index - count + 1)  # the span's first event


def test_a_dip_at_the_line_needs_its_span_beyond_the_line_too() -> None:
    # 300 events at exactly 0.70 build plenty of CUSUM evidence, but at z = 3 a 300-event span at 0.70
    # is not surely below 0.75 (upper bound about 0.77): the gated test waits for more evidence.
    rng = np.random.default_rng(3)
    outcomes = np.concatenate([rng.permutation([True] * 210 + [False] * 90), rng.random(200) < 0.3])  # independent
    ungated = SequentialTest(0.8, 0.7, 12.0, 0, line=None).advance(outcomes, np.ones(outcomes.size, dtype=bool))
    gated = SequentialTest(0.8, 0.7, 12.0, 0, line=0.75, z=3.0).advance(outcomes, np.ones(outcomes.size, dtype=bool))
    assert ungated and gated and gated[0].index > ungated[0].index
    from decaywatch.monitor.wilson import wilson_interval

    assert wilson_interval(gated[0].span_correct, gated[0].span_count, 3.0)[1] < 0.75


def test_break_even_sits_on_the_line() -> None:
    test = SequentialTest(good=0.80, bad=0.70, evidence=12.0, cooldown=0)
    assert 0.75 < test.break_even < 0.755


def monitor_bits(bits: np.ndarray, policy: ModelPolicy, chunk: int = 5000) -> list[tuple[str, int, float | None, float]]:
    monitor = Monitor(MonitorConfig(policy))
    out: list[tuple[str, int, float | None, float]] = []
    for start in range(0, len(bits), chunk):
        part = bits[start : start + chunk]
        n = len(part)
        batch = EventBatch(
            models=("m",),
            model_codes=np.zeros(n, np.int32),
            labeled=np.ones(n, bool),
            correct=part,
            event_time=np.arange(start, start + n, dtype=np.float64),
            source_index=np.arange(start, start + n, dtype=np.int64),
        )
        out.extend((t.status, t.source_index, t.accuracy, t.drop) for t in monitor.process(batch))
    return out


LESSON = ModelPolicy(baseline=0.85, threshold=0.1)


def bits(rng: np.random.Generator, *segments: tuple[float, int]) -> np.ndarray:
    return np.concatenate([rng.random(n) < p for p, n in segments])


def test_healthy_model_never_alerts() -> None:
    assert monitor_bits(bits(np.random.default_rng(1), (0.85, 200_000)), LESSON) == []


def test_sudden_fall_is_caught_in_a_few_hundred_events_with_the_evidence_attached() -> None:
    transitions = monitor_bits(bits(np.random.default_rng(2), (0.85, 50_000), (0.65, 5_000)), LESSON)
    [(status, index, accuracy, drop)] = transitions
    assert status == "firing"
    assert 50_000 + 100 <= index <= 50_000 + 500
    assert accuracy is not None and accuracy < 0.75 and drop > 0.1  # the evidence span's accuracy, not the lagging window's


def test_recovery_resolves_once_per_episode() -> None:
    stream = bits(np.random.default_rng(3), (0.85, 30_000), (0.65, 5_000), (0.85, 30_000), (0.65, 5_000), (0.85, 10_000))
    transitions = monitor_bits(stream, LESSON)
    assert [t[0] for t in transitions] == ["firing", "resolved", "firing", "resolved"]
    assert 35_000 < transitions[1][1] <= 36_000 and 70_000 < transitions[3][1] <= 71_000


def test_no_alert_before_min_samples_then_at_once_on_strong_evidence() -> None:
    stream = bits(np.random.default_rng(4), (0.3, 400), (0.85, 1000))
    gated = monitor_bits(stream, ModelPolicy(baseline=0.85, min_samples=500))
    early = monitor_bits(stream, ModelPolicy(baseline=0.85, min_samples=50))
    assert gated[0][:2] == ("firing", 499)  # the 500th labeled event: the first the policy lets judge
    assert early[0][0] == "firing" and 49 <= early[0][1] < 100


def test_cooldown_delays_a_new_episode() -> None:
    stream = bits(np.random.default_rng(5), (0.85, 5000), (0.5, 1000), (0.95, 400), (0.5, 3000))
    without = monitor_bits(stream, ModelPolicy(baseline=0.85))
    with_cooldown = monitor_bits(stream, ModelPolicy(baseline=0.85, cooldown=2000))
    assert [t[0] for t in without] == ["firing", "resolved", "firing"]
    assert [t[0] for t in with_cooldown] == ["firing", "resolved", "firing"]
    assert with_cooldown[2][1] >= with_cooldown[1][1] + 2000 > without[2][1]


def test_floor_equal_to_baseline_fires_only_below_its_tolerance() -> None:
    policy = ModelPolicy(baseline=0.85, floor=0.85, floor_tolerance=0.02)
    healthy = monitor_bits(bits(np.random.default_rng(6), (0.85, 100_000)), policy)
    assert healthy == []
    slipping = monitor_bits(bits(np.random.default_rng(7), (0.85, 20_000), (0.80, 20_000)), policy)
    assert [t[0] for t in slipping] == ["firing"]  # floor fires; 0.80 is within the degradation contract


def test_messages_are_the_lessons() -> None:
    monitor = Monitor(MonitorConfig(LESSON))
    stream = bits(np.random.default_rng(8), (0.85, 2000), (0.4, 500), (0.9, 3000))
    n = len(stream)
    batch = EventBatch(("m",), np.zeros(n, np.int32), np.ones(n, bool), stream, np.zeros(n), np.arange(n, dtype=np.int64))
    transitions = monitor.process(batch)
    assert [(t.status, t.message) for t in transitions] == [("firing", DEGRADED_MESSAGE), ("resolved", STABLE_MESSAGE)]
    firing, resolved = transitions
    assert firing.alert_id == resolved.alert_id
    assert firing.accuracy is not None and firing.lower_bound <= firing.accuracy <= firing.upper_bound
    assert firing.statistic is not None and firing.statistic >= 12.0
    assert firing.decision == "sequential"


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), chunks=st.lists(st.integers(1, 4000), min_size=1, max_size=6))
def test_every_alert_field_is_the_same_whatever_the_batch_sizes(seed: int, chunks: list[int]) -> None:
    stream = bits(np.random.default_rng(seed), (0.85, 3000), (0.6, 800), (0.9, 2000), (0.55, 600))

    def transitions(sizes: list[int]) -> list[AlertTransition]:
        monitor, start, i = Monitor(MonitorConfig(LESSON)), 0, 0
        out: list[AlertTransition] = []
        while start < len(stream):
            size = sizes[i % len(sizes)]
            part = stream[start : start + size]
            n = len(part)
            times = 1704067200.0 + np.arange(start, start + n, dtype=np.float64)
            batch = EventBatch(("m",), np.zeros(n, np.int32), np.ones(n, bool), part, times, np.arange(start, start + n))
            out.extend(monitor.process(batch))
            start, i = start + n, i + 1
        return out

    whole = transitions([len(stream)])
    assert [t.status for t in whole] == ["firing", "resolved", "firing"]
    assert transitions(chunks) == whole
