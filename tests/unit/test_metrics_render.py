"""/metrics from kept per-model text: the same series as building every sample per scrape, each family whole, no stale model.

The oracle is the collector as it was before prepared text (``TodaysCollector``
below, kept verbatim in substance): with ``detailed=True`` the page must match
it byte for byte in both formats, and by default it must match it less the
opt-in series.
"""

from __future__ import annotations

import dataclasses
import gzip
import math
import urllib.request
from collections.abc import Callable, Iterable, Iterator, Mapping

import numpy as np
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.openmetrics.parser import text_string_to_metric_families as openmetrics_families
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from decaywatch.consumer.endpoints import HttpEndpoints, HttpServer
from decaywatch.consumer.metrics import PreparedFamily, ServiceMetrics, exposition
from decaywatch.consumer.runtime import model_view
from decaywatch.monitor.config import ModelPolicy, MonitorConfig
from decaywatch.monitor.engine import Monitor
from decaywatch.monitor.schema import validate
from decaywatch.monitor.snapshot import ModelSnapshot, RuleSnapshot, WindowSnapshot

Alerts = Mapping[tuple[str, str], int]
OPENMETRICS = "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.6,text/plain;version=0.0.4;q=0.3"
ACCEPTS = (
    None,
    "",
    "*/*",
    "text/plain",
    "text/plain;version=1.0.0;escaping=allow-utf-8",
    "text/plain;version=1.0.0;escaping=dots",  # renames series: the page falls back to prometheus-client's writer
    "application/openmetrics-text",
    "application/openmetrics-text;version=1.0.0",
    "application/openmetrics-text;version=1.0.0;escaping=values",
    OPENMETRICS,
)
OPT_IN = "decaywatch_late_events"
"""The opt-in family (``decaywatch_rule_firing`` of the degradation and floor rules is the other opt-in)."""
parse_openmetrics: Callable[[str], Iterable[Metric]] = openmetrics_families  # untyped upstream
go_float: Callable[[float], str] = floatToGoString  # untyped upstream


