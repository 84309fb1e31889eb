"""The entry point's side effects, created in one place and closed in reverse order.

``MonitorRuntime`` connects the Kafka consumer and producer, builds the sinks,
the metrics registry and the HTTP server, and hands them to ``MonitorService``.
The CLI and the demo both use it; tests of the loop itself use in-memory fakes
instead.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

from decaywatch.consumer.alertmanager import AlertmanagerSink
from decaywatch.consumer.changelog import STATE_TOPIC_CONFIG, KafkaStateStore
from decaywatch.consumer.endpoints import HttpEndpoints, HttpServer, TlsSettings
from decaywatch.consumer.heap import heap_trimmer
from decaywatch.consumer.ledger import PartitionLedger
from decaywatch.consumer.metrics import DeliveryCollector, OutputCollector, ServiceMetrics
from decaywatch.consumer.service import MonitorService
from decaywatch.consumer.sinks import AlertFanOut, AlertSink, KafkaAlertSink, KafkaDeadLetterSink, Sender
from decaywatch.consumer.source import GroupSource, KafkaEventSource, RebalanceRecorder
from decaywatch.consumer.topics import check_copartitioned, create_missing, partition_counts
from decaywatch.monitor.config import MonitorConfig
from decaywatch.monitor.engine import Monitor

log = logging.getLogger(__name__)

KAFKA_CLIENTS = ("kafka-python", "confluent")
"""The Kafka client libraries the service runs on (``--kafka-client``); the first is the default."""


@dataclass(frozen=True, slots=True)
class MonitorSettings:
    """Everything the service needs to run, already parsed and validated."""

    kafka: dict[str, Any] = field(repr=False)
    """kafka-python client settings (may hold a SASL password: kept out of ``repr``)."""
    topic: str = "predictions"
    labels_topic: str | None = None
    """Label events also come on this topic, co-partitioned with ``topic`` (checked at start)."""
    alerts_topic: str = "model-alerts"
    dead_letter_topic: str = "predictions-dlq"
    group: str = "decaywatch-monitor"
    metrics_addr: str = "0.0.0.0"
    metrics_port: int = 9464
    batch_size: int = 50_000
    """Most records per poll.  A poll returns what has arrived, so at a steady rate batches stay small and latency
    low; in a backlog, large batches spread the per-model work of a batch over many events (with 1,000 models on a
    topic, the core handled about 17,000 events/s in polls of 5,000 and about 90,000 in polls of 75,000)."""
    config: MonitorConfig = field(default_factory=MonitorConfig)
    alertmanager_urls: tuple[str, ...] = ()
    """Push alert events straight to these Alertmanagers (API v2), besides the alerts topic."""
    tls: TlsSettings | None = None
    """Serve /metrics and the other endpoints over HTTPS."""
    state_topic: str | None = ""
    """Compacted changelog of model state ("" = GROUP-state; None = keep no state: a moved partition starts afresh)."""
    session_timeout_ms: int | None = None
    """How soon the group notices a dead member (kafka-python's default, 45 s, when None)."""
    checkpoint_interval_s: float = 5.0
    """How often model state is checkpointed and offsets committed (with a state topic)."""
    kafka_client: str = "kafka-python"
    """The Kafka client library under the source and the outputs: "kafka-python", or "confluent" (librdkafka,
    the ``decaywatch[confluent]`` extra; see ``consumer/confluent.py``)."""
    export_interval_s: float = 0.01
    """How often, at most, /metrics gets a new snapshot while batches stream in (at once on alerts and when idle).

    The service stretches it so snapshots take at most a tenth of the loop: with 10 models that is about every
    batch (a snapshot takes about a millisecond), with 1,000 models touched per batch about once a second."""
    detailed_metrics: bool = False
    """Also export the per-model series that no dashboard panel or rule uses (they repeat others, or diagnose)."""


class MonitorRuntime:
    """Owns the service's connections and server; use as a context manager."""

    def __init__(self, settings: MonitorSettings) -> None:
        self.settings = settings
        self._closers: list[Any] = []
        try:
            state_topic = settings.state_topic if settings.state_topic != "" else f"{settings.group}-state"
            counts = partition_counts(settings.kafka, self.topics)
            if settings.labels_topic is not None:
                check_copartitioned(counts, settings.topic, settings.labels_topic)
            outputs: dict[str, tuple[int, dict[str, str]]] = {
                settings.alerts_topic: (-1, {}),
                settings.dead_letter_topic: (-1, {}),
            }
            if state_topic is not None:  # compacted, one partition per input partition
                outputs[state_topic] = (counts[settings.topic], STATE_TOPIC_CONFIG)
            create_missing(settings.kafka, outputs)
            self.metrics = ServiceMetrics(detailed=settings.detailed_metrics)
            ledger = PartitionLedger(on_withhold=self.metrics.models.withhold)
            recorder = RebalanceRecorder(on_revoked=ledger.withhold)
            self.source, producer = self._connect(settings, recorder)
            kafka_alerts = KafkaAlertSink(producer, settings.alerts_topic)
            dead_letters = KafkaDeadLetterSink(producer, settings.dead_letter_topic)
            self.metrics.registry.register(OutputCollector({"alerts": kafka_alerts, "dead_letters": dead_letters}))
            alerts: AlertSink = kafka_alerts
            if settings.alertmanager_urls:
                pusher = AlertmanagerSink(settings.alertmanager_urls).start()
                self._closers.append(lambda: pusher.close(timeout=5.0))
                self.metrics.registry.register(DeliveryCollector(pusher))
                alerts = AlertFanOut([alerts, pusher])
            self.service = MonitorService(
                source=self.source,
                monitor=Monitor(settings.config),
                alerts=alerts,
                dead_letters=dead_letters,
                metrics=self.metrics,
                clock=time.time,
                state_store=None if state_topic is None else KafkaStateStore(producer, state_topic, settings.kafka),
                checkpoint_interval_s=settings.checkpoint_interval_s,
                ledger=ledger,
                export_interval_s=settings.export_interval_s,
                labels_topic=settings.labels_topic,
                trim_heap=heap_trimmer(),
            )
            endpoints = HttpEndpoints(self.metrics.registry, self._readiness, self._models)
            self.http = HttpServer(endpoints, settings.metrics_addr, settings.metrics_port, settings.tls).start()
            self._closers.append(self.http.close)
        except BaseException:
            self.close()
            raise

    def _connect(self, settings: MonitorSettings, recorder: RebalanceRecorder) -> tuple[GroupSource, Sender]:
        """The event source and the outputs' producer, on the chosen client; each registered for closing."""
        if settings.kafka_client == "confluent":
            from decaywatch.consumer.confluent import ClientHealth, ConfluentEventSource, ConfluentSender

            health = ClientHealth(settings.kafka)  # one view of the client's errors and readiness for both
            source: GroupSource = ConfluentEventSource.connect(
                self.topics, settings.group, settings.batch_size, settings.kafka, recorder, settings.session_timeout_ms, health
            )
            self._closers.append(source.close)
            sender = ConfluentSender.connect(settings.kafka, health)
            self._closers.append(lambda: sender.close(timeout=10))
            return source, sender
        if settings.kafka_client != "kafka-python":
            raise ValueError(f"unknown Kafka client {settings.kafka_client!r}; known: {', '.join(KAFKA_CLIENTS)}")
        from kafka import KafkaProducer

        source = KafkaEventSource.connect(
            self.topics, settings.group, settings.batch_size, settings.kafka, recorder, settings.session_timeout_ms
        )
        self._closers.append(source.close)
        producer = KafkaProducer(
            **{
                "linger_ms": 5,
                "max_request_size": 8 * 1024 * 1024,
                "max_block_ms": 500,  # a topic without metadata holds the loop 0.5 s per flush, not 60 s
                # kafka-python 3.0.12 wedges an idempotent producer for good after a retried batch expires
                # (it resets the producer id and never asks for a new one): the sinks keep order themselves.
                "enable_idempotence": False,
                "acks": "all",
                "max_in_flight_requests_per_connection": 1,  # keeps each partition in order through retries
                **settings.kafka,
            }
        )
        self._closers.append(lambda: producer.close(timeout=10))
        return source, producer

    @property
    def topics(self) -> list[str]:
        """The input topics: predictions, and labels when they come on their own."""
        labels = self.settings.labels_topic
        return [self.settings.topic] if labels is None else [self.settings.topic, labels]

    def _readiness(self) -> tuple[bool, str]:
        assigned = self.source.assigned_partitions
        if not assigned:
            return False, "not ready: no partitions assigned yet (connecting to Kafka or joining the group)"
        if not self.source.coordinator_known:
            return False, "not ready: the group coordinator is unreachable (is Kafka down?)"
        return True, f"ready: {assigned} partition(s) assigned"

    def _models(self) -> dict[str, Any]:
        return {name: model_view(snap) for name, snap in self.service.snapshot().items()}

    def close(self) -> None:
        while self._closers:
            closer = self._closers.pop()
            try:
                closer()
            except Exception:  # closing must go on for the others
                log.exception("error while closing")

    def __enter__(self) -> MonitorRuntime:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def model_view(snapshot: Any) -> dict[str, Any]:
    """A model's state as plain JSON (for ``/models``)."""
    return {
        "events": snapshot.events,
        "labeled_events": snapshot.labeled,
        "baseline_accuracy": snapshot.baseline,
        "baseline_date": snapshot.baseline_date,
        "threshold": snapshot.threshold,
        "floor": snapshot.floor,
        "state": "degraded" if snapshot.degraded else ("below_floor" if snapshot.below_floor else "ok"),
        "open_alert_ids": list(snapshot.open_alert_ids),
        "late_events": snapshot.late_events,
        "windows": {
            w.label: {
                "accuracy": w.accuracy,
                "lower_bound": w.lower_bound,
                "upper_bound": w.upper_bound,
                "drop": w.drop,
                "labeled_events": w.labeled,
            }
            for w in snapshot.windows
        },
        "rules": {r.name: {"firing": r.firing, "evidence": r.statistic, "evidence_needed": r.evidence} for r in snapshot.rules},
        "labels": label_view(snapshot),
    }


def label_view(snapshot: Any) -> dict[str, Any] | None:
    """A model's label health for ``/models`` (``None`` while it has only inline labels)."""
    labels = snapshot.labels
    if labels is None:
        return None
    return {
        "pending_predictions": labels.pending,
        "orphan_labels": labels.orphans,
        "joined": labels.joined,
        "median_label_delay_seconds": labels.median_delay,
        "coverage": {w.label: w.coverage for w in snapshot.windows if w.predicted is not None},
        "unlabeled": labels.unlabeled,
        "unmatched": labels.unmatched,
    }
