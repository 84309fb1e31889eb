"""Prometheus metrics: the exporter owns its registry and renders per-model series from the monitor's latest snapshot.

Per-model series come from the snapshot the service publishes after each batch
(a custom collector, as in Prometheus' guide to writing exporters), so a model
that is no longer tracked simply stops appearing: no stale series to clean up.
Service counters that are not per model are ordinary prometheus-client metrics
in the same registry.

Scrapes stay cheap at fleet scale.  Building a ``Sample`` for each of the ~50
series of 1,000 models and formatting them through prometheus-client took most
of a second per scrape, holding the interpreter while the consumer waited.
Snapshots are immutable and the monitor re-snapshots only the models a batch
touched, so each model's exposition lines are rendered once per snapshot, kept
as text, and a scrape joins the kept text family by family (``exposition``;
each family's ``HELP``/``TYPE`` once, its series together, as Prometheus
requires).  The rendering happens lazily in the scrape's thread: ``publish``,
which the consumer calls every batch, only swaps references.  The same rows
(``_rows``) feed ordinary ``Sample`` objects, built only when something asks for
them (``get_sample_value``, a ``name[]``-filtered scrape), so both paths export
the same series.

Names follow Prometheus conventions: base units, ``_ratio`` for 0..1 values,
``_total`` for counters, and a counter for each side of the accuracy ratio
(``correct_predictions_total`` / ``labeled_events_total``) so PromQL can compute
accuracy over any range it likes.

Series that neither the Grafana dashboard nor the alert and recording rules use,
and that repeat or merely diagnose, are opt-in (``detailed=True``): the late
events counter, and ``decaywatch_rule_firing`` for the degradation and floor
rules, which ``decaywatch_degraded`` and ``decaywatch_below_floor`` already
carry (the series of metric rules such as a recall rule stay, as it is their
only way into Prometheus).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample
from prometheus_client.utils import floatToGoString

from decaywatch.monitor.schema import Reason
from decaywatch.monitor.snapshot import ModelSnapshot

Encoder = Callable[[Collector], bytes]
"""One of prometheus-client's exposition writers, as ``choose_encoder`` picks it for an ``Accept`` header."""


@dataclass(frozen=True, slots=True, eq=False)
class _Family:
    """One per-model metric family: every series carries ``model`` and at most one more label.

    Compared and hashed by identity (``eq=False``): the render loop looks a family up for every line, and a
    dataclass's generated hash would rehash all five fields each time.
    """

    name: str
    documentation: str
    type: str
    sample: str
    """The series name as exposed (a counter's ``_total``)."""
    label: str | None = None
    """The label beside ``model`` (``window``, ``rule``, ``status``, ``reason``; it sorts after ``model``, as the writers
    order labels), or a histogram's ``le`` (which sorts before it)."""


def _gauge(name: str, documentation: str, label: str | None = None) -> _Family:
    return _Family(name, documentation, "gauge", name, label)


def _counter(name: str, documentation: str, label: str | None = None) -> _Family:
    return _Family(name, documentation, "counter", f"{name}_total", label)


def _histogram(name: str, documentation: str) -> _Family:
    """A histogram: rows of its buckets carry the ``le`` value, its sum and count rows the suffix ``_sum`` / ``_count``."""
    return _Family(name, documentation, "histogram", f"{name}_bucket", "le")


_SUFFIXES = ("_count", "_sum")


