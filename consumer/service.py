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

import numpy as np

from decaywatch.consumer.changelog import StateStore
from decaywatch.consumer.metrics import ServiceMetrics
from decaywatch.consumer.sinks import AlertSink, DeadLetterSink
from decaywatch.consumer.source import EventSource, RawBatch
from decaywatch.monitor.alert import AlertTransition
from decaywatch.monitor.codec import decode
from decaywatch.monitor.engine import Monitor
from decaywatch.monitor import state
from decaywatch.monitor.schema import EventBatch, Rejection, validate
from decaywatch.monitor.snapshot import ModelSnapshot

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
        state_store: StateStore | None = None,
        checkpoint_interval_s: float = 5.0,
    ) -> None:
        self.source = source
        self.monitor = monitor
        self.alerts = alerts
        self.dead_letters = dead_letters
        self.metrics = metrics
        self.clock = clock
        self.on_alert = on_alert
        self.state_store = state_store
        self.checkpoint_interval_s = checkpoint_interval_s
        self._last_checkpoint = float("-inf")
        self._pending: dict[str, tuple[int, int]] = {}  # models touched since the last checkpoint
        self._last_offset: dict[str, int] = {}
        self.totals = ServiceTotals()
        self._partition_of: dict[str, int] = {}
        self._skip_through: dict[str, int] = {}  # model -> last input offset its restored state includes
        self._owned: set[int] = set()
        self._revoked: set[int] = set()
        self._touched: dict[str, tuple[int, int]] = {}  # this batch: model -> (partition, last offset)
        self._processed_at: dict[str, float] = {}
        self._untracked_seen = 0
        self._last_expiry = float("-inf")
        self._last_overflow_warning = float("-inf")
        self._last_undelivered_warning = float("-inf")

    def step(self, timeout_s: float = 0.5) -> StepResult | None:
        """Handle one batch end to end; ``None`` when the poll returned nothing."""
        raw = self.source.poll(timeout_s)
        self._apply_rebalances()
        if raw is None or not len(raw):
            return None
        started = self.clock()
        result = self._evaluate(raw)
        delivered = self._publish(raw, result)
        if not delivered:
            self._note_undelivered(started)
        elif self.state_store is None:
            self.source.commit()
        elif started - self._last_checkpoint >= self.checkpoint_interval_s:
            self.checkpoint()
        finished = self.clock()
        self.metrics.batches.inc()
        self.metrics.batch_duration.observe(max(0.0, finished - started))
        self.metrics.last_batch.set(finished)
        return result

    def run(self, stop: threading.Event, timeout_s: float = 0.5) -> None:
        """Step until ``stop`` is set; the batch in hand is finished and committed first."""
        while not stop.is_set():
            self.step(timeout_s)
        if self.state_store is not None:
            self.checkpoint()

    def snapshot(self) -> Mapping[str, ModelSnapshot]:
        return self.monitor.snapshot()

    def withhold(self, partitions: set[int]) -> None:
        """Stop exporting these partitions' models at once (called from the rebalance callback).

        The loop forgets them after ``poll`` returns; until then a scrape must
        not show a model that another process may already be exporting.
        """
        gone = {model for model, p in list(self._partition_of.items()) if p in partitions}
        if gone:
            self.metrics.models.withhold(gone)

    def _apply_rebalances(self) -> None:
        """Act on partition moves before processing anything: forget what left, restore what arrived."""
        events = self.source.rebalances()
        if not events:
            return
        for kind, partitions in events:
            if kind == "revoked":
                self._revoked |= partitions
            else:
                gone = self._revoked - partitions
                arrived = partitions - self._owned
                kept = partitions & self._owned & self._revoked
                # A partition given back to us resumes from its committed offset, behind what we hold:
                # skip what our state already includes.
                for model, p in self._partition_of.items():
                    if p in kept and model in self._last_offset:
                        self._skip_through[model] = self._last_offset[model]
                self._forget_partitions(gone)
                self._owned = set(partitions)
                self._revoked = set()
                if arrived:
                    self._restore(arrived)
        self.metrics.models.publish(self.monitor.snapshot(), self.totals.alerts, self._processed_at)

    def _forget_partitions(self, partitions: set[int]) -> None:
        for model in [m for m, p in self._partition_of.items() if p in partitions]:
            self.monitor.forget(model)
            del self._partition_of[model]
            self._skip_through.pop(model, None)
            self._last_offset.pop(model, None)
            self._pending.pop(model, None)
            self._processed_at.pop(model, None)
            for status in ("firing", "resolved"):
                self.totals.alerts.pop((model, status), None)
        if partitions:
            log.info("partitions %s moved away: their models are no longer exported here", sorted(partitions))

    def _restore(self, partitions: set[int]) -> None:
        if self.state_store is None:
            return
        started = self.clock()
        checkpoints = self.state_store.read(partitions)
        restored = 0
        for model, checkpoint in checkpoints.items():
            try:
                tracker = state.load(checkpoint.state, self.monitor.config.policy_for(model), model)
            except state.StateMismatch as error:
                log.warning("model %r starts afresh: its checkpoint does not restore (%s)", model[:64], error)
                continue
            self.monitor.adopt(tracker)
            self._partition_of[model] = checkpoint.partition
            self._skip_through[model] = checkpoint.offset
            restored += 1
        seconds = max(0.0, self.clock() - started)
        self.metrics.state_restore_seconds.set(seconds)
        self.metrics.restored_models.inc(restored)
        log.info("restored %d model(s) of partitions %s in %.2f s", restored, sorted(partitions), seconds)

    def _evaluate(self, raw: RawBatch) -> StepResult:
        objects, positions, undecodable = decode(raw.values)
        batch, invalid = validate(objects, raw.timestamp[positions], positions)
        batch = self._locate(batch, raw)
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

    def _locate(self, batch: EventBatch, raw: RawBatch) -> EventBatch:
        """Note each model's partition and last offset; drop events a restored state already includes."""
        self._touched = {}
        if not len(batch):
            return batch
        partitions = np.asarray(raw.partitions, dtype=np.int64)[batch.source_index]
        offsets = np.asarray(raw.offsets, dtype=np.int64)[batch.source_index]
        keep = np.ones(len(batch), dtype=bool)
        for code, model in enumerate(batch.models):
            rows = batch.model_codes == code
            last = int(offsets[rows].max())
            self._touched[model] = (int(partitions[rows][0]), last)
            self._partition_of[model] = self._touched[model][0]
            self._last_offset[model] = last
            through = self._skip_through.get(model)
            if through is not None:
                keep &= ~(rows & (offsets <= through))
                if last > through:
                    del self._skip_through[model]
        return batch if keep.all() else batch.select(keep)

    def checkpoint(self) -> None:
        """Write the state of every model touched since the last checkpoint, flush it, then commit offsets.

        State and committed offsets move together, every ``checkpoint_interval_s``
        (and on a clean stop): a new owner restores the state and resumes at the
        matching offset, so the changelog grows with time, not with traffic.
        """
        assert self.state_store is not None
        for model, (partition, offset) in self._pending.items():
            tracker = self.monitor.tracked(model)
            if tracker is not None:
                self.state_store.write(model, partition, offset, state.dump(tracker))
        self.state_store.flush()
        self.source.commit()
        self._pending = {}
        self._last_checkpoint = self.clock()

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

    def _note_undelivered(self, now: float) -> None:
        """Alerts or dead letters are not all acknowledged: keep consuming, commit nothing until they are."""
        self.metrics.undelivered_batches.inc()
        if now - self._last_undelivered_warning >= 60.0:
            self._last_undelivered_warning = now
            log.warning("alerts or dead letters not yet acknowledged by Kafka: retrying; offsets are not committed meanwhile")

    def _publish(self, raw: RawBatch, result: StepResult) -> bool:
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
        delivered = self.dead_letters.flush() is not False
        delivered = self.alerts.flush() is not False and delivered
        self._pending.update(self._touched)
        self.totals.messages += result.messages
        self.totals.valid += result.valid
        self.totals.rejected += len(result.rejections)
        self.totals.batches += 1
        self.metrics.models.publish(self.monitor.snapshot(), self.totals.alerts, self._processed_at)
        self.metrics.set_lag(self.source.lag())
        return delivered
