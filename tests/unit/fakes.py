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

    def commit(self) -> bool:
        self.committed = self._polled_to
        self.journal.append(f"commit {self.committed}")
        return True

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


Where = tuple[str, int]
"""A topic and a partition."""


class PartitionedSource:
    """Co-partitioned topics in memory: a log per (topic, partition), positions, commits and scripted rebalances.

    Each poll reads up to ``chunk[topic]`` records of every assigned partition
    of every topic (so two topics can be read at different paces).
    """

    def __init__(self, logs: dict[Where, list[bytes]], chunk: dict[str, int] | None = None) -> None:
        self.logs = logs
        self.topics = list(dict.fromkeys(topic for topic, _p in logs))  # in the order the logs name them
        self.chunk = chunk or dict.fromkeys(self.topics, 30)
        self.committed = dict.fromkeys(logs, 0)
        self.position = dict(self.committed)
        self.assigned: set[int] = set()
        self.events: list[tuple[str, set[int]]] = []

    def assign(self, partitions: set[int]) -> None:
        """A rebalance: positions of (re)assigned partitions restart at their committed offsets, as in Kafka."""
        self.events += [("revoked", set(self.assigned)), ("assigned", set(partitions))]
        self.assigned = set(partitions)
        for where in self.logs:
            if where[1] in partitions:
                self.position[where] = self.committed[where]

    def poll(self, timeout_s: float) -> RawBatch | None:
        values: list[bytes | None] = []
        topics: list[str] = []
        partitions: list[int] = []
        offsets: list[int] = []
        for p in sorted(self.assigned):
            for topic in self.topics:
                where = (topic, p)
                start = self.position.get(where, 0)
                chunk = self.logs.get(where, [])[start : start + self.chunk[topic]]
                values += chunk
                topics += [topic] * len(chunk)
                partitions += [p] * len(chunk)
                offsets += range(start, start + len(chunk))
                if where in self.position:
                    self.position[where] = start + len(chunk)
        if not values:
            return None
        n = len(values)
        return RawBatch(values, [None] * n, np.full(n, 1.0), topics, partitions, offsets)

    def commit(self) -> bool:
        for where in self.logs:
            if where[1] in self.assigned:
                self.committed[where] = self.position[where]
        return True

    def lag(self) -> dict[tuple[str, int], int]:
        return {}

    def rebalances(self) -> list[tuple[str, set[int]]]:
        events, self.events = self.events, []
        return events

    def close(self) -> None:
        pass


class SteppingClock:
    """A clock that stands still until a test moves it (``now``)."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def drain(svc: Any, steps: int | None = None) -> None:
    """Step the service (its clock one second further each step) until a poll returns nothing, or ``steps`` times."""
    done = 0
    while steps is None or done < steps:
        svc.clock.now += 1.0
        if svc.step() is None:
            break
        done += 1
