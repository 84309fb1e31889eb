"""Where the service's output goes: alert events and dead letters, each behind a small protocol.

Both are Kafka topics in production.  Sends are asynchronous and batched; the
service calls ``flush`` once per batch, before it commits the batch's offsets,
so an alert or dead letter is never lost to a commit that ran ahead of it.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

from decaywatch.monitor.codec import dumps
from decaywatch.monitor.schema import Rejection

log = logging.getLogger(__name__)

DETAIL_LIMIT = 1000
"""Characters of a rejection's detail kept in a dead-letter header."""


class Sender(Protocol):
    """The part of ``kafka.KafkaProducer`` the sinks use."""

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


class _TopicSink:
    """Shared by the Kafka sinks: one topic, asynchronous sends, a bounded flush per batch, nothing dropped.

    Every send is kept until Kafka acknowledges it; a send that failed (the
    topic unavailable, the broker gone past the producer's own retries) is
    sent again at the next flush.  ``flush`` never raises: it says whether
    everything is delivered, and the service commits offsets only then, while
    consumption goes on.  After a flush that left sends pending, the next one
    waits only briefly, so an outage slows consumption little.
    """

    def __init__(self, sender: Sender, topic: str, flush_timeout_s: float = 10.0) -> None:
        self._sender = sender
        self._topic = topic
        self._flush_timeout_s = flush_timeout_s
        self._in_flight: list[tuple[dict[str, Any], Any]] = []
        self._behind = False
        self.failed_sends = 0
        """Sends that failed and were sent again (for the service's metrics)."""

    @property
    def pending(self) -> int:
        """Messages sent but not yet acknowledged."""
        return len(self._in_flight)

    def _send(self, **message: Any) -> None:
        self._in_flight.append((message, self._sender.send(self._topic, **message)))

    def flush(self) -> bool:
        resent: list[tuple[dict[str, Any], Any]] = []
        for message, future in self._in_flight:
            if _failed(future):
                self.failed_sends += 1
                future = self._sender.send(self._topic, **message)
            resent.append((message, future))
        try:
            self._sender.flush(timeout=0.1 if self._behind else self._flush_timeout_s)
        except Exception as error:  # KafkaTimeoutError and kin: what is not delivered stays in flight
            log.debug("flush of %s incomplete: %s", self._topic, error)
        self._in_flight = [(message, future) for message, future in resent if not _delivered(future)]
        self._behind = bool(self._in_flight)
        return not self._in_flight


def _failed(future: Any) -> bool:
    return future is not None and getattr(future, "is_done", True) and getattr(future, "exception", None) is not None


def _delivered(future: Any) -> bool:
    return future is None or (getattr(future, "is_done", True) and getattr(future, "exception", None) is None)


class KafkaAlertSink(_TopicSink):
    """Alert events as JSON on a topic, keyed by model id; each also logged as one line."""

    def publish(self, event: dict[str, Any]) -> None:
        payload = dumps(event)
        log.warning("alert %s", payload.decode())
        self._send(value=payload, key=event["model"].encode())


class KafkaDeadLetterSink(_TopicSink):
    """Rejected events with their original bytes, the reason in headers, and where they came from."""

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
        self._send(value=value, key=key, headers=headers)


class AlertFanOut:
    """Sends every alert event to several sinks (the alerts topic, and Alertmanager when configured)."""

    def __init__(self, sinks: list[AlertSink]) -> None:
        self._sinks = sinks

    def publish(self, event: dict[str, Any]) -> None:
        for sink in self._sinks:
            sink.publish(event)

    def flush(self) -> bool:
        return all([sink.flush() is not False for sink in self._sinks])
