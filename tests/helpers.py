"""Small helpers shared by the test suites (``from tests.helpers import wait_until``).

Every wait in the tests goes through :func:`wait_until`, so none can hang past
its deadline and every timeout says what it was waiting for.  Every test that
sends records to Kafka does it through :func:`produce`, and every test that
reads a monitor's ``/metrics`` page through :func:`scrape`.
"""

from __future__ import annotations

import os
import re
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, Protocol, TypeVar

import pytest

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric

    from decaywatch.deploy.kafka.runner import BrokerInfo, LocalKafka
    from decaywatch.producer.publisher import PublishReport, Record

T = TypeVar("T")
SampleKey = tuple[str, tuple[tuple[str, str], ...]]
"""A metric sample's name and its labels, sorted: ``("decaywatch_events_total", (("model", "m"),))``."""


class TopicFactory(Protocol):
    """The ``topic_factory`` fixture: create a fresh topic on the session broker and return its name."""

    def __call__(self, partitions: int = 1, prefix: str | None = None) -> str: ...


def wait_until(
    predicate: Callable[[], T | None],
    timeout: float = 10.0,
    interval: float = 0.05,
    message: str = "condition",
) -> T:
    """Poll ``predicate`` until it returns something truthy and return that value.

    Raises :class:`AssertionError` naming ``message`` (and the last value seen)
    once ``timeout`` seconds pass; the predicate is always tried at least once.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {message} (last value: {value!r})")
        time.sleep(interval)


def unique_name(prefix: str = "test") -> str:
    """A name that is a valid Kafka topic / group id and unique per call (legal chars: [A-Za-z0-9._-])."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "-", prefix).strip("-.")[:180] or "test"
    return f"{cleaned}-{uuid.uuid4().hex[:10]}"


def under_ci() -> bool:
    """True when ``CI`` is set to anything but an explicit no (GitHub Actions, GitLab, ... set CI=true)."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def skip_unless_ci(reason: str) -> NoReturn:
    """Skip for a missing prerequisite locally, but fail under CI, where a silent skip would prove nothing."""
    if under_ci():
        pytest.fail(f"{reason} (CI is set, so this is a failure, not a skip)", pytrace=False)
    pytest.skip(reason)


def start_test_broker(data_dir: Path, ports: int = 2, **settings: Any) -> tuple[LocalKafka, BrokerInfo]:
    """A local broker of the test's own on free ports, sharing the jar cache; skipped locally without Java
    or Maven, failed loudly under CI or when it does not start.

    ``ports`` free ports go to ``port`` and ``controller_port`` (and ``sasl_port`` with 3); ``settings``
    are further ``BrokerSettings`` fields.
    """
    from decaywatch.deploy.kafka.runner import BrokerSettings, KafkaRunnerError, LocalKafka, ToolMissingError, free_ports

    named: dict[str, Any] = dict(zip(("port", "controller_port", "sasl_port"), free_ports(ports), strict=False))  # 2 or 3
    broker = LocalKafka(
        BrokerSettings(data_dir=data_dir, cache_dir=BrokerSettings.from_environment().cache_dir, **named, **settings)
    )
    try:
        return broker, broker.start(timeout=120)
    except ToolMissingError as exc:
        skip_unless_ci(f"cannot run a local Kafka broker: {exc} (or set DECAYWATCH_TEST_BOOTSTRAP=host:port)")
        raise  # unreachable: skip_unless_ci skips or fails
    except KafkaRunnerError as exc:
        pytest.fail(f"local Kafka broker failed to start: {exc}", pytrace=False)


def produce(
    bootstrap: str,
    topic: str,
    records: Iterable[Record],
    *,
    rate: float | None = None,
    flush_timeout: float = 60.0,
    check: bool = True,
    **producer_settings: Any,
) -> PublishReport:
    """Send ``(key, value)`` records to ``topic`` with the project's own producer, in order, and report.

    The records go through ``decaywatch.producer.publisher`` as ``decaywatch
    produce`` sends them: one idempotent producer, batched, paced to ``rate``
    events/s when given, one flush at the end.  ``producer_settings`` are
    further ``KafkaProducer`` settings.  With ``check`` (the default) every
    delivery must have succeeded; ``check=False`` leaves that to the caller
    (e.g. when sending from a thread, whose assertion would go unseen).
    """
    from decaywatch.producer.publisher import make_kafka_producer, publish

    producer = make_kafka_producer(bootstrap, **producer_settings)
    try:
        report = publish(records, producer, topic, rate, flush_timeout=flush_timeout)
    finally:
        producer.close(timeout=10)
    if check:
        assert report.ok, (
            f"producing to {topic} failed: {report.failed} of {report.total} ({report.errors}; flush: {report.flush_error})"
        )
    return report


def samples(families: Iterable[Metric]) -> dict[SampleKey, float]:
    """Every sample of some metric families (parsed from a page, or collected from a registry), by name and labels."""
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value for family in families for sample in family.samples}


def scrape(url: str, timeout: float = 5.0) -> dict[SampleKey, float]:
    """Every sample of the Prometheus page at ``url`` (a monitor's ``/metrics``), by name and sorted labels."""
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(url, timeout=timeout) as response:
        text = response.read().decode()
    return samples(text_string_to_metric_families(text))
