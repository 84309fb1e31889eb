"""Everything the monitor knows about one model: counters, windows, baseline, rules, episodes.

One path for every rule: the batch's labeled events become a few integer
columns (``metric.LabeledOutcomes``); every count window sums the rings the
registered metrics need; each metric turns its rings' trajectories into a
``MetricSeries``; each rule's judge reads the series of its metric.  Nothing
here knows which metric or which decider a rule has.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import numpy.typing as npt

from decaywatch.monitor.alert import DEGRADED_MESSAGE, FIRING, RESOLVED, STABLE_MESSAGE, AlertTransition, alert_id
from decaywatch.monitor.baseline import Baseline
from decaywatch.monitor.config import ModelPolicy
from decaywatch.monitor.join import Join, Joined
from decaywatch.monitor.metric import LabeledOutcomes, Metric, MetricSeries, Ring, Trajectory
from decaywatch.monitor.metrics import REGISTRY
from decaywatch.monitor.metrics.accuracy import CORRECT
from decaywatch.monitor.metrics.confusion import BRIER_SCALE
from decaywatch.monitor.rings import RingSet
from decaywatch.monitor.rule import DEGRADATION, FLOOR, Judgement, Rule, degradation_rule, floor_rule, metric_rule
from decaywatch.monitor.schema import ModelRows, Role
from decaywatch.monitor.snapshot import ModelSnapshot, RuleSnapshot, WindowSnapshot
from decaywatch.monitor.timewindow import TimeWindow, late_mask, parse_duration
from decaywatch.monitor.wilson import wilson_bounds


@dataclass(frozen=True, slots=True)
class Step:
    """A model's part of a batch between ``begin`` and ``judge``."""

    outcomes: LabeledOutcomes
    learning: int
    """Leading labeled events the baseline learned from (the degradation rule does not judge them)."""
    ordinal_before: int
    """Labeled events of the model before this batch (alert ids count from here)."""
    on_time: npt.NDArray[np.bool_]
    """Which of ``outcomes`` are not late: they go into the event-time windows (``add_time_windows``)."""
    predicted: npt.NDArray[np.float64]
    """Event times of the batch's on-time predictions, labeled yet or not (event-time windows count them for coverage)."""


