"""Where raw prediction events come from: a protocol, and its Kafka consumer-group implementation.

The service only needs ``poll`` (a batch of raw messages) and ``commit`` (the
batch is fully handled); unit tests pass an in-memory source with the same
shape instead of a broker.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RawBatch:
    """Messages of one poll, as columns. ``timestamp`` is the Kafka message time in epoch seconds."""

    values: list[bytes | None]
    keys: list[bytes | None]
    timestamp: npt.NDArray[np.float64]
    topics: list[str]
    partitions: list[int]
    offsets: list[int]

    def __len__(self) -> int:
        return len(self.values)


class EventSource(Protocol):
    def poll(self, timeout_s: float) -> RawBatch | None:
        """The next batch, or ``None`` when nothing arrived before the timeout."""

    def commit(self) -> None:
        """Everything returned by ``poll`` so far is handled: commit it."""

    def lag(self) -> dict[tuple[str, int], int]:
        """Messages behind the end of each assigned partition, as far as the source knows."""

    def close(self) -> None: ...


def batch_from_records(records: Sequence[Any]) -> RawBatch:
    """Columns from kafka-python ``ConsumerRecord`` objects (or anything with the same attributes)."""
    return RawBatch(
        values=[r.value for r in records],
        keys=[r.key for r in records],
        timestamp=np.fromiter((r.timestamp for r in records), dtype=np.float64, count=len(records)) / 1000.0,
        topics=[r.topic for r in records],
        partitions=[r.partition for r in records],
        offsets=[r.offset for r in records],
    )


class KafkaEventSource:
    """A consumer-group member reading prediction events; offsets are committed only on ``commit``."""

    def __init__(self, consumer: Any, max_records: int) -> None:
        self._consumer = consumer
        self._max_records = max_records
        self.assigned_partitions = 0
        """Partitions assigned after the last poll (read by ``/readyz`` from another thread)."""

    @classmethod
    def connect(
        cls, topic: str, group: str, max_records: int, kafka: Mapping[str, Any]
    ) -> KafkaEventSource:
        from kafka import KafkaConsumer

        consumer = KafkaConsumer(
            topic,
            group_id=group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=max_records,
            **kafka,
        )
        return cls(consumer, max_records)

    def poll(self, timeout_s: float) -> RawBatch | None:
        polled = self._consumer.poll(timeout_ms=int(timeout_s * 1000), max_records=self._max_records)
        self.assigned_partitions = len(self._consumer.assignment())
        if not polled:
            return None
        records = [record for partition_records in polled.values() for record in partition_records]
        return batch_from_records(records)

    def commit(self) -> None:
        from kafka.errors import CommitFailedError

        try:
            self._consumer.commit()
        except CommitFailedError as error:
            # The group rebalanced while this batch was handled: its partitions now
            # belong to another member, which re-reads from the last commit (at least once).
            log.warning("offset commit failed after a rebalance; the batch will be re-read: %s", error)

    def lag(self) -> dict[tuple[str, int], int]:
        lags: dict[tuple[str, int], int] = {}
        for tp in self._consumer.assignment():
            end = self._consumer.highwater(tp)
            if end is None:
                continue  # no fetch response yet for this partition
            lags[(tp.topic, tp.partition)] = max(0, end - self._consumer.position(tp))
        return lags

    def close(self) -> None:
        self._consumer.close(autocommit=False)
