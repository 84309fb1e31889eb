"""Everything the monitor knows about one model: counters, windows, baseline, rules, episodes."""

from __future__ import annotations

from datetime import datetime, timezone

import numpy as np
import numpy.typing as npt

from monitor.alert import DEGRADED_MESSAGE, FIRING, RESOLVED, STABLE_MESSAGE, AlertTransition, alert_id
from monitor.baseline import Baseline
from monitor.config import ModelPolicy
from monitor.episode import EpisodeState
from monitor.rule import DEGRADATION, DegradationRule, FloorRule
from monitor.snapshot import ModelSnapshot, WindowSnapshot
from monitor.window import CountWindow


class ModelTracker:
    """Rolling accuracy and alert state of one model, updated a batch at a time."""

    def __init__(self, model: str, policy: ModelPolicy) -> None:
        self.model = model
        self.policy = policy
        self.windows = {size: CountWindow(size) for size in sorted(set(policy.windows))}
        self.baseline = (
            Baseline.fixed(policy.baseline, policy.baseline_date)
            if policy.baseline is not None
            else Baseline.learned(policy.learn_baseline_from)
        )
        self.rules: list[DegradationRule | FloorRule] = [
            DegradationRule(policy.threshold, policy.min_samples, policy.recovery_margin)
        ]
        if policy.floor is not None:
            self.rules.append(FloorRule(policy.floor, policy.min_samples, policy.recovery_margin))
        self.episodes = {rule.name: EpisodeState() for rule in self.rules}
        self.events = 0
        self.labeled = 0
        self.correct = 0
        self.last_event_time: float | None = None

    def update(
        self,
        labeled: npt.NDArray[np.bool_],
        correct: npt.NDArray[np.bool_],
        event_time: npt.NDArray[np.float64],
        source_index: npt.NDArray[np.int64],
    ) -> list[AlertTransition]:
        """Account for this model's events of one batch, in stream order; returns alert transitions."""
        self.events += int(labeled.shape[0])
        if event_time.size:
            newest = float(event_time.max())
            self.last_event_time = newest if self.last_event_time is None else max(self.last_event_time, newest)
        outcomes, times, sources = correct[labeled], event_time[labeled], source_index[labeled]
        if not outcomes.size:
            return []
        ordinal_before = self.labeled
        self.labeled += int(outcomes.size)
        self.correct += int(np.count_nonzero(outcomes))
        learning = self.baseline.observe(outcomes, times)
        trajectories = {size: window.extend(outcomes, times) for size, window in self.windows.items()}
        if self.baseline.value is None:
            return []
        k, n = trajectories[self.policy.judged_window]
        transitions: list[AlertTransition] = []
        for rule in self.rules:
            verdict = rule.evaluate(self.baseline.value, k, n)
            verdict.breach[:learning] = False
            verdict.clear[:learning] = False
            episode = self.episodes[rule.name]
            for j, firing in episode.advance(verdict.breach, verdict.clear):
                if firing:
                    episode.alert_id = alert_id(self.model, rule.name, ordinal_before + j + 1)
                transitions.append(self._transition(rule, episode, firing, int(k[j]), int(n[j]), float(times[j]), int(sources[j])))
                if not firing:
                    episode.alert_id = None
        return transitions

    def _transition(
        self,
        rule: DegradationRule | FloorRule,
        episode: EpisodeState,
        firing: bool,
        correct: int,
        count: int,
        event_time: float,
        source_index: int,
    ) -> AlertTransition:
        baseline = float(self.baseline.value) if self.baseline.value is not None else float("nan")
        accuracy = correct / count
        assert episode.alert_id is not None
        return AlertTransition(
            alert_id=episode.alert_id,
            model=self.model,
            status=FIRING if firing else RESOLVED,
            rule=rule.name,
            message=DEGRADED_MESSAGE if firing else STABLE_MESSAGE,
            baseline_accuracy=baseline,
            baseline_date=self._baseline_date(),
            accuracy=accuracy,
            drop=baseline - accuracy,
            threshold=self.policy.threshold,
            floor=self.policy.floor,
            window=self.policy.judged_window,
            samples=count,
            event_time=event_time,
            source_index=source_index,
        )

    def _baseline_date(self) -> str | None:
        measured = self.baseline.measured_at
        if measured is None or isinstance(measured, str):
            return measured
        return datetime.fromtimestamp(measured, tz=timezone.utc).date().isoformat()

    def snapshot(self) -> ModelSnapshot:
        baseline = float(self.baseline.value) if self.baseline.value is not None else None
        windows = tuple(
            WindowSnapshot(
                size=size,
                labeled=w.count,
                correct=w.correct,
                accuracy=w.accuracy,
                drop=None if baseline is None or w.accuracy is None else baseline - w.accuracy,
                time_span=w.time_span,
            )
            for size, w in self.windows.items()
        )
        return ModelSnapshot(
            model=self.model,
            events=self.events,
            labeled=self.labeled,
            correct=self.correct,
            last_event_time=self.last_event_time,
            baseline=baseline,
            baseline_date=self._baseline_date(),
            threshold=self.policy.threshold,
            floor=self.policy.floor,
            judged_window=self.policy.judged_window,
            windows=windows,
            degraded=self.episodes[DEGRADATION].firing,
            below_floor=any(e.firing for name, e in self.episodes.items() if name != DEGRADATION),
            open_alert_ids=tuple(e.alert_id for e in self.episodes.values() if e.alert_id is not None),
        )
