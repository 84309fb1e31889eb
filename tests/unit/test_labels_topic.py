"""Label events on their own topic, co-partitioned with the predictions: per-topic offsets through checkpoints and moves."""

from __future__ import annotations

import numpy as np
import orjson
import pytest

from decaywatch.consumer.changelog import MemoryStateStore
from decaywatch.consumer.metrics import ServiceMetrics
from decaywatch.consumer.service import MonitorService
from decaywatch.consumer.source import RawBatch
from decaywatch.consumer.topics import TopicLayoutError, check_copartitioned
from decaywatch.monitor.config import ModelPolicy, MonitorConfig
from decaywatch.monitor.engine import Monitor
from decaywatch.monitor.snapshot import ModelSnapshot
from tests.unit.fakes import MemoryAlertSink, MemoryDeadLetters

POLICY = ModelPolicy(baseline=0.85, windows=(50, 200), min_samples=20, time_windows=("1h",), label_ttl="1h", orphan_ttl="10m")
TOPICS = ("predictions", "labels")
CHUNK = {"predictions": 30, "labels": 17}
"""Records per poll and partition: the labels topic is read at another pace than the predictions."""

Where = tuple[str, int]


class TwoTopicSource:
    """Two co-partitioned topics in memory: logs, positions, commits and scripted rebalances, per (topic, partition)."""

    def __init__(self, logs: dict[Where, list[bytes]]) -> None:
        self.logs = logs
        self.committed = dict.fromkeys(logs, 0)
        self.position = dict(self.committed)
        self.assigned: set[int] = set()
        self.events: list[tuple[str, set[int]]] = []

    def assign(self, partitions: set[int]) -> None:
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
            for topic in TOPICS:
                start = self.position[(topic, p)]
                chunk = self.logs[(topic, p)][start : start + CHUNK[topic]]
                values += chunk
                topics += [topic] * len(chunk)
                partitions += [p] * len(chunk)
                offsets += range(start, start + len(chunk))
                self.position[(topic, p)] = start + len(chunk)
        if not values:
            return None
        n = len(values)
        return RawBatch(values, [None] * n, np.full(n, 1.0), topics, partitions, offsets)

    def commit(self) -> None:
        for where in self.logs:
            if where[1] in self.assigned:
                self.committed[where] = self.position[where]

    def lag(self) -> dict[tuple[str, int], int]:
        return {}

    def rebalances(self) -> list[tuple[str, set[int]]]:
        events, self.events = self.events, []
        return events

    def close(self) -> None:
        pass


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def logs() -> dict[Where, list[bytes]]:
    """Four models on two partitions; each prediction's label comes on the labels topic 0-40 minutes later (some never)."""
    rng = np.random.default_rng(5)
    out: dict[Where, list[bytes]] = {(t, p): [] for t in TOPICS for p in (0, 1)}
    labels: list[tuple[float, int, bytes]] = []
    for i in range(900):
        model = f"m{i % 4}"
        t = 60.0 * i
        accuracy = 0.5 if model == "m1" and i > 450 else 0.9
        p = i % 4 % 2
        out[("predictions", p)].append(orjson.dumps({"model": model, "prediction": 1, "event_id": f"e{i}", "ts": t}))
        if rng.random() < 0.95:
            known = t + rng.uniform(0, 2400)
            label = {"model": model, "label": int(rng.random() < accuracy), "event_id": f"e{i}", "ts": known}
            labels.append((known, p, orjson.dumps(label)))
    for _ts, p, value in sorted(labels):
        out[("labels", p)].append(value)
    return out


def service(source: TwoTopicSource, store: MemoryStateStore, interval: float) -> MonitorService:
    journal: list[str] = []
    return MonitorService(
        source, Monitor(MonitorConfig(POLICY)), MemoryAlertSink(journal), MemoryDeadLetters(journal), ServiceMetrics(),
        Clock(), state_store=store, checkpoint_interval_s=interval, labels_topic="labels",
    )  # fmt: skip