ACCURACY = _gauge("decaywatch_accuracy_ratio", "Rolling accuracy over the last N labeled events.", "window")
LOWER_BOUND = _gauge(
    "decaywatch_accuracy_lower_bound_ratio", "Lower bound of the 95% Wilson interval of the window's accuracy.", "window"
)
UPPER_BOUND = _gauge(
    "decaywatch_accuracy_upper_bound_ratio", "Upper bound of the 95% Wilson interval of the window's accuracy.", "window"
)
EVIDENCE = _gauge(
    "decaywatch_rule_evidence",
    "The sequential rule's running evidence (log-likelihood ratio) for a fall, or while firing for a recovery.",
    "rule",
)
EVIDENCE_NEEDED = _gauge("decaywatch_rule_evidence_threshold", "Evidence the sequential rule needs to fire or resolve.", "rule")
INFLATION = _gauge(
    "decaywatch_rule_variance_inflation",
    "What the sequential rule divides each outcome's evidence by because errors come in runs (1: independent).",
    "rule",
)
RULE_FIRING = _gauge("decaywatch_rule_firing", "1 while the rule's alert is firing for the model, else 0.", "rule")
DROP = _gauge("decaywatch_accuracy_drop_ratio", "Baseline accuracy minus rolling accuracy.", "window")
WINDOW_EVENTS = _gauge("decaywatch_window_labeled_events", "Labeled events currently in the window.", "window")
BASELINE = _gauge("decaywatch_baseline_accuracy_ratio", "Baseline accuracy.")
THRESHOLD = _gauge("decaywatch_degradation_threshold_ratio", "Alert when baseline minus accuracy exceeds this.")
FLOOR = _gauge("decaywatch_accuracy_floor_ratio", "Alert when accuracy is at or below this.")
DEGRADED = _gauge("decaywatch_degraded", "1 while a degradation alert is firing for the model, else 0.")
BELOW_FLOOR = _gauge("decaywatch_below_floor", "1 while a floor alert is firing for the model, else 0.")
LAST_EVENT = _gauge("decaywatch_last_event_timestamp_seconds", "Event time of the newest event seen.")
LAST_PROCESSED = _gauge(
    "decaywatch_last_processed_timestamp_seconds",
    "Wall-clock time the monitor last processed an event of the model (for stalled-producer alerts).",
)
PRECISION = _gauge("decaywatch_precision_ratio", "Precision of the positive class over the count window.", "window")
RECALL = _gauge("decaywatch_recall_ratio", "Recall of the positive class over the count window.", "window")
F1 = _gauge("decaywatch_f1_ratio", "F1 of the positive class over the count window.", "window")
BRIER = _gauge("decaywatch_brier_score", "Mean squared error of the score over the count window (lower is better).", "window")
EVENTS = _counter("decaywatch_events", "Valid prediction events.")
LABELED = _counter("decaywatch_labeled_events", "Valid events that carried a label.")
CORRECT = _counter("decaywatch_correct_predictions", "Labeled events whose prediction equals the label.")
LATE = _counter(
    "decaywatch_late_events", "Events later than the allowed lateness behind the newest event time; left out of time windows."
)
ALERTS = _counter("decaywatch_alerts", "Alert events emitted, by status (firing, resolved).", "status")
PENDING = _gauge("decaywatch_pending_predictions", "Predictions with an event_id waiting for their label event.")
ORPHANS = _gauge("decaywatch_orphan_labels", "Label events waiting for their prediction (they came first).")
JOINED = _counter("decaywatch_labels_joined", "Label events joined to their prediction.")
LABEL_DELAY = _histogram("decaywatch_label_delay_seconds", "Label time minus prediction time (event time) of joined outcomes.")
COVERAGE = _gauge(
    "decaywatch_label_coverage_ratio", "Share of the predictions in the event-time window whose label is in.", "window"
)
UNLABELED = _counter(
    "decaywatch_predictions_unlabeled", "Predictions that left without their label, by reason (ttl, capacity).", "reason"
)
UNMATCHED = _counter(
    "decaywatch_labels_unmatched",
    "Label events that joined no prediction, by reason (orphan_expired, duplicate, type_mismatch).",
    "reason",
)

