"""The publisher against an in-memory sender and a fake clock: pacing, one flush, failures counted."""

from __future__ import annotations

import io
import math
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from decaywatch.producer import publisher
from decaywatch.producer.publisher import (
    JsonLinesSender,
    PublishError,
    PublishReport,
    Record,
    describe_error,
    make_kafka_producer,
    pacing_chunk,
    publish,
)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds > 0
        self.sleeps.append(seconds)
        self.now += seconds


class FakeFuture:
    """Mimics kafka-python's Future: errbacks get ``(*args, exception)``, at once if already failed."""

    def __init__(self) -> None:
        self.exception: BaseException | None = None
        self.errbacks: list[Callable[[BaseException], Any]] = []

    def add_errback(self, f: Callable[..., Any], *args: Any) -> FakeFuture:
        def bound(exc: BaseException) -> Any:
            return f(*args, exc)

        if self.exception is not None:
            bound(self.exception)
        else:
            self.errbacks.append(bound)
        return self

    def fail(self, exc: BaseException) -> None:
        self.exception = exc
        for errback in self.errbacks:
            errback(exc)


class FakeSender:
    def __init__(
        self,
        clock: FakeClock | None = None,
        cost: float = 0.0,
        fail_now: Callable[[int], BaseException | None] = lambda n: None,
        fail_on_flush: Callable[[int], BaseException | None] = lambda n: None,
        flush_raises: BaseException | None = None,
    ) -> None:
        self.clock, self.cost = clock, cost
        self.fail_now, self.fail_on_flush, self.flush_raises = fail_now, fail_on_flush, flush_raises
        self.sent: list[tuple[str, bytes | None, bytes | None]] = []
        self.futures: list[FakeFuture] = []
        self.flushes: list[float | None] = []
        self.sleeps_seen_at_flush: int | None = None

    def send(self, topic: str, value: bytes | None = None, key: bytes | None = None) -> FakeFuture:
        if self.clock is not None:
            self.clock.now += self.cost
        self.sent.append((topic, key, value))
        future = FakeFuture()
        exc = self.fail_now(len(self.sent) - 1)
        if exc is not None:
            future.exception = exc
        self.futures.append(future)
        return future

    def flush(self, timeout: float | None = None) -> None:
        self.flushes.append(timeout)
        for n, future in enumerate(self.futures):
            exc = self.fail_on_flush(n)
            if exc is not None and future.exception is None:
                future.fail(exc)
        if self.flush_raises is not None:
            raise self.flush_raises


def records(n: int, models: tuple[bytes, ...] = (b"a", b"b")) -> list[tuple[bytes, bytes]]:
    return [(models[i % len(models)], b'{"i":%d}' % i) for i in range(n)]


def test_sends_everything_in_order_and_flushes_once_at_the_end() -> None:
    clock = FakeClock()
    sender = FakeSender(clock, cost=0.001)
    report = publish(records(2500), sender, "predictions", None, clock, clock.sleep)
    assert [(key, value) for _, key, value in sender.sent] == records(2500)
    assert {topic for topic, _, _ in sender.sent} == {"predictions"}
    assert sender.flushes == [60.0]
    assert clock.sleeps == []  # unpaced: never sleeps
    assert report == PublishReport(
        topic="predictions",
        per_model={"a": 1250, "b": 1250},
        total=2500,
        seconds=report.seconds,
        per_topic={"predictions": 2500},
    )
    assert report.seconds == pytest.approx(2.5)
    assert report.events_per_second == pytest.approx(1000.0)
    assert report.ok


def test_a_record_that_names_a_topic_goes_there_through_the_same_sender() -> None:
    clock = FakeClock()
    sender = FakeSender(clock)
    mixed: list[Record] = [(b"a", b"p0"), (b"a", b"l0", "labels"), (b"b", b"p1", "predictions"), (b"b", b"l1", "labels")]
    report = publish(mixed, sender, "predictions", None, clock, clock.sleep)
    assert sender.sent == [
        ("predictions", b"a", b"p0"),
        ("labels", b"a", b"l0"),
        ("predictions", b"b", b"p1"),
        ("labels", b"b", b"l1"),
    ]
    assert report.per_topic == {"predictions": 2, "labels": 2}
    assert report.per_model == {"a": 2, "b": 2} and report.total == 4 and sender.flushes == [60.0]


