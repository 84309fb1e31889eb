"""The monitor: routes a batch of validated events to per-model trackers.

>>> import numpy as np
>>> from decaywatch.monitor.config import MonitorConfig, ModelPolicy
>>> from decaywatch.monitor.schema import validate
>>> config = MonitorConfig(ModelPolicy(baseline=0.85, windows=(4,), min_samples=4, decision="window"))
>>> monitor = Monitor(config)
>>> events = [{"model": "m", "prediction": 1, "label": int(i < 2)} for i in range(6)]
>>> batch, rejected = validate(events, np.zeros(6))
>>> [(a.status, a.message, a.accuracy, a.source_index) for a in monitor.process(batch)]
[('firing', 'Model performance degraded significantly', 0.5, 3)]
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from decaywatch.monitor.alert import AlertTransition
from decaywatch.monitor.config import MonitorConfig
from decaywatch.monitor.metric import LabeledOutcomes, Trajectory
from decaywatch.monitor.rings import FleetMeasure
from decaywatch.monitor.schema import EventBatch
from decaywatch.monitor.snapshot import ModelSnapshot
from decaywatch.monitor.timewindow import TimeWindow, add_together
from decaywatch.monitor.tracker import ModelTracker, Step


class Monitor:
    """Rolling accuracy and alert episodes for every model seen, one batch at a time."""

    def __init__(self, config: MonitorConfig) -> None:
        self.config = config
        self._trackers: dict[str, ModelTracker] = {}
        self._snapshots: dict[str, ModelSnapshot] = {}
        self._touched: set[str] = set()
        self.untracked_events = 0
        """Events of models beyond ``config.limits.max_models``: counted, not tracked."""
        self.last_untracked_model: str | None = None

    def process(self, batch: EventBatch) -> list[AlertTransition]:
        """Update every model in the batch; returns alert transitions in stream order."""
        if not len(batch):
            return []
        codes = batch.model_codes
        if len(batch.models) <= np.iinfo(np.int16).max:  # numpy's stable sort of 16-bit integers is a radix sort: 3-9x faster
            codes = codes.astype(np.int16)
        order = np.argsort(codes, kind="stable")
        bounds = np.cumsum(np.bincount(batch.model_codes, minlength=len(batch.models)))
        steps: list[tuple[ModelTracker, Step]] = []
        start = 0
        for code, model in enumerate(batch.models):
            rows = order[start : bounds[code]]
            start = int(bounds[code])
            tracker = self.tracker(model)
            if tracker is None:
                self.untracked_events += int(rows.size)
                self.last_untracked_model = model
                continue
            self._touched.add(model)
            step = tracker.begin(batch.rows(rows))
            if step is not None:
                steps.append((tracker, step))
        _add_time_windows_together(steps)
        transitions = _judge_together([(tracker, step) for tracker, step in steps if len(step.outcomes)])
        transitions.sort(key=lambda t: t.source_index)
        return transitions

    def tracker(self, model: str) -> ModelTracker | None:
        """The model's tracker, created on first sight; ``None`` when the cap on tracked models is reached."""
        tracker = self._trackers.get(model)
        if tracker is None:
            if len(self._trackers) >= self.config.limits.max_models:
                return None
            tracker = self._trackers[model] = ModelTracker(model, self.config.policy_for(model))
        return tracker

    def forget(self, model: str) -> bool:
        """Stop tracking a model (it is idle, or its partition moved away); returns whether it was tracked."""
        self._snapshots.pop(model, None)
        self._touched.discard(model)
        return self._trackers.pop(model, None) is not None

    def adopt(self, tracker: ModelTracker) -> None:
        """Track a restored model (its partition moved here): it replaces any tracker of the same model.

        The cap on tracked models does not apply: a restored model was already counted by its old owner.
        """
        self._trackers[tracker.model] = tracker
        self._touched.add(tracker.model)

    def models(self) -> list[str]:
        return list(self._trackers)

    def is_tracked(self, model: str) -> bool:
        return model in self._trackers

    def has_open_alert(self, model: str) -> bool:
        """Whether an episode of the model is open (an idle model with one is not forgotten)."""
        tracker = self._trackers.get(model)
        return tracker is not None and bool(tracker.alert_ids)

    def tracked(self, model: str) -> ModelTracker | None:
        """The model's tracker if it is tracked (never creates one)."""
        return self._trackers.get(model)

    def snapshot(self) -> dict[str, ModelSnapshot]:
        """Every model's state, by model id.

        Only models that changed since the last call are snapshotted again, so
        the cost follows the batch, not the number of models tracked.
        """
        for model in self._touched:
            self._snapshots[model] = self._trackers[model].snapshot()
        self._touched.clear()
        return dict(self._snapshots)