_FAMILIES = (
    # The order of the page before prepared text, kept so that diffs of /metrics stay readable.
    ACCURACY, LOWER_BOUND, UPPER_BOUND, EVIDENCE, EVIDENCE_NEEDED, INFLATION, RULE_FIRING, DROP, WINDOW_EVENTS,
    BASELINE, THRESHOLD, FLOOR, DEGRADED, BELOW_FLOOR, LAST_EVENT, LAST_PROCESSED,
    # decaywatch_tracked_models (not per model) comes here
    PRECISION, RECALL, F1, BRIER, EVENTS, LABELED, CORRECT, LATE, ALERTS,
    PENDING, ORPHANS, JOINED, LABEL_DELAY, UNLABELED, UNMATCHED, COVERAGE,
)  # fmt: skip
_SLOT: Mapping[_Family, int] = MappingProxyType({family: slot for slot, family in enumerate(_FAMILIES)})
"""A family's position in ``_FAMILIES`` and in every model's rendered block."""
_TRACKED_AFTER = LAST_PROCESSED
_BINARY = MappingProxyType({"precision": PRECISION, "recall": RECALL, "f1": F1, "brier": BRIER})
_DETAILED_ONLY = frozenset({LATE})
_DUPLICATED_RULES = frozenset({"degradation", "floor"})
"""Rules whose firing state ``decaywatch_degraded`` and ``decaywatch_below_floor`` already export."""
_go_float: Callable[[float], str] = floatToGoString  # prometheus-client's value writer (untyped upstream)

_Row = tuple[_Family, str | None, float]
"""A family, the value of its second label (``None`` when it has only ``model``), and the sample's value."""


def _rows(m: ModelSnapshot, processed: float | None, alerts: tuple[int, int], detailed: bool) -> list[_Row]:
    """Every per-model series of one model: the single source of both the text and the ``Sample`` objects."""
    rows: list[_Row] = []
    add = rows.append
    for w in m.windows:
        add((WINDOW_EVENTS, w.label, w.labeled))
        if w.accuracy is not None:
            add((ACCURACY, w.label, w.accuracy))
        if w.lower_bound is not None and w.upper_bound is not None:
            add((LOWER_BOUND, w.label, w.lower_bound))
            add((UPPER_BOUND, w.label, w.upper_bound))
        if w.drop is not None:
            add((DROP, w.label, w.drop))
    for label, values in (m.binary_metrics or {}).items():
        for name, value in values.items():
            family = _BINARY.get(name)
            if family is not None and value is not None:  # a metric with no family here is not exported (nor a crash)
                add((family, label, value))
    for rule in m.rules:
        if detailed or rule.name not in _DUPLICATED_RULES:
            add((RULE_FIRING, rule.name, float(rule.firing)))
        if rule.statistic is not None and rule.evidence is not None:
            add((EVIDENCE, rule.name, rule.statistic))
            add((EVIDENCE_NEEDED, rule.name, rule.evidence))
        if rule.inflation is not None:
            add((INFLATION, rule.name, rule.inflation))
    if m.baseline is not None:
        add((BASELINE, None, m.baseline))
    add((THRESHOLD, None, m.threshold))
    if m.floor is not None:
        add((FLOOR, None, m.floor))
        add((BELOW_FLOOR, None, float(m.below_floor)))
    add((DEGRADED, None, float(m.degraded)))
    if m.last_event_time is not None:
        add((LAST_EVENT, None, m.last_event_time))
    if processed is not None:
        add((LAST_PROCESSED, None, processed))
    add((EVENTS, None, m.events))
    add((LABELED, None, m.labeled))
    add((CORRECT, None, m.correct))
    if detailed:
        add((LATE, None, m.late_events))
    add((ALERTS, "firing", alerts[0]))
    add((ALERTS, "resolved", alerts[1]))
    labels = m.labels
    if labels is not None:  # the model has joined or waited for labels
        add((PENDING, None, labels.pending))
        add((ORPHANS, None, labels.orphans))
        add((JOINED, None, labels.joined))
        seen = 0
        for bound, count in zip((*labels.delay_bounds, math.inf), labels.delay_counts, strict=True):
            seen += count
            add((LABEL_DELAY, _go_float(bound), seen))
        add((LABEL_DELAY, "_count", labels.joined))
        add((LABEL_DELAY, "_sum", labels.delay_sum))
        for reason, count in labels.unlabeled.items():
            add((UNLABELED, reason, count))
        for reason, count in labels.unmatched.items():
            add((UNMATCHED, reason, count))
        for w in m.windows:
            if w.coverage is not None:
                add((COVERAGE, w.label, w.coverage))
    return rows


def _escape(value: str) -> str:
    """A label value as both exposition formats write it."""
    if "\\" in value or "\n" in value or '"' in value:
        return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")
    return value