class TodaysCollector(Collector):
    """The per-model families as every scrape built them before prepared text: the oracle."""

    def __init__(self, snapshot: Mapping[str, ModelSnapshot], alerts: Alerts, processed: Mapping[str, float]) -> None:
        self._snapshot, self._alerts, self._processed = snapshot, alerts, processed

    def collect(self) -> Iterator[Metric]:
        wl, rl, ml = ["model", "window"], ["model", "rule"], ["model"]
        accuracy = GaugeMetricFamily("decaywatch_accuracy_ratio", "Rolling accuracy over the last N labeled events.", labels=wl)
        drop = GaugeMetricFamily("decaywatch_accuracy_drop_ratio", "Baseline accuracy minus rolling accuracy.", labels=wl)
        lower = GaugeMetricFamily(
            "decaywatch_accuracy_lower_bound_ratio", "Lower bound of the 95% Wilson interval of the window's accuracy.", labels=wl
        )
        upper = GaugeMetricFamily(
            "decaywatch_accuracy_upper_bound_ratio", "Upper bound of the 95% Wilson interval of the window's accuracy.", labels=wl
        )
        statistic = GaugeMetricFamily(
            "decaywatch_rule_evidence",
            "The sequential rule's running evidence (log-likelihood ratio) for a fall, or while firing for a recovery.",
            labels=rl,
        )
        firing = GaugeMetricFamily(
            "decaywatch_rule_firing", "1 while the rule's alert is firing for the model, else 0.", labels=rl
        )
        needed = GaugeMetricFamily(
            "decaywatch_rule_evidence_threshold", "Evidence the sequential rule needs to fire or resolve.", labels=rl
        )
        inflation = GaugeMetricFamily(
            "decaywatch_rule_variance_inflation",
            "What the sequential rule divides each outcome's evidence by because errors come in runs (1: independent).",
            labels=rl,
        )
        binary = {
            "precision": GaugeMetricFamily(
                "decaywatch_precision_ratio", "Precision of the positive class over the count window.", labels=wl
            ),
            "recall": GaugeMetricFamily(
                "decaywatch_recall_ratio", "Recall of the positive class over the count window.", labels=wl
            ),
            "f1": GaugeMetricFamily("decaywatch_f1_ratio", "F1 of the positive class over the count window.", labels=wl),
            "brier": GaugeMetricFamily(
                "decaywatch_brier_score", "Mean squared error of the score over the count window (lower is better).", labels=wl
            ),
        }
        window_events = GaugeMetricFamily(
            "decaywatch_window_labeled_events", "Labeled events currently in the window.", labels=wl
        )
        baseline = GaugeMetricFamily("decaywatch_baseline_accuracy_ratio", "Baseline accuracy.", labels=ml)
        threshold = GaugeMetricFamily(
            "decaywatch_degradation_threshold_ratio", "Alert when baseline minus accuracy exceeds this.", labels=ml
        )
        floor = GaugeMetricFamily("decaywatch_accuracy_floor_ratio", "Alert when accuracy is at or below this.", labels=ml)
        degraded = GaugeMetricFamily(
            "decaywatch_degraded", "1 while a degradation alert is firing for the model, else 0.", labels=ml
        )
        below = GaugeMetricFamily("decaywatch_below_floor", "1 while a floor alert is firing for the model, else 0.", labels=ml)
        last_event = GaugeMetricFamily(
            "decaywatch_last_event_timestamp_seconds", "Event time of the newest event seen.", labels=ml
        )
        processed = GaugeMetricFamily(
            "decaywatch_last_processed_timestamp_seconds",
            "Wall-clock time the monitor last processed an event of the model (for stalled-producer alerts).",
            labels=ml,
        )
        events = CounterMetricFamily("decaywatch_events", "Valid prediction events.", labels=ml)
        labeled = CounterMetricFamily("decaywatch_labeled_events", "Valid events that carried a label.", labels=ml)
        correct = CounterMetricFamily(
            "decaywatch_correct_predictions", "Labeled events whose prediction equals the label.", labels=ml
        )
        late = CounterMetricFamily(
            "decaywatch_late_events",
            "Events later than the allowed lateness behind the newest event time; left out of time windows.",
            labels=ml,
        )
        alerts = CounterMetricFamily(
            "decaywatch_alerts", "Alert events emitted, by status (firing, resolved).", labels=["model", "status"]
        )
        label_families = LabelFamilies()
        for m in self._snapshot.values():
            label_families.add(m)
            for w in m.windows:
                window_events.add_metric([m.model, w.label], w.labeled)
                if w.accuracy is not None:
                    accuracy.add_metric([m.model, w.label], w.accuracy)
                if w.lower_bound is not None and w.upper_bound is not None:
                    lower.add_metric([m.model, w.label], w.lower_bound)
                    upper.add_metric([m.model, w.label], w.upper_bound)
                if w.drop is not None:
                    drop.add_metric([m.model, w.label], w.drop)
            for label, values in (m.binary_metrics or {}).items():
                for name, value in values.items():
                    if value is not None:
                        binary[name].add_metric([m.model, label], value)
            for rule in m.rules:
                firing.add_metric([m.model, rule.name], float(rule.firing))
                if rule.statistic is not None and rule.evidence is not None:
                    statistic.add_metric([m.model, rule.name], rule.statistic)
                    needed.add_metric([m.model, rule.name], rule.evidence)
                if rule.inflation is not None:
                    inflation.add_metric([m.model, rule.name], rule.inflation)
            if m.baseline is not None:
                baseline.add_metric([m.model], m.baseline)
            threshold.add_metric([m.model], m.threshold)
            if m.floor is not None:
                floor.add_metric([m.model], m.floor)
                below.add_metric([m.model], float(m.below_floor))
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
        yield from (accuracy, lower, upper, statistic, needed, inflation, firing, drop, window_events, baseline, threshold, floor)
        yield from (degraded, below, last_event, processed)
        tracked = GaugeMetricFamily("decaywatch_tracked_models", "Models tracked now (bounded by [limits] max_models).")
        tracked.add_metric([], len(self._snapshot))
        yield tracked
        yield from binary.values()
        yield from (events, labeled, correct, late, alerts)
        yield from label_families.families()


