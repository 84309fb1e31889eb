"""Label events on their own topic, co-partitioned with the predictions: per-topic offsets through checkpoints and moves."""

from __future__ import annotations

import numpy as np
import orjson
import pytest

from decaywatch.consumer.changelog import MemoryStateStore
from decaywatch.consumer.metrics import ServiceMetrics
from decaywatch.consumer.service import MonitorService
from decaywatch.consumer.topics import TopicLayoutError, check_copartitioned
from decaywatch.monitor.config import ModelPolicy, MonitorConfig
from decaywatch.monitor.engine import Monitor
from decaywatch.monitor.snapshot import ModelSnapshot
from tests.unit.fakes import MemoryAlertSink, MemoryDeadLetters, PartitionedSource, SteppingClock, Where, drain

POLICY = ModelPolicy(baseline=0.85, windows=(50, 200), min_samples=20, time_windows=("1h",), label_ttl="1h", orphan_ttl="10m")
TOPICS = ("predictions", "labels")
CHUNK = {"predictions": 30, "labels": 17}
"""Records per poll and partition: the labels topic is read at another pace than the predictions."""


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


def service(source: PartitionedSource, store: MemoryStateStore, interval: float) -> MonitorService:
    journal: list[str] = []
    return MonitorService(
        source, Monitor(MonitorConfig(POLICY)), MemoryAlertSink(journal), MemoryDeadLetters(journal), ServiceMetrics(),
        SteppingClock(), state_store=store, checkpoint_interval_s=interval, labels_topic="labels",
    )  # fmt: skip


def reference() -> dict[str, ModelSnapshot]:
    source = PartitionedSource(logs(), CHUNK)
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
    source = PartitionedSource(logs(), CHUNK)
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
    source = PartitionedSource(logs(), CHUNK)
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
    source = PartitionedSource(logs(), CHUNK)
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
    source = PartitionedSource(logs(), CHUNK)
    source.assign({0, 1})
    store = MemoryStateStore()
    a = service(source, store, interval=3.5)
    drain(a, steps=3)
    a.checkpoint()
    source.assign({0})
    drain(a, steps=1)
    assert set(a.snapshot()) == {"m0", "m2"}
    b_source = PartitionedSource(source.logs, CHUNK)
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
