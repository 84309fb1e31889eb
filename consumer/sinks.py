"""Where the service's output goes: alert events and dead letters, each behind a small protocol.

Both are Kafka topics in production.  Sends are asynchronous and batched; the
service calls ``flush`` once per batch, before it commits the batch's offsets,
so an alert or dead letter is never lost to a commit that ran ahead of it.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

from monitor.codec import dumps
from monitor.schema import Rejection

log = logging.getLogger(__name__)

DETAIL_LIMIT = 1000
"""Characters of a rejection's detail kept in a dead-letter header."""


class Sender(Protocol):
    """The part of ``kafka.KafkaProducer`` the sinks use."""

    def send(self, topic: str, value: Any = None, key: Any = None, headers: Any = None) -> Any: ...

    def flush(self, timeout: float | None = None) -> None: ...


class AlertSink(Protocol):
    def publish(self, event: dict[str, Any]) -> None: ...

    def flush(self) -> None: ...


class DeadLetterSink(Protocol):
    def publish(
        self, value: bytes | None, key: bytes | None, rejection: Rejection, topic: str, partition: int, offset: int
    ) -> None: ...

    def flush(self) -> None: ...


class _TopicSink:
    """Shared by the Kafka sinks: one topic, asynchronous sends, one bounded flush per batch."""

    def __init__(self, sender: Sender, topic: str, flush_timeout_s: float = 30.0) -> None:
        self._sender = sender
        self._topic = topic
        self._flush_timeout_s = flush_timeout_s

    def flush(self) -> None:
        self._sender.flush(timeout=self._flush_timeout_s)


class KafkaAlertSink(_TopicSink):
    """Alert events as JSON on a topic, keyed by model id; each also logged as one line."""

    def publish(self, event: dict[str, Any]) -> None:
        payload = dumps(event)
        log.warning("alert %s", payload.decode())
        self._sender.send(self._topic, value=payload, key=event["model"].encode())


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
        self._sender.send(self._topic, value=value, key=key, headers=headers)


class AlertFanOut:
    """Sends every alert event to several sinks (the alerts topic, and Alertmanager when configured)."""

    def __init__(self, sinks: list[AlertSink]) -> None:
        self._sinks = sinks

    def publish(self, event: dict[str, Any]) -> None:
        for sink in self._sinks:
            sink.publish(event)

    def flush(self) -> None:
        for sink in self._sinks:
            sink.flush()
