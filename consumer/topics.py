"""The input topics as the monitor needs them: present, and co-partitioned when labels come on their own topic.

A model's state lives with its partition (``changelog.py``): the member that
owns partition *p* of the predictions topic must also get that model's label
events, so the labels topic must have the same number of partitions and be
keyed by model id like the predictions (Kafka's default partitioner then
puts a model's predictions and labels in the same partition number), and the
group assigns partition *p* of both topics to one member (the range
assignor, first in both clients' defaults, does).  The monitor checks the
partition counts at start and refuses with one line; the keys it cannot
check, and says so in the README.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any

log = logging.getLogger(__name__)


class TopicLayoutError(Exception):
    """An input topic is missing, or the labels topic is not co-partitioned with the predictions topic."""


def partition_counts(kafka: Mapping[str, Any], topics: Sequence[str], wait_s: float = 30.0) -> dict[str, int]:
    """Each topic's partition count (waiting up to ``wait_s`` for metadata); a missing topic raises."""
    from kafka import KafkaConsumer

    probe = KafkaConsumer(enable_auto_commit=False, **kafka)  # no group: without this kafka-python warns on every start
    try:
        deadline = time.monotonic() + wait_s
        counts: dict[str, int] = {}
        for topic in topics:
            partitions = probe.partitions_for_topic(topic)
            while not partitions and time.monotonic() < deadline:
                probe.topics()  # refresh metadata
                partitions = probe.partitions_for_topic(topic)
            if not partitions:
                raise TopicLayoutError(f"input topic {topic!r} does not exist: create it before starting the monitor")
            counts[topic] = len(partitions)
        return counts
    finally:
        probe.close()


def check_copartitioned(counts: Mapping[str, int], topic: str, labels_topic: str) -> None:
    """Refuse a labels topic with another partition count than the predictions topic.

    >>> check_copartitioned({"predictions": 3, "labels": 3}, "predictions", "labels")
    >>> check_copartitioned({"predictions": 3, "labels": 2}, "predictions", "labels")
    Traceback (most recent call last):
    ...
    decaywatch.consumer.topics.TopicLayoutError: labels topic 'labels' has 2 partitions and predictions topic 'predictions' has 3: they must be co-partitioned (the same partition count, both keyed by model id)
    """
    if labels_topic == topic:
        raise TopicLayoutError(
            f"--labels-topic {labels_topic!r} is the predictions topic: leave it out to read labels from there"
        )
    if counts[labels_topic] != counts[topic]:
        raise TopicLayoutError(
            f"labels topic {labels_topic!r} has {counts[labels_topic]} partitions and predictions topic {topic!r} has "
            f"{counts[topic]}: they must be co-partitioned (the same partition count, both keyed by model id)"
        )


def create_missing(kafka: Mapping[str, Any], topics: Mapping[str, tuple[int, Mapping[str, str]]]) -> None:
    """Create each topic (name: partitions, where -1 is the broker's default, and configs) that does not exist yet.

    The outputs are created up front so the first alert does not wait for
    (and log) a metadata miss; a user without the right to create topics gets
    them auto-created by the broker, or has created them: that is not an error.
    """
    from kafka.admin import KafkaAdminClient
    from kafka.errors import KafkaError, TopicAlreadyExistsError

    admin = KafkaAdminClient(**kafka)
    try:
        for name, (partitions, configs) in topics.items():
            try:
                spec = {"num_partitions": partitions, "replication_factor": -1, "configs": dict(configs)}
                admin.create_topics({name: spec}, wait_for_metadata=True)
                log.info("created topic %s", name)
            except TopicAlreadyExistsError:
                pass
            except KafkaError as error:  # no right to create topics, say: the broker or an operator does it
                log.info("topic %s not created here (%s)", name, error)
    finally:
        admin.close()
