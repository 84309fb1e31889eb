"""Fixtures of the integration tests: the Kafka client library under the service.

Tests that take ``kafka_client`` run once on kafka-python (the default) and
once on librdkafka (``--kafka-client confluent``): the same assertions, on the
same broker, hold for both.  Without the ``decaywatch[confluent]`` extra the
confluent runs are skipped locally and fail under CI, where both clients must
be tested.
"""

from __future__ import annotations

import importlib.util

import pytest

from tests.helpers import skip_unless_ci

KAFKA_CLIENTS = ("kafka-python", "confluent")


@pytest.fixture(params=KAFKA_CLIENTS)
def kafka_client(request: pytest.FixtureRequest) -> str:
    """The client the test's monitor runs on (``MonitorSettings.kafka_client``, ``--kafka-client``)."""
    client = str(request.param)
    if client == "confluent" and importlib.util.find_spec("confluent_kafka") is None:
        skip_unless_ci("confluent-kafka is not installed (pip install 'decaywatch[confluent]')")
    return client
