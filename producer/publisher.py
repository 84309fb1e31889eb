"""Send encoded records to Kafka (or anything shaped like it), optionally paced, and report what happened.

The publisher only knows the :class:`Sender` protocol -- ``send(topic, key=,
value=)`` returning a future with ``add_errback``, and ``flush(timeout)`` -- which
``kafka.KafkaProducer`` satisfies as is.  Unit tests pass an in-memory fake, and
``--jsonl`` passes a :class:`JsonLinesSender`, so pacing, counting and failure
handling are the same code everywhere.

Throughput rules: never flush per message (the producer batches; a flush per
send would make every event a round trip), flush once at the end; pace with
the injected clock by sleeping once per chunk of events rather than per event.

A record is ``(key, value)``, sent to the call's topic, or ``(key, value,
topic)``, sent to its own: label events can go to a labels topic through the
same producer, so they share its partitioner (keyed by model id, a model's
labels land in the same partition number as its predictions).

Record timestamps are deliberately left to the producer (wall-clock time):
the event time travels in the payload's ``ts``.  Stamping records with 2024
event times would let the broker's time-based retention delete them on
arrival and can be rejected outright by ``log.message.timestamp.*`` limits.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from kafka import KafkaProducer

__all__ = [
    "DeliveryFuture",
    "JsonLinesSender",
    "PublishError",
    "PublishReport",
    "Record",
    "Sender",
    "describe_error",
    "make_kafka_producer",
    "pacing_chunk",
    "publish",
]

MAX_CHUNK = 1000
"""At most this many events are sent between two looks at the clock."""

MAX_ERRORS_KEPT = 5
"""Distinct delivery error messages kept for the report; the count covers them all."""


Record = tuple[bytes | None, bytes] | tuple[bytes | None, bytes, str]
"""``(key, value)`` for the call's topic, or ``(key, value, topic)``."""


class DeliveryFuture(Protocol):
    """What ``send`` returns: something that will call ``errback(*args, exception)`` if delivery fails."""

    def add_errback(self, f: Callable[..., Any], *args: Any, **kwargs: Any) -> Any: ...


class Sender(Protocol):
    """The two calls the publisher needs from a Kafka producer (``kafka.KafkaProducer`` fits)."""

    def send(self, topic: str, value: bytes | None = None, key: bytes | None = None) -> DeliveryFuture: ...

    def flush(self, timeout: float | None = None) -> None: ...


class PublishError(RuntimeError):
    """``send`` itself raised (not a delivery failure): publishing stopped after ``sent`` events."""

    def __init__(self, message: str, sent: int) -> None:
        super().__init__(message)
        self.sent = sent


@dataclass(frozen=True)
class PublishReport:
    """What one :func:`publish` call did.

    ``failed`` counts records whose delivery future reported an error (by the
    time ``flush`` returned); ``flush_error`` is set when the final flush itself
    failed or timed out, in which case some outcomes are unknown.  ``topic`` is
    the call's topic; ``per_topic`` counts the records sent to each topic.
    """

    topic: str
    per_model: dict[str, int]
    total: int
    seconds: float
    per_topic: dict[str, int] = field(default_factory=dict)
    failed: int = 0
    failed_per_model: dict[str, int] = field(default_factory=dict)
    errors: tuple[str, ...] = ()
    flush_error: str | None = None
    slept: float = 0.0

    @property
    def events_per_second(self) -> float:
        """Average send rate over the whole call, including the final flush."""
        return self.total / self.seconds if self.seconds > 0 else math.inf if self.total else 0.0

    @property
    def ok(self) -> bool:
        """Every record is known to be delivered."""
        return self.failed == 0 and self.flush_error is None


def describe_error(exc: BaseException) -> str:
    """``Type: message`` for one line of output; kafka-python's errors already start with their type, so not twice."""
    name, text = type(exc).__name__, str(exc)
    if text == name or text.startswith(f"{name}:"):
        return text
    return f"{name}: {text}" if text else name


def pacing_chunk(rate: float) -> int:
    """Events per sleep at ``rate`` events/s: about a tenth of a second's worth, between 1 and 1000.

    Small enough that a slow rate is smooth (100/s sends 10 at a time, not a
    burst of 1000 every 10 s), large enough that a fast one costs few sleeps.
    """
    return max(1, min(MAX_CHUNK, int(rate / 10)))


