"""Alert rules: a line on a metric, and a judge that decides when the metric has crossed it and come back.

Every rule is the same thing, whatever it watches: a :class:`Line` on one
metric (see ``metric.py``), judged by one of two deciders, each satisfying
:class:`Judge`.  The lesson's two rules are lines on accuracy:

* ``degradation``: ``baseline - accuracy > threshold`` (strictly greater: a drop
  exactly equal to the threshold is stable).
* ``floor``: ``accuracy <= floor`` (the lesson's quiz retrains "at 0.85 accuracy
  or below"), with a tolerance: the floor's test is centred ``floor_tolerance``
  below the floor, so a floor equal to the baseline does not fire on every
  unlucky stretch of a healthy model.

Rules on other metrics (``[[models.NAME.rules]]``, e.g. the recall of a fraud
model) are lines ``threshold`` worse than their own baseline: lower for
metrics where higher is better, higher for the Brier score.

The deciders (``decision`` in the policy):

* ``sequential`` (default): a CUSUM on the line (see ``sequential.py``): fires
  as soon as the evidence is there, resolves on evidence too.  It needs the
  metric to be a success rate over a subsequence of events (accuracy,
  precision, recall).
* ``window``: the plain rule on the judged count window, once it holds
  ``min_samples``; it resolves when the window is ``recovery_margin`` back on
  the good side.

Comparisons in the window rule are exact: every metric's window value is a
fraction of integers and the line a fraction, so ``num * q < p * den``
decides, never a rounded float.

>>> import numpy as np
>>> line = Line(Fraction(3, 4))
>>> line.breached(np.array([74, 75, 76]), np.array([100, 100, 100])).tolist()
[True, False, False]
>>> Line(Fraction(3, 4), inclusive=True).breached(np.array([75]), np.array([100])).tolist()
[True]
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Final, Protocol

import numpy as np
import numpy.typing as npt

from decaywatch.monitor.baseline import exact
from decaywatch.monitor.config import MetricRule, ModelPolicy
from decaywatch.monitor.episode import EpisodeState
from decaywatch.monitor.metric import Counts, Mask, Metric, MetricSeries
from decaywatch.monitor.metrics import REGISTRY
from decaywatch.monitor.sequential import SequentialTest, reference_accuracies

DEGRADATION: Final = "degradation"
FLOOR: Final = "floor"

_SAFE: Final = 1 << 62


def compare(numerator: Counts, denominator: Counts, line: Fraction) -> npt.NDArray[np.int64]:
    """Sign of ``numerator / denominator - line`` per element, exactly (denominators positive)."""
    p, q = line.numerator, line.denominator
    reach = int(np.abs(numerator).max(initial=0)) * q + abs(p) * int(np.abs(denominator).max(initial=0))
    if reach < _SAFE:
        signs: npt.NDArray[np.int64] = np.sign(numerator * q - p * denominator)
        return signs
    big = numerator.astype(object) * q - denominator.astype(object) * p  # Python integers: no overflow
    return np.asarray(np.sign(big), dtype=np.int64)


@dataclass(frozen=True, slots=True)
class Line:
    """Where a metric breaks its contract.

    ``higher_is_better``: below the line is bad (accuracy); otherwise above it
    is (the Brier score).  ``inclusive``: standing on the line is a breach too
    (the floor: "at or below").
    """

    value: Fraction
    higher_is_better: bool = True
    inclusive: bool = False

    def _worse(self, numerator: Counts, denominator: Counts, line: Fraction) -> npt.NDArray[np.int64]:
        sign = compare(numerator, denominator, line)
        return -sign if self.higher_is_better else sign

    def breached(self, numerator: Counts, denominator: Counts) -> Mask:
        worse = self._worse(numerator, denominator, self.value)
        return worse >= 0 if self.inclusive else worse > 0

    def cleared(self, numerator: Counts, denominator: Counts, margin: Fraction) -> Mask:
        """Back on the good side by at least ``margin`` (and off the line)."""
        back = self.value + margin if self.higher_is_better else self.value - margin
        return (self._worse(numerator, denominator, back) <= 0) & ~self.breached(numerator, denominator)


@dataclass(frozen=True, slots=True)
class Judgement:
    """An episode opens (``firing``) or closes at labeled event ``index``, on this evidence.

    The evidence's value is ``numerator / denominator`` over ``support``
    events: the judged window for the window rule, the test's evidence span
    for the sequential one.
    """

    index: int
    firing: bool
    numerator: int
    denominator: int
    support: int
    statistic: float | None
    start_time: float | None = None
    """Event time of the first event behind the decision, when the judge knows it."""


class Judge(Protocol):
    """A decider with its alert state, advanced one batch at a time."""

    @property
    def decision(self) -> str:
        """``"sequential"`` or ``"window"``: how it decides (carried in alert events)."""
        ...

    @property
    def firing(self) -> bool: ...

    @property
    def statistic(self) -> float | None:
        """The running evidence, for deciders that keep one."""
        ...

    @property
    def evidence(self) -> float | None:
        """The evidence needed to fire or resolve, for deciders that keep one."""
        ...

    @property
    def inflation(self) -> float | None:
        """What the evidence of the next outcome is divided by (errors in runs), for deciders that weigh it."""
        ...

    def advance(self, series: MetricSeries, allowed: Mask, event_time: npt.NDArray[np.float64]) -> list[Judgement]:
        """Feed one batch's series; ``allowed[j]`` False forbids opening an episode at labeled event ``j``."""
        ...

    def state(self) -> dict[str, Any]:
        """What it has learned, as plain values (for checkpoints)."""
        ...

    def restore(self, state: dict[str, Any]) -> None: ...