def _value_text(value: float) -> str:
    """A sample value exactly as prometheus-client writes it, at a fraction of the cost for the common case.

    Python's ``repr`` already is Go's formatting except for infinities, NaN and
    large numbers; those go to prometheus-client's own function.

    >>> [_value_text(v) for v in (0.25, 12, 1_717_200_000.5, float("-inf"))]
    ['0.25', '12.0', '1.7172000005e+09', '-Inf']
    """
    text = repr(float(value))
    if text.find(".") > 6 or text[-1] in "fn":
        return _go_float(value)
    return text


def _lines(model: str, rows: Iterable[_Row]) -> tuple[str, ...]:
    """One model's exposition lines, one string per family of ``_FAMILIES`` (empty where it has no series)."""
    head = f'{{model="{_escape(model)}"'
    slot = _SLOT
    value_text = _value_text
    parts: list[list[str]] = [[] for _ in _FAMILIES]
    for family, second, value in rows:
        if second is None:
            line = f"{family.sample}{head}}} {value_text(value)}\n"
        elif family.type == "histogram":  # "le" sorts before "model"
            if second in _SUFFIXES:
                line = f"{family.name}{second}{head}}} {value_text(value)}\n"
            else:
                line = f'{family.sample}{{le="{_escape(second)}",{head[1:]}}} {value_text(value)}\n'
        else:
            line = f'{family.sample}{head},{family.label}="{_escape(second)}"}} {value_text(value)}\n'
        parts[slot[family]].append(line)
    return tuple(["".join(p) for p in parts])


@dataclass(frozen=True, slots=True)
class _Published:
    """What one ``publish`` handed over, swapped in as a whole so that a scrape never mixes two batches."""

    snapshot: Mapping[str, ModelSnapshot]
    alerts: Mapping[tuple[str, str], int]
    processed: Mapping[str, float]

    def inputs(self, model: str) -> tuple[float | None, tuple[int, int]]:
        """The model's series that are not in its snapshot: last processed time, and alerts (firing, resolved)."""
        alerts = self.alerts
        return self.processed.get(model), (alerts.get((model, "firing"), 0), alerts.get((model, "resolved"), 0))


@dataclass(frozen=True, slots=True)
class _Block:
    """A model's rendered lines and what they were rendered from (the snapshot by identity: it is immutable)."""

    snapshot: ModelSnapshot
    inputs: tuple[float | None, tuple[int, int]]
    lines: tuple[str, ...]


class _RenderedModels:
    """Each model's exposition lines, kept from one scrape to the next and re-rendered only when the model changed."""

    def __init__(self, detailed: bool) -> None:
        self._detailed = detailed
        self._blocks: Mapping[str, _Block] = MappingProxyType({})

    def blocks(self, published: _Published) -> list[_Block]:
        """Every published model's block, in snapshot order.

        Runs in the scrape's thread.  The kept blocks are replaced by a new
        mapping rather than edited, so a concurrent scrape never sees a mapping
        change under it, and models no longer published drop out with it.
        """
        kept = self._blocks
        blocks: dict[str, _Block] = {}
        for model, m in published.snapshot.items():
            inputs = published.inputs(model)
            block = kept.get(model)
            if block is None or block.snapshot is not m or block.inputs != inputs:
                block = _Block(m, inputs, _lines(model, _rows(m, *inputs, self._detailed)))
            blocks[model] = block
        self._blocks = blocks
        return list(blocks.values())


