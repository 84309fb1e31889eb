"""The service on librdkafka (``--kafka-client confluent``): an event source and an output sender behind the same protocols.

Why a second client: kafka-python parses every record in Python and tops out
near 80,000 events/s per process here; librdkafka (through confluent-kafka,
the ``decaywatch[confluent]`` extra) fetches and parses in C threads and hands
over whole batches.  The service, its sinks and its state store do not know
which client runs under them; this module makes librdkafka keep kafka-python's
semantics:

* **At least once.**  Auto commit and librdkafka's automatic offset store are
  off; ``poll`` stores the positions of what it returns, and ``commit`` commits
  the stored positions synchronously, only when the service says the batch is
  handled (after its outputs are flushed and, with state, checkpointed).
* **Rebalances.**  The eager protocol (``range,roundrobin``, kafka-python's
  default too), so the service's ledger sees "every partition revoked, then
  the new set assigned".  librdkafka runs the callbacks inside ``consume`` on
  the loop's own thread and record into the same
  :class:`~decaywatch.consumer.source.RebalanceRecorder` (``on_revoked``
  still withholds the models at once); the service acts on the moves before
  it evaluates the batch that ``poll`` returns with them.  What a ``consume``
  call gathered *before* a revocation belongs to the old assignment, and
  librdkafka drops it only once the partition's version barrier reaches the
  queue, which may be after the call returned; a partition handed back
  restarts at its committed offset, so handing those records over would count
  them twice.  And the call goes on gathering after the callback (librdkafka
  ends it only at its size or its timeout), possibly records of the new
  assignment.  So a call that saw a revocation hands over nothing: it is
  dropped whole, never stored, and each partition still assigned is sought
  back to the first offset dropped from it (a partition whose fetch has not
  started yet starts at its committed offset anyway).  A call that saw only an
  assignment keeps its records: they are all of the new one.  (Raising from
  the callback to end the call early does not work: librdkafka goes on
  gathering and confluent-kafka then discards what it gathered, records of
  the new assignment included, past their position: they were lost.)
* **Errors.**  librdkafka reports problems as messages with ``error()`` set
  (skipped; partition EOF silently) and through ``error_cb``: transient ones
  are logged once each, a failed login or a fatal error ends the service with
  one line (:class:`~decaywatch.shared.kafka_settings.KafkaAuthenticationError`
  or :class:`KafkaClientError`), as with kafka-python.
* **Readiness.**  ``coordinator_known`` comes from librdkafka's statistics
  (the group's state is ``up``), refreshed every second.
* **Outputs.**  :class:`ConfluentSender` gives the sinks and the state store
  kafka-python's ``send``/``flush`` shape: each send returns a
  :class:`Delivery` that the delivery report completes.  The producer keeps
  the ordering settings of the kafka-python one (``acks=all``, one request in
  flight per connection, no idempotence; see :func:`producer_config`).

confluent-kafka is imported only when a client is built, so this module (and
its doctests) loads without the extra installed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import orjson

from decaywatch.consumer.source import RawBatch, RebalanceRecorder
from decaywatch.shared.kafka_settings import KafkaAuthenticationError, librdkafka_config

if TYPE_CHECKING:
    from confluent_kafka import Consumer, KafkaError, Message, Producer

log = logging.getLogger(__name__)

INSTALL_HINT = "pip install 'decaywatch[confluent]'"
CONSUME_SLICE_S = 0.1
"""Longest single ``consume`` wait.  Under 200 ms: newer confluent-kafka splits longer waits into 200 ms
chunks, and older ones wait the whole timeout for a full batch: a short wait bounds the delay of a trickle
(and keeps the work a revocation discards to one call's worth)."""
FETCH_QUEUE_BACKOFF_MS = 20
"""How soon librdkafka fetches again once its queue is full (its default, 1 s, starves a fast consumer)."""
STATISTICS_INTERVAL_MS = 1000
"""How often librdkafka reports its state (read for readiness)."""
MAX_MESSAGE_BYTES = 8 * 1024 * 1024
"""Largest output record (a state checkpoint of a model with large windows), as the kafka-python producer's."""


def confluent_available() -> bool:
    """Whether confluent-kafka can be imported (the ``decaywatch[confluent]`` extra)."""
    import importlib.util

    return importlib.util.find_spec("confluent_kafka") is not None


class KafkaClientError(Exception):
    """librdkafka reported an error the service cannot go on after (fatal, or a refused TLS handshake)."""


class SendError(Exception):
    """``produce`` refused a message; ``retriable`` as kafka-python's errors carry it (the sinks read it)."""

    def __init__(self, text: str, retriable: bool) -> None:
        super().__init__(text)
        self.retriable = retriable


class FlushTimeoutError(TimeoutError):
    """``flush`` ran out of time with messages still unacknowledged (kafka-python raises ``KafkaTimeoutError``)."""


class DeliveryError(Exception):
    """A message librdkafka gave up on (its delivery report carried an error)."""

    def __init__(self, error: KafkaError) -> None:
        super().__init__(f"{error.name()}: {error.str()}")
        self.code = error.code()
        self.retriable = error.retriable()


class Delivery:
    """One send's outcome, read the way the sinks read kafka-python's ``FutureRecordMetadata``.

    ``is_done`` turns true when librdkafka's delivery report arrives (served by
    ``poll`` or ``flush`` on the caller's thread); ``exception`` is then ``None``
    for an acknowledged message.

    >>> from types import SimpleNamespace
    >>> delivery = Delivery()
    >>> delivery.is_done, delivery.exception
    (False, None)
    >>> delivery(None, SimpleNamespace())
    >>> delivery.is_done, delivery.exception
    (True, None)
    """

    __slots__ = ("exception", "is_done")

    def __init__(self) -> None:
        self.is_done = False
        self.exception: DeliveryError | None = None

    def __call__(self, error: KafkaError | None, message: Message | Any) -> None:
        self.exception = None if error is None else DeliveryError(error)
        self.is_done = True


class ClientHealth:
    """What librdkafka tells through its callbacks, shared by the consumer and the producer of one service.

    The callbacks run inside ``consume``, ``poll`` and ``flush`` on the loop's
    thread; ``coordinator_known`` is read by ``/readyz`` from another thread
    (a plain attribute: reading it needs no lock).
    """

    def __init__(self, kafka: Mapping[str, Any]) -> None:
        self._kafka = kafka
        self.coordinator_known = False
        self.failure: Exception | None = None
        self._last_warning = ""

    def on_error(self, error: KafkaError) -> None:
        from confluent_kafka import KafkaError

        text = f"{error.name()}: {error.str()}"
        if error.code() == KafkaError._AUTHENTICATION:
            if str(self._kafka.get("security_protocol", "")).upper().startswith("SASL"):
                self.failure = self.failure or KafkaAuthenticationError(self._kafka, error.str())
            else:
                self.failure = self.failure or KafkaClientError(text)
            return
        if error.fatal():
            self.failure = self.failure or KafkaClientError(text)
            return
        if error.code() == KafkaError._ALL_BROKERS_DOWN:
            self.coordinator_known = False
        if self.failure is None:  # after a refused login the rest is its echo: the failure is the one line
            self.warn(f"Kafka client: {text}")

    def on_stats(self, stats: str) -> None:
        """librdkafka's statistics: the consumer group is usable when its state is ``up``."""
        group = orjson.loads(stats).get("cgrp")
        if group is not None:
            self.coordinator_known = group.get("state") == "up"

    def warn(self, text: str) -> None:
        """Log a warning, but not the same one twice in a row (librdkafka repeats an error at every retry)."""
        if text != self._last_warning:
            log.warning("%s", text)
            self._last_warning = text

    def raise_failure(self) -> None:
        if self.failure is not None:
            raise self.failure


class LibrdkafkaLog:
    """Where librdkafka's log lines go (its ``logger`` setting): the ``confluent_kafka`` logger, less the doubles.

    librdkafka reports every failed connection twice: as a log line (facility
    ``FAIL``, one per attempt, about 20 a second while a broker is down) and
    through ``error_cb``, which :class:`ClientHealth` logs once per distinct
    error.  The ``FAIL`` lines are dropped; everything else is passed on.

    >>> import logging
    >>> LibrdkafkaLog().log(logging.ERROR, "%s [%s] %s", "FAIL", "rdkafka#consumer-1", "Connect to ... failed")
    """

    def __init__(self, name: str = "confluent_kafka") -> None:
        self._logger = logging.getLogger(name)

    def log(self, level: int, message: str, *args: Any) -> None:
        if args and args[0] == "FAIL":
            return
        self._logger.log(level, message, *args)


def consumer_config(
    kafka: Mapping[str, Any], group: str, health: ClientHealth, session_timeout_ms: int | None = None
) -> dict[str, Any]:
    """librdkafka consumer settings matching the kafka-python source's: the group, earliest, nothing automatic.

    Fetching: librdkafka prefetches in the background until its queue holds
    ``queued.min.messages`` (100,000), then waits ``fetch.queue.backoff.ms``
    before it looks again: 1 s by default, long enough for the service to
    drain the queue and sit idle (about 160,000 events/s here, whatever the
    service could do).  20 ms keeps the queue fed (raw consumption of the
    10-model topic: 160,000 -> 600,000-1,000,000 events/s here) for a
    wake-up of the fetcher per 20 ms while the service is the slower side.
    """
    config: dict[str, Any] = {
        **librdkafka_config(kafka),
        "group.id": group,
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,  # poll stores what it returns; commit commits only that
        "auto.offset.reset": "earliest",
        "partition.assignment.strategy": "range,roundrobin",  # eager, as kafka-python's default
        "enable.partition.eof": False,
        "fetch.queue.backoff.ms": FETCH_QUEUE_BACKOFF_MS,
        "statistics.interval.ms": STATISTICS_INTERVAL_MS,
        "error_cb": health.on_error,
        "stats_cb": health.on_stats,
        "logger": LibrdkafkaLog(),
    }
    if session_timeout_ms is not None:
        config["session.timeout.ms"] = session_timeout_ms
        config["heartbeat.interval.ms"] = max(500, session_timeout_ms // 4)
    return config


def producer_config(kafka: Mapping[str, Any], health: ClientHealth | None = None) -> dict[str, Any]:
    """librdkafka producer settings for the outputs, with the ordering settings of the kafka-python producer.

    ``acks=all`` and one request in flight per connection keep a partition in
    order through retries; the sinks hold each key's later messages back while
    an earlier one is unacknowledged (``consumer/sinks.py``).  Idempotence stays
    off, as for kafka-python, though librdkafka has not kafka-python 3.0.12's
    defect (an idempotent producer whose retried batch expires is wedged for
    good): librdkafka bumps the producer epoch after a timed-out message and
    goes on (checked: ``tests/integration/test_output_order.py``, the alerts
    topic deleted under retried batches and created again, passes on
    librdkafka with ``enable.idempotence`` on as well).  But that bump also lets later messages through while the
    expired one waits to be sent again, which is the gap the sinks already
    close; with one request in flight there is nothing left for idempotence
    to add but broker-side deduplication of retries, and the outputs are at
    least once, deduplicated by id, anyway.  One configuration for both
    clients keeps one behaviour to reason about.  ``message.timeout.ms`` is
    kafka-python's ``delivery_timeout_ms`` default (librdkafka's is 300 s).
    """
    config: dict[str, Any] = {
        **librdkafka_config(kafka),
        "acks": "all",
        "enable.idempotence": False,
        "max.in.flight.requests.per.connection": 1,
        "linger.ms": 5,
        "message.max.bytes": MAX_MESSAGE_BYTES,
        "message.timeout.ms": 120_000,
        "logger": LibrdkafkaLog(),
    }
    if health is not None:
        config["error_cb"] = health.on_error
    return config


class ConfluentEventSource:
    """A consumer-group member on librdkafka; offsets are committed only on ``commit``.

    ``consumer`` is a ``confluent_kafka.Consumer`` already subscribed through
    :meth:`subscribe` (or a fake with the same methods, in unit tests).
    """

    def __init__(
        self,
        consumer: Consumer | Any,
        topics: str | Sequence[str],
        max_records: int,
        recorder: RebalanceRecorder | None = None,
        health: ClientHealth | None = None,
    ) -> None:
        self._consumer = consumer
        self._topics = [topics] if isinstance(topics, str) else list(topics)
        self._max_records = max_records
        self._recorder = recorder
        self._health = health if health is not None else ClientHealth({})
        self._revoked_in_call = False
        self.assigned_partitions = 0
        """Partitions assigned after the last poll (read by ``/readyz`` from another thread)."""
        self.coordinator_known = False
        """Whether the group was usable at the last poll (False while Kafka is down)."""

    @classmethod
    def connect(
        cls,
        topics: str | Sequence[str],
        group: str,
        max_records: int,
        kafka: Mapping[str, Any],
        recorder: RebalanceRecorder | None = None,
        session_timeout_ms: int | None = None,
        health: ClientHealth | None = None,
    ) -> ConfluentEventSource:
        from confluent_kafka import Consumer

        health = health if health is not None else ClientHealth(kafka)
        source = cls(Consumer(consumer_config(kafka, group, health, session_timeout_ms)), topics, max_records, recorder, health)
        source.subscribe()
        return source

    def subscribe(self) -> None:
        self._consumer.subscribe(self._topics, on_assign=self._on_assign, on_revoke=self._on_revoke)

    def _on_assign(self, _consumer: Any, partitions: list[Any]) -> None:
        if self._recorder is not None:  # confluent-kafka assigns after the callback (it does when a callback did not)
            self._recorder.assigned({tp.partition for tp in partitions})

    def _on_revoke(self, _consumer: Any, partitions: list[Any]) -> None:
        self._revoked_in_call = True
        if self._recorder is not None:
            self._recorder.revoked({tp.partition for tp in partitions})

    def rebalances(self) -> list[tuple[str, set[int]]]:
        return self._recorder.drain() if self._recorder is not None else []

    def poll(self, timeout_s: float) -> RawBatch | None:
        self._health.raise_failure()
        messages = self._consume(timeout_s)
        self._health.raise_failure()
        self.assigned_partitions = len(self._consumer.assignment())
        self.coordinator_known = self._health.coordinator_known
        if not messages:
            return None
        good = [message for message in messages if message.error() is None]
        if len(good) < len(messages):
            self._report_errors(messages)
            if not good:
                return None
        partitions = cast("list[int]", [message.partition() for message in good])
        offsets = cast("list[int]", [message.offset() for message in good])
        topics = [self._topics[0]] * len(good) if len(self._topics) == 1 else [message.topic() for message in good]
        self._store(dict(zip(zip(topics, partitions, strict=True), offsets, strict=True)))  # the last offset of each
        return RawBatch(
            values=[message.value() for message in good],
            keys=[message.key() for message in good],
            timestamp=np.array([message.timestamp()[1] for message in good], dtype=np.float64) / 1000.0,
            topics=topics,
            partitions=partitions,
            offsets=offsets,
        )

    def _consume(self, timeout_s: float) -> list[Any]:
        """Up to ``max_records`` messages, waiting at most ``timeout_s``; none from a call that saw a revocation."""
        deadline = time.monotonic() + timeout_s
        while True:
            wait = min(CONSUME_SLICE_S, max(0.0, deadline - time.monotonic()))
            self._revoked_in_call = False
            messages: list[Any] = self._consumer.consume(num_messages=self._max_records, timeout=wait)
            if self._revoked_in_call:
                self._rewind(messages)
                return []  # the service acts on the move before the next poll
            if messages or time.monotonic() >= deadline:
                return messages

    def _rewind(self, dropped: list[Any]) -> None:
        """Seek each partition still assigned back to the first offset dropped from it (see the module docstring)."""
        from confluent_kafka import KafkaException, TopicPartition

        first: dict[tuple[str, int], int] = {}  # the lowest: a partition handed back restarts below what was gathered
        for message in dropped:
            if message.error() is None:
                where, offset = (message.topic(), message.partition()), message.offset()
                first[where] = min(offset, first.get(where, offset))
        for tp in self._consumer.assignment():
            where = (tp.topic, tp.partition)
            if where not in first:
                continue
            try:
                self._consumer.seek(TopicPartition(tp.topic, tp.partition, first[where]))
            except KafkaException as error:  # its fetch has not started: it will start at the committed offset
                log.debug("partition %d not sought back after a rebalance: %s", tp.partition, error)
        if dropped:
            log.debug("dropped %d message(s) gathered across a rebalance; partitions rewound: %s", len(dropped), first)

    def _report_errors(self, messages: list[Any]) -> None:
        from confluent_kafka import KafkaError

        for message in messages:
            error = message.error()
            if error is None or error.code() == KafkaError._PARTITION_EOF:
                continue
            if error.fatal():
                raise KafkaClientError(f"{error.name()}: {error.str()}")
            self._health.warn(f"consuming {message.topic()} [{message.partition()}]: {error.name()}: {error.str()}")

    def _store(self, last_offsets: Mapping[tuple[str, int], int]) -> None:
        """Mark what this poll returned as consumed: the next ``commit`` commits through it."""
        from confluent_kafka import KafkaException, TopicPartition

        try:
            self._consumer.store_offsets(
                offsets=[TopicPartition(topic, partition, offset + 1) for (topic, partition), offset in last_offsets.items()]
            )
        except KafkaException as error:  # nothing lost: what is not stored is read again after the next move
            self._health.warn(f"could not store consumed offsets: {error}")

    def commit(self) -> bool:
        from confluent_kafka import KafkaError, KafkaException

        try:
            committed = self._consumer.commit(asynchronous=False)
        except KafkaException as exception:
            error = exception.args[0]
            if error.code() == KafkaError._NO_OFFSET:
                return True  # nothing consumed since the last commit
            # A rebalance or an outage: the next owner, or the next commit, starts from the last good one (at least once).
            log.warning("offset commit failed; retried at the next checkpoint: %s", error.str())
            return False
        failed = [f"{tp.partition}: {tp.error.str()}" for tp in committed or [] if tp.error is not None]
        if failed:
            log.warning("offset commit failed for partition(s) %s; retried at the next checkpoint", failed)
        return not failed

    def lag(self) -> dict[tuple[str, int], int]:
        """Behind the end of each assigned partition, from the high watermarks of the last fetches (no request)."""
        lags: dict[tuple[str, int], int] = {}
        for tp in self._consumer.position(self._consumer.assignment()):
            if tp.offset < 0:
                continue  # nothing consumed from it yet
            _low, high = self._consumer.get_watermark_offsets(tp, cached=True)
            if high >= 0:
                lags[(tp.topic, tp.partition)] = max(0, high - tp.offset)
        return lags

    def close(self) -> None:
        self._consumer.close()


class ConfluentSender:
    """kafka-python's ``send``/``flush`` over a librdkafka producer, for the sinks and the state store.

    ``send`` queues the message and returns its :class:`Delivery`; delivery
    reports are served by ``poll(0)`` after each send and by ``flush``, on
    the caller's thread, so the sinks read their futures without locks.

    >>> class Producer:  # acknowledges everything at the next poll or flush
    ...     def __init__(self):
    ...         self.reports = []
    ...     def produce(self, topic, value=None, key=None, partition=-1, on_delivery=None, headers=None):
    ...         self.reports.append(on_delivery)
    ...     def poll(self, timeout):
    ...         while self.reports:
    ...             self.reports.pop()(None, None)
    ...         return 0
    ...     def flush(self, timeout):
    ...         return self.poll(timeout)
    >>> sender = ConfluentSender(Producer())
    >>> delivery = sender.send("alerts", value=b"{}", key=b"m")
    >>> delivery.is_done, delivery.exception
    (True, None)
    """

    def __init__(self, producer: Producer | Any, health: ClientHealth | None = None) -> None:
        self._producer = producer
        self._health = health

    @classmethod
    def connect(cls, kafka: Mapping[str, Any], health: ClientHealth | None = None) -> ConfluentSender:
        from confluent_kafka import Producer

        return cls(Producer(producer_config(kafka, health)), health)

    def send(self, topic: str, value: Any = None, key: Any = None, headers: Any = None, partition: int | None = None) -> Delivery:
        from confluent_kafka import KafkaException

        delivery = Delivery()
        try:
            self._producer.produce(
                topic,
                value=value,
                key=key,
                partition=-1 if partition is None else partition,
                on_delivery=delivery,
                headers=headers,
            )
        except BufferError as error:  # the local queue is full: the sink tries again at its next flush
            raise SendError(f"librdkafka's queue is full: {error}", retriable=True) from None
        except KafkaException as exception:
            refused = exception.args[0]
            raise SendError(f"{refused.name()}: {refused.str()}", retriable=refused.retriable()) from None
        self._producer.poll(0)
        return delivery

    def flush(self, timeout: float | None = None) -> None:
        """Wait up to ``timeout`` seconds (forever without) for every message sent to be acknowledged or failed."""
        remaining = self._producer.flush(-1 if timeout is None else timeout)
        if self._health is not None:
            self._health.raise_failure()
        if remaining:
            raise FlushTimeoutError(f"{remaining} message(s) still unacknowledged after {timeout} s")

    def close(self, timeout: float = 10.0) -> None:
        """Deliver what is queued (within ``timeout``); librdkafka frees the producer with the object."""
        remaining = self._producer.flush(timeout)
        if remaining:
            log.warning("closing the producer with %d message(s) undelivered", remaining)