def test_paces_to_the_rate_sleeping_once_per_chunk() -> None:
    clock = FakeClock()
    sender = FakeSender(clock, cost=0.0001)  # sending itself takes 0.1 ms an event
    report = publish(records(10_000), sender, "t", 2000.0, clock, clock.sleep)
    assert pacing_chunk(2000.0) == 200
    assert len(clock.sleeps) == 10_000 // 200
    # each chunk of 200 events is due 0.1 s after the previous one and took 0.02 s to send
    assert clock.sleeps == pytest.approx([0.08] * 50)
    assert report.seconds == pytest.approx(5.0)
    assert report.events_per_second == pytest.approx(2000.0)
    assert report.slept == pytest.approx(4.0)
    assert sender.flushes == [60.0]


def test_no_sleep_when_sending_is_slower_than_the_rate() -> None:
    clock = FakeClock()
    sender = FakeSender(clock, cost=0.01)  # 100 events/s at best
    report = publish(records(3000), sender, "t", 1000.0, clock, clock.sleep)
    assert clock.sleeps == []
    assert report.seconds == pytest.approx(30.0)


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(0, 5000),
    rate=st.floats(0.5, 1e6),
    cost=st.sampled_from([0.0, 1e-6, 1e-4]),
)
def test_pacing_never_runs_ahead_of_the_rate(n: int, rate: float, cost: float) -> None:
    clock = FakeClock()
    sender = FakeSender(clock, cost=cost)
    report = publish(records(n), sender, "t", rate, clock, clock.sleep)
    chunk = pacing_chunk(rate)
    assert 1 <= chunk <= 1000
    assert len(clock.sleeps) <= n // chunk
    assert report.total == n
    # after the last full chunk the run has taken at least that chunk's due time
    full = (n // chunk) * chunk
    assert report.seconds >= full / rate - 1e-9
    # and never much more than needed: the slower of the rate and the sending itself
    assert report.seconds <= full / rate + n * cost + 1e-6
    assert sender.flushes == [60.0]


def test_pacing_chunk_bounds() -> None:
    assert pacing_chunk(0.1) == 1
    assert pacing_chunk(100) == 10
    assert pacing_chunk(1e9) == 1000


@pytest.mark.parametrize("rate", [0.0, -5.0, math.inf, math.nan])
def test_a_bad_rate_is_refused(rate: float) -> None:
    with pytest.raises(ValueError, match="rate must be a positive number"):
        publish(records(1), FakeSender(), "t", rate)


def test_delivery_failures_are_counted_not_raised() -> None:
    clock = FakeClock()
    sender = FakeSender(
        clock,
        fail_now=lambda n: RuntimeError("buffer gone") if n == 3 else None,
        fail_on_flush=lambda n: TimeoutError("broker slow") if n % 10 == 0 else None,
    )
    report = publish(records(100), sender, "t", None, clock, clock.sleep)
    assert report.total == 100
    assert report.failed == 11  # event 3 at once, events 0, 10, ..., 90 during the flush
    assert report.failed_per_model == {"a": 10, "b": 1}
    assert report.errors == ("RuntimeError: buffer gone", "TimeoutError: broker slow")
    assert not report.ok
    assert len(sender.flushes) == 1


def test_a_failing_flush_is_reported() -> None:
    sender = FakeSender(flush_raises=TimeoutError("Timeout waiting for future"))
    report = publish(records(5), sender, "t", None)
    assert report.flush_error == "TimeoutError: Timeout waiting for future"
    assert not report.ok and report.total == 5


def test_a_send_that_raises_stops_publishing() -> None:
    class Exploding(FakeSender):
        def send(self, topic: str, value: bytes | None = None, key: bytes | None = None) -> FakeFuture:
            if len(self.sent) == 7:
                raise RuntimeError("KafkaTimeoutError: Failed to update metadata after 60.0 secs.")
            return super().send(topic, value=value, key=key)

    sender = Exploding()
    with pytest.raises(PublishError, match="sending event 8 to 't' failed: RuntimeError") as info:
        publish(records(20), sender, "t", None)
    assert info.value.sent == 7
    assert sender.flushes == []


def test_records_may_be_a_lazy_iterator() -> None:
    sender = FakeSender()
    report = publish(iter(records(3)), sender, "t", None)
    assert report.total == 3 and len(sender.sent) == 3


def test_empty_input() -> None:
    clock = FakeClock()
    report = publish([], FakeSender(), "t", 10.0, clock, clock.sleep)
    assert report.total == 0 and report.per_model == {} and report.events_per_second == 0.0


def test_json_lines_sender_writes_one_value_per_line() -> None:
    out = io.BytesIO()
    report = publish(records(3), JsonLinesSender(out), "ignored", None)
    assert out.getvalue() == b'{"i":0}\n{"i":1}\n{"i":2}\n'
    assert report.ok and report.per_model == {"a": 2, "b": 1}


def test_make_kafka_producer_uses_throughput_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    import kafka

    seen: dict[str, Any] = {}

    class Recorder:
        def __init__(self, **config: Any) -> None:
            seen.update(config)

    monkeypatch.setattr(kafka, "KafkaProducer", Recorder)
    make_kafka_producer(" b1:9092, b2:9093 ", security_protocol="SSL")
    assert seen == {
        "bootstrap_servers": ["b1:9092", "b2:9093"],
        "client_id": "decaywatch-producer",
        "linger_ms": 20,
        "batch_size": 256 * 1024,
        "compression_type": None,
        "security_protocol": "SSL",
    }


def test_kafka_producer_satisfies_the_sender_protocol() -> None:
    import inspect

    from kafka import KafkaProducer

    send = inspect.signature(KafkaProducer.send).parameters
    assert {"topic", "key", "value"} <= set(send)
    assert "timeout" in inspect.signature(KafkaProducer.flush).parameters
    from kafka.producer.future import FutureRecordMetadata

    assert callable(FutureRecordMetadata.add_errback)  # what send() returns, and all DeliveryFuture asks for
    assert callable(publisher.DeliveryFuture.add_errback)


def test_errbacks_follow_kafka_pythons_future_convention() -> None:
    from kafka.errors import KafkaTimeoutError
    from kafka.future import Future

    class RealFutures(FakeSender):
        def __init__(self) -> None:
            super().__init__()
            self.pending: list[Future] = []

        def send(self, topic: str, value: bytes | None = None, key: bytes | None = None) -> Future:
            self.sent.append((topic, key, value))
            future = Future()
            if len(self.sent) == 1:
                future.failure(KafkaTimeoutError("Batch expired"))  # already failed when the errback is added
            self.pending.append(future)
            return future

        def flush(self, timeout: float | None = None) -> None:
            self.flushes.append(timeout)
            for n, future in enumerate(self.pending):
                if future.is_done:
                    continue
                if n % 2:
                    future.failure(KafkaTimeoutError("Expiring 1 record(s)"))
                else:
                    future.success(None)

    report = publish(records(6), RealFutures(), "t", None)
    assert report.failed == 4  # event 0 up front, events 1, 3 and 5 during the flush
    assert report.failed_per_model == {"a": 1, "b": 3}
    assert report.errors == ("KafkaTimeoutError: Batch expired", "KafkaTimeoutError: Expiring 1 record(s)")


@pytest.mark.parametrize(
    ("exc", "text"),
    [
        (RuntimeError("boom"), "RuntimeError: boom"),
        (RuntimeError(), "RuntimeError"),
    ],
)
def test_describe_error(exc: BaseException, text: str) -> None:
    assert describe_error(exc) == text


def test_describe_error_does_not_repeat_kafka_error_names() -> None:
    from kafka.errors import KafkaTimeoutError

    assert describe_error(KafkaTimeoutError("Unable to bootstrap")) == "KafkaTimeoutError: Unable to bootstrap"
    assert describe_error(KafkaTimeoutError()) == "KafkaTimeoutError"
