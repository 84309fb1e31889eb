"""Alert events and dead letters reach their topics in order per key, whatever fails and recovers in between.

The sender here is an in-memory Kafka topic behind an idempotent producer
(``FakeProducer``) that promises what Kafka promises and no more: one
partition's records are written in the order they were sent, but a record that
fails (its batch expired) does not stop records sent after it, including those
sent after the failure was reported.  That is what made a ``firing`` event that
was re-sent land after the ``resolved`` event of the same episode.

"First delivery" order is what a consumer that deduplicates sees; "last
delivery" order is what a consumer that keeps the latest message per key ends
up with.
"""

from __future__ import annotations

import zlib
from collections import defaultdict
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from itertools import count
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kafka.errors import KafkaTimeoutError

from decaywatch.consumer.metrics import ServiceMetrics
from decaywatch.consumer.service import MonitorService
from decaywatch.consumer.sinks import KafkaAlertSink, KafkaDeadLetterSink
from decaywatch.monitor.config import ModelPolicy, MonitorConfig
from decaywatch.monitor.engine import Monitor
from decaywatch.monitor.schema import Rejection
from tests.unit.fakes import MemorySource


class Future:
    """The two attributes of kafka-python's ``FutureRecordMetadata`` the sinks read."""

    def __init__(self) -> None:
        self.is_done = False
        self.exception: Exception | None = None


@dataclass(frozen=True)
class Record:
    topic: str
    partition: int
    key: bytes | None
    value: bytes
    headers: tuple[tuple[str, bytes], ...]


Plan = Callable[[tuple[str, int], int], tuple[int, str]]
"""Per flush and partition, given its unresolved records: how many of the oldest are written, and whether the rest
``fail`` or stay unresolved (``pend``)."""


@dataclass
class FakeProducer:
    """An idempotent producer and its topics, in memory; outcomes are decided at ``flush``.

    ``down`` fails every unresolved record at the next flush; ``plan`` decides
    per partition instead (an acknowledged prefix, the rest failed or left
    unresolved); ``per_record`` decides every record on its own (a later record
    of a partition written while an earlier one failed: what an expired batch
    allows, but the sink must not cause) though never written before an
    earlier one still unresolved; ``on_send`` may raise from ``send`` or fail a
    record at once (as kafka-python does when the topic's metadata cannot be had).
    """

    partitions: int = 1
    down: bool = False
    plan: Plan | None = None
    per_record: Callable[[Record], str] | None = None
    on_send: Callable[[Record], Exception | str | None] | None = None
    log: dict[tuple[str, int], list[Record]] = field(default_factory=lambda: defaultdict(list))
    unresolved: dict[tuple[str, int], list[tuple[Record, Future]]] = field(default_factory=lambda: defaultdict(list))
    send_calls: int = 0

    def partition_for(self, key: bytes | None, value: bytes = b"") -> int:
        return zlib.crc32(key if key is not None else value) % self.partitions

    def send(self, topic: str, value: Any = None, key: Any = None, headers: Any = None) -> Future:
        self.send_calls += 1
        record = Record(topic, self.partition_for(key, value), key, value, tuple(headers or ()))
        future = Future()
        verdict = self.on_send(record) if self.on_send is not None else None
        if isinstance(verdict, Exception):
            raise verdict
        if verdict == "fail":
            future.is_done, future.exception = True, KafkaTimeoutError("no metadata for the topic")
            return future
        self.unresolved[(topic, record.partition)].append((record, future))
        return future

    def flush(self, timeout: float | None = None) -> None:
        left = False
        for tp, queue in self.unresolved.items():
            if self.per_record is not None:
                verdicts = [self.per_record(record) for record, _ in queue]
                for i in range(1, len(verdicts)):  # never written before an earlier record of its partition
                    if verdicts[i] == "ack" and "pend" in verdicts[:i]:
                        verdicts[i] = "pend"
            else:
                written, rest = self._decide(tp, len(queue))
                verdicts = ["ack"] * written + [rest] * (len(queue) - written)
            kept = []
            for (record, future), verdict in zip(queue, verdicts, strict=True):
                if verdict == "ack":
                    self.log[tp].append(record)
                    future.is_done = True
                elif verdict == "fail":
                    future.is_done, future.exception = True, KafkaTimeoutError("batch expired")
                else:
                    kept.append((record, future))
            queue[:] = kept
            left = left or bool(kept)
        if left:
            raise KafkaTimeoutError("flush timed out")

    def _decide(self, tp: tuple[str, int], n: int) -> tuple[int, str]:
        if self.plan is not None:
            return self.plan(tp, n)
        return (0, "fail") if self.down else (n, "ack")

    def heal(self) -> None:
        self.down, self.plan, self.per_record, self.on_send = False, None, None, None

    def records(self, topic: str) -> list[Record]:
        """Everything written to ``topic``, partition by partition."""
        return [r for (t, _), records in sorted(self.log.items()) if t == topic for r in records]


