"""The alerts topic is deleted and created again while models fire and recover: each model's events stay in order.

The real service loop (a Kafka consumer group in, the Kafka sinks out) runs on
the session broker; the test steps it itself, so it knows which transitions
were published before, during and after the outage.  While the topic is gone
``send`` raises after ``max_block_ms`` (no metadata) or its batch expires after
``delivery_timeout_ms``; the sink keeps every event queued in order, the loop
keeps consuming, and once the topic is back each model's events land in the
order of its transitions: a ``firing`` that failed during the outage before
the ``resolved`` of its episode published after it.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from typing import Any

import orjson
import pytest
from kafka import KafkaConsumer, KafkaProducer
from kafka.admin import KafkaAdminClient, NewTopic
from kafka.errors import TopicAlreadyExistsError

from decaywatch.consumer.metrics import ServiceMetrics
from decaywatch.consumer.service import MonitorService
from decaywatch.consumer.sinks import KafkaAlertSink, KafkaDeadLetterSink
from decaywatch.consumer.source import EventSource, KafkaEventSource
from decaywatch.monitor.config import ModelPolicy, MonitorConfig
from decaywatch.monitor.engine import Monitor
from tests.helpers import unique_name, wait_until

log = logging.getLogger(__name__)

POLICY = ModelPolicy(baseline=0.85, windows=(50,), min_samples=20, decision="window")
"""60 wrong predictions fire an alert, 60 right ones resolve it."""

OUTPUT_PRODUCER: dict[str, Any] = {
    "linger_ms": 5,
    "max_block_ms": 500,  # a send to a topic without metadata raises after this, not after 60 s
    "enable_idempotence": False,  # kafka-python 3.0.12 wedges an idempotent producer after an expired retried batch
    "acks": "all",
    "max_in_flight_requests_per_connection": 1,  # with retries, what keeps one partition's records in order
    "delivery_timeout_ms": 3000,  # short, so the outage fails sends within the test (production: the default)
    "request_timeout_ms": 1000,
    "retry_backoff_ms": 100,
}
"""The output producer the runtime should build (the timeouts only shortened for the test)."""
CONFLUENT_TIMEOUTS: dict[str, Any] = {
    "message.timeout.ms": 3000,  # as delivery_timeout_ms above
    "request.timeout.ms": 1000,
    "retry.backoff.ms": 100,
    "allow.auto.create.topics": False,  # the test broker creates topics on request: the deleted topic must stay gone
}
"""The same shortening for the librdkafka producer the runtime builds (``consumer.confluent.producer_config``)."""


def prediction(model: str, correct: bool) -> tuple[bytes, bytes]:
    return model.encode(), orjson.dumps({"model": model, "prediction": 1, "label": int(correct)})


class Harness:
    """Feeds the predictions topic and steps the service; remembers each model's published transitions."""

    def __init__(self, bootstrap: str, topic: str, alerts_topic: str, dlq: str, kafka_client: str = "kafka-python") -> None:
        self.topic, self.alerts_topic, self.dlq = topic, alerts_topic, dlq
        self.produced = 0
        self.events = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
        kafka = {"bootstrap_servers": [bootstrap]}
        self.output: Any  # a kafka-python KafkaProducer or the librdkafka adapter: the sinks' Sender either way
        self.source: EventSource
        if kafka_client == "confluent":
            from confluent_kafka import Producer

            from decaywatch.consumer.confluent import ConfluentEventSource, ConfluentSender, producer_config

            self.output = ConfluentSender(Producer({**producer_config(kafka), **CONFLUENT_TIMEOUTS}))
            self.source = ConfluentEventSource.connect(topic, unique_name("output-order"), 500, kafka)
        else:
            self.output = KafkaProducer(bootstrap_servers=bootstrap, **OUTPUT_PRODUCER)
            # kafka-python 3.0.12 does not hand allow_auto_create_topics to its metadata client, and the test broker
            # creates topics on request: without this the producer's next metadata request would bring the topic back.
            assert "allow_auto_create_topics" in self.output._metadata.config
            self.output._metadata.config["allow_auto_create_topics"] = False
            self.source = KafkaEventSource.connect(topic, unique_name("output-order"), 500, kafka)
        self.alerts = KafkaAlertSink(self.output, alerts_topic)
        self.dead_letters = KafkaDeadLetterSink(self.output, dlq)
        self.published: dict[str, list[tuple[str, str]]] = defaultdict(list)
        self.slowest_step_s = 0.0
        self.service = MonitorService(
            self.source,
            Monitor(MonitorConfig(POLICY)),
            self.alerts,
            self.dead_letters,
            ServiceMetrics(),
            clock=time.time,
            on_alert=lambda event: self.published[str(event["model"])].append((str(event["alert_id"]), str(event["status"]))),
        )

    def produce(self, records: list[tuple[bytes, bytes]]) -> None:
        for key, value in records:
            self.events.send(self.topic, value=value, key=key)
        self.events.flush(timeout=10)
        self.produced += len(records)

    def step(self) -> None:
        started = time.monotonic()
        self.service.step(timeout_s=0.2)
        self.slowest_step_s = max(self.slowest_step_s, time.monotonic() - started)

    def consume(self, records: list[tuple[bytes, bytes]], until: Callable[[], bool] = lambda: True) -> None:
        """Produce ``records`` and step until all is consumed and ``until`` holds (a filler event per step keeps
        flushes coming: the service flushes only after a batch)."""
        self.produce(records)

        def done() -> bool:
            if self.service.totals.messages >= self.produced and not until():
                self.produce([prediction("steady", True)])
            self.step()
            return self.service.totals.messages >= self.produced and until()

        wait_until(done, timeout=30, interval=0.0, message=f"{self.produced} messages consumed")

    def close(self) -> None:
        self.source.close()
        for producer in (self.events, self.output):
            try:
                producer.close(timeout=5)
            except Exception as error:  # a test that failed mid-outage leaves records unsent: report that, not this
                log.warning("could not close a producer cleanly: %r", error)


