"""Prometheus metrics: the exporter owns its registry and reads the monitor's latest snapshot at scrape time.

Per-model series are generated from the snapshot on every scrape (a custom
collector, as in Prometheus' guide to writing exporters), so a model that is no
longer tracked simply stops appearing: no stale series to clean up.  Service
counters that are not per model are ordinary prometheus-client metrics in the
same registry.

Names follow Prometheus conventions: base units, ``_ratio`` for 0..1 values,
``_total`` for counters, and a counter for each side of the accuracy ratio
(``correct_predictions_total`` / ``labeled_events_total``) so PromQL can compute
accuracy over any range it likes.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from types import MappingProxyType

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from decaywatch.monitor.schema import Reason
from decaywatch.monitor.snapshot import ModelSnapshot


class SnapshotCollector(Collector):
    """Renders per-model metrics from the most recent snapshot handed to ``publish``."""

    def __init__(self) -> None:
        self._snapshot: Mapping[str, ModelSnapshot] = MappingProxyType({})
        self._alerts: Mapping[tuple[str, str], int] = MappingProxyType({})
        self._processed: Mapping[str, float] = MappingProxyType({})

    def publish(
        self,
        snapshot: Mapping[str, ModelSnapshot],
        alerts: Mapping[tuple[str, str], int],
        processed: Mapping[str, float],
    ) -> None:
        """Swap in a new snapshot (reference assignments: a scrape sees the old or the new model, never half of one)."""
        self._snapshot = MappingProxyType(dict(snapshot))
        self._alerts = MappingProxyType(dict(alerts))
        self._processed = MappingProxyType(dict(processed))

    def withhold(self, models: set[str]) -> None:
        """Drop these models from what scrapes see, until the next ``publish``."""
        self._snapshot = MappingProxyType({m: s for m, s in self._snapshot.items() if m not in models})

    def describe(self) -> list[Metric]:
        return []  # generated per scrape; nothing to check for duplicates at registration

    def collect(self) -> Iterator[Metric]:
        models = list(self._snapshot.values())
        window_labels = ["model", "window"]
        accuracy = GaugeMetricFamily(
            "decaywatch_accuracy_ratio", "Rolling accuracy over the last N labeled events.", labels=window_labels
        )
        drop = GaugeMetricFamily(
            "decaywatch_accuracy_drop_ratio", "Baseline accuracy minus rolling accuracy.", labels=window_labels
        )
        lower = GaugeMetricFamily(
            "decaywatch_accuracy_lower_bound_ratio",
            "Lower bound of the 95% Wilson interval of the window's accuracy.",
            labels=window_labels,
        )
        upper = GaugeMetricFamily(
            "decaywatch_accuracy_upper_bound_ratio",
            "Upper bound of the 95% Wilson interval of the window's accuracy.",
            labels=window_labels,
        )
        statistic = GaugeMetricFamily(
            "decaywatch_rule_evidence",
            "The sequential rule's running evidence (log-likelihood ratio) for a fall, or while firing for a recovery.",
            labels=["model", "rule"],
        )
        rule_firing = GaugeMetricFamily(
            "decaywatch_rule_firing", "1 while the rule's alert is firing for the model, else 0.", labels=["model", "rule"]
        )
        needed = GaugeMetricFamily(
            "decaywatch_rule_evidence_threshold",
            "Evidence the sequential rule needs to fire or resolve.",
            labels=["model", "rule"],
        )
        binary = {
            "precision": GaugeMetricFamily(
                "decaywatch_precision_ratio", "Precision of the positive class over the count window.", labels=window_labels
            ),
            "recall": GaugeMetricFamily(
                "decaywatch_recall_ratio", "Recall of the positive class over the count window.", labels=window_labels
            ),
            "f1": GaugeMetricFamily(
                "decaywatch_f1_ratio", "F1 of the positive class over the count window.", labels=window_labels
            ),
            "brier": GaugeMetricFamily(
                "decaywatch_brier_score",
                "Mean squared error of the score over the count window (lower is better).",
                labels=window_labels,
            ),
        }
        window_events = GaugeMetricFamily(
            "decaywatch_window_labeled_events", "Labeled events currently in the window.", labels=window_labels
        )
        baseline = GaugeMetricFamily("decaywatch_baseline_accuracy_ratio", "Baseline accuracy.", labels=["model"])
        threshold = GaugeMetricFamily(
            "decaywatch_degradation_threshold_ratio",
            "Alert when baseline minus accuracy exceeds this.",
            labels=["model"],
        )
        floor = GaugeMetricFamily("decaywatch_accuracy_floor_ratio", "Alert when accuracy is at or below this.", labels=["model"])
        degraded = GaugeMetricFamily(
            "decaywatch_degraded", "1 while a degradation alert is firing for the model, else 0.", labels=["model"]
        )
        below_floor = GaugeMetricFamily(
            "decaywatch_below_floor", "1 while a floor alert is firing for the model, else 0.", labels=["model"]
        )
        last_event = GaugeMetricFamily(
            "decaywatch_last_event_timestamp_seconds", "Event time of the newest event seen.", labels=["model"]
        )
        processed = GaugeMetricFamily(
            "decaywatch_last_processed_timestamp_seconds",
            "Wall-clock time the monitor last processed an event of the model (for stalled-producer alerts).",
            labels=["model"],
        )
        events = CounterMetricFamily("decaywatch_events", "Valid prediction events.", labels=["model"])
        labeled = CounterMetricFamily("decaywatch_labeled_events", "Valid events that carried a label.", labels=["model"])
        correct = CounterMetricFamily(
            "decaywatch_correct_predictions", "Labeled events whose prediction equals the label.", labels=["model"]
        )
        late = CounterMetricFamily(
            "decaywatch_late_events",
            "Events later than the allowed lateness behind the newest event time; left out of time windows.",
            labels=["model"],
        )
        alerts = CounterMetricFamily(
            "decaywatch_alerts", "Alert events emitted, by status (firing, resolved).", labels=["model", "status"]
        )
        for m in models:
            for w in m.windows:
                labels = [m.model, w.label]
                window_events.add_metric(labels, w.labeled)
                if w.accuracy is not None:
                    accuracy.add_metric(labels, w.accuracy)
                if w.lower_bound is not None and w.upper_bound is not None:
                    lower.add_metric(labels, w.lower_bound)
                    upper.add_metric(labels, w.upper_bound)
                if w.drop is not None:
                    drop.add_metric(labels, w.drop)
            for label, values in (m.binary_metrics or {}).items():
                for name, value in values.items():
                    if value is not None:
                        binary[name].add_metric([m.model, label], value)
            for rule in m.rules:
                rule_firing.add_metric([m.model, rule.name], float(rule.firing))
                if rule.statistic is not None and rule.evidence is not None:
                    statistic.add_metric([m.model, rule.name], rule.statistic)
                    needed.add_metric([m.model, rule.name], rule.evidence)
            if m.baseline is not None:
                baseline.add_metric([m.model], m.baseline)
            threshold.add_metric([m.model], m.threshold)
            if m.floor is not None:
                floor.add_metric([m.model], m.floor)
                below_floor.add_metric([m.model], float(m.below_floor))
            degraded.add_metric([m.model], float(m.degraded))
            if m.last_event_time is not None:
                last_event.add_metric([m.model], m.last_event_time)
            if m.model in self._processed:
                processed.add_metric([m.model], self._processed[m.model])
            events.add_metric([m.model], m.events)
            labeled.add_metric([m.model], m.labeled)
            correct.add_metric([m.model], m.correct)
            late.add_metric([m.model], m.late_events)
            for status in ("firing", "resolved"):
                alerts.add_metric([m.model, status], self._alerts.get((m.model, status), 0))
        yield from (
            accuracy,
            lower,
            upper,
            statistic,
            needed,
            rule_firing,
            drop,
            window_events,
            baseline,
            threshold,
            floor,
            degraded,
            below_floor,
            last_event,
            processed,
        )
        tracked = GaugeMetricFamily("decaywatch_tracked_models", "Models tracked now (bounded by [limits] max_models).")
        tracked.add_metric([], len(models))
        yield tracked
        yield from binary.values()
        yield from (events, labeled, correct, late, alerts)


class ServiceMetrics:
    """All the service's metrics, in a registry of its own (never the global default one)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self.models = SnapshotCollector()
        self._lag_labels: set[tuple[str, str]] = set()
        self.registry.register(self.models)
        self.invalid_events = Counter(
            "decaywatch_invalid_events",
            "Events rejected by validation and sent to the dead-letter topic, by reason.",
            ["reason"],
            registry=self.registry,
        )
        for reason in Reason.ALL:
            self.invalid_events.labels(reason)  # export zeros, so rate() works from the first rejection
        self.batches = Counter("decaywatch_batches", "Batches polled, processed and committed.", registry=self.registry)
        self.state_restore_seconds = Gauge(
            "decaywatch_state_restore_seconds",
            "How long the last restore of moved partitions' model state took.",
            registry=self.registry,
        )
        self.restored_models = Counter(
            "decaywatch_restored_models",
            "Models restored from the state changelog after partitions moved here.",
            registry=self.registry,
        )
        self.undelivered_batches = Counter(
            "decaywatch_undelivered_batches",
            "Batches whose alerts or dead letters Kafka had not acknowledged by the end of the batch (retried; no commit meanwhile).",
            registry=self.registry,
        )
        self.untracked_events = Counter(
            "decaywatch_untracked_events",
            "Valid events of models beyond the cap on tracked models ([limits] max_models): counted, not tracked.",
            registry=self.registry,
        )
        self.batch_duration = Histogram(
            "decaywatch_batch_duration_seconds",
            "Time to decode, evaluate and publish one batch.",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
            registry=self.registry,
        )
        self.consumer_lag = Gauge(
            "decaywatch_consumer_lag_messages",
            "Messages between the monitor's position and the end of each assigned partition.",
            ["topic", "partition"],
            registry=self.registry,
        )
        self.last_batch = Gauge(
            "decaywatch_last_batch_timestamp_seconds",
            "Wall-clock time the last batch was committed.",
            registry=self.registry,
        )

    def set_lag(self, lags: Mapping[tuple[str, int], int]) -> None:
        """Export lag for the assigned partitions; partitions no longer assigned are removed."""
        current = {(topic, str(partition)): lag for (topic, partition), lag in lags.items()}
        for labels in list(self._lag_labels - current.keys()):
            self.consumer_lag.remove(*labels)
        for labels, lag in current.items():
            self.consumer_lag.labels(*labels).set(lag)
        self._lag_labels = set(current)