class LabelFamilies:
    """The oracle's label-health families, built with prometheus-client's own family classes."""

    def __init__(self) -> None:
        ml, rl = ["model"], ["model", "reason"]
        self.pending = GaugeMetricFamily(
            "decaywatch_pending_predictions", "Predictions with an event_id waiting for their label event.", labels=ml
        )
        self.orphans = GaugeMetricFamily(
            "decaywatch_orphan_labels", "Label events waiting for their prediction (they came first).", labels=ml
        )
        self.joined = CounterMetricFamily("decaywatch_labels_joined", "Label events joined to their prediction.", labels=ml)
        self.delay = HistogramMetricFamily(
            "decaywatch_label_delay_seconds", "Label time minus prediction time (event time) of joined outcomes.", labels=ml
        )
        self.unlabeled = CounterMetricFamily(
            "decaywatch_predictions_unlabeled",
            "Predictions that left without their label, by reason (ttl, capacity).",
            labels=rl,
        )
        self.coverage = GaugeMetricFamily(
            "decaywatch_label_coverage_ratio",
            "Share of the predictions in the event-time window whose label is in.",
            labels=["model", "window"],
        )
        self.unmatched = CounterMetricFamily(
            "decaywatch_labels_unmatched",
            "Label events that joined no prediction, by reason (orphan_expired, duplicate, type_mismatch).",
            labels=rl,
        )

    def add(self, m: ModelSnapshot) -> None:
        labels = m.labels
        if labels is None:
            return
        for w in m.windows:
            if w.coverage is not None:
                self.coverage.add_metric([m.model, w.label], w.coverage)
        self.pending.add_metric([m.model], labels.pending)
        self.orphans.add_metric([m.model], labels.orphans)
        self.joined.add_metric([m.model], labels.joined)
        bounds = [go_float(b) for b in (*labels.delay_bounds, math.inf)]
        cumulative = np.cumsum(labels.delay_counts).tolist()
        self.delay.add_metric([m.model], list(zip(bounds, cumulative, strict=True)), labels.delay_sum)
        for reason, count in labels.unlabeled.items():
            self.unlabeled.add_metric([m.model, reason], count)
        for reason, count in labels.unmatched.items():
            self.unmatched.add_metric([m.model, reason], count)

    def families(self) -> tuple[Metric, ...]:
        return (self.pending, self.orphans, self.joined, self.delay, self.unlabeled, self.unmatched, self.coverage)


def window(label: str, accuracy: float | None, labeled: int = 10, size: int | None = None) -> WindowSnapshot:
    bounds = (None, None) if accuracy is None else (max(0.0, accuracy - 0.1), min(1.0, accuracy + 0.1))
    drop = None if accuracy is None else 0.9 - accuracy
    return WindowSnapshot(label, size, labeled, round(labeled * (accuracy or 0)), accuracy, drop, None, *bounds)


def varied() -> dict[str, ModelSnapshot]:
    """Models that between them take every branch: optional values absent, rules firing, odd names, big numbers."""
    calm = ModelSnapshot(
        model="calm",
        events=12,
        labeled=10,
        correct=9,
        last_event_time=None,
        baseline=None,
        baseline_date=None,
        threshold=0.1,
        floor=None,
        judged_window=100,
        windows=(window("100", None, labeled=0, size=100),),
        rules=(RuleSnapshot("degradation", False, None, None, None),),
    )
    busy = ModelSnapshot(
        model='odd "name" with \\ and\nnewline, ünïcode',
        events=123_456_789,
        labeled=9_999_999,
        correct=7_654_321,
        last_event_time=1_717_200_000.25,
        baseline=0.9,
        baseline_date="2024-06-01",
        threshold=0.05,
        floor=0.6,
        judged_window=1000,
        windows=(window("1000", 0.5, 1000, 1000), window("10000", 1 / 3, 10000, 10000), window("7d", 0.0, 3)),
        rules=(
            RuleSnapshot("degradation", True, 15.5, 12.0, "a-1"),
            RuleSnapshot("floor", True, -math.inf, 12.0, "a-2"),
            RuleSnapshot("recall_degradation", False, 0.0, 8.0, None),
        ),
        late_events=1_000_001,
        binary_metrics={"1000": {"precision": 0.25, "recall": None, "f1": 1e-9, "brier": 0.0}, "10000": {"recall": 1.0}},
    )
    return {"calm": calm, busy.model: busy, **monitored()}


