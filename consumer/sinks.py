"""Where the service's output goes: alert events and dead letters, each behind a small protocol.

Both are Kafka topics in production.  Sends are asynchronous and batched; the
service calls ``flush`` once per batch, before it commits the batch's offsets,
so an alert or dead letter is never lost to a commit that ran ahead of it.

Order.  For each *ordering key* (an alert event's model; a dead letter's source
topic and partition) the messages reach the topic in the order they were
published, whatever fails and recovers in between:

* A key's messages wait in a *lane*, oldest first.  A lane sends when nothing
  of its key is unacknowledged, and then everything it holds, as one group;
  what its key publishes meanwhile waits behind the group until every message
  of it is acknowledged.  A failed message is sent again, together with
  everything after it, before anything later of its key.  Keys never wait for
  each other.
* Why the sink holds messages back instead of trusting the producer: a Kafka
  producer keeps one partition's records in order through its own retries
  (idempotence, or one request in flight), but a record whose producer batch
  reaches ``delivery_timeout_ms`` (counted from the batch's creation) fails for
  good, its future done with ``KafkaTimeoutError``, while records appended
  after it go on: batches still in the accumulator are sent when the broker or
  topic is back.  A record the sink sent after the failed one can therefore be
  written before the failed one's re-send.  That was the bug: a ``firing``
  event failed, the ``resolved`` of the same episode (a later batch) was sent
  at once and written, and the ``firing`` re-sent at the next flush landed
  after it.
* Within a group the producer's order is trusted: the key fixes the partition,
  one producer writes it, and its retries keep the sequence, so a healthy
  broker costs no round trip per message (a flush still makes several rounds,
  within its time bound, when a key has more to send after its group is
  acknowledged).  The one gap left is a group split over two producer batches,
  the first of which expires while the second is written.  The sink notices
  (an earlier message failed, a later one was acknowledged) and sends the
  failed message *and everything after it* again, in order, and logs a
  warning: a consumer may then see the later message early, but the last word
  per key is always in order.  A group holds only what its key published while
  it was idle, sent within milliseconds, so this needs an outage ending in that
  instant.
* The producer for these sinks: ``acks=all`` and one request in flight per
  connection (``max_in_flight_requests_per_connection=1``) keep a partition in
  order through retries.  Not idempotence: kafka-python 3.0.12 resets an
  idempotent producer's id when a batch it already sent expires, and never
  asks for a new one (``reset_producer_id`` leaves the state ``READY``, so
  ``init_producer_id`` does nothing): from then on the producer sends nothing
  and expires nothing, and every flush times out.  A topic deleted under a
  retried batch is enough to get there.
* ``send()`` itself may raise: ``KafkaTimeoutError`` after ``max_block_ms``
  when the topic's metadata cannot be had (the topic was deleted and the
  broker does not create topics on request; kafka-python 3.0.12 always asks it
  to, whatever ``allow_auto_create_topics`` says).  The message stays queued
  where it was; a timeout or any other retriable error stops sending to the
  topic until the next flush, so a missing topic costs one ``max_block_ms`` per
  flush, not one per message: a short ``max_block_ms`` on the producer keeps
  the loop moving.  A non-retriable error (a record too large, say) blocks only
  its own key.
* Dead letters keep their original Kafka key (consumers may rely on it), so
  one source partition's dead letters may spread over several partitions of
  the dead-letter topic, and Kafka orders only within a partition: within each
  partition of the dead-letter topic, one source partition's dead letters are
  in source-offset order (each counted at its first delivery).  A dead letter
  acknowledged in one partition while an earlier one of its group failed in
  another (a broker of the two down) is sent again after it: a duplicate, as
  at-least-once allows.

``flush`` never raises and is bounded in time (plus at most one
``max_block_ms`` of a blocking ``send``): it says whether everything published
so far is acknowledged, and the service commits offsets only then, while
consumption goes on.  After a flush that left messages pending, the next one
waits only briefly, so an outage slows consumption little.
"""

from __future__ import annotations

import enum
import logging
import time
from collections import deque
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from itertools import islice
from typing import Any, Protocol

from decaywatch.monitor.codec import dumps
from decaywatch.monitor.schema import Rejection

log = logging.getLogger(__name__)

DETAIL_LIMIT = 1000
"""Characters of a rejection's detail kept in a dead-letter header."""

BEHIND_FLUSH_TIMEOUT_S = 0.1
"""How long a flush waits when the previous one left messages pending (an outage must not slow consumption)."""


