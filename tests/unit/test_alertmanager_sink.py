"""AlertmanagerSink without a network: an injected transport, a fake clock and a fixed random source.

Most tests drive the sink by hand (``publish`` then ``run_pending``), so no
thread and no sleep is involved; the last few run the real sender thread
against an in-memory transport, with bounded waits.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable
from typing import Any

import orjson
import pytest

from decaywatch.consumer.alertmanager import AlertmanagerSink, api_url, describe, to_alertmanager
from tests.helpers import wait_until

AM1 = "http://am-1:9093"
AM2 = "http://am-2:9093"


def alert_event(
    status: str = "firing",
    model: str = "churn",
    rule: str = "degradation",
    alert_id: str = "0123456789abcdef",
    emitted_at: str = "2025-01-01T12:00:00.000Z",
) -> dict[str, Any]:
    """An alert event as the monitor publishes it (monitor.alert.AlertTransition.to_event)."""
    return {
        "alert_id": alert_id,
        "model": model,
        "status": status,
        "rule": rule,
        "message": "Model performance degraded significantly" if status == "firing" else "Model performance is stable",
        "baseline_accuracy": 0.85,
        "baseline": 0.85,
        "baseline_date": "2024-01-01",
        "accuracy": 0.7 if status == "firing" else 0.84,
        "value": 0.7 if status == "firing" else 0.84,
        "drop": 0.15 if status == "firing" else 0.01,
        "threshold": 0.1,
        "floor": 0.6 if rule == "floor" else None,
        "window": 1000,
        "samples": 400,
        "event_time": "2024-03-01T00:00:00.000Z",
        "lower_bound": 0.653 if status == "firing" else 0.80,
        "upper_bound": 0.743 if status == "firing" else 0.87,
        "window_accuracy": 0.71 if status == "firing" else 0.84,
        "decision": "sequential",
        "statistic": 12.4,
        "evidence_start": "2024-02-27T00:00:00.000Z",
        "metric": "accuracy",
        "emitted_at": emitted_at,
    }


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class FixedRandom(random.Random):
    """``random()`` always returns ``value``: back-off delays become exact."""

    def __init__(self, value: float) -> None:
        super().__init__(0)
        self.value = value

    def random(self) -> float:
        return self.value


class FakeAlertmanagers:
    """A transport: records every POST, answers with a status per URL, or raises while a URL is down."""

    def __init__(self) -> None:
        self.posts: list[tuple[str, list[dict[str, Any]]]] = []
        self.status: dict[str, int] = {}
        self.down: set[str] = set()

    def __call__(self, url: str, body: bytes) -> int:
        if url in self.down:
            raise ConnectionRefusedError(111, "Connection refused")
        self.posts.append((url, orjson.loads(body)))
        return self.status.get(url, 200)

    def alerts_to(self, base_url: str) -> list[dict[str, Any]]:
        return [alert for url, alerts in self.posts if url == api_url(base_url) for alert in alerts]


def make_sink(
    transport: Callable[[str, bytes], int], clock: FakeClock, urls: tuple[str, ...] = (AM1,), **kwargs: Any
) -> AlertmanagerSink:
    kwargs.setdefault("rng", FixedRandom(1.0))
    return AlertmanagerSink(list(urls), transport=transport, clock=clock, **kwargs)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def ams() -> FakeAlertmanagers:
    return FakeAlertmanagers()


def test_event_becomes_an_alertmanager_alert() -> None:
    alert = to_alertmanager(alert_event(), generator_url="http://monitor:9464/models")
    assert alert == {
        "labels": {
            "alertname": "DecaywatchModelDegraded",
            "model": "churn",
            "severity": "warning",
            "rule": "degradation",
            "metric": "accuracy",
            "alert_id": "0123456789abcdef",
        },
        "annotations": {"summary": "Model performance degraded significantly", "description": describe(alert_event())},
        "startsAt": "2025-01-01T12:00:00.000Z",
        "generatorURL": "http://monitor:9464/models",
    }


def test_description_carries_the_numbers() -> None:
    assert describe(alert_event(rule="floor")) == (
        "Model churn: accuracy 0.700 (95% interval 0.653-0.743) over 400 labeled events, 0.710 over the last 1000; "
        "baseline 0.850 (2024-01-01), drop 0.150, threshold 0.100, floor 0.600; event time 2024-03-01T00:00:00.000Z."
    )


def test_description_of_an_event_without_the_optional_numbers() -> None:
    event = alert_event()
    for key in ("lower_bound", "upper_bound", "window_accuracy"):
        del event[key]
    event["baseline_date"] = None
    assert describe(event) == (
        "Model churn: accuracy 0.700 over 400 labeled events; baseline 0.850, drop 0.150, threshold 0.100; "
        "event time 2024-03-01T00:00:00.000Z."
    )


def test_floor_alerts_are_critical_and_resolutions_end() -> None:
    floor = to_alertmanager(alert_event(rule="floor"))
    assert (floor["labels"]["alertname"], floor["labels"]["severity"]) == ("DecaywatchAccuracyBelowFloor", "critical")
    resolved = to_alertmanager(alert_event(status="resolved", emitted_at="2025-01-01T13:00:00.000Z"))
    assert resolved["endsAt"] == "2025-01-01T13:00:00.000Z"
    assert resolved["annotations"]["summary"] == "Model performance is stable"


def test_metric_rules_alert_as_degradations_of_their_metric() -> None:
    event = {**alert_event(rule="recall_degradation"), "metric": "recall"}
    alert = to_alertmanager(event)
    assert {k: alert["labels"][k] for k in ("alertname", "severity", "rule", "metric")} == {
        "alertname": "DecaywatchModelDegraded",
        "severity": "warning",
        "rule": "recall_degradation",
        "metric": "recall",
    }
    assert alert["annotations"]["description"].startswith("Model churn: recall 0.700 ")


def test_an_unknown_rule_is_still_delivered_as_a_warning() -> None:
    labels = to_alertmanager(alert_event(rule="something_new"))["labels"]
    assert (labels["alertname"], labels["severity"]) == ("DecaywatchModelAlert", "warning")


def test_api_url_appends_the_v2_path_once() -> None:
    assert api_url("http://am:9093/") == "http://am:9093/api/v2/alerts"
    assert api_url("http://am:9093/api/v2/alerts") == "http://am:9093/api/v2/alerts"


def test_publish_only_records_and_run_pending_sends_to_every_url(ams: FakeAlertmanagers, clock: FakeClock) -> None:
    sink = make_sink(ams, clock, urls=(AM1, AM2))
    sink.publish(alert_event())
    sink.flush()
    assert ams.posts == []
    assert sink.pending == 2  # one per Alertmanager of the HA pair

    sink.run_pending()

    assert [url for url, _ in ams.posts] == [api_url(AM1), api_url(AM2)]
    assert ams.alerts_to(AM1) == ams.alerts_to(AM2) == [to_alertmanager(alert_event())]
    assert (sink.pending, sink.delivered, sink.failed_attempts) == (0, 2, 0)


def test_firing_alerts_are_resent_until_resolved(ams: FakeAlertmanagers, clock: FakeClock) -> None:
    sink = make_sink(ams, clock, resend_interval_s=60.0)
    sink.publish(alert_event())
    assert sink.run_pending() == 60.0

    clock.advance(59.0)
    sink.run_pending()
    assert len(ams.posts) == 1
    clock.advance(1.0)
    sink.run_pending()
    assert len(ams.posts) == 2 and ams.posts[1][1] == ams.posts[0][1]  # the same alert, the same startsAt

    sink.publish(alert_event(status="resolved", emitted_at="2025-01-01T12:30:00.000Z"))
    assert sink.run_pending() is None  # resolved and acknowledged: nothing left to send, ever
    resolved = ams.posts[-1][1]
    assert [(a["startsAt"], a["endsAt"]) for a in resolved] == [("2025-01-01T12:00:00.000Z", "2025-01-01T12:30:00.000Z")]
    clock.advance(3600.0)
    sink.run_pending()
    assert len(ams.posts) == 3


def test_one_post_carries_every_due_alert(ams: FakeAlertmanagers, clock: FakeClock) -> None:
    sink = make_sink(ams, clock)
    sink.publish(alert_event(model="churn", alert_id="a" * 16))
    sink.publish(alert_event(model="fraud", alert_id="b" * 16, rule="floor"))
    sink.run_pending()
    assert len(ams.posts) == 1
    assert sorted(a["labels"]["model"] for a in ams.posts[0][1]) == ["churn", "fraud"]


def test_failures_back_off_exponentially_with_jitter_up_to_a_cap(ams: FakeAlertmanagers, clock: FakeClock) -> None:
    sink = make_sink(ams, clock, backoff_initial_s=1.0, backoff_max_s=8.0, rng=FixedRandom(0.0))
    ams.down.add(api_url(AM1))
    sink.publish(alert_event())
    delays = []
    for _ in range(6):
        delay = sink.run_pending()
        assert delay is not None
        delays.append(delay)
        clock.advance(delay)
    # rng 0.0: the lower end of "equal jitter", half of 1, 2, 4, 8, 8, 8 seconds.
    assert delays == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    assert (sink.failed_attempts, sink.pending, sink.delivered) == (6, 1, 0)


def test_jitter_spreads_retries_between_half_and_the_full_step(ams: FakeAlertmanagers, clock: FakeClock) -> None:
    ams.down.add(api_url(AM1))
    for value, expected in ((0.0, 2.0), (0.5, 3.0), (1.0, 4.0)):
        sink = make_sink(ams, clock, backoff_initial_s=4.0, backoff_max_s=4.0, rng=FixedRandom(value))
        sink.publish(alert_event())
        assert sink.run_pending() == expected


def test_nothing_is_sent_while_backing_off_and_all_is_sent_after(ams: FakeAlertmanagers, clock: FakeClock) -> None:
    sink = make_sink(ams, clock, backoff_initial_s=2.0, rng=FixedRandom(1.0))
    ams.down.add(api_url(AM1))
    sink.publish(alert_event(alert_id="a" * 16))
    sink.run_pending()
    sink.publish(alert_event(model="fraud", alert_id="b" * 16))  # published while Alertmanager is down
    clock.advance(1.0)
    sink.run_pending()
    assert sink.failed_attempts == 1  # still backing off: no second attempt yet

    ams.down.clear()
    clock.advance(1.0)
    sink.run_pending()
    assert sorted(a["labels"]["model"] for a in ams.alerts_to(AM1)) == ["churn", "fraud"]
    assert (sink.pending, sink.delivered) == (0, 2)


def test_an_ha_member_that_is_down_catches_up_on_its_own(ams: FakeAlertmanagers, clock: FakeClock) -> None:
    sink = make_sink(ams, clock, urls=(AM1, AM2), backoff_initial_s=1.0)
    ams.down.add(api_url(AM2))
    sink.publish(alert_event())
    sink.run_pending()
    assert (len(ams.alerts_to(AM1)), len(ams.alerts_to(AM2)), sink.pending) == (1, 0, 1)

    ams.down.clear()
    clock.advance(1.0)
    sink.run_pending()
    assert (len(ams.alerts_to(AM1)), len(ams.alerts_to(AM2)), sink.pending) == (1, 1, 0)


def test_resolution_replaces_an_undelivered_firing(ams: FakeAlertmanagers, clock: FakeClock) -> None:
    sink = make_sink(ams, clock)
    ams.down.add(api_url(AM1))
    sink.publish(alert_event())
    sink.run_pending()
    sink.publish(alert_event(status="resolved", emitted_at="2025-01-01T12:05:00.000Z"))
    ams.down.clear()
    clock.advance(60.0)
    sink.run_pending()
    assert [(a["startsAt"], a.get("endsAt")) for a in ams.alerts_to(AM1)] == [
        ("2025-01-01T12:00:00.000Z", "2025-01-01T12:05:00.000Z")
    ]
    assert sink.pending == 0 and sink.run_pending() is None


def test_server_errors_are_retried_but_client_errors_are_not(ams: FakeAlertmanagers, clock: FakeClock) -> None:
    sink = make_sink(ams, clock, backoff_initial_s=1.0)
    ams.status[api_url(AM1)] = 503
    sink.publish(alert_event())
    sink.run_pending()
    assert (sink.failed_attempts, sink.pending) == (1, 1)

    ams.status[api_url(AM1)] = 400  # e.g. an invalid label: sending it again would fail again
    clock.advance(1.0)
    sink.run_pending()
    assert (sink.failed_attempts, sink.rejected, sink.pending) == (1, 1, 0)


def test_outstanding_alerts_are_bounded(ams: FakeAlertmanagers, clock: FakeClock) -> None:
    sink = make_sink(ams, clock, max_alerts=2)
    for i in range(3):
        sink.publish(alert_event(alert_id=f"{i:016x}"))
    sink.run_pending()
    assert sink.dropped == 1
    assert [a["labels"]["alert_id"] for a in ams.posts[0][1]] == [f"{1:016x}", f"{2:016x}"]


def test_needs_a_url() -> None:
    with pytest.raises(ValueError, match="URL"):
        AlertmanagerSink([])


# -- with the sender thread (real time, in-memory transport, bounded waits) ------------


def test_publish_and_flush_return_while_a_post_hangs() -> None:
    release = threading.Event()
    posted = threading.Event()

    def hanging(url: str, body: bytes) -> int:
        posted.set()
        release.wait(10)
        return 200

    sink = AlertmanagerSink([AM1], transport=hanging).start()
    try:
        sink.publish(alert_event(alert_id="a" * 16))
        wait_until(posted.is_set, timeout=5, message="the sender to be inside a POST")
        sink.publish(alert_event(alert_id="b" * 16))  # the consumer's thread goes on while the POST hangs
        sink.flush()
        assert sink.pending == 2
    finally:
        release.set()
        assert sink.close(timeout=5) == 0
    assert sink.delivered == 2


def test_close_drains_what_is_pending_once_alertmanager_answers() -> None:
    ams = FakeAlertmanagers()
    ams.down.add(api_url(AM1))
    sink = AlertmanagerSink([AM1], transport=ams, backoff_initial_s=0.01, backoff_max_s=0.05).start()
    sink.publish(alert_event())
    wait_until(lambda: sink.failed_attempts >= 2, timeout=5, message="two failed attempts")
    ams.down.clear()
    assert sink.close(timeout=5) == 0
    assert len(ams.alerts_to(AM1)) == 1


def test_close_gives_up_after_its_timeout_and_reports_what_is_left() -> None:
    ams = FakeAlertmanagers()
    ams.down.add(api_url(AM1))
    sink = AlertmanagerSink([AM1], transport=ams, backoff_initial_s=0.01, backoff_max_s=0.05).start()
    sink.publish(alert_event())
    assert sink.close(timeout=0.3) == 1
    assert sink.failed_attempts >= 1
