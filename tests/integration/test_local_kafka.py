"""The local broker is a real Kafka: clients round-trip through it, and its lifecycle is idempotent and durable."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from kafka import KafkaConsumer, TopicPartition
from kafka.admin import KafkaAdminClient

from decaywatch.deploy.kafka.runner import BrokerSettings, LocalKafka, ToolMissingError, free_ports
from tests.helpers import TopicFactory, produce, skip_unless_ci, unique_name, wait_until


def consume(bootstrap: str, topic: str, count: int, timeout: float = 30.0) -> list[bytes]:
    """Read ``count`` records from partition 0 from the beginning (no group: nothing to rebalance)."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False)
    try:
        consumer.assign([TopicPartition(topic, 0)])
        consumer.seek_to_beginning()
        received: list[bytes] = []

        def all_received() -> bool:
            for records in consumer.poll(timeout_ms=200).values():
                received.extend(record.value for record in records)
            return len(received) >= count

        wait_until(all_received, timeout=timeout, interval=0, message=f"{count} records from {topic}")
        return received
    finally:
        consumer.close()


def test_fixture_broker_round_trips_records(kafka_bootstrap: str, topic_factory: TopicFactory) -> None:
    topic = topic_factory()
    values = [f"prediction-{i}".encode() for i in range(50)]
    produce(kafka_bootstrap, topic, ((None, value) for value in values))
    assert consume(kafka_bootstrap, topic, len(values)) == values


@pytest.fixture
def second_broker(tmp_path: Path) -> Iterator[LocalKafka]:
    """A LocalKafka of its own (free ports, tmp data dir, shared jar cache), always stopped afterwards."""
    port, controller_port = free_ports(2)
    settings = BrokerSettings(
        data_dir=tmp_path / "broker",
        cache_dir=BrokerSettings.from_environment().cache_dir,
        port=port,
        controller_port=controller_port,
        heap_mb=256,
    )
    kafka = LocalKafka(settings)
    try:
        yield kafka
    finally:
        kafka.stop()


@pytest.mark.timeout(240)
def test_lifecycle_is_idempotent_and_restart_keeps_data(second_broker: LocalKafka) -> None:
    kafka = second_broker
    settings = kafka.settings
    try:
        first = kafka.start(timeout=120)
    except ToolMissingError as exc:
        skip_unless_ci(f"cannot run a local Kafka broker: {exc}")
    assert first.bootstrap_servers == settings.bootstrap_servers
    assert not first.already_running
    meta = settings.storage_dir / "meta.properties"
    assert meta.is_file()
    formatted = meta.read_text()
    cluster_id = settings.cluster_id_path.read_text().strip()
    assert cluster_id in formatted

    status = kafka.status()
    assert status.running and status.pid == first.pid
    assert status.bootstrap_servers == settings.bootstrap_servers
    assert status.log_path == settings.log_path and "Kafka Server started" in settings.log_path.read_text()

    again = kafka.start(timeout=30)
    assert again.already_running and again.pid == first.pid

    # A second runner object (as a separate `decaywatch kafka start` would be) also sees it running.
    assert LocalKafka(settings).start(timeout=30).pid == first.pid

    topic = unique_name("survives-restart")
    admin = KafkaAdminClient(bootstrap_servers=first.bootstrap_servers)
    try:
        admin.create_topics({topic: {"num_partitions": 1, "replication_factor": 1}}, wait_for_metadata=True)
    finally:
        admin.close()
    produce(first.bootstrap_servers, topic, [(None, b"before-restart")])

    assert kafka.stop(timeout=30) is True
    assert not kafka.status().running
    assert not settings.pid_path.exists()
    assert kafka.stop() is False

    restarted = kafka.start(timeout=120)
    assert not restarted.already_running and restarted.pid != first.pid
    assert meta.read_text() == formatted, "restart must not re-format storage"
    assert settings.cluster_id_path.read_text().strip() == cluster_id

    admin = KafkaAdminClient(bootstrap_servers=restarted.bootstrap_servers)
    try:
        wait_until(lambda: topic in admin.list_topics(), timeout=30, message=f"topic {topic} after restart")
    finally:
        admin.close()
    assert consume(restarted.bootstrap_servers, topic, 1) == [b"before-restart"]

    assert kafka.stop() is True
    assert kafka.stop() is False