class WindowJudge:
    """The plain rule on the judged window, with one episode per breach and a cool-down after it."""

    decision: Final = "window"

    def __init__(self, line: Line, recovery_margin: float, cooldown: int) -> None:
        self.line, self.recovery, self.cooldown = line, exact(recovery_margin), cooldown
        self._episode = EpisodeState()
        self._quiet = 0  # events still to wait, after a resolution in an earlier batch

    @property
    def firing(self) -> bool:
        return self._episode.firing

    @property
    def statistic(self) -> float | None:
        return None

    @property
    def evidence(self) -> float | None:
        return None

    @property
    def inflation(self) -> float | None:
        return None

    def advance(self, series: MetricSeries, allowed: Mask, event_time: npt.NDArray[np.float64]) -> list[Judgement]:
        del event_time  # the window's oldest event is the tracker's to find
        numerator, denominator = series.numerator, series.denominator
        defined = denominator > 0
        safe = np.where(defined, denominator, 1)
        breach = allowed & defined & self.line.breached(numerator, safe)
        clear = allowed & defined & self.line.cleared(numerator, safe, self.recovery)
        moves = self._episode.advance_with_cooldown(breach, clear, self._quiet, self.cooldown)
        m = int(numerator.shape[0])
        resolved = [j for j, firing in moves if not firing]
        self._quiet = max(0, self.cooldown - (m - 1 - resolved[-1])) if resolved else max(0, self._quiet - m)
        return [Judgement(j, firing, int(numerator[j]), int(denominator[j]), int(series.support[j]), None) for j, firing in moves]

    def state(self) -> dict[str, Any]:
        return {"decision": self.decision, **self._episode.state(), "quiet": self._quiet}

    def restore(self, state: dict[str, Any]) -> None:
        self._episode.restore(state)
        self._quiet = int(state["quiet"])


class SequentialJudge:
    """A rule decided by a sequential test on its line (see ``sequential.py``), over the metric's trials."""

    decision: Final = "sequential"

    def __init__(self, test: SequentialTest) -> None:
        self._test = test

    @property
    def firing(self) -> bool:
        return self._test.firing

    @property
    def statistic(self) -> float | None:
        return self._test.statistic

    @property
    def evidence(self) -> float | None:
        return self._test.evidence

    @property
    def inflation(self) -> float | None:
        return self._test.dependence.phi if self._test.discount_bursts else 1.0

    def advance(self, series: MetricSeries, allowed: Mask, event_time: npt.NDArray[np.float64]) -> list[Judgement]:
        trials, successes = series.trials, series.successes
        assert trials is not None, "the sequential test needs a success rate"
        assert successes is not None, "the sequential test needs a success rate"
        return [
            Judgement(int(trials[t.index]), t.firing, t.span_correct, t.span_count, t.span_count, t.statistic, t.span_start_time)
            for t in self._test.advance(successes, allowed[trials], event_time[trials])
        ]

    def state(self) -> dict[str, Any]:
        return {"decision": self.decision, **self._test.state()}

    def restore(self, state: dict[str, Any]) -> None:
        self._test.restore(state)