class _Failures:
    """Collects delivery errors; errbacks run on the producer's I/O thread, hence the lock."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.count = 0
        self.per_key: dict[bytes | None, int] = {}
        self.messages: list[str] = []

    def __call__(self, key: bytes | None, exc: BaseException) -> None:
        message = describe_error(exc)
        with self._lock:
            self.count += 1
            self.per_key[key] = self.per_key.get(key, 0) + 1
            if len(self.messages) < MAX_ERRORS_KEPT and message not in self.messages:
                self.messages.append(message)


def _model_name(key: bytes | None) -> str:
    return "<no key>" if key is None else key.decode("utf-8", "replace")


def publish(
    records: Iterable[Record],
    sender: Sender,
    topic: str,
    rate: float | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    *,
    flush_timeout: float | None = 60.0,
) -> PublishReport:
    """Send every ``(key, value)`` record to ``topic`` (a ``(key, value, topic)`` one to its own), at most ``rate`` events/s overall, then flush once.

    Pacing: after every :func:`pacing_chunk` events, sleep until ``n / rate``
    seconds (by ``clock``) have passed since the start; no sleep when running
    behind.  Delivery failures are counted through each future's errback and
    reported, not raised; an exception from ``send`` itself (e.g. the producer
    could not fetch metadata within ``max_block_ms``) stops publishing with a
    :class:`PublishError`.
    """
    if rate is not None and not (rate > 0 and math.isfinite(rate)):
        raise ValueError(f"rate must be a positive number of events per second, got {rate!r}")
    chunk = pacing_chunk(rate) if rate is not None else 0
    failures = _Failures()
    counts: dict[bytes | None, int] = {}
    per_topic: dict[str, int] = {}
    sent = 0
    slept = 0.0
    start = clock()
    for record in records:
        key, value = record[0], record[1]
        target = record[2] if len(record) == 3 else topic
        try:
            future = sender.send(target, key=key, value=value)
        except Exception as exc:
            raise PublishError(f"sending event {sent + 1} to {target!r} failed: {describe_error(exc)}", sent) from exc
        future.add_errback(failures, key)
        counts[key] = counts.get(key, 0) + 1
        per_topic[target] = per_topic.get(target, 0) + 1
        sent += 1
        if chunk and rate is not None and sent % chunk == 0:  # chunk is 0 without a rate
            ahead = sent / rate - (clock() - start)
            if ahead > 0:
                sleep(ahead)
                slept += ahead
    flush_error = None
    try:
        sender.flush(timeout=flush_timeout)
    except Exception as exc:  # noqa: BLE001 - a timeout or a closed producer: outcomes unknown, say so in the report
        flush_error = describe_error(exc)
    seconds = clock() - start
    with failures._lock:
        failed, failed_per_key, messages = failures.count, dict(failures.per_key), tuple(failures.messages)
    return PublishReport(
        topic=topic,
        per_model={_model_name(k): n for k, n in counts.items()},
        total=sent,
        seconds=seconds,
        per_topic=per_topic,
        failed=failed,
        failed_per_model={_model_name(k): n for k, n in failed_per_key.items()},
        errors=messages,
        flush_error=flush_error,
        slept=slept,
    )


class _Delivered:
    """A future that has already succeeded: local writes either work at once or raise from ``send``."""

    __slots__ = ()

    def add_errback(self, f: Callable[..., Any], *args: Any, **kwargs: Any) -> _Delivered:
        return self


_DELIVERED = _Delivered()


class JsonLinesSender:
    """A :class:`Sender` that writes each value as one line of a binary file (``--jsonl``), for offline replay.

    The topic and key are not written: the key is the event's ``model`` field,
    so a replay tool can recover it.
    """

    def __init__(self, out: IO[bytes]) -> None:
        self._out = out

    def send(self, topic: str, value: bytes | None = None, key: bytes | None = None) -> _Delivered:
        if value is None:
            raise ValueError("JSON Lines output needs a value for every record")
        self._out.write(value)
        self._out.write(b"\n")
        return _DELIVERED

    def flush(self, timeout: float | None = None) -> None:
        self._out.flush()


def make_kafka_producer(
    bootstrap_servers: str | Sequence[str],
    *,
    client_id: str = "decaywatch-producer",
    linger_ms: int = 20,
    batch_size: int = 256 * 1024,
    compression_type: str | None = None,
    **security: Any,
) -> KafkaProducer:
    """A ``KafkaProducer`` tuned for bulk synthetic load.

    ``security`` passes straight through to ``KafkaProducer``: ``security_protocol``,
    ``sasl_*``, ``ssl_*`` (or any other setting, e.g. ``bootstrap_timeout_ms``).

    ``linger_ms=20`` and 256 KiB batches let kafka-python fill large batches
    (its defaults, 0 ms and 16 KiB, send many tiny requests).  Compression stays
    off by default: lz4 is not a dependency, and on a local broker the CPU
    costs more than the bytes saved.  ``acks='all'`` and idempotence stay at
    kafka-python's defaults, so every counted delivery is durable.  Raises
    ``kafka.errors.KafkaTimeoutError`` when no bootstrap server answers within
    ``bootstrap_timeout_ms`` (30 s by default).
    """
    from kafka import KafkaProducer

    servers = (
        [s.strip() for s in bootstrap_servers.split(",") if s.strip()]
        if isinstance(bootstrap_servers, str)
        else list(bootstrap_servers)
    )
    return KafkaProducer(
        bootstrap_servers=servers,
        client_id=client_id,
        linger_ms=linger_ms,
        batch_size=batch_size,
        compression_type=compression_type,
        **security,
    )