class Sender(Protocol):
    """The part of ``kafka.KafkaProducer`` the sinks use.

    ``send`` returns a future with ``is_done`` and ``exception`` attributes (or
    ``None`` for a send that needs no acknowledgement); it may raise.
    """

    def send(self, topic: str, value: Any = None, key: Any = None, headers: Any = None) -> Any: ...

    def flush(self, timeout: float | None = None) -> None: ...


class AlertSink(Protocol):
    def publish(self, event: dict[str, Any]) -> None: ...

    def flush(self) -> bool | None:
        """Deliver what was published; ``False`` when some of it is still pending (it will be retried)."""


class DeadLetterSink(Protocol):
    def publish(
        self, value: bytes | None, key: bytes | None, rejection: Rejection, topic: str, partition: int, offset: int
    ) -> None: ...

    def flush(self) -> bool | None: ...


@dataclass(slots=True)
class _Message:
    fields: dict[str, Any]
    """The keyword arguments of ``send`` (value, key, headers)."""
    future: Any = None
    """The last send's future; meaningful only while the message is in its lane's sent group."""


class _Lane:
    """One ordering key's unacknowledged messages, oldest first: the sent group, then those held back."""

    __slots__ = ("queue", "sent")

    def __init__(self) -> None:
        self.queue: deque[_Message] = deque()
        self.sent = 0
        """How many messages at the front of ``queue`` were sent and await their outcome."""


class _Outcome(enum.Enum):
    IDLE = "nothing of the key is in flight: its queue may be sent"
    BUSY = "part of the sent group has no outcome yet"
    FAILED = "part of the sent group failed: it is queued again, in order"


