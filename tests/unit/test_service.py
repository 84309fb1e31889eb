"""The service loop with in-memory fakes: nothing valid lost, bad input dead-lettered, commit last."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from decaywatch.consumer.metrics import ServiceMetrics
from decaywatch.consumer.service import MonitorService
from decaywatch.monitor.config import ModelPolicy, MonitorConfig
from decaywatch.monitor.engine import Monitor
from tests.unit.fakes import MemoryAlertSink, MemoryDeadLetters, MemorySource


def event(model: str, ok: bool) -> bytes:
    return orjson.dumps({"model": model, "prediction": 1, "label": int(ok)})


def build(
    batches: Sequence[Sequence[bytes | None]],
) -> tuple[MonitorService, MemorySource, MemoryAlertSink, MemoryDeadLetters, list[str]]:
    journal: list[str] = []
    source = MemorySource(batches, journal)
    alerts, dead = MemoryAlertSink(journal), MemoryDeadLetters(journal)
    config = MonitorConfig(ModelPolicy(baseline=0.85, windows=(10, 100), min_samples=10, decision="window"))
    service = MonitorService(source, Monitor(config), alerts, dead, ServiceMetrics(), clock=lambda: 1717200000.0)
    return service, source, alerts, dead, journal


def test_bad_events_are_dead_lettered_counted_and_the_rest_processed() -> None:
    batch = [event("a", True), b"{oops", event("a", True), b'{"model":"a"}', None, event("b", False)]
    service, source, _alerts, dead, _ = build([batch])
    service.step()
    assert [(value, reason, offset) for value, reason, offset in dead.records] == [
        (b"{oops", "malformed_json", 1),
        (b'{"model":"a"}', "missing_prediction", 3),
        (None, "malformed_json", 4),
    ]
    registry = service.metrics.registry
    assert registry.get_sample_value("decaywatch_invalid_events_total", {"reason": "malformed_json"}) == 2
    assert registry.get_sample_value("decaywatch_invalid_events_total", {"reason": "missing_prediction"}) == 1
    assert registry.get_sample_value("decaywatch_invalid_events_total", {"reason": "invalid_label"}) == 0
    assert registry.get_sample_value("decaywatch_events_total", {"model": "a"}) == 2
    assert registry.get_sample_value("decaywatch_events_total", {"model": "b"}) == 1
    assert registry.get_sample_value("decaywatch_correct_predictions_total", {"model": "b"}) == 0
    assert source.committed == 6
    assert service.totals.messages == 6 and service.totals.valid == 3 and service.totals.rejected == 3


def test_commit_comes_after_alerts_and_dead_letters_are_flushed() -> None:
    good = [event("a", True)] * 10
    bad = [event("a", False)] * 10 + [b"nope"]
    service, _source, alerts, _dead, journal = build([good, bad])
    service.step()
    service.step()
    assert [e["status"] for e in alerts.events] == ["firing"]
    tail = journal[journal.index("commit 10") + 1 :]
    assert tail in (
        ["alert firing", "dead letter 20", "flush dead letters", "flush alerts", "commit 21"],
        [
            "dead letter 20",
            "alert firing",
            "flush dead letters",
            "flush alerts",
            "commit 21",
        ],
    )


def test_metrics_follow_the_windows_and_the_episode() -> None:
    service, _source, _alerts, _dead, _ = build([[event("a", True)] * 20, [event("a", False)] * 5])
    service.step()
    get = service.metrics.registry.get_sample_value
    assert get("decaywatch_accuracy_ratio", {"model": "a", "window": "10"}) == 1.0
    assert get("decaywatch_baseline_accuracy_ratio", {"model": "a"}) == 0.85
    assert get("decaywatch_degradation_threshold_ratio", {"model": "a"}) == 0.1
    assert get("decaywatch_degraded", {"model": "a"}) == 0.0
    service.step()
    assert get("decaywatch_accuracy_ratio", {"model": "a", "window": "10"}) == 0.5
    assert get("decaywatch_accuracy_ratio", {"model": "a", "window": "100"}) == 0.8
    drop = get("decaywatch_accuracy_drop_ratio", {"model": "a", "window": "10"})
    assert drop is not None and abs(drop - 0.35) < 1e-12
    assert get("decaywatch_window_labeled_events", {"model": "a", "window": "100"}) == 25
    assert get("decaywatch_degraded", {"model": "a"}) == 1.0
    assert get("decaywatch_alerts_total", {"model": "a", "status": "firing"}) == 1
    assert get("decaywatch_alerts_total", {"model": "a", "status": "resolved"}) == 0
    assert get("decaywatch_last_processed_timestamp_seconds", {"model": "a"}) == 1717200000.0
    assert get("decaywatch_consumer_lag_messages", {"topic": "predictions", "partition": "0"}) == 0


def test_empty_poll_does_nothing() -> None:
    service, source, _a, _d, journal = build([])
    assert service.step() is None
    assert journal == [] and source.committed == 0


def test_snapshots_are_exported_at_most_once_per_interval_but_at_once_on_alerts_and_when_idle() -> None:
    journal: list[str] = []
    good, bad = [event("a", True)] * 10, [event("a", False)] * 10
    source = MemorySource([good, good, bad, good], journal)
    now = [100.0]
    config = MonitorConfig(ModelPolicy(baseline=0.85, windows=(10,), min_samples=10, decision="window"))
    service = MonitorService(
        source, Monitor(config), MemoryAlertSink(journal), MemoryDeadLetters(journal), ServiceMetrics(),
        clock=lambda: now[0], export_interval_s=10.0,
    )  # fmt: skip

    def events() -> float | None:
        return service.metrics.registry.get_sample_value("decaywatch_events_total", {"model": "a"})

    service.step()
    assert events() == 10  # the first batch is exported
    service.step()
    assert events() == 10  # within the interval: not yet
    service.step()
    assert events() == 30  # the batch fired an alert: exported at once
    now[0] += 11.0
    service.step()
    assert events() == 40  # the interval has passed
    source._batches.append([event("b", True)] * 10)  # a healthy model: no transition
    service.step()
    assert service.metrics.registry.get_sample_value("decaywatch_events_total", {"model": "b"}) is None
    assert service.step() is None  # the input is idle: everything is exported
    assert service.metrics.registry.get_sample_value("decaywatch_events_total", {"model": "b"}) == 10


def test_a_slow_snapshot_stretches_the_export_interval_to_keep_its_share_of_the_loop() -> None:
    journal: list[str] = []
    good = [event("a", True)] * 10
    source = MemorySource([good] * 4, journal)
    now = [100.0]
    metrics = ServiceMetrics()
    publish = metrics.models.publish

    def slow_publish(*args: Any) -> None:
        now[0] += 2.0  # the snapshot takes 2 s of the clock: with a 10% share, the next one waits 20 s
        publish(*args)

    metrics.models.publish = slow_publish  # type: ignore[method-assign,assignment]
    config = MonitorConfig(ModelPolicy(baseline=0.85, windows=(10,), min_samples=10, decision="window"))
    service = MonitorService(
        source, Monitor(config), MemoryAlertSink(journal), MemoryDeadLetters(journal), metrics,
        clock=lambda: now[0], export_interval_s=1.0,
    )  # fmt: skip

    def events() -> float | None:
        return metrics.registry.get_sample_value("decaywatch_events_total", {"model": "a"})

    service.step()
    assert events() == 10
    now[0] += 5.0  # past the configured interval, not past the stretched one
    service.step()
    assert events() == 10
    now[0] += 15.0
    service.step()
    assert events() == 30


def test_the_heap_is_trimmed_after_a_batch_at_most_every_interval() -> None:
    from decaywatch.consumer.heap import TRIM_INTERVAL_S, heap_trimmer
    from decaywatch.consumer.metrics import ServiceMetrics
    from decaywatch.consumer.service import MonitorService
    from decaywatch.monitor.config import MonitorConfig
    from decaywatch.monitor.engine import Monitor
    from tests.unit.fakes import MemoryAlertSink, MemoryDeadLetters, MemorySource

    journal: list[str] = []
    event = b'{"model": "m", "prediction": 1, "label": 1}'
    now = [0.0]
    trims: list[float] = []
    svc = MonitorService(
        MemorySource([[event]] * 6, journal), Monitor(MonitorConfig()), MemoryAlertSink(journal), MemoryDeadLetters(journal),
        ServiceMetrics(), lambda: now[0], trim_heap=lambda: trims.append(now[0]),
    )  # fmt: skip
    for t in (0.0, 1.0, TRIM_INTERVAL_S - 1, TRIM_INTERVAL_S, TRIM_INTERVAL_S + 1, 2 * TRIM_INTERVAL_S):
        now[0] = t
        assert svc.step() is not None
    assert trims == [0.0, TRIM_INTERVAL_S, 2 * TRIM_INTERVAL_S]
    assert heap_trimmer() is not None  # glibc here: the real service trims


def test_an_offset_commit_refused_in_a_rebalance_is_logged_not_fatal() -> None:
    """kafka-python 3 raises the broker's error for a commit made while the group rebalances: the batch is re-read."""
    import pytest
    from kafka.errors import CommitFailedError, IllegalGenerationError, RebalanceInProgressError, UnknownMemberIdError

    from decaywatch.consumer.source import KafkaEventSource

    class Refusing:
        def __init__(self, error: Exception) -> None:
            self.error = error

        def commit(self) -> None:
            raise self.error

    for error in (RebalanceInProgressError(), CommitFailedError(), IllegalGenerationError(), UnknownMemberIdError()):
        assert KafkaEventSource(Refusing(error), 10).commit() is False
    with pytest.raises(ValueError):  # anything else still ends the service with one line
        KafkaEventSource(Refusing(ValueError("boom")), 10).commit()