class ModelTracker:
    """Rolling metrics and alert state of one model, updated a batch at a time."""

    def __init__(self, model: str, policy: ModelPolicy) -> None:
        self.model = model
        self.policy = policy
        binary = policy.positive_label is not None
        self.metrics: dict[str, Metric] = {
            name: metric for name, metric in REGISTRY.items() if binary or not metric.needs_positive_class
        }
        self.rings: dict[str, Ring] = {ring.name: ring for metric in self.metrics.values() for ring in metric.rings}
        self.windows = {size: RingSet(size, list(self.rings.values())) for size in sorted(set(policy.windows))}
        self.baseline = (
            Baseline.fixed(policy.baseline, policy.baseline_date)
            if policy.baseline is not None
            else Baseline.learned(policy.learn_baseline_from)
        )
        self.rules: dict[str, Rule] = {}
        floor = floor_rule(policy)
        if floor is not None:
            self.rules[FLOOR] = floor
        if self.baseline.value is not None:
            self.rules[DEGRADATION] = degradation_rule(policy, self.baseline.value)
        for spec in policy.rules:
            if spec.metric in self.metrics:
                self.rules[spec.name] = metric_rule(spec, policy)
        self.time_windows: dict[str, TimeWindow] = {label: TimeWindow(parse_duration(label)) for label in policy.time_windows}
        self.allowed_lateness = parse_duration(policy.allowed_lateness)
        self.watermark: float | None = None
        self.late_events = 0
        self.alert_ids: dict[str, str] = {}
        self.events = 0
        self.labeled = 0
        self.correct = 0
        self.last_event_time: float | None = None
        self.join = Join(parse_duration(policy.label_ttl), parse_duration(policy.orphan_ttl), policy.max_pending)

    def learn_rules(self) -> None:
        """Add the degradation rule once the baseline is known (in front: it is the contract's rule)."""
        if DEGRADATION not in self.rules and self.baseline.value is not None:
            self.rules = {DEGRADATION: degradation_rule(self.policy, self.baseline.value), **self.rules}

    def update(self, rows: ModelRows) -> list[AlertTransition]:
        """Account for this model's events of one batch, in stream order; returns alert transitions.

        The monitor runs the same three phases for all the models of a batch
        at once (``begin`` each, the count windows of all together, ``judge`` each).
        """
        step = self.begin(rows)
        if step is None:
            return []
        self.add_time_windows(step)
        if not len(step.outcomes):
            return []
        judged = self.windows[self.policy.judged_window].measure(step.outcomes)
        transitions = self.judge(step, judged)
        for size, rings in self.windows.items():
            if size != self.policy.judged_window:
                rings.measure(step.outcomes)
            rings.write(step.outcomes.event_time)
        return transitions

    def begin(self, rows: ModelRows) -> Step | None:
        """Counters, lateness, the join and baseline learning; the outcomes for the event-time and count windows.

        The outcomes are the batch's inline-labeled predictions and the
        outcomes joined in it (``monitor/join.py``), in the order they became
        complete, each with its prediction's event time and lateness.
        """
        prediction_rows = None if rows.role is None else np.flatnonzero(rows.role != Role.LABEL)
        times = rows.event_time if prediction_rows is None else rows.event_time[prediction_rows]
        self.events += int(times.shape[0])
        before = self.last_event_time
        if times.size:
            newest = float(times.max())
            self.last_event_time = newest if self.last_event_time is None else max(self.last_event_time, newest)
        late, self.watermark = late_mask(times, self.watermark, self.allowed_lateness)
        self.late_events += int(np.count_nonzero(late))
        predicted = times[~late]
        if prediction_rows is not None:
            per_row = np.zeros(rows.event_time.shape[0], dtype=bool)
            per_row[prediction_rows] = late
            late = per_row
        joined = self.join.step(rows, late, before)
        if len(joined):
            rows, late = _with_joined(rows, late, joined)
        outcomes = self._outcomes(rows)
        if not len(outcomes):
            none = np.zeros(0, dtype=bool)
            return Step(outcomes, 0, self.labeled, none, predicted) if predicted.size else None
        ordinal_before = self.labeled
        self.labeled += len(outcomes)
        self.correct += int(np.count_nonzero(outcomes.correct))
        learning = self.baseline.observe(outcomes.correct, outcomes.event_time)
        self.learn_rules()
        return Step(outcomes, learning, ordinal_before, ~late[rows.labeled], predicted)

    def add_time_windows(self, step: Step) -> None:
        """The step's on-time outcomes into the event-time windows (the monitor does this for a batch's models together)."""
        on_time = step.on_time
        for time_window in self.time_windows.values():
            time_window.add_predictions(step.predicted)
            time_window.add(step.outcomes.correct[on_time], step.outcomes.event_time[on_time])

    def judge(self, step: Step, judged: dict[str, Trajectory]) -> list[AlertTransition]:
        """Every rule over the judged window's trajectories (measured, not yet written); returns the transitions."""
        outcomes = step.outcomes
        series: dict[str, MetricSeries] = {}
        transitions: list[AlertTransition] = []
        for rule in self.rules.values():
            name = rule.metric.name
            if name not in series:
                series[name] = rule.metric.series(judged, outcomes)
            skip = step.learning if rule.after_learning else 0
            seen = _tail(series[name], skip)
            allowed = seen.support >= rule.min_samples
            for judgement in rule.judge.advance(seen, allowed, outcomes.event_time[skip:]):
                j = judgement.index + skip
                if judgement.firing:
                    self.alert_ids[rule.name] = alert_id(self.model, rule.name, step.ordinal_before + j + 1)
                transitions.append(self._transition(rule, judgement, j, judged[CORRECT.name], outcomes))
                if not judgement.firing:
                    del self.alert_ids[rule.name]
        return transitions

    def _outcomes(self, rows: ModelRows) -> LabeledOutcomes:
        """The labeled events as the integer columns the rings are made of."""
        labeled = rows.labeled
        correct, times, sources = rows.correct[labeled], rows.event_time[labeled], rows.source_index[labeled]
        positive = self.policy.positive_label
        if positive is None:
            return LabeledOutcomes(correct, times, sources)
        m = int(correct.shape[0])
        if rows.predictions is None or rows.labels is None:
            none = np.zeros(m, dtype=bool)
            return LabeledOutcomes(correct, times, sources, none, none, np.zeros(m, np.int64), none)
        # Python == per element, run by numpy over the object arrays (labels may be int, str or bool)
        predicted = np.asarray(rows.predictions[labeled] == positive, dtype=bool)
        actual = np.asarray(rows.labels[labeled] == positive, dtype=bool)
        score = rows.score[labeled] if rows.score is not None else np.full(m, np.nan)
        scored = ~np.isnan(score)
        error = np.where(scored, score - actual, 0.0)
        squared = np.rint(error * error * BRIER_SCALE).astype(np.int64)
        return LabeledOutcomes(correct, times, sources, predicted, actual, squared, scored)

    def _transition(
        self, rule: Rule, judgement: Judgement, j: int, accuracy: Trajectory, outcomes: LabeledOutcomes
    ) -> AlertTransition:
        value = judgement.numerator / judgement.denominator
        if rule.metric.binomial:
            lower, upper = wilson_bounds(judgement.numerator, judgement.denominator)
        else:
            lower = upper = value
        reference = rule.baseline if rule.baseline is not None else self.baseline.value
        baseline = float(reference) if reference is not None else math.nan
        if judgement.statistic is None:  # the window rule: its evidence is the judged window
            judged = self.windows[self.policy.judged_window]
            start: float | None = judged.oldest_time(j, int(accuracy.count[j]), outcomes.event_time)
        else:
            start = judgement.start_time
        return AlertTransition(
            alert_id=self.alert_ids[rule.name],
            model=self.model,
            status=FIRING if judgement.firing else RESOLVED,
            rule=rule.name,
            message=DEGRADED_MESSAGE if judgement.firing else STABLE_MESSAGE,
            metric=rule.metric.name,
            value=value,
            baseline=baseline,
            baseline_date=self.baseline_date() if rule.baseline is None else None,
            drop=baseline - value if rule.metric.higher_is_better else value - baseline,
            threshold=rule.threshold,
            floor=rule.floor,
            window=self.policy.judged_window,
            samples=judgement.support,
            event_time=float(outcomes.event_time[j]),
            source_index=int(outcomes.source_index[j]),
            lower_bound=lower,
            upper_bound=upper,
            window_accuracy=int(accuracy.total[j]) / int(accuracy.count[j]),
            decision=rule.judge.decision,
            statistic=judgement.statistic,
            evidence_start=start,
            **self._label_context(),
        )

    def _label_context(self) -> dict[str, Any]:
        """Label coverage and delay behind a decision, for a model whose labels arrive later (else nothing)."""
        labels = self.join.snapshot()
        if labels is None:
            return {}
        coverage = {name: window.coverage for name, window in self.time_windows.items()}
        return {"label_coverage": coverage, "median_label_delay": labels.median_delay}

    def baseline_date(self) -> str | None:
        measured = self.baseline.measured_at
        if measured is None or isinstance(measured, str):
            return measured
        return datetime.fromtimestamp(measured, tz=UTC).date().isoformat()

    def snapshot(self) -> ModelSnapshot:
        baseline = float(self.baseline.value) if self.baseline.value is not None else None
        totals = {size: rings.totals() for size, rings in self.windows.items()}
        windows = [
            _window_snapshot(str(size), size, rings.count, totals[size][CORRECT.name], rings.time_span, baseline)
            for size, rings in self.windows.items()
        ]
        windows += [self._time_window_snapshot(label, tw, baseline) for label, tw in self.time_windows.items()]
        metrics: dict[str, dict[str, float | None]] = {}
        if self.policy.positive_label is not None:
            for size, rings in self.windows.items():
                metrics[str(size)] = {
                    name: metric.value(totals[size], rings.count) for name, metric in self.metrics.items() if name != "accuracy"
                }
        rules = tuple(
            RuleSnapshot(
                rule.name,
                rule.judge.firing,
                rule.judge.statistic,
                rule.judge.evidence,
                self.alert_ids.get(rule.name),
                rule.judge.inflation,
            )
            for rule in self.rules.values()
        )
        return ModelSnapshot(
            model=self.model,
            events=self.events,
            labeled=self.labeled,
            correct=self.correct,
            last_event_time=self.last_event_time,
            baseline=baseline,
            baseline_date=self.baseline_date(),
            threshold=self.policy.threshold,
            floor=self.policy.floor,
            judged_window=self.policy.judged_window,
            windows=tuple(windows),
            rules=rules,
            late_events=self.late_events,
            binary_metrics=metrics,
            labels=self.join.snapshot(),
        )

    def _time_window_snapshot(self, label: str, window: TimeWindow, baseline: float | None) -> WindowSnapshot:
        """A time window's view; its accuracy only once ``min_label_coverage`` of its predictions have their label.

        Early labels can be biased (churners are labeled first), so a window
        still filling in may say more than it knows; its counts are shown anyway.
        """
        view = _window_snapshot(label, None, window.count, window.correct, window.time_span, baseline)
        coverage = window.coverage
        if coverage is not None and coverage < self.policy.min_label_coverage:
            view = dataclasses.replace(view, accuracy=None, drop=None, lower_bound=None, upper_bound=None)
        return dataclasses.replace(view, predicted=window.predicted)

    def state(self) -> dict[str, Any]:
        """Everything learned, as plain values and numpy arrays (the envelope is ``state.py``'s)."""
        return {
            "events": self.events,
            "labeled": self.labeled,
            "correct": self.correct,
            "late_events": self.late_events,
            "last_event_time": self.last_event_time,
            "watermark": self.watermark,
            "baseline": self.baseline.state(),
            "windows": [[size, rings.state()] for size, rings in self.windows.items()],
            "time_windows": [[label, window.state()] for label, window in self.time_windows.items()],
            "rules": [[name, rule.judge.state()] for name, rule in self.rules.items()],
            "alert_ids": [[name, alert] for name, alert in self.alert_ids.items()],
            "join": self.join.state(),
        }

    def restore(self, state: dict[str, Any]) -> None:
        """Take over a ``state()`` written under the same policy; raises ``ValueError``/``KeyError`` on a mismatch."""
        self.events, self.labeled, self.correct = _count(state["events"]), _count(state["labeled"]), _count(state["correct"])
        self.late_events = _count(state["late_events"])
        self.last_event_time, self.watermark = _real(state["last_event_time"]), _real(state["watermark"])
        self.baseline.restore(state["baseline"])
        self.learn_rules()
        _same("windows", list(self.windows), [size for size, _ in state["windows"]])
        for size, rings in state["windows"]:
            self.windows[size].restore(rings)
        _same("time windows", list(self.time_windows), [label for label, _ in state["time_windows"]])
        for label, window in state["time_windows"]:
            self.time_windows[label].restore(window)
        _same("rules", sorted(self.rules), sorted(name for name, _ in state["rules"]))
        self.rules = {name: self.rules[name] for name, _ in state["rules"]}  # the stored order
        for name, judge in state["rules"]:
            self.rules[name].judge.restore(judge)
        self.alert_ids = {str(name): str(alert) for name, alert in state["alert_ids"]}
        self.join.restore(state["join"])