def _add_time_windows_together(steps: list[tuple[ModelTracker, Step]]) -> None:
    """Every model's on-time outcomes into its event-time windows: one pass per span over the whole batch."""
    spans: dict[float, list[tuple[TimeWindow, int]]] = {}
    for i, (tracker, _step) in enumerate(steps):
        for window in tracker.time_windows.values():
            spans.setdefault(window.span, []).append((window, i))
    if not spans:
        return
    predicted = [step.predicted for _tracker, step in steps]
    correct = [step.outcomes.correct[step.on_time] for _tracker, step in steps]
    event_time = [step.outcomes.event_time[step.on_time] for _tracker, step in steps]
    for members in spans.values():
        picked = [i for _window, i in members]
        windows = [window for window, _i in members]
        for outcomes, times in ((None, predicted), (correct, event_time)):  # predictions first: they move the windows
            lengths = np.fromiter((times[i].shape[0] for i in picked), dtype=np.intp, count=len(picked))
            starts = np.cumsum(lengths) - lengths
            column = None if outcomes is None else np.concatenate([outcomes[i] for i in picked])
            add_together(windows, starts, lengths, column, np.concatenate([times[i] for i in picked]))


def _judge_together(steps: list[tuple[ModelTracker, Step]]) -> list[AlertTransition]:
    """Measure the count windows of all the batch's models together, judge each, then write the windows.

    Models whose windows have the same shape (size and rings: the same
    policy, as a rule) share one ``FleetMeasure`` per window size.
    """
    shapes: dict[tuple[Any, ...], list[int]] = {}
    for i, (tracker, _step) in enumerate(steps):
        for size, rings in tracker.windows.items():
            shapes.setdefault((size, *rings.shape), []).append(i)
    judged: list[dict[str, Trajectory]] = [{} for _ in steps]
    measured: list[tuple[FleetMeasure, npt.NDArray[np.float64]]] = []
    for (size, *_shape), members in shapes.items():
        outcomes = [steps[i][1].outcomes for i in members]
        lengths = np.fromiter((len(o) for o in outcomes), dtype=np.intp, count=len(outcomes))
        starts = np.cumsum(lengths) - lengths
        together = LabeledOutcomes.concatenate(outcomes)
        fleet = FleetMeasure([steps[i][0].windows[size] for i in members], starts, lengths)
        columns = {ring.name: ring.column(together) for ring in fleet.ringsets[0].rings}
        trajectories = fleet.measure(columns)
        for k, i in enumerate(members):
            if size == steps[i][0].policy.judged_window:
                a, b = int(starts[k]), int(starts[k] + lengths[k])
                judged[i] = {name: Trajectory(t.total[a:b], t.count[a:b]) for name, t in trajectories.items()}
        measured.append((fleet, together.event_time))
    transitions: list[AlertTransition] = []
    for (tracker, step), trajectories in zip(steps, judged, strict=True):
        transitions.extend(tracker.judge(step, trajectories))
    for fleet, event_time in measured:
        fleet.write(event_time)
    return transitions