def monitored() -> dict[str, ModelSnapshot]:
    """Real snapshots from the monitor: one model that fell below its baseline, one that did not, one with late labels."""
    monitor = Monitor(MonitorConfig(ModelPolicy(baseline=0.9, windows=(50, 200), min_samples=20, floor=0.4)))
    events = [{"model": "fine", "prediction": 1, "label": 1, "score": 0.75} for _ in range(120)]
    events += [{"model": "falling", "prediction": 1, "label": int(i % 3 == 0), "score": 0.5} for i in range(240)]
    events += [{"model": "later", "prediction": 1, "event_id": f"e{i}"} for i in range(40)]
    events += [{"model": "later", "label": i % 2, "event_id": f"e{i}", "ts": 1_717_290_000.0 + i} for i in range(30)]
    events += [{"model": "later", "label": "1", "event_id": "e35"}, {"model": "later", "label": 1, "event_id": "e1"}]
    batch, rejected = validate(events, np.linspace(1_717_200_000.0, 1_717_203_600.0, len(events)))
    assert not rejected
    monitor.process(batch)
    return monitor.snapshot()


def published(detailed: bool, snapshot: Mapping[str, ModelSnapshot] | None = None) -> tuple[ServiceMetrics, CollectorRegistry]:
    """ServiceMetrics with ``snapshot`` published, and a registry holding the oracle's view of the same."""
    snapshot = varied() if snapshot is None else snapshot
    alerts = {(m, "firing"): 3 for m in list(snapshot)[1:]} | {(list(snapshot)[-1], "resolved"): 2}
    processed = {m: 1_717_200_000.0 + i for i, m in enumerate(list(snapshot)[1:])}
    metrics = ServiceMetrics(detailed=detailed)
    metrics.models.publish(snapshot, alerts, processed)
    oracle = CollectorRegistry()
    oracle.register(TodaysCollector(snapshot, alerts, processed))
    return metrics, oracle


def families(page: bytes) -> dict[str, tuple[str, str, frozenset[tuple[str, frozenset[tuple[str, str]], float]]]]:
    """The page parsed: family name to its type, help and samples (names unique: a split family would repeat one)."""
    text = page.decode()
    parsed = list(parse_openmetrics(text) if text.endswith("# EOF\n") else text_string_to_metric_families(text))
    assert len({f.name for f in parsed}) == len(parsed)
    return {
        f.name: (f.type, f.documentation, frozenset((s.name, frozenset(s.labels.items()), s.value) for s in f.samples))
        for f in parsed
    }


def snapshot_families(metrics: ServiceMetrics, accept: str | None) -> bytes:
    """The page of the per-model families alone (the service's own counters carry creation times the oracle lacks)."""
    registry = CollectorRegistry()
    registry.register(metrics.models)
    return exposition(registry, accept)[0]


@pytest.mark.parametrize("accept", [None, OPENMETRICS])
def test_detailed_pages_are_todays_pages_byte_for_byte(accept: str | None) -> None:
    metrics, oracle = published(detailed=True)
    encoder, _ = choose_encoder(accept or "")
    page = snapshot_families(metrics, accept)
    assert page == encoder(oracle)
    assert families(page) == families(encoder(oracle))


def test_default_pages_are_todays_samples_less_the_opt_in_series() -> None:
    metrics, oracle = published(detailed=False)
    expected = families(generate_latest(oracle))
    late = expected.pop(OPT_IN)
    assert late[2], "the varied snapshot should have late-event series to leave out"
    kind, text, samples = expected["decaywatch_rule_firing"]
    duplicated = {s for s in samples if dict(s[1])["rule"] in ("degradation", "floor")}
    assert duplicated and samples - duplicated, "the varied snapshot should have both kinds of rule"
    expected["decaywatch_rule_firing"] = (kind, text, samples - duplicated)
    assert families(snapshot_families(metrics, None)) == expected