def frozen() -> float:
    """A clock that never moves: a flush's rounds end by lack of work, never by its deadline."""
    return 0.0


def alert(model: str, seq: int, status: str = "firing") -> dict[str, Any]:
    return {"model": model, "status": status, "alert_id": f"{model}-{seq}", "seq": seq}


def by_key_first(records: list[Record]) -> dict[bytes | None, list[int]]:
    """Per Kafka key, the ``seq`` of each alert event at its first delivery."""
    seen: set[int] = set()
    out: dict[bytes | None, list[int]] = defaultdict(list)
    for record in records:
        seq = orjson.loads(record.value)["seq"]
        if seq not in seen:
            seen.add(seq)
            out[record.key].append(seq)
    return dict(out)


def by_key_last(records: list[Record]) -> dict[bytes | None, list[int]]:
    """Per Kafka key, the ``seq`` of each alert event at its last delivery."""
    last = {orjson.loads(r.value)["seq"]: (i, r.key) for i, r in enumerate(records)}
    out: dict[bytes | None, list[int]] = defaultdict(list)
    for seq, (_, key) in sorted(last.items(), key=lambda item: item[1][0]):
        out[key].append(seq)
    return dict(out)


def statuses(producer: FakeProducer, topic: str = "alerts") -> list[tuple[str, str]]:
    return [(e["model"], e["status"]) for e in (orjson.loads(r.value) for r in producer.records(topic))]


def test_a_failed_firing_is_delivered_before_the_resolution_published_in_a_later_batch() -> None:
    producer = FakeProducer(down=True)
    sink = KafkaAlertSink(producer, "alerts", clock=frozen)
    sink.publish(alert("m", 1, "firing"))
    assert sink.flush() is False and sink.pending == 1

    producer.down = False  # the topic is back before the episode resolves
    sink.publish(alert("m", 2, "resolved"))
    assert sink.flush() is True and sink.pending == 0
    assert statuses(producer) == [("m", "firing"), ("m", "resolved")]
    assert sink.failed_sends == 1


def test_the_service_commits_only_once_firing_then_resolved_are_on_the_topic() -> None:
    producer = FakeProducer(down=True)
    alerts, dead = KafkaAlertSink(producer, "alerts", clock=frozen), KafkaDeadLetterSink(producer, "dlq", clock=frozen)
    bad: list[bytes | None] = [orjson.dumps({"model": "m", "prediction": 1, "label": 0})] * 60
    good: list[bytes | None] = [orjson.dumps({"model": "m", "prediction": 1, "label": 1})] * 60
    source = MemorySource([bad, good], [])
    policy = ModelPolicy(baseline=0.85, windows=(50,), min_samples=20, decision="window")
    service = MonitorService(source, Monitor(MonitorConfig(policy)), alerts, dead, ServiceMetrics(), clock=lambda: 0.0)

    fired = service.step()
    assert fired is not None and [t.status for t in fired.transitions] == ["firing"]
    assert source.committed == 0 and alerts.pending == 1

    producer.down = False
    resolved = service.step()
    assert resolved is not None and [t.status for t in resolved.transitions] == ["resolved"]
    assert source.committed == 120 and alerts.pending == 0
    assert statuses(producer) == [("m", "firing"), ("m", "resolved")]


def models_on_distinct_partitions(producer: FakeProducer, n: int) -> list[str]:
    names: dict[int, str] = {}
    for i in range(100):
        names.setdefault(producer.partition_for(f"model-{i}".encode()), f"model-{i}")
    assert len(names) >= n
    return [names[p] for p in sorted(names)[:n]]


def test_interleaved_models_keep_their_own_order_and_never_wait_for_each_other() -> None:
    producer = FakeProducer(partitions=4)
    a, b, c = models_on_distinct_partitions(producer, 3)
    sink = KafkaAlertSink(producer, "alerts", clock=frozen)
    broken: set[int] = set()
    producer.plan = lambda tp, n: (0, "fail") if tp[1] in broken else (n, "ack")

    broken |= {producer.partition_for(a.encode()), producer.partition_for(b.encode())}
    for event in (alert(a, 1), alert(c, 2), alert(b, 3), alert(c, 4, "resolved")):
        sink.publish(event)
    assert sink.flush() is False and sink.pending == 2  # c is delivered: it does not wait for a or b

    broken.discard(producer.partition_for(a.encode()))  # a's partition recovers, b's does not
    for event in (alert(b, 5, "resolved"), alert(a, 6, "resolved"), alert(a, 7), alert(c, 8)):
        sink.publish(event)
    assert sink.flush() is False and sink.pending == 2  # b's firing failed again: its resolution waits behind it

    broken.clear()
    assert sink.flush() is True and sink.pending == 0
    assert by_key_first(producer.records("alerts")) == {a.encode(): [1, 6, 7], b.encode(): [3, 5], c.encode(): [2, 4, 8]}
    assert sink.failed_sends == 4  # a once, b twice (its firing, then firing and resolution together)


