"""Shared fixtures: one real Kafka broker per test session, and unique topics on it.

The broker is the real thing (Apache Kafka's jars on a local JVM, see
deploy/kafka/runner.py), because the monitor's behaviour under real consumer
groups, offsets and rebalances is what the integration tests are for.

* ``DECAYWATCH_TEST_BOOTSTRAP=host:port`` points the tests at an existing broker
  instead (nothing is started or stopped then).
* Without Java or Maven the Kafka tests are skipped locally, but fail under CI
  (``CI`` set): a CI run that silently skips its integration tests proves nothing.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from kafka.admin import KafkaAdminClient

from tests.helpers import TopicFactory, start_test_broker, unique_name

log = logging.getLogger(__name__)

TESTS_DIR = Path(__file__).resolve().parent
#: Tests under these directories get the marker automatically (markers are declared in pyproject.toml).
DIRECTORY_MARKERS = {"integration": pytest.mark.integration, "e2e": pytest.mark.e2e}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        try:
            relative = item.path.resolve().relative_to(TESTS_DIR)
        except ValueError:
            continue
        marker = DIRECTORY_MARKERS.get(relative.parts[0]) if relative.parts else None
        if marker is not None:
            item.add_marker(marker)


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``host:port`` of a Kafka broker that lives for the whole session.

    A local broker gets free ports and a fresh data dir, but shares the jar
    cache with every other run (``$DECAYWATCH_CACHE_DIR`` or ~/.cache/decaywatch),
    so only the first run ever downloads.
    """
    external = os.environ.get("DECAYWATCH_TEST_BOOTSTRAP", "").strip()
    if external:
        yield external
        return
    kafka, info = start_test_broker(tmp_path_factory.mktemp("kafka-broker"))
    log.info("Test Kafka broker at %s (started in %.1f s)", info.bootstrap_servers, info.started_in_seconds)
    try:
        yield info.bootstrap_servers
    finally:
        kafka.stop()


@pytest.fixture(scope="session")
def kafka_admin(kafka_bootstrap: str) -> Iterator[KafkaAdminClient]:
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap, client_id="decaywatch-tests")
    try:
        yield admin
    finally:
        admin.close()


@pytest.fixture
def topic_factory(kafka_admin: KafkaAdminClient, request: pytest.FixtureRequest) -> Iterator[TopicFactory]:
    """``topic_factory(partitions=1, prefix=None) -> name``: create a fresh topic, ready to use.

    Names derive from the test's name plus a random suffix, so tests never see
    each other's data; the topics are deleted (best effort) after the test.
    """
    created: list[str] = []

    def create(partitions: int = 1, prefix: str | None = None) -> str:
        name = unique_name(prefix or request.node.name)
        kafka_admin.create_topics(
            {name: {"num_partitions": partitions, "replication_factor": 1}},
            wait_for_metadata=True,
        )
        created.append(name)
        return name

    yield create
    if created:
        try:
            kafka_admin.delete_topics(created)
        except Exception as exc:  # cleanup only: a leftover topic must not fail the test
            log.warning("could not delete test topics %s: %s", created, exc)