class _Fleet:
    """One collection's view of the published models: their kept text, or ``Sample`` objects on request."""

    def __init__(self, published: _Published, rendered: _RenderedModels, detailed: bool) -> None:
        self._published = published
        self._rendered = rendered
        self._detailed = detailed
        self._blocks: list[_Block] | None = None
        self._samples: list[list[Sample]] | None = None

    def text(self, family: _Family) -> str:
        """The family's lines for every model, in snapshot order."""
        if self._blocks is None:
            self._blocks = self._rendered.blocks(self._published)
        slot = _SLOT[family]
        return "".join([block.lines[slot] for block in self._blocks])

    def samples(self, family: _Family) -> list[Sample]:
        """The family's samples for every model; the first request builds them for all families."""
        if self._samples is None:
            table: list[list[Sample]] = [[] for _ in _FAMILIES]
            for model, m in self._published.snapshot.items():
                for f, second, value in _rows(m, *self._published.inputs(model), self._detailed):
                    if f.type == "histogram" and second in _SUFFIXES:
                        table[_SLOT[f]].append(Sample(f"{f.name}{second}", {"model": model}, value))
                        continue
                    labels = {"model": model} if f.label is None or second is None else {"model": model, f.label: second}
                    table[_SLOT[f]].append(Sample(f.sample, labels, value))
            self._samples = table
        return self._samples[_SLOT[family]]


class _Metrics(Collector):
    """A fixed list of families, to hand a few of them to prometheus-client's writers."""

    def __init__(self, metrics: Sequence[Metric]) -> None:
        self._metrics = metrics

    def collect(self) -> Sequence[Metric]:
        return self._metrics


def _written(encoder: Encoder, metrics: Sequence[Metric]) -> bytes:
    """What ``encoder`` writes for these families, without the format's end marker (OpenMetrics' ``# EOF``)."""
    return encoder(_Metrics(metrics)).removesuffix(encoder(_Metrics(())))


_PROBE = 'probe "quoted" \\ and\nsplit'
"""A label value that needs every escape, for checking prepared lines against prometheus-client's own."""


def _header(encoder: Encoder, family: _Family) -> bytes | None:
    """The family's ``HELP``/``TYPE`` lines as ``encoder`` writes them, or ``None`` if its sample lines differ from ours.

    The check writes one probe series both ways, so that a format whose
    escaping renames series (``escaping=dots``) falls back to
    prometheus-client's writer rather than getting names it did not ask for.
    """
    header = _written(encoder, [Metric(family.name, family.documentation, family.type)])
    probe = Metric(family.name, family.documentation, family.type)
    second = _PROBE if family.label else None
    probe.samples = [Sample(family.sample, {"model": _PROBE} | ({family.label: _PROBE} if family.label else {}), 1.7e9)]
    ours = _lines(_PROBE, [(family, second, 1.7e9)])[_SLOT[family]]
    return header if _written(encoder, [probe]) == header + ours.encode() else None


class HeaderCache:
    """Each family's ``HELP``/``TYPE`` lines per negotiated content type, checked once against prometheus-client.

    Bounded: a content type carries a version the client chose, and a client
    inventing versions must not grow memory.
    """

    LIMIT = 16

    def __init__(self) -> None:
        self._by_type: dict[str, tuple[bytes | None, ...]] = {}

    def get(self, encoder: Encoder, content_type: str, family: _Family) -> bytes | None:
        headers = self._by_type.get(content_type)
        if headers is None:
            if len(self._by_type) >= self.LIMIT:
                self._by_type.clear()
            headers = self._by_type[content_type] = tuple(_header(encoder, f) for f in _FAMILIES)
        return headers[_SLOT[family]]


class PreparedFamily(Metric):
    """A per-model family whose exposition text is kept between scrapes.

    To prometheus-client it is an ordinary ``Metric`` whose ``samples`` are
    built on first access, so ``get_sample_value``, ``generate_latest`` and
    ``name[]``-filtered scrapes work unchanged; ``exposition`` writes the kept
    text instead, which is the point.
    """

    def __init__(self, family: _Family, fleet: _Fleet, headers: HeaderCache) -> None:
        super().__init__(family.name, family.documentation, family.type)
        self._family = family
        self._fleet = fleet
        self._headers = headers
        self._assigned: list[Sample] | None = None

    @property
    def samples(self) -> list[Sample]:
        return self._fleet.samples(self._family) if self._assigned is None else self._assigned

    @samples.setter
    def samples(self, value: list[Sample]) -> None:
        self._assigned = value

    def written(self, encoder: Encoder, content_type: str) -> bytes | None:
        """The family in ``encoder``'s format from kept text, or ``None`` when kept text cannot stand in for it."""
        header = self._headers.get(encoder, content_type, self._family)
        if header is None or self._assigned is not None:
            return None
        return header + self._fleet.text(self._family).encode()