def test_a_healthy_broker_delivers_a_keys_several_events_in_one_flush_after_a_slow_one() -> None:
    producer = FakeProducer()
    sink = KafkaAlertSink(producer, "alerts", clock=frozen)
    producer.plan = lambda tp, n: (0, "pend")  # the flush times out with the firing unacknowledged
    sink.publish(alert("m", 1))
    assert sink.flush() is False

    producer.plan = None
    for seq, status in ((2, "resolved"), (3, "firing"), (4, "resolved")):
        sink.publish(alert("m", seq, status))
    assert sink.flush() is True  # round 1: the firing is acknowledged; round 2: the three held behind it
    assert by_key_first(producer.records("alerts")) == {b"m": [1, 2, 3, 4]}
    assert producer.send_calls == 4 and sink.failed_sends == 0


def rejection(offset: int) -> Rejection:
    return Rejection(index=offset, reason="malformed_json", detail=f"offset {offset}")


def source_of(record: Record) -> tuple[int, int]:
    """A dead letter's source partition and offset, from its headers."""
    headers = dict(record.headers)
    return int(headers["decaywatch.source.partition"]), int(headers["decaywatch.source.offset"])


def source_offsets(records: list[Record]) -> dict[tuple[int, int], list[int]]:
    """Per (dead-letter partition, source partition), the source offsets at their first delivery."""
    seen: set[tuple[int, int]] = set()
    out: dict[tuple[int, int], list[int]] = defaultdict(list)
    for record in records:
        source = source_of(record)
        if source not in seen:
            seen.add(source)
            out[(record.partition, source[0])].append(source[1])
    return dict(out)


def test_dead_letters_keep_source_partition_order_and_partitions_do_not_wait_for_each_other() -> None:
    producer = FakeProducer()
    sink = KafkaDeadLetterSink(producer, "dlq", clock=frozen)
    refused = {(0, 10)}  # the first dead letter of source partition 0 fails at once, like a send without metadata
    producer.on_send = lambda record: "fail" if source_of(record) in refused else None

    for partition, offset in ((0, 10), (1, 3), (0, 11), (1, 4)):
        sink.publish(b"{broken", b"k", rejection(offset), "predictions", partition, offset)
    assert sink.flush() is False and sink.pending == 2  # partition 1's are delivered; 0's second waits behind its first
    assert source_offsets(producer.records("dlq")) == {(0, 1): [3, 4]}

    refused.clear()
    sink.publish(b"{broken", b"k", rejection(12), "predictions", 0, 12)
    assert sink.flush() is True
    assert source_offsets(producer.records("dlq")) == {(0, 1): [3, 4], (0, 0): [10, 11, 12]}


def test_a_send_that_raises_keeps_the_message_in_place_and_stops_sending_until_the_next_flush() -> None:
    producer = FakeProducer()
    sink = KafkaAlertSink(producer, "alerts", clock=frozen)
    producer.on_send = lambda r: KafkaTimeoutError("Failed to update metadata after 1.0 secs.")  # the topic is gone
    for seq, model in enumerate(["a", "b", "a", "c", "b"]):
        sink.publish(alert(model, seq))
    assert sink.flush() is False and sink.pending == 5
    assert producer.send_calls == 1  # one blocked send per flush, not one per message

    assert sink.flush() is False
    assert producer.send_calls == 2 and sink.failed_sends == 2

    producer.heal()
    sink.publish(alert("a", 5, "resolved"))
    assert sink.flush() is True and sink.pending == 0
    assert by_key_first(producer.records("alerts")) == {b"a": [0, 2, 5], b"b": [1, 4], b"c": [3]}


def test_a_message_send_refuses_for_good_blocks_only_its_own_key() -> None:
    producer = FakeProducer()
    sink = KafkaAlertSink(producer, "alerts", clock=frozen)
    producer.on_send = lambda r: ValueError("record too large") if orjson.loads(r.value)["seq"] == 0 else None
    for seq, model in enumerate(["a", "b", "a"]):
        sink.publish(alert(model, seq))
    assert sink.flush() is False and sink.pending == 2
    assert by_key_first(producer.records("alerts")) == {b"b": [1]}


