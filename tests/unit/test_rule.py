"""The lesson's rule and its edges: exact comparisons, thin windows, episodes, batch-size independence."""

from __future__ import annotations

import itertools
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from decaywatch.monitor.alert import DEGRADED_MESSAGE, STABLE_MESSAGE
from decaywatch.monitor.baseline import exact
from decaywatch.monitor.config import ModelPolicy, MonitorConfig
from decaywatch.monitor.engine import Monitor
from decaywatch.monitor.metric import MetricSeries
from decaywatch.monitor.rule import Line, WindowJudge
from decaywatch.monitor.schema import validate


def lesson_verdict(baseline: float, current: float, threshold: float) -> str:
    """The lesson's own code, as the reference."""
    drop = baseline - current
    return DEGRADED_MESSAGE if drop > threshold else STABLE_MESSAGE


def judge(baseline: float, correct: int, count: int, threshold: float = 0.1) -> bool:
    line = Line(exact(baseline) - exact(threshold))
    return bool(line.breached(np.array([correct]), np.array([count]))[0])


def test_lesson_numbers_degrade() -> None:
    assert lesson_verdict(0.85, 0.65, 0.1) == DEGRADED_MESSAGE
    assert judge(0.85, 65, 100)


def test_drop_exactly_equal_to_threshold_is_stable() -> None:
    # 0.85 - 0.75 is 0.09999999999999998 in binary floating point; 0.8 - 0.7 is 0.10000000000000009.
    # Both are exactly 0.1 as the user wrote them, so both are stable.
    assert not judge(0.85, 75, 100)
    assert not judge(0.8, 7, 10)
    assert not judge(0.8, 700, 1000)
    assert judge(0.8, 699, 1000)
    assert not judge(0.85, 751, 1000)


def test_floor_is_at_or_below() -> None:
    floor = Line(exact(0.85), inclusive=True)
    correct, count = np.array([85, 84, 86]), np.array([100, 100, 100])
    assert floor.breached(correct, count).tolist() == [True, True, False]
    assert floor.cleared(correct, count, Fraction(0)).tolist() == [False, False, True]


def test_a_loss_breaches_above_its_line() -> None:
    brier = Line(Fraction(1, 5), higher_is_better=False)
    assert brier.breached(np.array([19, 20, 21]), np.array([100, 100, 100])).tolist() == [False, False, True]
    assert brier.cleared(np.array([14, 15, 16]), np.array([100, 100, 100]), Fraction(1, 20)).tolist() == [True, True, False]


