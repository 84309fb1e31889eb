"""Where raw prediction events come from: a protocol, and its Kafka consumer-group implementation.

The service only needs ``poll`` (a batch of raw messages) and ``commit`` (the
batch is fully handled); unit tests pass an in-memory source with the same
shape instead of a broker.  This module holds the kafka-python member (the
default); the librdkafka one, for ``--kafka-client confluent``, is in
``consumer/confluent.py`` and shares the protocol and the rebalance recorder.
"""

from __future__ import annotations

import logging
import queue
from collections.abc import Callable, Mapping, Sequence
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

    def commit(self) -> bool:
        """Everything returned by ``poll`` so far is handled: commit it; False when Kafka refused (a rebalance)."""

    def lag(self) -> dict[tuple[str, int], int]:
        """Messages behind the end of each assigned partition, as far as the source knows."""

    def rebalances(self) -> list[tuple[str, set[int]]]:
        """Partition moves since the last call, in order: ``("revoked", {...})`` or ``("assigned", {...})``."""

    def close(self) -> None: ...


class GroupSource(EventSource, Protocol):
    """A consumer-group member, as the runtime's readiness check reads it (kafka-python's or librdkafka's)."""

    assigned_partitions: int
    coordinator_known: bool


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


class RebalanceRecorder:
    """Records partition moves for the service's loop to act on, whichever client reports them.

    kafka-python 3 runs rebalance callbacks on its IO loop, the one that sends
    heartbeats: a listener that blocks there (restoring state, committing) can
    get the member evicted.  So this one only queues what happened; the loop
    restores and forgets right after ``poll`` returns, before it processes any
    record.  ``on_revoked`` is also told at once, so the old owner can stop
    exporting the partition's models without waiting for the loop.
    (confluent-kafka runs its callbacks inside ``consume`` on the loop's own
    thread; the same queue serves, see ``consumer/confluent.py``.)
    """

    def __init__(self, on_revoked: Callable[[set[int]], object] | None = None) -> None:
        self.events: queue.SimpleQueue[tuple[str, set[int]]] = queue.SimpleQueue()
        self._on_revoked = on_revoked

    def revoked(self, partitions: set[int]) -> None:
        self.events.put(("revoked", partitions))
        if self._on_revoked is not None and partitions:
            self._on_revoked(partitions)

    def assigned(self, partitions: set[int]) -> None:
        self.events.put(("assigned", partitions))

    @property
    def listener(self) -> Any:
        """A kafka-python ``ConsumerRebalanceListener`` that records into this recorder."""
        from kafka import ConsumerRebalanceListener

        recorder = self

        class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]  # kafka-python is untyped: its base is Any
            def on_partitions_revoked(self, revoked: Any) -> None:
                recorder.revoked({tp.partition for tp in revoked})

            def on_partitions_assigned(self, assigned: Any) -> None:
                recorder.assigned({tp.partition for tp in assigned})

        return _Listener()

    def drain(self) -> list[tuple[str, set[int]]]:
        drained = []
        while not self.events.empty():
            drained.append(self.events.get_nowait())
        return drained


FETCH_SIZES: dict[str, int] = {"max_partition_fetch_bytes": 8 << 20, "fetch_max_bytes": 64 << 20}
"""Fetch sizes for a backlog: enough for a poll of 50,000 events of about 160 bytes from one partition.

kafka-python's defaults (1 MiB per partition) fetch about 6,000 such events
per round trip, so a large poll waits on the network nearly every time: raw
consumption measured 53-60k events/s with them and 75-82k with 4 MiB on one
local broker (``python -m tests.benchmarks.bench_throughput``).
"""


class KafkaEventSource:
    """A consumer-group member reading prediction events; offsets are committed only on ``commit``."""

    def __init__(self, consumer: Any, max_records: int, recorder: RebalanceRecorder | None = None) -> None:
        self._consumer = consumer
        self._max_records = max_records
        self._recorder = recorder
        self.assigned_partitions = 0
        """Partitions assigned after the last poll (read by ``/readyz`` from another thread)."""
        self.coordinator_known = False
        """Whether the group coordinator was reachable at the last poll (False while Kafka is down)."""

    @classmethod
    def connect(
        cls,
        topics: str | Sequence[str],
        group: str,
        max_records: int,
        kafka: Mapping[str, Any],
        recorder: RebalanceRecorder | None = None,
        session_timeout_ms: int | None = None,
    ) -> KafkaEventSource:
        from kafka import KafkaConsumer

        extra: dict[str, Any] = {}
        if session_timeout_ms is not None:
            extra = {"session_timeout_ms": session_timeout_ms, "heartbeat_interval_ms": max(500, session_timeout_ms // 4)}
        settings = {**FETCH_SIZES, **extra, **kafka}
        consumer = KafkaConsumer(
            group_id=group, enable_auto_commit=False, auto_offset_reset="earliest", max_poll_records=max_records, **settings
        )
        consumer.subscribe(
            [topics] if isinstance(topics, str) else list(topics), listener=recorder.listener if recorder is not None else None
        )
        return cls(consumer, max_records, recorder)

    def rebalances(self) -> list[tuple[str, set[int]]]:
        return self._recorder.drain() if self._recorder is not None else []

    def _coordinator_known(self) -> bool:
        """kafka-python keeps its assignment while the broker is gone; its coordinator link tells the outage."""
        coordinator = getattr(self._consumer, "_coordinator", None)
        if coordinator is None:
            return True
        try:
            return not coordinator.coordinator_unknown()
        except Exception:  # noqa: BLE001 - a private API: if it changes, readiness falls back to the assignment alone
            return True

    def poll(self, timeout_s: float) -> RawBatch | None:
        polled = self._consumer.poll(timeout_ms=int(timeout_s * 1000), max_records=self._max_records)
        self.assigned_partitions = len(self._consumer.assignment())
        self.coordinator_known = self._coordinator_known()
        if not polled:
            return None
        records = [record for partition_records in polled.values() for record in partition_records]
        return batch_from_records(records)

    def commit(self) -> bool:
        from kafka.errors import CommitFailedError, IllegalGenerationError, RebalanceInProgressError, UnknownMemberIdError

        try:
            self._consumer.commit()
            return True
        except (CommitFailedError, RebalanceInProgressError, IllegalGenerationError, UnknownMemberIdError) as error:
            # The group rebalanced (or is rebalancing) while this batch was handled: its partitions may now belong
            # to another member, which re-reads from the last commit (at least once; with state, events a restored
            # checkpoint already holds are skipped).  kafka-python 3 raises the broker's error for a commit made
            # while the group rebalances; it ended the monitor before (a fresh-clone run, test_scale_out).
            log.warning("offset commit failed in a rebalance; retried at the next checkpoint: %s", error)
            return False

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
