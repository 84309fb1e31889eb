"""Read-only views of the monitor's state, for exporters (metrics, terminal table, /models).

A snapshot is built after each batch and handed over whole, so a reader on
another thread (a Prometheus scrape) never sees a half-updated model.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class WindowSnapshot:
    label: str
    """``"1000"`` for a count window of 1000 labeled events, ``"7d"`` for an event-time window."""
    size: int | None
    """Events in a full count window; ``None`` for a time window."""
    labeled: int
    correct: int
    accuracy: float | None
    drop: float | None
    """Baseline minus accuracy (``None`` until both exist)."""
    time_span: tuple[float, float] | None
    lower_bound: float | None = None
    """Wilson 95% interval of the accuracy (``None`` while the window is empty)."""
    upper_bound: float | None = None
    predicted: int | None = None
    """Time windows: on-time predictions in the window, labeled yet or not (``None`` for a count window)."""

    @property
    def coverage(self) -> float | None:
        """Time windows: the share of the window's predictions whose label is in (``None`` without predictions)."""
        return min(1.0, self.labeled / self.predicted) if self.predicted else None


@dataclass(frozen=True, slots=True)
class RuleSnapshot:
    name: str
    firing: bool
    statistic: float | None
    """The sequential test's running evidence (log-likelihood ratio), ``None`` for the window rule."""
    evidence: float | None
    """The evidence needed to fire (or, while firing, to resolve)."""
    alert_id: str | None
    inflation: float | None = None
    """Sequential rules: what each outcome's evidence is divided by because errors come in runs (1: independent)."""


@dataclass(frozen=True, slots=True)
class LabelSnapshot:
    """The join of predictions with later labels (``monitor/join.py``): what waits, and how things left."""

    pending: int
    """Predictions waiting for their label."""
    orphans: int
    """Labels waiting for their prediction."""
    joined: int
    unlabeled: dict[str, int]
    """Predictions that left without a label, by reason (``ttl``, ``capacity``)."""
    unmatched: dict[str, int]
    """Labels that joined nothing, by reason (``orphan_expired``, ``duplicate``, ``type_mismatch``)."""
    delay_bounds: tuple[float, ...]
    """Upper bounds (seconds) of the label-delay buckets; ``delay_counts`` has one more (beyond the last)."""
    delay_counts: tuple[int, ...]
    delay_sum: float

    @property
    def median_delay(self) -> float | None:
        """The upper bound of the delay bucket holding the median joined outcome (``inf`` beyond the last)."""
        if not self.joined:
            return None
        half, seen = (self.joined + 1) // 2, 0
        for bound, count in zip((*self.delay_bounds, float("inf")), self.delay_counts, strict=True):
            seen += count
            if seen >= half:
                return bound
        return float("inf")


@dataclass(frozen=True, slots=True)
class ModelSnapshot:
    model: str
    events: int
    labeled: int
    correct: int
    last_event_time: float | None
    baseline: float | None
    baseline_date: str | None
    threshold: float
    floor: float | None
    judged_window: int
    windows: tuple[WindowSnapshot, ...]
    rules: tuple[RuleSnapshot, ...]
    late_events: int = 0
    binary_metrics: dict[str, dict[str, float | None]] | None = None
    """Per count window (label): precision, recall, f1 and brier, ``None`` where undefined."""
    labels: LabelSnapshot | None = None
    """Label health, once the model has seen a prediction waiting for its label or a label event."""

    @property
    def degraded(self) -> bool:
        """A degradation episode is open."""
        return any(r.firing for r in self.rules if r.name == "degradation")

    @property
    def below_floor(self) -> bool:
        """A floor episode is open."""
        return any(r.firing for r in self.rules if r.name == "floor")

    @property
    def open_alert_ids(self) -> tuple[str, ...]:
        return tuple(r.alert_id for r in self.rules if r.alert_id is not None)

    def window(self, size: int | str) -> WindowSnapshot:
        return next(w for w in self.windows if w.label == str(size))

    @property
    def judged(self) -> WindowSnapshot:
        return self.window(self.judged_window)
