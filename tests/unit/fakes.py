"""In-memory stand-ins behind the service's protocols (unit tests only: integration tests use Kafka)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from decaywatch.consumer.source import RawBatch
from decaywatch.monitor.schema import Rejection


class MemorySource:
    """Hands out pre-made batches; records what was committed, and when (relative to sink flushes)."""

    def __init__(self, batches: Sequence[Sequence[bytes | None]], journal: list[str]) -> None:
        self._batches = [list(batch) for batch in batches]
        self._offset = 0
        self.committed = 0
        self._polled_to = 0
        self.journal = journal

    def poll(self, timeout_s: float) -> RawBatch | None:
        if not self._batches:
            return None
        values = self._batches.pop(0)
        n = len(values)
        offsets = list(range(self._offset, self._offset + n))
        self._offset += n
        self._polled_to = self._offset
        return RawBatch(
            values=values,
            keys=[b"k"] * n,
            timestamp=np.full(n, 1704067200.0),
            topics=["predictions"] * n,
            partitions=[0] * n,
            offsets=offsets,
        )

    def commit(self) -> None:
        self.committed = self._polled_to
        self.journal.append(f"commit {self.committed}")

    def lag(self) -> dict[tuple[str, int], int]:
        return {("predictions", 0): sum(len(b) for b in self._batches)}

    def rebalances(self) -> list[tuple[str, set[int]]]:
        return []

    def close(self) -> None:
        pass


class MemoryAlertSink:
    def __init__(self, journal: list[str]) -> None:
        self.events: list[dict[str, Any]] = []
        self.journal = journal

    def publish(self, event: dict[str, Any]) -> None:
        self.events.append(event)
        self.journal.append(f"alert {event['status']}")

    def flush(self) -> None:
        self.journal.append("flush alerts")


class MemoryDeadLetters:
    def __init__(self, journal: list[str]) -> None:
        self.records: list[tuple[bytes | None, str, int]] = []
        self.journal = journal

    def publish(
        self, value: bytes | None, key: bytes | None, rejection: Rejection, topic: str, partition: int, offset: int
    ) -> None:
        self.records.append((value, rejection.reason, offset))
        self.journal.append(f"dead letter {offset}")

    def flush(self) -> None:
        self.journal.append("flush dead letters")