def test_a_later_event_acknowledged_while_an_earlier_one_failed_is_sent_again_after_it() -> None:
    """Beyond what an idempotent producer does (unless a batch expires at a bad instant): the last word stays right."""
    producer = FakeProducer()
    sink = KafkaAlertSink(producer, "alerts", clock=frozen)
    producer.per_record = lambda r: "fail" if orjson.loads(r.value)["status"] == "firing" else "ack"
    sink.publish(alert("m", 1, "firing"))
    sink.publish(alert("m", 2, "resolved"))
    assert sink.flush() is False

    producer.heal()
    assert sink.flush() is True
    assert statuses(producer) == [("m", "resolved"), ("m", "firing"), ("m", "resolved")]
    assert by_key_last(producer.records("alerts")) == {b"m": [1, 2]}
    assert sink.resent_after_reorder == 1 and sink.failed_sends == 1


MODELS = ["a", "b", "c", "d"]
SEND_VERDICTS: list[str | None] = [None] * 8 + ["timeout", "refused", "fail"]


def send_verdict(data: st.DataObject) -> Callable[[Record], Exception | str | None]:
    def decide(record: Record) -> Exception | str | None:
        verdict = data.draw(st.sampled_from(SEND_VERDICTS), label="send")
        if verdict == "timeout":
            timeout: Exception = KafkaTimeoutError("Failed to update metadata")
            return timeout
        if verdict == "refused":
            return ValueError("refused")
        return verdict

    return decide


def partition_plan(data: st.DataObject) -> Plan:
    def decide(tp: tuple[str, int], n: int) -> tuple[int, str]:
        written = data.draw(st.integers(0, n), label="written")
        return written, data.draw(st.sampled_from(["fail", "pend"]), label="rest")

    return decide


def drain(sink: KafkaAlertSink | KafkaDeadLetterSink, producer: FakeProducer) -> None:
    """The broker is back: one flush delivers everything still pending."""
    producer.heal()
    assert sink.flush() is True
    assert sink.pending == 0 and not any(producer.unresolved.values())


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), partitions=st.integers(1, 3))
def test_every_models_events_arrive_in_publish_order_whatever_fails(data: st.DataObject, partitions: int) -> None:
    producer = FakeProducer(partitions=partitions, plan=partition_plan(data), on_send=send_verdict(data))
    sink = KafkaAlertSink(producer, "alerts", clock=frozen)
    published: dict[bytes | None, list[int]] = defaultdict(list)
    seq = count()
    for _ in range(data.draw(st.integers(1, 6), label="batches")):
        for model in data.draw(st.lists(st.sampled_from(MODELS), max_size=6), label="batch"):
            n = next(seq)
            sink.publish(alert(model, n))
            published[model.encode()].append(n)
        sink.flush()
    drain(sink, producer)
    assert by_key_first(producer.records("alerts")) == published
    assert by_key_last(producer.records("alerts")) == published


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_the_last_word_per_model_is_in_order_even_when_any_single_event_fails(data: st.DataObject) -> None:
    """Records failing on their own, later ones of a partition written: the sink's last line of defence."""
    producer = FakeProducer(partitions=2, on_send=send_verdict(data))
    producer.per_record = lambda r: data.draw(st.sampled_from(["ack", "ack", "fail", "pend"]), label="record")
    sink = KafkaAlertSink(producer, "alerts", clock=frozen)
    published: dict[bytes | None, list[int]] = defaultdict(list)
    seq = count()
    for _ in range(data.draw(st.integers(1, 6), label="batches")):
        for model in data.draw(st.lists(st.sampled_from(MODELS), max_size=6), label="batch"):
            n = next(seq)
            sink.publish(alert(model, n))
            published[model.encode()].append(n)
        sink.flush()
    drain(sink, producer)
    assert by_key_last(producer.records("alerts")) == published


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), partitions=st.integers(1, 3))
def test_dead_letters_arrive_in_source_offset_order_per_source_partition(data: st.DataObject, partitions: int) -> None:
    producer = FakeProducer(partitions=partitions, plan=partition_plan(data), on_send=send_verdict(data))
    sink = KafkaDeadLetterSink(producer, "dlq", clock=frozen)
    published: dict[tuple[int, int], list[int]] = defaultdict(list)
    next_offset: dict[Hashable, int] = defaultdict(int)
    for _ in range(data.draw(st.integers(1, 6), label="batches")):
        letters = st.tuples(st.integers(0, 2), st.sampled_from([None, b"k1", b"k2", b"k3"]))
        for source, key in data.draw(st.lists(letters, max_size=8), label="batch"):
            offset = next_offset[source]
            next_offset[source] += 1
            value = f"{source}:{offset}".encode()
            sink.publish(value, key, rejection(offset), "predictions", source, offset)
            published[(producer.partition_for(key, value), source)].append(offset)
        sink.flush()
    drain(sink, producer)
    assert source_offsets(producer.records("dlq")) == published
