"""The librdkafka client without a broker: settings translation, the delivery adapter under the sinks, the event source.

confluent-kafka's own objects stand in where they need no broker (``KafkaError``,
``KafkaException``, ``TopicPartition``, and constructing a ``Consumer`` or
``Producer`` to validate a configuration); the consumer and producer that would
talk to Kafka are small fakes with the methods the adapters call.  The real
clients run against a broker in ``tests/integration`` (the lesson, dead-letter,
scale-out and SASL tests run on both clients).
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from decaywatch.consumer.sinks import KafkaAlertSink, KafkaDeadLetterSink
from decaywatch.consumer.source import RebalanceRecorder
from decaywatch.monitor.schema import Rejection
from decaywatch.shared.kafka_settings import KafkaAuthenticationError, librdkafka_config
from tests.helpers import under_ci

if importlib.util.find_spec("confluent_kafka") is None:  # the extra is missing: skipped locally, an error under CI
    if under_ci():
        raise ImportError("confluent-kafka is not installed, and CI must test both clients: pip install 'decaywatch[confluent]'")
    pytest.skip("confluent-kafka is not installed (pip install 'decaywatch[confluent]')", allow_module_level=True)

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition

from decaywatch.consumer.confluent import (
    ClientHealth,
    ConfluentEventSource,
    ConfluentSender,
    DeliveryError,
    FlushTimeoutError,
    KafkaClientError,
    SendError,
    consumer_config,
    producer_config,
)

SASL = {
    "bootstrap_servers": ["k1:9092", "k2:9092"],
    "security_protocol": "SASL_SSL",
    "sasl_mechanism": "SCRAM-SHA-256",
    "sasl_plain_username": "alice",
    "sasl_plain_password": "s3cret",
    "ssl_cafile": "/etc/ca.pem",
    "ssl_certfile": "/etc/client.pem",
    "ssl_keyfile": "/etc/client.key",
}


# ------------------------------------------------------------------ settings


def test_every_security_setting_has_its_librdkafka_name() -> None:
    assert librdkafka_config(SASL) == {
        "bootstrap.servers": "k1:9092,k2:9092",
        "security.protocol": "SASL_SSL",
        "sasl.mechanisms": "SCRAM-SHA-256",
        "sasl.username": "alice",
        "sasl.password": "s3cret",
        "ssl.ca.location": "/etc/ca.pem",
        "ssl.certificate.location": "/etc/client.pem",
        "ssl.key.location": "/etc/client.key",
    }


def test_settings_come_from_the_one_reader_flags_included() -> None:
    from decaywatch.shared.kafka_settings import kafka_client_config

    args = argparse.Namespace(bootstrap_servers="k:9092", security_protocol="SASL_PLAINTEXT", sasl_plain_password=None)
    kafka = kafka_client_config(args, {"sasl_username": "bob"}, environ={"DECAYWATCH_SASL_PASSWORD": "pw"})
    assert librdkafka_config(kafka) == {
        "bootstrap.servers": "k:9092",
        "security.protocol": "SASL_PLAINTEXT",
        "sasl.username": "bob",
        "sasl.password": "pw",
    }


def test_a_setting_without_a_librdkafka_name_is_refused_not_dropped() -> None:
    with pytest.raises(ValueError, match=r"\['sasl_kerberos_service_name'\]"):
        librdkafka_config({"bootstrap_servers": ["k:9092"], "sasl_kerberos_service_name": "kafka"})


def test_librdkafka_accepts_both_configurations() -> None:
    """Constructing the real clients validates every property name and value (nothing connects before a call)."""
    health = ClientHealth(SASL)
    plain = {"bootstrap_servers": ["127.0.0.1:1"]}
    consumer = Consumer(consumer_config(plain, "group", health, session_timeout_ms=6000))
    consumer.close()
    Producer(producer_config(plain, health)).flush(0)


def test_consumer_and_producer_settings_keep_the_kafka_python_semantics() -> None:
    health = ClientHealth({})
    consumer = consumer_config({"bootstrap_servers": ["k:9092"]}, "g", health, session_timeout_ms=6000)
    assert consumer["group.id"] == "g" and consumer["auto.offset.reset"] == "earliest"
    assert consumer["enable.auto.commit"] is False and consumer["enable.auto.offset.store"] is False
    assert consumer["partition.assignment.strategy"] == "range,roundrobin"  # eager: the ledger's revoke-all, assign-all
    assert (consumer["session.timeout.ms"], consumer["heartbeat.interval.ms"]) == (6000, 1500)
    assert "session.timeout.ms" not in consumer_config({"bootstrap_servers": ["k:9092"]}, "g", health)
    producer = producer_config({"bootstrap_servers": ["k:9092"]})
    assert producer["acks"] == "all" and producer["max.in.flight.requests.per.connection"] == 1
    assert producer["enable.idempotence"] is False


# ------------------------------------------------------------------ the delivery adapter


@dataclass
class FakeProducer:
    """Queues produced messages; ``poll``/``flush`` deliver them with the outcome ``fail`` gives, or not at all when ``stuck``."""

    fail: Callable[[dict[str, Any]], KafkaError | None] = lambda _message: None
    stuck: bool = False
    queued: list[dict[str, Any]] = field(default_factory=list)
    written: list[dict[str, Any]] = field(default_factory=list)
    refuse: BaseException | None = None

    def produce(self, topic: str, **message: Any) -> None:
        if self.refuse is not None:
            raise self.refuse
        self.queued.append({"topic": topic, **message})

    def poll(self, timeout: float) -> int:
        if self.stuck:
            return 0
        while self.queued:
            message = self.queued.pop(0)
            error = self.fail(message)
            if error is None:
                self.written.append(message)
            message["on_delivery"](error, None)
        return 0

    def flush(self, timeout: float) -> int:
        self.poll(timeout)
        return len(self.queued)


def test_a_send_is_pending_until_its_delivery_report_then_done() -> None:
    producer = FakeProducer(stuck=True)
    sender = ConfluentSender(producer)
    delivery = sender.send("t", value=b"v", key=b"k", headers=[("h", b"1")], partition=3)
    assert (delivery.is_done, delivery.exception) == (False, None)
    assert producer.queued[0]["partition"] == 3 and producer.queued[0]["headers"] == [("h", b"1")]
    with pytest.raises(FlushTimeoutError, match="1 message"):
        sender.flush(timeout=0.0)
    producer.stuck = False
    sender.flush(timeout=1.0)
    assert (delivery.is_done, delivery.exception) == (True, None)
    assert sender.send("t", value=b"w").is_done  # served by the poll(0) after the send
    assert producer.written[-1]["partition"] == -1  # no partition: librdkafka's partitioner (by key)


def test_a_failed_delivery_carries_the_error_and_whether_it_is_retriable() -> None:
    producer = FakeProducer(fail=lambda _m: KafkaError(KafkaError._MSG_TIMED_OUT, "expired", retriable=True))
    delivery = ConfluentSender(producer).send("t", value=b"v")
    assert delivery.is_done and isinstance(delivery.exception, DeliveryError)
    assert delivery.exception.retriable and delivery.exception.code == KafkaError._MSG_TIMED_OUT


@pytest.mark.parametrize(
    ("refusal", "retriable"),
    [
        (BufferError("Local: Queue full"), True),
        (KafkaException(KafkaError(KafkaError.MSG_SIZE_TOO_LARGE, "too large")), False),
        (KafkaException(KafkaError(KafkaError._UNKNOWN_TOPIC, "unknown", retriable=True)), True),
    ],
)
def test_a_refused_produce_raises_what_the_sinks_read(refusal: BaseException, retriable: bool) -> None:
    sender = ConfluentSender(FakeProducer(refuse=refusal))
    with pytest.raises(SendError) as raised:
        sender.send("t", value=b"v")
    assert raised.value.retriable is retriable


def test_the_alert_sink_keeps_order_on_the_adapter_through_a_failure() -> None:
    """A firing whose delivery failed reaches the topic before the resolution published after it, as on kafka-python."""
    outage = True
    producer = FakeProducer(fail=lambda _m: KafkaError(KafkaError._MSG_TIMED_OUT) if outage else None)
    sink = KafkaAlertSink(ConfluentSender(producer), "alerts")
    sink.publish({"model": "m", "status": "firing"})
    assert sink.flush() is False and sink.pending == 1 and sink.failed_sends == 1
    outage = False
    sink.publish({"model": "m", "status": "resolved"})
    assert sink.flush() is True and sink.pending == 0
    assert [b'"firing"' in m["value"] for m in producer.written] == [True, False]
    assert all(m["key"] == b"m" for m in producer.written)


def test_dead_letters_on_the_adapter_keep_their_key_and_headers() -> None:
    producer = FakeProducer()
    sink = KafkaDeadLetterSink(ConfluentSender(producer), "dlq")
    sink.publish(b"{broken", b"key", Rejection(0, "malformed_json", "bad"), "predictions", 2, 41)
    assert sink.flush() is True
    (written,) = producer.written
    assert written["topic"] == "dlq" and written["key"] == b"key" and written["value"] == b"{broken"
    assert dict(written["headers"])["decaywatch.source.offset"] == b"41"


def test_a_full_local_queue_stops_sends_until_the_next_flush() -> None:
    producer = FakeProducer(refuse=BufferError("Local: Queue full"))
    sink = KafkaAlertSink(ConfluentSender(producer), "alerts")
    sink.publish({"model": "a", "status": "firing"})
    sink.publish({"model": "b", "status": "firing"})
    assert sink.flush() is False and sink.failed_sends == 1  # retriable: the topic is left alone until the next flush
    producer.refuse = None
    assert sink.flush() is True and [m["key"] for m in producer.written] == [b"a", b"b"]


# ------------------------------------------------------------------ the event source


@dataclass
class FakeMessage:
    payload: bytes | None
    partition_: int
    offset_: int
    key_: bytes | None = b"m"
    timestamp_ms: int = 1_704_067_200_000
    error_: KafkaError | None = None

    def value(self) -> bytes | None:
        return self.payload

    def key(self) -> bytes | None:
        return self.key_

    def timestamp(self) -> tuple[int, int]:
        return (1, self.timestamp_ms)

    def topic(self) -> str:
        return "predictions"

    def partition(self) -> int:
        return self.partition_

    def offset(self) -> int:
        return self.offset_

    def error(self) -> KafkaError | None:
        return self.error_


@dataclass
class FakeConsumer:
    """Hands out prepared ``consume`` results, one list per call.

    An ``("assign", {...})`` or ``("revoke", {...})`` item in a call's list runs
    that callback at that point of the call, which goes on gathering the
    items after it, as librdkafka's does.
    """

    steps: list[Any] = field(default_factory=list)
    assigned: set[int] = field(default_factory=set)
    stored: dict[int, int] = field(default_factory=dict)
    committed: dict[int, int] = field(default_factory=dict)
    commit_error: KafkaError | None = None
    callbacks: dict[str, Any] = field(default_factory=dict)
    closed: bool = False
    sought: dict[int, int] = field(default_factory=dict)

    def subscribe(self, topics: list[str], on_assign: Any = None, on_revoke: Any = None) -> None:
        self.callbacks = {"assign": on_assign, "revoke": on_revoke}

    def consume(self, num_messages: int = 1, timeout: float = -1) -> list[Any]:
        if not self.steps:
            return []
        gathered = []
        for item in self.steps.pop(0):
            if isinstance(item, tuple):  # a rebalance: the callback runs, then the client moves the partitions
                kind, partitions = item
                self.callbacks[kind](self, [TopicPartition("predictions", p) for p in sorted(partitions)])
                self.assigned = set(partitions) if kind == "assign" else set()
            else:
                gathered.append(item)
        assert len(gathered) <= num_messages
        return gathered

    def seek(self, partition: TopicPartition) -> None:
        assert partition.partition in self.assigned
        self.sought[partition.partition] = partition.offset

    def assignment(self) -> list[TopicPartition]:
        return [TopicPartition("predictions", p) for p in sorted(self.assigned)]

    def store_offsets(self, offsets: list[TopicPartition]) -> None:
        self.stored.update({tp.partition: tp.offset for tp in offsets})

    def commit(self, asynchronous: bool = True) -> list[TopicPartition]:
        assert asynchronous is False
        if self.commit_error is not None:
            raise KafkaException(self.commit_error)
        if not self.stored:
            raise KafkaException(KafkaError(KafkaError._NO_OFFSET))
        self.committed.update(self.stored)
        self.stored = {}
        return [TopicPartition("predictions", p, o) for p, o in self.committed.items()]

    def position(self, partitions: list[TopicPartition]) -> list[TopicPartition]:
        return [TopicPartition(tp.topic, tp.partition, self.committed.get(tp.partition, -1001)) for tp in partitions]

    def get_watermark_offsets(self, partition: TopicPartition, cached: bool = False) -> tuple[int, int]:
        assert cached
        return (0, 100)

    def close(self) -> None:
        self.closed = True
        if self.assigned:
            self.callbacks["revoke"](self, self.assignment())


def source_over(
    consumer: FakeConsumer, recorder: RebalanceRecorder | None = None, health: ClientHealth | None = None
) -> ConfluentEventSource:
    source = ConfluentEventSource(consumer, "predictions", 3, recorder, health)
    source.subscribe()
    return source


def test_poll_hands_over_columns_and_stores_what_it_returned() -> None:
    consumer = FakeConsumer(
        [[FakeMessage(b"a", 0, 7), FakeMessage(b"b", 1, 3, key_=None), FakeMessage(None, 0, 8, timestamp_ms=1500)]]
    )
    batch = source_over(consumer).poll(0.0)
    assert batch is not None and len(batch) == 3
    assert batch.values == [b"a", b"b", None] and batch.keys == [b"m", None, b"m"]
    assert batch.partitions == [0, 1, 0] and batch.offsets == [7, 3, 8] and batch.topics == ["predictions"] * 3
    assert batch.timestamp.tolist() == [1_704_067_200.0, 1_704_067_200.0, 1.5]
    assert consumer.stored == {0: 9, 1: 4}  # the next offset of each partition: commit commits through what was returned
    assert consumer.committed == {}  # nothing is committed before the service says so


def test_commit_commits_only_what_poll_returned_and_nothing_twice() -> None:
    consumer = FakeConsumer([[FakeMessage(b"a", 0, 0)]])
    source = source_over(consumer)
    source.commit()  # nothing polled yet: librdkafka's "no offset stored" is no failure
    assert consumer.committed == {}
    source.poll(0.0)
    source.commit()
    assert consumer.committed == {0: 1}
    source.commit()  # nothing new
    assert consumer.committed == {0: 1}


def test_lag_is_the_cached_high_watermark_less_the_position() -> None:
    consumer = FakeConsumer([[FakeMessage(b"a", 0, 0)]], assigned={0, 1})
    source = source_over(consumer)
    source.poll(0.0)
    source.commit()
    assert source.lag() == {("predictions", 0): 99}  # partition 1: nothing consumed yet, so no position to measure from


def test_a_failed_commit_is_a_warning_and_the_batch_is_read_again(caplog: pytest.LogCaptureFixture) -> None:
    consumer = FakeConsumer([[FakeMessage(b"a", 0, 0)]], commit_error=KafkaError(KafkaError.REBALANCE_IN_PROGRESS))
    source = source_over(consumer)
    source.poll(0.0)
    with caplog.at_level(logging.WARNING):
        source.commit()
    assert consumer.committed == {} and "offset commit failed" in caplog.text


def test_error_messages_are_skipped_eof_silently(caplog: pytest.LogCaptureFixture) -> None:
    eof = FakeMessage(None, 0, 5, error_=KafkaError(KafkaError._PARTITION_EOF))
    gone = FakeMessage(None, 1, -1, error_=KafkaError(KafkaError.UNKNOWN_TOPIC_OR_PART, "no such topic"))
    consumer = FakeConsumer([[FakeMessage(b"a", 0, 4), eof, gone], [eof]])
    source = source_over(consumer)
    with caplog.at_level(logging.WARNING):
        batch = source.poll(0.0)
        assert source.poll(0.0) is None
    assert batch is not None and batch.values == [b"a"] and batch.offsets == [4]
    assert "UNKNOWN_TOPIC_OR_PART" in caplog.text and "PARTITION_EOF" not in caplog.text


def test_a_fatal_message_error_ends_the_service() -> None:
    fatal = FakeMessage(None, 0, -1, error_=KafkaError(KafkaError._FENCED, "fenced", fatal=True))
    with pytest.raises(KafkaClientError, match="fenced"):
        source_over(FakeConsumer([[fatal]])).poll(0.0)


def test_moves_are_recorded_in_order_and_the_revoked_partitions_models_withheld_at_once() -> None:
    withheld: list[set[int]] = []
    recorder = RebalanceRecorder(on_revoked=withheld.append)
    consumer = FakeConsumer([[("assign", {0, 1}), FakeMessage(b"a", 0, 0)], [("revoke", {0, 1})], [("assign", {1})]])
    source = source_over(consumer, recorder)
    batch = source.poll(0.0)  # records after an assignment are all of it: handed over, after the move
    assert batch is not None and batch.values == [b"a"] and source.assigned_partitions == 2
    assert source.rebalances() == [("assigned", {0, 1})]
    assert source.poll(0.0) is None
    assert withheld == [{0, 1}]  # told at once, before the loop drains the queue
    assert source.poll(0.0) is None and source.assigned_partitions == 1
    assert source.rebalances() == [("revoked", {0, 1}), ("assigned", {1})]
    source.close()  # leaving the group runs the revoke callback
    assert consumer.closed and source.rebalances() == [("revoked", {1})]


def test_a_call_that_saw_a_revocation_hands_over_nothing_and_rewinds_what_it_dropped() -> None:
    """Records gathered before the revocation are the old assignment's; after a new assignment they are read again."""
    consumer = FakeConsumer(
        [
            [("assign", {0, 1}), FakeMessage(b"a", 0, 10)],
            [
                FakeMessage(b"old", 0, 11),
                FakeMessage(b"old", 1, 5),
                ("revoke", {0, 1}),
                ("assign", {0}),
                FakeMessage(b"new", 0, 8),
            ],
            [FakeMessage(b"again", 0, 8)],
        ]
    )
    source = source_over(consumer, RebalanceRecorder())
    assert source.poll(0.0) is not None and consumer.stored == {0: 11}
    assert source.poll(0.0) is None and consumer.stored == {0: 11}  # nothing of the mixed call is stored
    assert consumer.sought == {0: 8}  # partition 0 (still ours) reads from the first offset dropped; 1 is not ours
    assert source.rebalances() == [("assigned", {0, 1}), ("revoked", {0, 1}), ("assigned", {0})]
    batch = source.poll(0.0)
    assert batch is not None and batch.values == [b"again"]