class DeliveryCollector(Collector):
    """Alertmanager push delivery counts, read from the sink at scrape time."""

    def __init__(self, sink: object) -> None:
        self._sink = sink

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        sink = self._sink
        pending = GaugeMetricFamily(
            "decaywatch_alertmanager_pending_alerts", "Alert states not yet acknowledged by an Alertmanager."
        )
        pending.add_metric([], getattr(sink, "pending"))
        yield pending
        for name, attribute, text in (
            (
                "decaywatch_alertmanager_delivered_alerts",
                "delivered",
                "Alerts acknowledged by an Alertmanager (each re-send counts).",
            ),
            (
                "decaywatch_alertmanager_failed_attempts",
                "failed_attempts",
                "Pushes to an Alertmanager that failed and will be retried.",
            ),
            ("decaywatch_alertmanager_rejected_alerts", "rejected", "Alerts an Alertmanager refused (4xx); not retried."),
            ("decaywatch_alertmanager_dropped_alerts", "dropped", "Alerts forgotten because too many were outstanding."),
        ):
            counter = CounterMetricFamily(name, text)
            counter.add_metric([], getattr(sink, attribute))
            yield counter


class OutputCollector(Collector):
    """Pending and failed sends of the Kafka outputs (alerts, dead letters, state), read at scrape time."""

    def __init__(self, outputs: dict[str, object]) -> None:
        self._outputs = outputs

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        pending = GaugeMetricFamily(
            "decaywatch_output_pending_messages", "Messages sent to Kafka and not yet acknowledged, by output.", labels=["output"]
        )
        failed = CounterMetricFamily(
            "decaywatch_output_failed_sends", "Sends to Kafka that failed and were sent again, by output.", labels=["output"]
        )
        for name, sink in self._outputs.items():
            pending.add_metric([name], getattr(sink, "pending"))
            failed.add_metric([name], getattr(sink, "failed_sends"))
        yield pending
        yield failed