@pytest.mark.parametrize("detailed", [False, True])
@pytest.mark.parametrize("accept", ACCEPTS)
def test_the_whole_page_is_what_prometheus_client_writes_for_the_registry(detailed: bool, accept: str | None) -> None:
    """Kept text or not, the page equals prometheus-client's writer over the same registry (``name[]`` scrapes and
    ``get_sample_value`` read that path), with the same content type."""
    metrics, _ = published(detailed)
    metrics.batches.inc()
    metrics.set_lag({("events", 0): 7})
    encoder, content_type = choose_encoder(accept or "")
    assert exposition(metrics.registry, accept) == (encoder(metrics.registry), content_type)
    assert exposition(metrics.registry, accept) == (encoder(metrics.registry), content_type)  # again, from kept text


@pytest.mark.parametrize(
    "accept", [None, "text/plain;version=1.0.0;escaping=allow-utf-8", "application/openmetrics-text", OPENMETRICS]
)
def test_the_formats_prometheus_asks_for_are_written_from_kept_text(accept: str | None) -> None:
    """Falling back to prometheus-client's writer is correct but slow: the usual formats must not need it."""
    metrics, _ = published(detailed=False)
    encoder, content_type = choose_encoder(accept or "")
    prepared = [f for f in metrics.registry.collect() if isinstance(f, PreparedFamily)]
    assert len(prepared) > 20
    assert all(f.written(encoder, content_type) is not None for f in prepared)


def test_families_are_never_split() -> None:
    """OpenMetrics' own parser rejects a family that comes back after another one; the text format is checked line by line."""
    metrics, _ = published(detailed=False)
    page, content_type = exposition(metrics.registry, OPENMETRICS)
    assert content_type.startswith("application/openmetrics-text") and page.endswith(b"# EOF\n")
    names = [f.name for f in parse_openmetrics(page.decode())]
    assert len(names) == len(set(names)) and "decaywatch_accuracy_ratio" in names
    seen: list[str] = []
    for line in exposition(metrics.registry, None)[0].decode().splitlines():
        if line.startswith("# TYPE "):
            seen.append(line.split()[2])
        elif not line.startswith("#"):
            name = line.split("{")[0].split(" ")[0]
            assert name.startswith(seen[-1].removesuffix("_total")), f"{name} outside its family {seen[-1]}"
    assert len(seen) == len(set(seen))


def test_a_model_that_goes_leaves_no_series() -> None:
    snapshot = varied()
    metrics, _ = published(detailed=True, snapshot=snapshot)
    assert b'model="calm"' in exposition(metrics.registry, None)[0]  # rendered and kept
    metrics.models.publish({m: s for m, s in snapshot.items() if m != "calm"}, {}, {})
    for accept in (None, OPENMETRICS):
        page = exposition(metrics.registry, accept)[0]
        assert b'model="calm"' not in page and b'model="fine"' in page
    metrics.models.withhold({"fine"})
    page = exposition(metrics.registry, None)[0]
    assert b'model="fine"' not in page and b'model="falling"' in page
    assert metrics.registry.get_sample_value("decaywatch_events_total", {"model": "fine"}) is None
    assert metrics.registry.get_sample_value("decaywatch_tracked_models") == len(snapshot) - 2


def test_kept_text_follows_every_input_that_changes() -> None:
    """A new snapshot, a new processing time and a new alert count each reach the page once its text is kept."""
    snapshot = monitored()
    metrics = ServiceMetrics()
    metrics.models.publish(snapshot, {}, {"fine": 1.0, "falling": 1.0})
    before = exposition(metrics.registry, None)[0]
    fine = snapshot["fine"]
    metrics.models.publish(
        snapshot | {"fine": dataclasses.replace(fine, events=fine.events + 7)},
        {("falling", "firing"): 1},
        {"fine": 1.0, "falling": 2.0},
    )
    page = exposition(metrics.registry, None)[0]
    assert page != before
    samples = {(name, labels): value for _, _, found in families(page).values() for name, labels, value in found}
    assert samples["decaywatch_events_total", frozenset({("model", "fine")})] == fine.events + 7
    assert samples["decaywatch_last_processed_timestamp_seconds", frozenset({("model", "falling")})] == 2.0
    assert samples["decaywatch_alerts_total", frozenset({("model", "falling"), ("status", "firing")})] == 1.0
    assert samples["decaywatch_last_processed_timestamp_seconds", frozenset({("model", "fine")})] == 1.0


