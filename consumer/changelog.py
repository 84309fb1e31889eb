"""Model state that moves with its partition: a compacted changelog topic, as Kafka Streams keeps one.

After each batch the service writes the state of every model the batch
touched (``monitor.state.dump``) to the changelog, keyed by model id, in the
same partition number as the model's input partition, with the input offsets
of the last events the state includes (on the predictions topic, and on the
labels topic when labels come on their own, co-partitioned topic); it
flushes before committing offsets.
When a partition is assigned, the new owner reads that changelog partition
to its end (compaction keeps it to about one record per model) and restores
each model before processing a single new event; events at or below a model's
included offsets are skipped, so a batch whose state was written just before
a crash is not counted twice.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Protocol

from decaywatch.consumer.ledger import NONE, Placement

log = logging.getLogger(__name__)

OFFSET_HEADER: Final = "decaywatch.offset"
LABEL_OFFSET_HEADER: Final = "decaywatch.label-offset"
"""The labels topic's offset, on checkpoints of models with label events on their own topic."""
STATE_TOPIC_CONFIG: Final = {
    "cleanup.policy": "compact",
    "segment.ms": "60000",  # roll segments often, so the cleaner can compact them soon
    "min.cleanable.dirty.ratio": "0.1",
    "max.message.bytes": str(8 * 1024 * 1024),  # a full default model is ~150 KB; leave room for large windows
}


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """One model's latest state as stored: its input partition, the last input offsets it includes, the bytes."""

    partition: int
    offset: int
    state: bytes
    label_offset: int = NONE
    """On the labels topic (``NONE``: none, or no labels topic)."""


class StateStore(Protocol):
    def write(self, model: str, placement: Placement, state: bytes) -> None: ...

    def flush(self, timeout_s: float | None = None) -> None:
        """Wait until every write is durable; raises when ``timeout_s`` (default: the store's own) runs out."""

    def read(self, partitions: Iterable[int]) -> dict[str, Checkpoint]: ...


class MemoryStateStore:
    """The changelog in memory (unit tests, and ``--no-state``-style runs that still want the service's shape)."""

    def __init__(self) -> None:
        self.records: dict[str, Checkpoint] = {}

    def write(self, model: str, placement: Placement, state: bytes) -> None:
        partition, offset, label_offset = placement
        self.records[model] = Checkpoint(partition, offset, state, label_offset)

    def flush(self, timeout_s: float | None = None) -> None:
        pass

    def read(self, partitions: Iterable[int]) -> dict[str, Checkpoint]:
        wanted = set(partitions)
        return {model: c for model, c in self.records.items() if c.partition in wanted}


class KafkaStateStore:
    """The changelog on a compacted Kafka topic with as many partitions as the input topic.

    Writes go through the service's output producer, whichever client it is
    (``send`` with an explicit partition, ``flush`` that raises when it runs
    out of time), so they share its ordering and delivery settings.  Restoring
    uses kafka-python on either client: it happens once per rebalance, reads
    the same bytes, and keeps one proven path for the one place where a
    mistake loses state.  The topic itself is created at start with the
    other outputs (``consumer/topics.py``: compacted, ``STATE_TOPIC_CONFIG``).
    """

    def __init__(self, sender: Any, topic: str, kafka: Mapping[str, Any], flush_timeout_s: float = 60.0) -> None:
        self._sender = sender
        self.topic = topic
        self._kafka = dict(kafka)
        self._flush_timeout_s = flush_timeout_s

    def write(self, model: str, placement: Placement, state: bytes) -> None:
        partition, offset, label_offset = placement
        headers = [(OFFSET_HEADER, str(offset).encode())]
        if label_offset != NONE:
            headers.append((LABEL_OFFSET_HEADER, str(label_offset).encode()))
        self._sender.send(self.topic, key=model.encode(), value=state, partition=partition, headers=headers)

    def flush(self, timeout_s: float | None = None) -> None:
        self._sender.flush(timeout=self._flush_timeout_s if timeout_s is None else timeout_s)

    def read(self, partitions: Iterable[int], timeout_s: float = 120.0) -> dict[str, Checkpoint]:
        """Every model's latest checkpoint in these changelog partitions (read to their current end)."""
        from kafka import KafkaConsumer, TopicPartition

        wanted = [TopicPartition(self.topic, p) for p in sorted(set(partitions))]
        if not wanted:
            return {}
        consumer = KafkaConsumer(
            group_id=None, enable_auto_commit=False, max_partition_fetch_bytes=16 * 1024 * 1024, **self._kafka
        )
        latest: dict[str, Checkpoint] = {}
        try:
            consumer.assign(wanted)
            consumer.seek_to_beginning(*wanted)
            end = consumer.end_offsets(wanted)
            remaining = {tp for tp in wanted if end[tp] > 0}
            deadline = time.monotonic() + timeout_s
            while remaining:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"state changelog {self.topic} not read to its end within {timeout_s:.0f} s")
                for tp, records in consumer.poll(timeout_ms=500, max_records=10_000).items():
                    for record in records:
                        if record.offset >= end[tp]:
                            continue
                        model = record.key.decode()
                        if record.value is None:
                            latest.pop(model, None)  # a tombstone: the model was forgotten
                            continue
                        headers = dict(record.headers)
                        label_offset = int(headers.get(LABEL_OFFSET_HEADER, NONE))
                        latest[model] = Checkpoint(tp.partition, int(headers[OFFSET_HEADER]), record.value, label_offset)
                remaining = {tp for tp in remaining if consumer.position(tp) < end[tp]}
        finally:
            consumer.close(autocommit=False)
        return latest