def drain(svc: MonitorService, steps: int | None = None) -> None:
    done = 0
    while steps is None or done < steps:
        svc.clock.now += 1.0  # type: ignore[attr-defined]  # the test's clock object, seen as a plain Clock callable
        if svc.step() is None:
            break
        done += 1


def reference() -> dict[str, ModelSnapshot]:
    source = TwoTopicSource(logs())
    source.assign({0, 1})
    svc = service(source, MemoryStateStore(), interval=0.0)
    drain(svc)
    return dict(svc.snapshot())


def test_the_reference_joins_every_label_within_the_ttl() -> None:
    snapshot = reference()
    labels = [snap.labels for snap in snapshot.values()]
    assert all(lab is not None and lab.pending + lab.joined + lab.unlabeled["ttl"] == 225 for lab in labels)
    assert sum(lab.joined for lab in labels if lab is not None) == sum(len(logs()[("labels", p)]) for p in (0, 1))


def test_checkpoints_carry_the_offsets_of_both_topics() -> None:
    source = TwoTopicSource(logs())
    source.assign({0, 1})
    store = MemoryStateStore()
    svc = service(source, store, interval=1e9)
    drain(svc, steps=2)
    svc.checkpoint()
    assert source.committed == {("predictions", 0): 60, ("predictions", 1): 60, ("labels", 0): 34, ("labels", 1): 34}
    m0 = store.records["m0"]
    assert (m0.partition, m0.offset) == (0, 58)  # m0 is every other prediction of partition 0
    assert 0 <= m0.label_offset <= 33


def test_a_crash_resumes_exactly_from_the_last_checkpoint() -> None:
    source = TwoTopicSource(logs())
    source.assign({0, 1})
    store = MemoryStateStore()
    first = service(source, store, interval=3.5)
    drain(first, steps=7)  # then "SIGKILL": no final checkpoint, and some batches were never committed
    assert source.committed != source.position
    source.assign({0, 1})
    second = service(source, store, interval=3.5)
    drain(second)
    assert dict(second.snapshot()) == reference()


def test_state_written_just_before_a_crash_is_not_counted_twice_on_either_topic() -> None:
    source = TwoTopicSource(logs())
    source.assign({0, 1})
    store = MemoryStateStore()
    first = service(source, store, interval=1e9)
    drain(first, steps=4)
    first.checkpoint()
    source.committed = {("predictions", 0): 30, ("predictions", 1): 30, ("labels", 0): 17, ("labels", 1): 17}  # one step in
    source.assign({0, 1})
    second = service(source, store, interval=1e9)
    drain(second)
    assert dict(second.snapshot()) == reference()


def test_a_partition_moves_to_another_member_and_back() -> None:
    source = TwoTopicSource(logs())
    source.assign({0, 1})
    store = MemoryStateStore()
    a = service(source, store, interval=3.5)
    drain(a, steps=3)
    a.checkpoint()
    source.assign({0})
    drain(a, steps=1)
    assert set(a.snapshot()) == {"m0", "m2"}
    b_source = TwoTopicSource(source.logs)
    b_source.committed = source.committed
    b_source.assign({1})
    b = service(b_source, store, interval=3.5)
    drain(b)
    b.checkpoint()
    drain(a)
    a.checkpoint()
    assert {**dict(a.snapshot()), **dict(b.snapshot())} == reference()


def test_a_labels_topic_of_another_partition_count_is_refused_in_one_line() -> None:
    check_copartitioned({"predictions": 2, "labels": 2}, "predictions", "labels")
    with pytest.raises(TopicLayoutError, match="has 3 partitions and predictions topic 'predictions' has 2"):
        check_copartitioned({"predictions": 2, "labels": 3}, "predictions", "labels")
    with pytest.raises(TopicLayoutError, match="is the predictions topic"):
        check_copartitioned({"predictions": 2}, "predictions", "predictions")
