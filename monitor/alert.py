"""Alert events: what the monitor says when an episode fires or resolves.

The message is the lesson's: ``Model performance degraded significantly`` when
an episode fires, ``Model performance is stable`` when it resolves.

``alert_id`` is derived from the episode's identity (model, rule, and the
ordinal of the labeled event that opened it), so a firing and its resolution
share it, and a redelivered stream yields the same id again: consumers can
deduplicate on it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

DEGRADED_MESSAGE: Final = "Model performance degraded significantly"
STABLE_MESSAGE: Final = "Model performance is stable"

ACCURACY: Final = "accuracy"
"""The contract's metric."""

FIRING: Final = "firing"
RESOLVED: Final = "resolved"


def alert_id(model: str, rule: str, opened_at_ordinal: int) -> str:
    """Stable id of one episode: the same inputs always give the same 16 hex digits."""
    digest = hashlib.blake2b(f"{model}\x00{rule}\x00{opened_at_ordinal}".encode(), digest_size=8)
    return digest.hexdigest()


@dataclass(frozen=True, slots=True)
class AlertTransition:
    """One firing or resolution, as the pure core sees it (no wall-clock time)."""

    alert_id: str
    model: str
    status: str
    rule: str
    message: str
    metric: str
    """What the rule watches: ``accuracy`` (the contract's rules), or ``recall``, ``brier``, ... for a metric rule."""
    value: float
    """The metric's value over the evidence behind the decision."""
    baseline: float
    """The metric's baseline (NaN while a learned one is unknown)."""
    baseline_date: str | None
    drop: float
    """How much worse than the baseline ``value`` is (for a loss such as the Brier score: how much higher)."""
    threshold: float
    floor: float | None
    window: int
    samples: int
    event_time: float
    source_index: int
    """Position, in the batch handed to the monitor, of the event that triggered it."""
    lower_bound: float
    """Wilson 95% interval of ``value`` over ``samples`` (the value itself for a metric that is not a proportion)."""
    upper_bound: float
    window_accuracy: float
    """Accuracy of the judged count window (``window`` events) at that moment, for context."""
    decision: str
    statistic: float | None
    """The sequential test's evidence (log-likelihood ratio) when it decided; ``None`` for the window rule."""
    evidence_start: float | None
    """Event time of the first event behind the decision (``None`` if it lies beyond the batch's reach)."""
    label_coverage: dict[str, float | None] | None = None
    """For a model whose labels arrive later: each event-time window's share of predictions with their label."""
    median_label_delay: float | None = None
    """For such a model: the upper bound of the label-delay bucket of the median joined outcome (seconds)."""

    @property
    def accuracy(self) -> float | None:
        """``value`` when the metric is accuracy; ``None`` for a rule on another metric."""
        return self.value if self.metric == ACCURACY else None

    def to_event(self, emitted_at: float) -> dict[str, Any]:
        """The alert event as published (JSON object), stamped with the time it was sent.

        ``accuracy`` and ``baseline_accuracy`` appear only when they hold an
        accuracy; a rule on another metric says ``metric``, ``value`` and ``baseline``.
        """
        event: dict[str, Any] = {
            "alert_id": self.alert_id,
            "model": self.model,
            "status": self.status,
            "rule": self.rule,
            "message": self.message,
            "metric": self.metric,
        }
        if self.metric == ACCURACY:
            event["baseline_accuracy"] = self.baseline
        event["baseline"] = self.baseline
        event["baseline_date"] = self.baseline_date
        if self.metric == ACCURACY:
            event["accuracy"] = self.value
        event["value"] = self.value
        for name in ("drop", "threshold", "floor", "window", "samples"):
            event[name] = getattr(self, name)
        event["event_time"] = _iso(self.event_time)
        for name in ("lower_bound", "upper_bound", "window_accuracy", "decision", "statistic"):
            event[name] = getattr(self, name)
        event["evidence_start"] = None if self.evidence_start is None else _iso(self.evidence_start)
        if self.label_coverage is not None:  # labels that arrive later: how complete the evidence is
            event["label_coverage"] = self.label_coverage
            event["median_label_delay_seconds"] = self.median_label_delay
        event["emitted_at"] = _iso(emitted_at)
        return event


def _iso(epoch_seconds: float) -> str:
    return datetime.fromtimestamp(epoch_seconds, tz=UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