def test_exact_comparisons_do_not_overflow() -> None:
    line = exact(0.123456789) - exact(0.000000001)  # denominators of 10^9
    big = np.array([10**12, 10**12 + 1], dtype=np.int64)
    assert line.numerator * 10**12 // line.denominator == 123456788000
    assert Line(line).breached(big // 1000 * 123, big).tolist() == [True, True]
    assert Line(line).breached(np.array([123456788000, 123456787999]), np.array([10**12, 10**12])).tolist() == [False, True]


def test_thin_window_is_not_judged() -> None:
    judge = WindowJudge(Line(Fraction(17, 20) - exact(0.1)), recovery_margin=0.0, cooldown=0)
    correct, count = np.array([0, 0, 10]), np.array([1, 19, 20])
    moves = judge.advance(MetricSeries(correct, count, count), count >= 20, np.zeros(3))
    assert [(j.index, j.firing, j.numerator, j.denominator) for j in moves] == [(2, True, 10, 20)]


def events(outcomes: list[bool], model: str = "m") -> list[dict[str, object]]:
    return [{"model": model, "prediction": 1, "label": int(ok), "ts": float(i)} for i, ok in enumerate(outcomes)]


def run(monitor: Monitor, objects: list[dict[str, object]], cuts: list[int]) -> list[tuple[str, str, float]]:
    out: list[tuple[str, str, float]] = []
    bounds = sorted({0, len(objects), *(c for c in cuts if c <= len(objects))})
    for lo, hi in itertools.pairwise(bounds):
        batch, rejected = validate(objects[lo:hi], np.zeros(hi - lo))
        assert not rejected
        out.extend((t.status, t.alert_id, t.event_time) for t in monitor.process(batch))
    return out


def small_policy() -> MonitorConfig:
    return MonitorConfig(
        ModelPolicy(baseline=0.85, threshold=0.1, windows=(20, 50), min_samples=10, recovery_margin=0.05, decision="window")
    )


def test_episode_fires_once_and_resolves_once() -> None:
    outcomes = [True] * 40 + [False] * 40 + [True] * 60
    transitions = run(Monitor(small_policy()), events(outcomes), [])
    assert [t[0] for t in transitions] == ["firing", "resolved"]
    assert transitions[0][1] == transitions[1][1]  # one episode, one id


def test_batch_crossing_the_line_in_its_middle_fires_at_the_crossing_event() -> None:
    outcomes = [True] * 20 + [False] * 10
    whole = run(Monitor(small_policy()), events(outcomes), [])
    single = run(Monitor(small_policy()), events(outcomes), list(range(len(outcomes))))
    assert whole == single
    # window of 20 holds 20 - k correct after k misses: 20-k < 15 first at k = 6 (the 26th event)
    assert whole[0][2] == 25.0


@settings(max_examples=100, deadline=None)
@given(
    outcomes=st.lists(st.booleans(), min_size=0, max_size=400),
    cuts=st.lists(st.integers(0, 400), max_size=20),
)
def test_alerts_are_equal_whatever_the_batch_size(outcomes: list[bool], cuts: list[int]) -> None:
    objects = events(outcomes)
    assert run(Monitor(small_policy()), objects, cuts) == run(Monitor(small_policy()), objects, [])


def test_learned_baseline_starts_judging_after_learning() -> None:
    config = MonitorConfig(ModelPolicy(learn_baseline_from=20, windows=(10,), min_samples=10, threshold=0.1, decision="window"))
    monitor = Monitor(config)
    outcomes = [True] * 17 + [False] * 3 + [False] * 5
    transitions = run(monitor, events(outcomes), [7, 19])
    snapshot = monitor.snapshot()["m"]
    assert snapshot.baseline == 0.85 and snapshot.baseline_date == "1970-01-01"
    # after learning, window of 10 = events 15..24: 2 correct of 10 -> degraded at the first judged event
    assert [t[0] for t in transitions] == ["firing"]
    assert transitions[0][2] == 20.0


def test_unlabeled_events_count_toward_volume_not_accuracy() -> None:
    monitor = Monitor(small_policy())
    objects = [
        {"model": "m", "prediction": 1, "label": None},
        {"model": "m", "prediction": 1},
        {"model": "m", "prediction": 1, "label": 1},
    ]
    batch, _ = validate(objects, np.zeros(3))
    monitor.process(batch)
    snap = monitor.snapshot()["m"]
    assert (snap.events, snap.labeled, snap.correct) == (3, 1, 1)
    assert snap.window(20).accuracy == 1.0


def test_alert_event_carries_the_contract_fields() -> None:
    monitor = Monitor(
        MonitorConfig(ModelPolicy(baseline=0.85, baseline_date="2024-01-01", windows=(10,), min_samples=10, decision="window"))
    )
    batch, _ = validate(events([False] * 10), np.zeros(10))
    [transition] = monitor.process(batch)
    event = transition.to_event(emitted_at=1717200000.0)
    assert event["message"] == DEGRADED_MESSAGE
    assert event["status"] == "firing" and event["rule"] == "degradation"
    assert event["baseline_accuracy"] == 0.85 and event["accuracy"] == 0.0 and event["drop"] == 0.85
    assert event["baseline_date"] == "2024-01-01" and event["window"] == 10 and event["samples"] == 10
    assert event["event_time"] == "1970-01-01T00:00:09.000Z"
    assert event["emitted_at"] == "2024-06-01T00:00:00.000Z"
    assert len(event["alert_id"]) == 16


@pytest.mark.parametrize("baseline", [0.0, 0.04, 0.1, 1.0])
def test_baselines_at_the_edges_never_crash(baseline: float) -> None:
    for decision in ("sequential", "window"):
        learned = ModelPolicy(learn_baseline_from=10, windows=(20,), min_samples=10, decision=decision)
        fixed = ModelPolicy(baseline=baseline, windows=(20,), min_samples=10, decision=decision)
        for policy in (learned, fixed):
            run(Monitor(MonitorConfig(policy)), events([False] * 40 + [True] * 40), [7, 30])