@dataclass(slots=True)
class Rule:
    """One rule of one model: a judge over a metric, and what its alerts report."""

    name: str
    metric: Metric
    judge: Judge
    min_samples: int
    """Support the judged window needs before an episode may open."""
    baseline: Fraction | None
    """The rule's own baseline for its metric; ``None``: the model's (accuracy) baseline."""
    threshold: float
    floor: float | None = None
    after_learning: bool = False
    """Skip the events a learned baseline was measured on (the degradation rule)."""


def sequential_test(line: float, margin: float, policy: ModelPolicy) -> SequentialTest:
    """A sequential test centred on ``line`` (``reference_accuracies``) with the policy's evidence, cool-down and
    confidence."""
    good, bad = reference_accuracies(line, margin)
    return SequentialTest(
        good, bad, policy.evidence, policy.cooldown, line=line, z=policy.confidence_z, discount_bursts=policy.discount_bursts
    )


DEFAULT_MARGIN: Final = 0.05
MIN_MARGIN: Final = 0.005


def reference_margin(policy: ModelPolicy, threshold: float) -> float:
    """The policy's ``margin``, or by default half the rule's threshold, between 0.005 and 0.05.

    With the reference accuracies further from the line than the threshold
    is from the baseline, the good reference would sit above the baseline:
    a model at its baseline would then drift towards a false alarm.
    """
    if policy.margin is not None:
        return policy.margin
    return min(DEFAULT_MARGIN, max(threshold / 2, MIN_MARGIN))


def degradation_rule(policy: ModelPolicy, baseline: Fraction) -> Rule:
    """The contract's rule for a model whose baseline is known."""
    line = baseline - exact(policy.threshold)
    judge: Judge
    if policy.decision == "window":
        judge = WindowJudge(Line(line), policy.recovery_margin, policy.cooldown)
    else:
        judge = SequentialJudge(sequential_test(float(line), reference_margin(policy, policy.threshold), policy))
    return Rule(DEGRADATION, REGISTRY["accuracy"], judge, policy.min_samples, None, policy.threshold, policy.floor, True)


def floor_rule(policy: ModelPolicy) -> Rule | None:
    """The absolute floor's rule, if the policy sets one."""
    if policy.floor is None:
        return None
    judge: Judge
    if policy.decision == "window":
        judge = WindowJudge(Line(exact(policy.floor), inclusive=True), policy.recovery_margin, policy.cooldown)
    else:
        tolerance = policy.floor_tolerance
        judge = SequentialJudge(sequential_test(policy.floor - tolerance, max(tolerance, 1e-3), policy))
    return Rule(FLOOR, REGISTRY["accuracy"], judge, policy.min_samples, None, policy.threshold, policy.floor)


def metric_rule(rule: MetricRule, policy: ModelPolicy) -> Rule:
    """A ``[[models.NAME.rules]]`` entry: ``threshold`` worse than its own baseline."""
    metric = REGISTRY[rule.metric]
    decision = rule.decision or (policy.decision if metric.success_rate else "window")
    baseline, threshold = exact(rule.baseline), exact(rule.threshold)
    line = baseline - threshold if metric.higher_is_better else baseline + threshold
    judge: Judge
    if decision == "sequential":
        judge = SequentialJudge(sequential_test(float(line), reference_margin(policy, rule.threshold), policy))
        min_samples = 0  # a metric rule's min_samples is for the window decision: the test weighs its own evidence
    else:
        judge = WindowJudge(Line(line, metric.higher_is_better), policy.recovery_margin, policy.cooldown)
        min_samples = rule.min_samples if rule.min_samples is not None else policy.min_samples
    return Rule(rule.name, metric, judge, min_samples, baseline, rule.threshold)