class SnapshotCollector(Collector):
    """Exposes per-model metrics from the most recent snapshot handed to ``publish``.

    ``detailed`` adds the opt-in series (see the module's docstring).
    """

    def __init__(self, detailed: bool = False) -> None:
        self.detailed = detailed
        self._published = _Published(MappingProxyType({}), MappingProxyType({}), MappingProxyType({}))
        self._rendered = _RenderedModels(detailed)
        self._headers = HeaderCache()
        self._families = [f for f in _FAMILIES if detailed or f not in _DETAILED_ONLY]

    def publish(
        self,
        snapshot: Mapping[str, ModelSnapshot],
        alerts: Mapping[tuple[str, str], int],
        processed: Mapping[str, float],
    ) -> None:
        """Swap in a new snapshot: three mapping copies and one reference assignment, nothing rendered.

        The consumer calls this after every batch, so it must stay cheap;
        rendering waits for a scrape, and then redoes only the models whose
        snapshot changed.
        """
        self._published = _Published(
            MappingProxyType(dict(snapshot)), MappingProxyType(dict(alerts)), MappingProxyType(dict(processed))
        )

    def withhold(self, models: set[str]) -> None:
        """Drop these models from what scrapes see, until the next ``publish``."""
        published = self._published
        kept = MappingProxyType({m: s for m, s in published.snapshot.items() if m not in models})
        self._published = _Published(kept, published.alerts, published.processed)

    def describe(self) -> list[Metric]:
        return []  # generated per scrape; nothing to check for duplicates at registration

    def collect(self) -> Iterator[Metric]:
        published = self._published
        fleet = _Fleet(published, self._rendered, self.detailed)
        for family in self._families:
            yield PreparedFamily(family, fleet, self._headers)
            if family is _TRACKED_AFTER:
                tracked = GaugeMetricFamily("decaywatch_tracked_models", "Models tracked now (bounded by [limits] max_models).")
                tracked.add_metric([], len(published.snapshot))
                yield tracked


def exposition(registry: Collector, accept: str | None) -> tuple[bytes, str]:
    """The registry's page in the format ``accept`` negotiates (as prometheus-client's handler would), and its content type.

    Prepared families contribute their kept text; every other family goes
    through prometheus-client's writer, and so does the whole page when a
    format cannot use kept text.  Families come out in collection order, each
    whole (Prometheus rejects a family split in two).

    >>> metrics = ServiceMetrics()
    >>> page, content_type = exposition(metrics.registry, "application/openmetrics-text")
    >>> content_type, page.endswith(b"# EOF\\n")
    ('application/openmetrics-text; version=1.0.0; charset=utf-8', True)
    >>> exposition(metrics.registry, None)[1]
    'text/plain; version=0.0.4; charset=utf-8'
    """
    encoder, content_type = choose_encoder(accept or "")
    out: list[bytes] = []
    others: list[Metric] = []
    for metric in registry.collect():
        if not isinstance(metric, PreparedFamily):
            others.append(metric)
            continue
        text = metric.written(encoder, content_type)
        if text is None:
            return encoder(registry), content_type
        if others:
            out.append(_written(encoder, others))
            others = []
        out.append(text)
    out.append(encoder(_Metrics(others)))  # the rest, with the format's end marker
    return b"".join(out), content_type


class ServiceMetrics:
    """All the service's metrics, in a registry of its own (never the global default one).

    ``detailed`` adds the opt-in per-model series (see the module's docstring).
    """

    def __init__(self, registry: CollectorRegistry | None = None, detailed: bool = False) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self.models = SnapshotCollector(detailed)
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
        pending.add_metric([], getattr(sink, "pending"))  # noqa: B009 - the sink is typed object
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
            pending.add_metric([name], getattr(sink, "pending"))  # noqa: B009 - sinks are typed object
            failed.add_metric([name], getattr(sink, "failed_sends"))  # noqa: B009 - sinks are typed object
        yield pending
        yield failed