class _TopicSink:
    """Shared by the Kafka sinks: one topic, asynchronous sends, a bounded flush per batch, nothing dropped, order kept per key.

    ``publish`` only queues (it never blocks or raises); ``flush`` sends, in
    rounds, what the lanes may send, waits for the producer within its time
    bound, and sends again what failed (at the next flush for a message that
    failed during this one, so a dead topic is not hammered).
    """

    def __init__(
        self, sender: Sender, topic: str, flush_timeout_s: float = 10.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._sender = sender
        self._topic = topic
        self._flush_timeout_s = flush_timeout_s
        self._clock = clock
        self._lanes: dict[Hashable, _Lane] = {}
        self._pending = 0
        self._behind = False
        self.failed_sends = 0
        """Sends that failed (an exception from ``send`` or a failed future) and are sent again (for the service's metrics)."""
        self.resent_after_reorder = 0
        """Acknowledged messages sent again because an earlier message of their group failed (see the module docstring)."""

    @property
    def pending(self) -> int:
        """Messages published and not yet acknowledged (in flight, failed, or held back behind their key)."""
        return self._pending

    def _enqueue(self, order: Hashable, fields: dict[str, Any]) -> None:
        """Queue a message (``send``'s keyword arguments) behind the earlier ones of its ordering key."""
        lane = self._lanes.get(order)
        if lane is None:
            lane = self._lanes[order] = _Lane()
        lane.queue.append(_Message(fields))
        self._pending += 1

    def flush(self) -> bool:
        deadline = self._clock() + (BEHIND_FLUSH_TIMEOUT_S if self._behind else self._flush_timeout_s)
        for lane in self._lanes.values():
            self._settle(lane)  # what failed since the last flush is sent again now
        sent_now: set[Hashable] = set()  # keys sent during this flush
        failed_now: set[Hashable] = set()  # keys whose sends of this flush failed: sent again at the next one
        while True:
            reachable = self._send_round(sent_now, failed_now)
            if not any(lane.sent for lane in self._lanes.values()):
                break
            self._wait(deadline)
            more = False
            for key, lane in self._lanes.items():
                if self._settle(lane) is _Outcome.FAILED and key in sent_now:
                    failed_now.add(key)
                elif not lane.sent and lane.queue and key not in failed_now:
                    more = True
            if not (more and reachable) or self._clock() >= deadline:
                break
        self._lanes = {key: lane for key, lane in self._lanes.items() if lane.queue}
        self._behind = self._pending > 0
        return not self._behind

    def _send_round(self, sent_now: set[Hashable], failed_now: set[Hashable]) -> bool:
        """Send the queue of every idle lane, in order; ``False`` when the topic looks unreachable."""
        for key, lane in self._lanes.items():
            if lane.sent or not lane.queue or key in failed_now:
                continue
            sent_now.add(key)
            for message in lane.queue:
                try:
                    message.future = self._sender.send(self._topic, **message.fields)
                except Exception as error:  # noqa: BLE001 - whatever send raises, the message stays queued in its place
                    self.failed_sends += 1
                    failed_now.add(key)
                    if isinstance(error, TimeoutError) or getattr(error, "retriable", False):
                        log.debug("send to %s failed (%r): no more sends to it until the next flush", self._topic, error)
                        return False
                    log.error("send to %s failed (%r): its key waits, and it is sent again at the next flush", self._topic, error)
                    break
                lane.sent += 1
                if _failed(message.future):  # failed at once (no metadata, say): what follows must not overtake it
                    break
        return True

    def _wait(self, deadline: float) -> None:
        try:
            self._sender.flush(timeout=max(0.0, deadline - self._clock()))
        except Exception as error:  # noqa: BLE001 - KafkaTimeoutError and kin: what is not acknowledged stays in flight
            log.debug("flush of %s incomplete: %s", self._topic, error)

    def _settle(self, lane: _Lane) -> _Outcome:
        """Drop the acknowledged front of the lane's sent group; queue the group again from its first failure."""
        acknowledged = 0
        while acknowledged < lane.sent and _delivered(lane.queue[acknowledged].future):
            acknowledged += 1
        for _ in range(acknowledged):
            lane.queue.popleft()
        lane.sent -= acknowledged
        self._pending -= acknowledged
        if not lane.sent:
            return _Outcome.IDLE
        rest = list(islice(lane.queue, lane.sent))
        if not all(_done(message.future) for message in rest):
            return _Outcome.BUSY  # decide only once the whole group is settled: a later message may still land
        failed = sum(1 for message in rest if _failed(message.future))
        self.failed_sends += failed
        overtaken = len(rest) - failed
        if overtaken:
            self.resent_after_reorder += overtaken
            log.warning(
                "%d message(s) to %s were acknowledged while an earlier one of their ordering key failed: "
                "sending them again after it, so the last word per key stays in order",
                overtaken,
                self._topic,
            )
        lane.sent = 0
        return _Outcome.FAILED


def _done(future: Any) -> bool:
    return future is None or bool(getattr(future, "is_done", True))


def _failed(future: Any) -> bool:
    return _done(future) and getattr(future, "exception", None) is not None


def _delivered(future: Any) -> bool:
    return _done(future) and getattr(future, "exception", None) is None


class KafkaAlertSink(_TopicSink):
    """Alert events as JSON on a topic, keyed by model id (its ordering key); each also logged as one line.

    A firing that failed goes out before the resolution published after it:

    >>> import json
    >>> from types import SimpleNamespace
    >>> class Topic:  # fails every send until it is up
    ...     def __init__(self):
    ...         self.up, self.written = False, []
    ...     def send(self, topic, value=None, key=None, headers=None):
    ...         if self.up:
    ...             self.written.append(json.loads(value)["status"])
    ...         return SimpleNamespace(is_done=True, exception=None if self.up else TimeoutError())
    ...     def flush(self, timeout=None):
    ...         pass
    >>> topic = Topic()
    >>> sink = KafkaAlertSink(topic, "alerts")
    >>> sink.publish({"model": "m", "status": "firing"})
    >>> sink.flush(), sink.pending
    (False, 1)
    >>> topic.up = True
    >>> sink.publish({"model": "m", "status": "resolved"})
    >>> sink.flush(), sink.pending, topic.written
    (True, 0, ['firing', 'resolved'])
    """

    def publish(self, event: dict[str, Any]) -> None:
        payload = dumps(event)
        log.warning("alert %s", payload.decode())
        self._enqueue(event["model"], {"value": payload, "key": event["model"].encode()})


class KafkaDeadLetterSink(_TopicSink):
    """Rejected events with their original bytes and key, the reason in headers, and where they came from.

    Ordered per source topic and partition (see the module docstring).
    """

    def publish(
        self, value: bytes | None, key: bytes | None, rejection: Rejection, topic: str, partition: int, offset: int
    ) -> None:
        headers = [
            ("decaywatch.error.reason", rejection.reason.encode()),
            ("decaywatch.error.detail", rejection.detail[:DETAIL_LIMIT].encode("utf-8", "replace")),
            ("decaywatch.source.topic", topic.encode()),
            ("decaywatch.source.partition", str(partition).encode()),
            ("decaywatch.source.offset", str(offset).encode()),
        ]
        self._enqueue((topic, partition), {"value": value, "key": key, "headers": headers})


class AlertFanOut:
    """Sends every alert event to several sinks (the alerts topic, and Alertmanager when configured)."""

    def __init__(self, sinks: list[AlertSink]) -> None:
        self._sinks = sinks

    def publish(self, event: dict[str, Any]) -> None:
        for sink in self._sinks:
            sink.publish(event)

    def flush(self) -> bool:
        delivered = True
        for sink in self._sinks:  # every sink flushes, even after one that is behind
            delivered = sink.flush() is not False and delivered
        return delivered