def _window_snapshot(
    label: str, size: int | None, count: int, correct: int, span: tuple[float, float] | None, baseline: float | None
) -> WindowSnapshot:
    accuracy = correct / count if count else None
    lower, upper = wilson_bounds(correct, count)
    return WindowSnapshot(
        label=label,
        size=size,
        labeled=count,
        correct=correct,
        accuracy=accuracy,
        drop=None if baseline is None or accuracy is None else baseline - accuracy,
        time_span=span,
        lower_bound=None if not count else lower,
        upper_bound=None if not count else upper,
    )


def _with_joined(rows: ModelRows, late: npt.NDArray[np.bool_], joined: Joined) -> tuple[ModelRows, npt.NDArray[np.bool_]]:
    """The batch's outcomes as rows: inline-labeled ones and joined ones, in the order they became complete.

    A joined outcome sits at the row that completed it (its label, or its
    prediction when the label came first) and carries the prediction's time.
    """
    inline = np.flatnonzero(rows.labeled)
    position = np.concatenate([inline, joined.position])
    order = np.argsort(position, kind="stable")

    def both(mine: npt.NDArray[Any] | None, theirs: npt.NDArray[Any]) -> npt.NDArray[Any]:
        first = mine[inline] if mine is not None else np.full(inline.shape[0], np.nan)
        return np.concatenate([first, theirs])[order]

    n = int(position.shape[0])
    merged = ModelRows(
        labeled=np.ones(n, dtype=bool),
        correct=np.concatenate([rows.correct[inline], joined.correct])[order],
        event_time=np.concatenate([rows.event_time[inline], joined.time])[order],
        source_index=rows.source_index[position[order]],
        predictions=both(rows.predictions, joined.prediction),
        labels=both(rows.labels, joined.label),
        score=both(rows.score, joined.score),
    )
    return merged, np.concatenate([late[inline], joined.late])[order]


def _tail(series: MetricSeries, skip: int) -> MetricSeries:
    """The series from labeled event ``skip`` on (indexes renumbered from 0)."""
    if not skip:
        return series
    trials, successes = series.trials, series.successes
    if trials is not None and successes is not None:
        later = trials >= skip
        trials, successes = trials[later] - skip, successes[later]
    return MetricSeries(series.numerator[skip:], series.denominator[skip:], series.support[skip:], trials, successes)


def _count(value: Any) -> int:
    if type(value) is not int or value < 0:
        raise ValueError(f"a count must be a whole number >= 0, not {value!r}")
    return value


def _real(value: Any) -> float | None:
    if value is None:
        return None
    if type(value) not in (int, float):
        raise ValueError(f"expected a number, not {value!r}")
    return float(value)


def _same(what: str, now: list[Any], stored: list[Any]) -> None:
    if now != stored:
        raise ValueError(f"{what}: {stored} in the checkpoint, {now} now")
