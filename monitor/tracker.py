"""Everything the monitor knows about one model: counters, windows, baseline, rules, episodes."""

from __future__ import annotations

from datetime import datetime, timezone

import numpy as np
import numpy.typing as npt

from decaywatch.monitor.alert import DEGRADED_MESSAGE, FIRING, RESOLVED, STABLE_MESSAGE, AlertTransition, alert_id
from decaywatch.monitor.baseline import Baseline, exact
from decaywatch.monitor.binary import BinaryOutcomes, BinaryWindow, ValueWindowJudge
from decaywatch.monitor.config import MetricRule, ModelPolicy
from decaywatch.monitor.rule import (
    DEGRADATION,
    FLOOR,
    Judge,
    Judgement,
    SequentialJudge,
    degradation_judge,
    floor_judge,
    sequential_judge,
)
from decaywatch.monitor.snapshot import ModelSnapshot, RuleSnapshot, WindowSnapshot
from decaywatch.monitor.timewindow import TimeWindow, late_mask, parse_duration
from decaywatch.monitor.wilson import wilson_interval
from decaywatch.monitor.window import CountWindow


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
        self.judges: dict[str, Judge] = {}
        floor = floor_judge(policy)
        if floor is not None:
            self.judges[FLOOR] = floor
        if self.baseline.value is not None:
            self.judges[DEGRADATION] = degradation_judge(policy, self.baseline.value)
        self.time_windows = {label: TimeWindow(parse_duration(label)) for label in policy.time_windows}
        self.allowed_lateness = parse_duration(policy.allowed_lateness)
        self.watermark: float | None = None
        self.late_events = 0
        self.alert_ids: dict[str, str] = {}
        self.binary = {size: BinaryWindow(size) for size in self.windows} if policy.positive_label is not None else None
        self.metric_rules: dict[str, tuple[MetricRule, SequentialJudge | ValueWindowJudge]] = {
            rule.name: (rule, _metric_judge(rule, policy)) for rule in policy.rules
        }
        self._binary_seen = 0
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
        late, self.watermark = late_mask(event_time, self.watermark, self.allowed_lateness)
        self.late_events += int(np.count_nonzero(late))
        on_time = ~late[labeled]
        for window in self.time_windows.values():
            window.add(outcomes[on_time], times[on_time])
        if not outcomes.size:
            return []
        ordinal_before = self.labeled
        self.labeled += int(outcomes.size)
        self.correct += int(np.count_nonzero(outcomes))
        learning = self.baseline.observe(outcomes, times)
        if DEGRADATION not in self.judges and self.baseline.value is not None:
            self.judges = {DEGRADATION: degradation_judge(self.policy, self.baseline.value), **self.judges}
        judged = self.windows[self.policy.judged_window]
        trajectories = {size: window.trajectory(outcomes) for size, window in self.windows.items()}
        k, n = trajectories[self.policy.judged_window]
        transitions: list[AlertTransition] = []
        for judge in self.judges.values():
            skip = learning if judge.name == DEGRADATION else 0
            allowed = n[skip:] >= self.policy.min_samples
            for judgement in judge.advance(outcomes[skip:], k[skip:], n[skip:], allowed, times[skip:]):
                j = judgement.index + skip
                if judgement.firing:
                    self.alert_ids[judge.name] = alert_id(self.model, judge.name, ordinal_before + j + 1)
                span_start = self._span_start(judgement, judged, j, int(n[j]), times)
                transitions.append(self._transition(judge, judgement, j, int(k[j]), int(n[j]), span_start, times, sources))
                if not judgement.firing:
                    del self.alert_ids[judge.name]
        for size, window in self.windows.items():
            window.write(outcomes, times, *trajectories[size])
        return transitions

    def update_binary(
        self,
        predictions: npt.NDArray[np.object_],
        labels: npt.NDArray[np.object_],
        score: npt.NDArray[np.float64],
        times: npt.NDArray[np.float64],
        sources: npt.NDArray[np.int64],
    ) -> list[AlertTransition]:
        """Precision, recall, F1 and Brier over the same labeled events as ``update``; returns metric rules' transitions."""
        assert self.binary is not None
        if not labels.size:
            return []
        batch = BinaryOutcomes.of(predictions, labels, score, self.policy.positive_label)
        values = {size: window.update(batch, times) for size, window in self.binary.items()}
        judged = values[self.policy.judged_window]
        ordinal_before = self._binary_seen
        self._binary_seen += int(labels.size)
        transitions: list[AlertTransition] = []
        for name, (rule, judge) in self.metric_rules.items():
            if isinstance(judge, ValueWindowJudge):
                moves = [
                    (v.index, v.firing, v.value, v.support, None)
                    for v in judge.advance(judged.values[rule.metric], judged.support[rule.metric])
                ]
            else:
                moves = self._sequential_metric(rule, judge, batch)
            for j, firing, value, support, statistic in moves:
                if firing:
                    self.alert_ids[name] = alert_id(self.model, name, ordinal_before + j + 1)
                transitions.append(
                    self._metric_transition(rule, firing, value, support, statistic, float(times[j]), int(sources[j]))
                )
                if not firing:
                    del self.alert_ids[name]
        return transitions

    def _sequential_metric(
        self, rule: MetricRule, judge: SequentialJudge, batch: BinaryOutcomes
    ) -> list[tuple[int, bool, float, int, float | None]]:
        """Precision and recall are success rates over a subsequence: run the test there, map indexes back."""
        if rule.metric == "precision":
            rows, outcomes = np.flatnonzero(batch.predicted), batch.actual[batch.predicted]
        else:
            rows, outcomes = np.flatnonzero(batch.actual), batch.predicted[batch.actual]
        allowed = np.ones(rows.size, dtype=bool)
        return [
            (int(rows[j.index]), j.firing, j.correct / j.count, j.count, j.statistic)
            for j in judge.advance(outcomes, np.zeros(0, np.int64), np.zeros(0, np.int64), allowed)
        ]

    def _metric_transition(
        self, rule: MetricRule, firing: bool, value: float, support: int, statistic: float | None, event_time: float, source: int
    ) -> AlertTransition:
        lower, upper = wilson_interval(round(value * support), support) if rule.metric != "brier" else (value, value)
        worse = value - rule.baseline if rule.metric == "brier" else rule.baseline - value
        return AlertTransition(
            alert_id=self.alert_ids[rule.name],
            model=self.model,
            status=FIRING if firing else RESOLVED,
            rule=rule.name,
            message=DEGRADED_MESSAGE if firing else STABLE_MESSAGE,
            baseline_accuracy=rule.baseline,
            baseline_date=None,
            accuracy=value,
            drop=worse,
            threshold=rule.threshold,
            floor=None,
            window=self.policy.judged_window,
            samples=support,
            event_time=event_time,
            source_index=source,
            lower_bound=float(lower),
            upper_bound=float(upper),
            window_accuracy=float("nan"),
            decision="window" if statistic is None else "sequential",
            statistic=statistic,
            evidence_start=None,
            metric=rule.metric,
        )

    def _span_start(
        self, judgement: Judgement, judged: CountWindow, j: int, n_j: int, times: npt.NDArray[np.float64]
    ) -> float | None:
        """Event time of the first event behind a judgement (window rule: the window's oldest event)."""
        if judgement.statistic is None:
            return judged.oldest_time(j, n_j, times)
        return judgement.start_time

    def _transition(
        self,
        judge: Judge,
        judgement: Judgement,
        j: int,
        window_correct: int,
        window_count: int,
        span_start: float | None,
        times: npt.NDArray[np.float64],
        sources: npt.NDArray[np.int64],
    ) -> AlertTransition:
        baseline = float(self.baseline.value) if self.baseline.value is not None else float("nan")
        accuracy = judgement.correct / judgement.count
        lower, upper = wilson_interval(judgement.correct, judgement.count)
        return AlertTransition(
            alert_id=self.alert_ids[judge.name],
            model=self.model,
            status=FIRING if judgement.firing else RESOLVED,
            rule=judge.name,
            message=DEGRADED_MESSAGE if judgement.firing else STABLE_MESSAGE,
            baseline_accuracy=baseline,
            baseline_date=self._baseline_date(),
            accuracy=accuracy,
            drop=baseline - accuracy,
            threshold=self.policy.threshold,
            floor=self.policy.floor,
            window=self.policy.judged_window,
            samples=judgement.count,
            event_time=float(times[j]),
            source_index=int(sources[j]),
            lower_bound=float(lower),
            upper_bound=float(upper),
            window_accuracy=window_correct / window_count,
            decision=self.policy.decision,
            statistic=judgement.statistic,
            evidence_start=span_start,
            metric="accuracy",
        )

    def _baseline_date(self) -> str | None:
        measured = self.baseline.measured_at
        if measured is None or isinstance(measured, str):
            return measured
        return datetime.fromtimestamp(measured, tz=timezone.utc).date().isoformat()

    def snapshot(self) -> ModelSnapshot:
        baseline = float(self.baseline.value) if self.baseline.value is not None else None
        windows = []
        for size, w in self.windows.items():
            lower, upper = wilson_interval(w.correct, w.count)
            windows.append(
                WindowSnapshot(
                    label=str(size),
                    size=size,
                    labeled=w.count,
                    correct=w.correct,
                    accuracy=w.accuracy,
                    drop=None if baseline is None or w.accuracy is None else baseline - w.accuracy,
                    time_span=w.time_span,
                    lower_bound=None if not w.count else float(lower),
                    upper_bound=None if not w.count else float(upper),
                )
            )
        for label, tw in self.time_windows.items():
            lower, upper = wilson_interval(tw.correct, tw.count)
            accuracy = tw.accuracy
            windows.append(
                WindowSnapshot(
                    label=label,
                    size=None,
                    labeled=tw.count,
                    correct=tw.correct,
                    accuracy=accuracy,
                    drop=None if baseline is None or accuracy is None else baseline - accuracy,
                    time_span=tw.time_span,
                    lower_bound=None if not tw.count else float(lower),
                    upper_bound=None if not tw.count else float(upper),
                )
            )
        metrics: dict[str, dict[str, float | None]] = {}
        if self.binary is not None:
            metrics = {str(size): window.current() for size, window in self.binary.items()}
        rules = tuple(
            RuleSnapshot(
                name=judge.name,
                firing=judge.firing,
                statistic=judge.statistic,
                evidence=getattr(judge, "evidence", None),
                alert_id=self.alert_ids.get(judge.name),
            )
            for judge in self.judges.values()
        ) + tuple(
            RuleSnapshot(
                name=name,
                firing=judge.firing,
                statistic=judge.statistic if isinstance(judge, SequentialJudge) else None,
                evidence=judge.evidence if isinstance(judge, SequentialJudge) else None,
                alert_id=self.alert_ids.get(name),
            )
            for name, (_rule, judge) in self.metric_rules.items()
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
            windows=tuple(windows),
            rules=rules,
            late_events=self.late_events,
            binary_metrics=metrics,
        )


def _metric_judge(rule: MetricRule, policy: ModelPolicy) -> SequentialJudge | ValueWindowJudge:
    decision = rule.decision or (policy.decision if rule.metric in ("accuracy", "precision", "recall") else "window")
    min_samples = rule.min_samples if rule.min_samples is not None else policy.min_samples
    if decision == "sequential":
        line = float(exact(rule.baseline) - exact(rule.threshold))
        return sequential_judge(rule.name, line, policy.margin, policy)
    return ValueWindowJudge(rule.metric, rule.baseline, rule.threshold, min_samples, policy.recovery_margin, policy.cooldown)
