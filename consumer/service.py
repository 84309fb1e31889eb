"""The monitor service's loop: a mover between a source, the pure core, and sinks.

One step: poll a batch of raw messages; decode and validate them; hand the
valid events to the core; publish its alert transitions and the dead letters;
flush both; publish the new snapshot to the metrics; and only then commit the
batch's offsets.  A crash anywhere before the commit means the batch is read
again (at least once); alert ids are stable, so consumers can deduplicate.

Everything with a side effect (source, sinks, metrics, clock) is passed in.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter as Tally
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from consumer.metrics import ServiceMetrics
from consumer.sinks import AlertSink, DeadLetterSink
from consumer.source import EventSource, RawBatch
from monitor.alert import AlertTransition
from monitor.codec import decode
from monitor.engine import Monitor
from monitor.schema import Rejection, validate
from monitor.snapshot import ModelSnapshot

log = logging.getLogger(__name__)

Clock = Callable[[], float]


@dataclass(slots=True)
class ServiceTotals:
    """What the service has handled since it started (for reports and tests)."""

    messages: int = 0
    valid: int = 0
    rejected: int = 0
    batches: int = 0
    alerts: Tally[tuple[str, str]] = field(default_factory=Tally)
    rejections: Tally[str] = field(default_factory=Tally)


@dataclass(frozen=True, slots=True)
class StepResult:
    messages: int
    valid: int
    rejections: list[Rejection]
    transitions: list[AlertTransition]


class MonitorService:
    """Consumes prediction events and keeps metrics and alerts current."""

    def __init__(
        self,
        source: EventSource,
        monitor: Monitor,
        alerts: AlertSink,
        dead_letters: DeadLetterSink,
        metrics: ServiceMetrics,
        clock: Clock,
        on_alert: Callable[[dict[str, object]], None] | None = None,
    ) -> None:
        self.source = source
        self.monitor = monitor
        self.alerts = alerts
        self.dead_letters = dead_letters
        self.metrics = metrics
        self.clock = clock
        self.on_alert = on_alert
        self.totals = ServiceTotals()
        self._processed_at: dict[str, float] = {}
        self._untracked_seen = 0
        self._last_expiry = float("-inf")
        self._last_overflow_warning = float("-inf")

    def step(self, timeout_s: float = 0.5) -> StepResult | None:
        """Handle one batch end to end; ``None`` when the poll returned nothing."""
        raw = self.source.poll(timeout_s)
        if raw is None or not len(raw):
            return None
        started = self.clock()
        result = self._evaluate(raw)
        self._publish(raw, result)
        self.source.commit()
        finished = self.clock()
        self.metrics.batches.inc()
        self.metrics.batch_duration.observe(max(0.0, finished - started))
        self.metrics.last_batch.set(finished)
        return result

    def run(self, stop: threading.Event, timeout_s: float = 0.5) -> None:
        """Step until ``stop`` is set; the batch in hand is finished and committed first."""
        while not stop.is_set():
            self.step(timeout_s)

    def snapshot(self) -> Mapping[str, ModelSnapshot]:
        return self.monitor.snapshot()

    def _evaluate(self, raw: RawBatch) -> StepResult:
        objects, positions, undecodable = decode(raw.values)
        batch, invalid = validate(objects, raw.timestamp[positions], positions)
        transitions = self.monitor.process(batch)
        now = self.clock()
        tracked = self.monitor.is_tracked
        for model in batch.models:
            if tracked(model):
                self._processed_at[model] = now
        self._account_untracked(now)
        self._expire_idle(now)
        rejections = sorted(undecodable + invalid, key=lambda r: r.index)
        return StepResult(len(raw), len(batch), rejections, transitions)

    def _account_untracked(self, now: float) -> None:
        untracked = self.monitor.untracked_events - self._untracked_seen
        if not untracked:
            return
        self._untracked_seen = self.monitor.untracked_events
        self.metrics.untracked_events.inc(untracked)
        if now - self._last_overflow_warning >= 60.0:
            self._last_overflow_warning = now
            log.warning(
                "tracking the maximum of %d models: events of further models are counted in "
                "decaywatch_untracked_events_total, not tracked (e.g. model %r)",
                self.monitor.config.limits.max_models,
                (self.monitor.last_untracked_model or "")[:64],
            )

    def _expire_idle(self, now: float) -> None:
        """Forget models idle for longer than the configured expiry (checked at most every 10 s)."""
        idle = self.monitor.config.limits.idle_expiry_seconds
        if idle is None or now - self._last_expiry < 10.0:
            return
        self._last_expiry = now
        snapshot = self.monitor.snapshot()
        for model, seen in list(self._processed_at.items()):
            state = snapshot.get(model)
            if now - seen > idle and (state is None or not state.open_alert_ids):
                self.monitor.forget(model)
                del self._processed_at[model]
                for status in ("firing", "resolved"):
                    self.totals.alerts.pop((model, status), None)
                log.info("forgot model %r: no event for %.0f s", model[:64], now - seen)

    def _publish(self, raw: RawBatch, result: StepResult) -> None:
        for rejection in result.rejections:
            i = rejection.index
            self.dead_letters.publish(raw.values[i], raw.keys[i], rejection, raw.topics[i], raw.partitions[i], raw.offsets[i])
            self.metrics.invalid_events.labels(rejection.reason).inc()
            self.totals.rejections[rejection.reason] += 1
        if result.rejections:
            first = result.rejections[0]
            log.info(
                "rejected %d event(s) to the dead-letter topic; first: %s: %s", len(result.rejections), first.reason, first.detail
            )
        emitted_at = self.clock()
        for transition in result.transitions:
            event = transition.to_event(emitted_at)
            self.alerts.publish(event)
            self.totals.alerts[(transition.model, transition.status)] += 1
            if self.on_alert is not None:
                self.on_alert(event)
        self.dead_letters.flush()
        self.alerts.flush()
        self.totals.messages += result.messages
        self.totals.valid += result.valid
        self.totals.rejected += len(result.rejections)
        self.totals.batches += 1
        self.metrics.models.publish(self.monitor.snapshot(), self.totals.alerts, self._processed_at)
        self.metrics.set_lag(self.source.lag())