def test_the_opt_in_series_are_used_by_no_dashboard_panel_or_rule() -> None:
    from tests.queries import dashboard_queries, metric_names, rule_queries

    used = {name for query in dashboard_queries() + rule_queries() for name in metric_names(query.expr)}
    used_names = {name.removesuffix("_total") for name in used}
    assert OPT_IN not in used_names and "decaywatch_rule_firing" not in used_names
    assert any(f.name == OPT_IN for f in ServiceMetrics(detailed=True).registry.collect())
    assert all(f.name != OPT_IN for f in ServiceMetrics().registry.collect())


def test_the_endpoint_serves_kept_text_negotiated_and_gzipped() -> None:
    metrics, _ = published(detailed=False)
    server = HttpServer(HttpEndpoints(metrics.registry, lambda: (True, "ready"), dict), "127.0.0.1", 0).start()
    try:
        request = urllib.request.Request(server.url(), headers={"Accept": OPENMETRICS, "Accept-Encoding": "gzip"})
        with urllib.request.urlopen(request, timeout=5) as response:
            assert response.headers["Content-Encoding"] == "gzip"
            content_type, body = response.headers["Content-Type"], gzip.decompress(response.read())
        assert (body, content_type) == exposition(metrics.registry, OPENMETRICS)
        with urllib.request.urlopen(server.url(), timeout=5) as response:
            assert response.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
            assert b'decaywatch_events_total{model="calm"} 12.0\n' in response.read()
        with urllib.request.urlopen(server.url() + "?name[]=decaywatch_batches_total", timeout=5) as response:
            assert response.read().decode().splitlines() == [
                "# HELP decaywatch_batches_total Batches polled, processed and committed.",
                "# TYPE decaywatch_batches_total counter",
                "decaywatch_batches_total 0.0",
            ]
    finally:
        server.close()


def test_label_health_of_a_model_with_late_labels() -> None:
    """Predictions waiting, labels joined (delays of about a day), a duplicate and a type mismatch, as counters."""
    metrics, _ = published(detailed=False)
    value = metrics.registry.get_sample_value
    later = {"model": "later"}
    assert value("decaywatch_pending_predictions", later) == 10
    assert value("decaywatch_labels_joined_total", later) == 30
    assert value("decaywatch_labels_unmatched_total", later | {"reason": "duplicate"}) == 1
    assert value("decaywatch_labels_unmatched_total", later | {"reason": "type_mismatch"}) == 1
    assert value("decaywatch_predictions_unlabeled_total", later | {"reason": "ttl"}) == 0
    assert value("decaywatch_label_delay_seconds_bucket", later | {"le": "86400.0"}) == 0
    assert value("decaywatch_label_delay_seconds_bucket", later | {"le": "172800.0"}) == 30
    assert value("decaywatch_label_delay_seconds_count", later) == 30
    assert value("decaywatch_pending_predictions", {"model": "fine"}) is None  # inline labels only: no label series
    assert value("decaywatch_label_coverage_ratio", later | {"window": "7d"}) == 30 / 40


def test_models_endpoint_shows_label_health_of_models_with_late_labels() -> None:
    snapshots = monitored()
    later = model_view(snapshots["later"])["labels"]
    assert later["pending_predictions"] == 10 and later["joined"] == 30
    assert later["median_label_delay_seconds"] == 172800.0
    assert later["coverage"] == {"1h": 0.75, "1d": 0.75, "7d": 0.75}  # 30 of the 40 predictions (all in the last hour)
    assert later["unmatched"] == {"orphan_expired": 0, "duplicate": 1, "type_mismatch": 1}
    assert model_view(snapshots["fine"])["labels"] is None