def test_poll_waits_in_short_slices_until_its_timeout() -> None:
    consumer = FakeConsumer()
    timeouts: list[float] = []
    original = consumer.consume

    def consume(num_messages: int = 1, timeout: float = -1) -> list[Any]:
        timeouts.append(timeout)
        return original(num_messages, timeout)

    consumer.consume = consume  # type: ignore[method-assign]  # records each wait
    assert source_over(consumer).poll(0.25) is None
    assert len(timeouts) >= 3 and max(timeouts) <= 0.1


# ------------------------------------------------------------------ errors and readiness


def test_a_refused_login_ends_the_service_with_the_one_line_error() -> None:
    health = ClientHealth(SASL)
    source = source_over(FakeConsumer([[FakeMessage(b"a", 0, 0)]]), health=health)
    health.on_error(KafkaError(KafkaError._AUTHENTICATION, "SASL authentication error: invalid credentials"))
    with pytest.raises(KafkaAuthenticationError) as raised:
        source.poll(0.0)
    assert "alice" in str(raised.value) and "SCRAM-SHA-256" in str(raised.value) and "s3cret" not in str(raised.value)


def test_transient_errors_are_logged_once_and_mark_the_group_unreachable(caplog: pytest.LogCaptureFixture) -> None:
    health = ClientHealth({})
    seen: list[bool] = []
    health.on_stats('{"cgrp": {"state": "up"}}')
    seen.append(health.coordinator_known)
    with caplog.at_level(logging.WARNING):
        for _ in range(3):
            health.on_error(KafkaError(KafkaError._ALL_BROKERS_DOWN, "1/1 brokers are down"))
    seen.append(health.coordinator_known)
    health.raise_failure()  # transient: nothing to raise
    health.on_stats('{"cgrp": {"state": "query-coord"}}')
    seen.append(health.coordinator_known)
    health.on_stats('{"cgrp": {"state": "up"}}')
    seen.append(health.coordinator_known)
    assert seen == [True, False, False, True] and caplog.text.count("brokers are down") == 1