@pytest.fixture
def harness(kafka_bootstrap: str, topic_factory: Callable[..., str], kafka_client: str) -> Iterator[Harness]:
    h = Harness(
        kafka_bootstrap,
        topic_factory(),
        topic_factory(partitions=2, prefix="alerts"),
        topic_factory(prefix="dlq"),
        kafka_client,
    )
    try:
        yield h
    finally:
        h.close()


def read_all(bootstrap: str, topic: str, expected: int) -> list[Any]:
    consumer = KafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", group_id=None)
    records: list[Any] = []
    try:

        def enough() -> bool:
            for batch in consumer.poll(timeout_ms=200).values():
                records.extend(batch)
            return len(records) >= expected

        wait_until(enough, timeout=20, message=f"{expected} records on {topic}")
        for batch in consumer.poll(timeout_ms=500).values():
            records.extend(batch)
    finally:
        consumer.close()
    return records


def topic_gone(admin: KafkaAdminClient, topic: str) -> bool:
    return topic not in admin.list_topics()


def create_again(admin: KafkaAdminClient, topic: str, partitions: int) -> bool:
    try:
        admin.create_topics([NewTopic(topic, partitions, 1)])
    except TopicAlreadyExistsError:  # the deletion is still being carried out
        return False
    return True


def test_each_models_alerts_stay_in_transition_order_across_an_alerts_topic_outage(
    harness: Harness, kafka_admin: KafkaAdminClient, kafka_bootstrap: str
) -> None:
    alerts_topic = harness.alerts_topic
    harness.consume([prediction("c", False)] * 60 + [prediction("c", True)] * 60)  # an episode before the outage
    harness.consume([], until=lambda: harness.alerts.pending == 0)
    lost = {model: len(events) for model, events in harness.published.items()}  # deleted with the topic

    kafka_admin.delete_topics([alerts_topic])  # the producer still holds the topic's metadata: its first send expires
    wait_until(lambda: topic_gone(kafka_admin, alerts_topic), timeout=15, message="the alerts topic to be gone")

    harness.consume([prediction("a", False)] * 60 + [prediction("b", False)] * 60)  # a and b fire
    harness.consume([prediction("a", True)] * 60)  # a recovers: its resolution waits behind its firing
    harness.consume([(b"x", b"{broken")] * 3)  # dead letters go on: their topic is fine
    harness.consume([], until=lambda: harness.alerts.failed_sends >= 3)
    assert harness.alerts.pending == 3 and harness.service.totals.messages == harness.produced
    assert harness.slowest_step_s < 5.0, "a missing topic must not block the loop for the producer's max_block_ms per send"
    assert harness.dead_letters.pending == 0

    wait_until(lambda: create_again(kafka_admin, alerts_topic, 2), timeout=30, message="the alerts topic to be created again")

    harness.consume([prediction("b", True)] * 60)  # b's resolution is published after the topic is back
    harness.consume([prediction("a", False)] * 60 + [prediction("a", True)] * 60)  # a second episode of a
    harness.consume([], until=lambda: harness.alerts.pending == 0)

    expected = {"a": ["firing", "resolved", "firing", "resolved"], "b": ["firing", "resolved"], "c": ["firing", "resolved"]}
    assert {model: [status for _, status in events] for model, events in harness.published.items()} == expected
    since_outage = {model: events[lost.get(model, 0) :] for model, events in harness.published.items()}
    records = read_all(kafka_bootstrap, alerts_topic, expected=6)
    delivered: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for record in records:
        event = orjson.loads(record.value)
        transition = (event["alert_id"], event["status"])
        if transition not in delivered[event["model"]]:  # at least once: a consumer deduplicates
            delivered[event["model"]].append(transition)
    assert delivered == {model: events for model, events in since_outage.items() if events}
    for events in delivered.values():  # every episode: firing, then its resolution
        for (fired, firing), (resolved, resolution) in zip(events[::2], events[1::2], strict=True):
            assert (firing, resolution) == ("firing", "resolved") and fired == resolved

    letters = read_all(kafka_bootstrap, harness.dlq, expected=3)
    offsets = [int(dict(r.headers)["decaywatch.source.offset"]) for r in letters]
    assert offsets == sorted(offsets) and len(set(offsets)) == 3
