"""The monitor service's loop: a mover between a source, the pure core, and sinks.

One step: poll a batch of raw messages; act on partition moves; decode and
validate the batch and hand the valid events to the core (``_evaluate``);
send its alert transitions and dead letters and flush both (``_emit``); hand
one snapshot to the metrics (``_export``); and only then commit the batch's
offsets, or checkpoint state and commit (``_commit``).  A crash anywhere
before the commit means the batch is read again (at least once); alert ids
are stable, so consumers can deduplicate.

Bookkeeping lives beside the loop, each concern in an object of its own:
partition ownership, per-model offsets and unsaved checkpoints in the
:class:`~decaywatch.consumer.ledger.PartitionLedger`, every "at most once per
N seconds" in a :class:`~decaywatch.consumer.throttle.Throttle`.

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
from decaywatch.consumer.heap import TRIM_INTERVAL_S
from decaywatch.consumer.ledger import NONE, PartitionLedger, Placement
from decaywatch.consumer.metrics import ServiceMetrics
from decaywatch.consumer.sinks import AlertSink, DeadLetterSink
from decaywatch.consumer.source import EventSource, RawBatch
from decaywatch.consumer.throttle import Throttle
from decaywatch.monitor import state
from decaywatch.monitor.alert import AlertTransition
from decaywatch.monitor.codec import parse
from decaywatch.monitor.engine import Monitor
from decaywatch.monitor.schema import EventBatch, Rejection
from decaywatch.monitor.snapshot import ModelSnapshot

log = logging.getLogger(__name__)

Clock = Callable[[], float]

WARNING_INTERVAL_S = 60.0
"""A repeated warning (untracked models, undelivered outputs) is logged at most this often."""
EXPIRY_INTERVAL_S = 10.0
"""Idle models are looked for at most this often."""
IDLE_FLUSH_TIMEOUT_S = 1.0
"""How long a checkpoint taken while no input arrives waits for Kafka."""
EXPORT_SHARE = 0.1
"""With an export interval, snapshots may take at most about this share of the loop's time: when one takes longer
(a thousand models touched per batch), the interval stretches to ``took / EXPORT_SHARE``."""


@dataclass(slots=True)
class ServiceTotals:
    """What the service has handled since it started (for reports and tests)."""

    messages: int = 0
    valid: int = 0
    rejected: int = 0
    batches: int = 0
    alerts: Tally[tuple[str, str]] = field(default_factory=Tally)
    rejections: Tally[str] = field(default_factory=Tally)

    def forget(self, model: str) -> None:
        for status in ("firing", "resolved"):
            self.alerts.pop((model, status), None)


@dataclass(frozen=True, slots=True)
class StepResult:
    messages: int
    valid: int
    rejections: list[Rejection]
    transitions: list[AlertTransition]
    placements: dict[str, Placement] = field(default_factory=dict)
    """Each model of the batch: its partition and last offset."""


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
        ledger: PartitionLedger | None = None,
        export_interval_s: float = 0.0,
        labels_topic: str | None = None,
        trim_heap: Callable[[], object] | None = None,
    ) -> None:
        """``labels_topic``: label events also come on this topic (co-partitioned with the predictions).

        ``trim_heap``: hands freed memory back to the system (``consumer/heap.py``); called at most every
        ``TRIM_INTERVAL_S`` after a batch.

        ``export_interval_s``: hand the metrics a new snapshot at most this often (0: after every batch).

        A snapshot costs per model touched; the real service exports at most
        every 0.01 s (``MonitorRuntime``), and at once
        whenever a batch changes an alert, the input goes idle, or partitions move.
        The interval stretches so that snapshots take at most ``EXPORT_SHARE``
        of the time (with 1,000 models touched per batch, a snapshot takes
        ~0.1 s, so /metrics is then about a second behind, far under a scrape
        interval, instead of snapshots taking a third of the loop).
        """
        self.source = source
        self.monitor = monitor
        self.alerts = alerts
        self.dead_letters = dead_letters
        self.metrics = metrics
        self.clock = clock
        self.on_alert = on_alert
        self.state_store = state_store
        self.labels_topic = labels_topic
        self.ledger = ledger if ledger is not None else PartitionLedger(on_withhold=metrics.models.withhold)
        self.totals = ServiceTotals()
        self._processed_at: dict[str, float] = {}
        self._undelivered = False  # outputs of a handled batch still wait for Kafka's acknowledgement
        self._uncommitted = False  # handled batches wait for the next checkpoint to be committed
        self._unflushed = False  # an idle checkpoint's writes were not acknowledged in time
        self._untracked_seen = 0
        self._checkpoints = Throttle(checkpoint_interval_s)
        self._expiry = Throttle(EXPIRY_INTERVAL_S)
        self._export_interval_s = export_interval_s
        self._exports = Throttle(export_interval_s)
        self._unexported = False
        self._overflow_warning = Throttle(WARNING_INTERVAL_S)
        self._undelivered_warning = Throttle(WARNING_INTERVAL_S)
        self._trim_heap = trim_heap
        self._trims = Throttle(TRIM_INTERVAL_S)

    def step(self, timeout_s: float = 0.5) -> StepResult | None:
        """Handle one batch end to end; ``None`` when the poll returned nothing."""
        raw = self.source.poll(timeout_s)
        self._rebalance()
        if raw is None or not len(raw):
            if self._unexported:
                self._export()
            self._idle()
            return None
        started = self.clock()
        result = self._evaluate(raw)
        delivered = self._emit(raw, result)
        self._unexported = True
        if result.transitions or self._exports.ready(started):
            self._export()
        self._commit(delivered, started)
        finished = self.clock()
        self.metrics.batches.inc()
        self.metrics.batch_duration.observe(max(0.0, finished - started))
        self.metrics.last_batch.set(finished)
        if self._trim_heap is not None and self._trims.ready(finished):
            self._trim_heap()
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
        """Stop exporting these partitions' models at once (the rebalance callback's job; see the ledger)."""
        self.ledger.withhold(partitions)

    def _rebalance(self) -> None:
        """Act on partition moves before processing anything: forget what left, restore what arrived."""
        events = self.source.rebalances()
        if not events:
            return
        gone, arrived = self.ledger.rebalance(events)
        for model in gone:
            self._forget(model)
        if gone:
            log.info("partitions moved away: %d model(s) are no longer exported here", len(gone))
        if arrived:
            self._restore(arrived)
        self._export()

    def _forget(self, model: str) -> None:
        self.monitor.forget(model)
        self.ledger.forget(model)
        self._processed_at.pop(model, None)
        self.totals.forget(model)

    def _restore(self, partitions: set[int]) -> None:
        if self.state_store is None:
            return
        started = self.clock()
        restored = 0
        for model, checkpoint in self.state_store.read(partitions).items():
            try:
                tracker = state.load(checkpoint.state, self.monitor.config.policy_for(model), model)
            except state.StateMismatch as error:
                log.warning("model %r starts afresh: its checkpoint does not restore (%s)", model[:64], error)
                continue
            self.monitor.adopt(tracker)
            self.ledger.restored(model, checkpoint.partition, checkpoint.offset, checkpoint.label_offset)
            restored += 1
        seconds = max(0.0, self.clock() - started)
        self.metrics.state_restore_seconds.set(seconds)
        self.metrics.restored_models.inc(restored)
        log.info("restored %d model(s) of partitions %s in %.2f s", restored, sorted(partitions), seconds)

    def _evaluate(self, raw: RawBatch) -> StepResult:
        """Decode, validate, drop what restored state already holds, and run the core."""
        batch, rejections = parse(raw.values, raw.timestamp)
        batch, placements = self._locate(batch, raw)
        transitions = self.monitor.process(batch)
        now = self.clock()
        for model in batch.models:
            if self.monitor.is_tracked(model):
                self._processed_at[model] = now
        self._account_untracked(now)
        self._expire_idle(now)
        return StepResult(len(raw), len(batch), rejections, transitions, placements)

    def _locate(self, batch: EventBatch, raw: RawBatch) -> tuple[EventBatch, dict[str, Placement]]:
        """Each model's partition and last offset per input topic; events a restored state already includes are dropped."""
        if not len(batch):
            return batch, {}
        n = len(batch.models)
        codes = batch.model_codes
        partitions = np.asarray(raw.partitions, dtype=np.int64)[batch.source_index]
        offsets = np.asarray(raw.offsets, dtype=np.int64)[batch.source_index]
        topic = np.zeros(len(batch), dtype=np.intp)  # 0: the predictions topic, 1: the labels topic
        if self.labels_topic is not None:
            topic = np.fromiter((t == self.labels_topic for t in raw.topics), bool, len(raw))[batch.source_index].astype(np.intp)
        last = np.full((n, 2), NONE, dtype=np.int64)
        np.maximum.at(last, (codes, topic), offsets)
        partition = np.empty(n, dtype=np.int64)
        partition[codes[::-1]] = partitions[::-1]  # each model's first row's
        keep = np.ones(len(batch), dtype=bool)
        for code, model in enumerate(batch.models):
            through = self.ledger.skip_through(model)
            if through is not None:
                keep &= ~((codes == code) & (offsets <= np.asarray(through)[topic]))
        placements = {
            model: (int(p), int(o), int(lo))
            for model, p, (o, lo) in zip(batch.models, partition.tolist(), last.tolist(), strict=True)
        }
        self.ledger.note(placements)
        return (batch if keep.all() else batch.select(keep)), placements

    def _emit(self, raw: RawBatch, result: StepResult) -> bool:
        """Send the batch's dead letters and alert events and flush both; whether all are acknowledged."""
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
        self.totals.messages += result.messages
        self.totals.valid += result.valid
        self.totals.rejected += len(result.rejections)
        self.totals.batches += 1
        return delivered

    def _idle(self) -> None:
        """While no input arrives: retry outputs still pending, and commit once they are delivered.

        With state, also checkpoint what the last batches left unsaved once the
        checkpoint interval has passed: else an idle monitor's committed offsets
        would stay behind what it has handled until the next event, and a
        restart would handle that tail again.  That checkpoint waits at most
        ``IDLE_FLUSH_TIMEOUT_S`` for Kafka: no input may mean Kafka is down,
        and the loop must go on polling (readiness reports the outage).
        """
        now = self.clock()
        if self._undelivered:
            delivered = self.dead_letters.flush() is not False
            if self.alerts.flush() is not False and delivered:
                self._commit(True, now)
        elif self._uncommitted and self._checkpoints.ready(now):
            if self.state_store is None:  # a commit Kafka refused (a rebalance): tried again
                self._uncommitted = not self.source.commit()
                self._checkpoints.restart(now)
            else:
                self.checkpoint(flush_timeout_s=IDLE_FLUSH_TIMEOUT_S)

    def _export(self) -> None:
        """Hand the metrics one snapshot of every model (at most once per batch)."""
        self._unexported = False
        started = self.clock()
        self.metrics.models.publish(self.monitor.snapshot(), self.totals.alerts, self._processed_at)
        self.metrics.set_lag(self.source.lag())
        finished = self.clock()
        self._exports.restart(finished)
        if self._export_interval_s > 0:
            self._exports.interval_s = max(self._export_interval_s, (finished - started) / EXPORT_SHARE)

    def _commit(self, delivered: bool, now: float) -> None:
        """Commit the batch once its outputs are acknowledged: at once, or with the next state checkpoint."""
        self._undelivered = not delivered
        if not delivered:
            self.metrics.undelivered_batches.inc()
            if self._undelivered_warning.ready(now):
                log.warning("alerts or dead letters not yet acknowledged by Kafka: retrying; offsets are not committed meanwhile")
        elif self.state_store is None:
            self._uncommitted = not self.source.commit()
        elif self._checkpoints.ready(now):
            self.checkpoint()
        else:
            self._uncommitted = True

    def checkpoint(self, flush_timeout_s: float | None = None) -> None:
        """Write the state of every model touched since the last checkpoint, flush it, then commit offsets.

        With ``flush_timeout_s``, a flush that runs out of time leaves the
        offsets uncommitted and the models unsaved; the next such checkpoint
        only waits for the same writes again (so an outage does not pile up
        state in the producer's buffer), and the next one after a batch
        writes them anew (the changelog keeps the last record per model).

        State and committed offsets move together, every ``checkpoint_interval_s``
        (and on a clean stop): a new owner restores the state and resumes at the
        matching offset, so the changelog grows with time, not with traffic.
        """
        assert self.state_store is not None
        if flush_timeout_s is None or not self._unflushed:
            for model, placement in self.ledger.unsaved().items():
                tracker = self.monitor.tracked(model)
                if tracker is not None:
                    self.state_store.write(model, placement, state.dump(tracker))
        if flush_timeout_s is None:
            self.state_store.flush()
        else:
            try:
                self.state_store.flush(flush_timeout_s)
            except Exception as error:  # noqa: BLE001 - each client names its timeout differently; retried later
                log.info("state checkpoint not acknowledged within %.0f s (%s); retrying later", flush_timeout_s, error)
                self._unflushed = True
                self._checkpoints.restart(self.clock())
                return
        self._unflushed = False
        self._uncommitted = not self.source.commit()  # refused in a rebalance: the idle loop tries again
        self.ledger.saved()
        self._checkpoints.restart(self.clock())

    def _account_untracked(self, now: float) -> None:
        untracked = self.monitor.untracked_events - self._untracked_seen
        if not untracked:
            return
        self._untracked_seen = self.monitor.untracked_events
        self.metrics.untracked_events.inc(untracked)
        if self._overflow_warning.ready(now):
            log.warning(
                "tracking the maximum of %d models: events of further models are counted in "
                "decaywatch_untracked_events_total, not tracked (e.g. model %r)",
                self.monitor.config.limits.max_models,
                (self.monitor.last_untracked_model or "")[:64],
            )

    def _expire_idle(self, now: float) -> None:
        """Forget models idle for longer than the configured expiry (looked for every ``EXPIRY_INTERVAL_S``)."""
        idle = self.monitor.config.limits.idle_expiry_seconds
        if idle is None or not self._expiry.ready(now):
            return
        for model, seen in list(self._processed_at.items()):
            if now - seen > idle and not self.monitor.has_open_alert(model):
                self._forget(model)
                log.info("forgot model %r: no event for %.0f s", model[:64], now - seen)