def test_a_flush_raises_a_failure_the_producer_reported() -> None:
    health = ClientHealth({})
    sender = ConfluentSender(FakeProducer(), health)
    health.on_error(KafkaError(KafkaError._FATAL, "fatal idempotence error", fatal=True))
    with pytest.raises(KafkaClientError, match="fatal"):
        sender.flush(timeout=1.0)


# ------------------------------------------------------------------ the command line


def parse_monitor(argv: list[str], environ: dict[str, str]) -> argparse.Namespace:
    from decaywatch.consumer import cli

    parser = argparse.ArgumentParser()
    cli.add_parser(parser.add_subparsers(), environ)
    return parser.parse_args(["monitor", *argv])


def test_the_client_comes_from_the_flag_else_the_environment_else_kafka_python() -> None:
    from decaywatch.consumer.cli import settings_from_args

    assert settings_from_args(parse_monitor([], {})).kafka_client == "kafka-python"
    assert settings_from_args(parse_monitor([], {"DECAYWATCH_KAFKA_CLIENT": "confluent"})).kafka_client == "confluent"
    flagged = parse_monitor(["--kafka-client", "kafka-python"], {"DECAYWATCH_KAFKA_CLIENT": "confluent"})
    assert settings_from_args(flagged).kafka_client == "kafka-python"


def test_confluent_without_the_package_is_one_line_with_the_install_command(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import importlib.util

    from decaywatch.consumer import cli

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "confluent_kafka" else real_find_spec(name, *a)
    )
    assert cli.run(parse_monitor(["--kafka-client", "confluent"], {})) == 2
    err = capsys.readouterr().err
    assert err.splitlines() == [
        "decaywatch monitor: --kafka-client confluent needs the confluent-kafka package: pip install 'decaywatch[confluent]'"
    ]


def test_an_unknown_client_in_the_environment_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    from decaywatch.consumer import cli

    assert cli.run(parse_monitor([], {"DECAYWATCH_KAFKA_CLIENT": "librdkafka"})) == 2
    assert "--kafka-client must be one of kafka-python, confluent, not 'librdkafka'" in capsys.readouterr().err
