"""Alert rules: when a model's accuracy breaks its contract, and when it is back.

Two rules, both from the lesson:

* ``degradation``: ``baseline - accuracy > threshold`` (strictly greater: a drop
  exactly equal to the threshold is stable).
* ``floor``: ``accuracy <= floor`` (the lesson's quiz retrains "at 0.85 accuracy
  or below"), with a tolerance: the floor's test is centred ``floor_tolerance``
  below the floor, so a floor equal to the baseline does not fire on every
  unlucky stretch of a healthy model.

Each rule is judged by one of two deciders (``decision`` in the policy):

* ``sequential`` (default): a CUSUM on the rule's line (see ``sequential.py``):
  fires as soon as the evidence is there, resolves on evidence too.
* ``window``: the plain rule on the judged count window, once it holds
  ``min_samples``; it resolves when the window is ``recovery_margin`` back on
  the good side.  Simple to explain, but noisy near the line on short windows
  and slow on long ones.

Comparisons in the window rule are exact: accuracy is ``correct / count``
(integers) and the line a fraction, so ``correct * den < num * count`` decides.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import Final, Protocol

import numpy as np
import numpy.typing as npt

from decaywatch.monitor.baseline import exact
from decaywatch.monitor.config import ModelPolicy
from decaywatch.monitor.episode import EpisodeState
from decaywatch.monitor.sequential import SequentialTest

DEGRADATION: Final = "degradation"
FLOOR: Final = "floor"

Mask = npt.NDArray[np.bool_]
Counts = npt.NDArray[np.int64]


def below(line: Fraction, correct: Counts, count: Counts) -> Mask:
    """``correct / count < line`` for every element, exactly."""
    return correct * line.denominator < line.numerator * count


def at_or_above(line: Fraction, correct: Counts, count: Counts) -> Mask:
    """``correct / count >= line`` for every element, exactly."""
    return ~below(line, correct, count)


def above(line: Fraction, correct: Counts, count: Counts) -> Mask:
    """``correct / count > line`` for every element, exactly."""
    return correct * line.denominator > line.numerator * count


@dataclass(frozen=True, slots=True)
class RuleVerdict:
    """Per event of a batch: does the rule fire here, and may an open episode resolve here."""

    breach: Mask
    clear: Mask


@dataclass(frozen=True, slots=True)
class DegradationRule:
    """The plain rule: degraded when ``baseline - accuracy > threshold`` in a window of at least ``min_samples``."""

    threshold: float
    min_samples: int
    recovery_margin: float
    name: str = DEGRADATION

    def evaluate(self, baseline: Fraction, correct: Counts, count: Counts) -> RuleVerdict:
        enough = count >= self.min_samples
        line = baseline - exact(self.threshold)
        breach = enough & below(line, correct, count)
        clear = enough & at_or_above(line + exact(self.recovery_margin), correct, count)
        return RuleVerdict(breach, clear)


@dataclass(frozen=True, slots=True)
class FloorRule:
    """The plain floor: breached when ``accuracy <= floor`` in a window of at least ``min_samples``."""

    floor: float
    min_samples: int
    recovery_margin: float
    name: str = FLOOR

    def evaluate(self, baseline: Fraction | None, correct: Counts, count: Counts) -> RuleVerdict:
        del baseline  # an absolute floor does not depend on the baseline
        enough = count >= self.min_samples
        floor = exact(self.floor)
        breach = enough & ~above(floor, correct, count)
        clear = enough & above(floor, correct, count) & at_or_above(floor + exact(self.recovery_margin), correct, count)
        return RuleVerdict(breach, clear)


@dataclass(frozen=True, slots=True)
class Judgement:
    """An episode opens (``firing``) or closes at event ``index``, on this evidence.

    ``correct`` / ``count``: the events behind the decision (the judged window
    for the window rule; the test's evidence span for the sequential one).
    """

    index: int
    firing: bool
    correct: int
    count: int
    statistic: float | None
    start_time: float | None = None
    """Event time of the first event behind the decision, when the judge knows it."""


class Judge(Protocol):
    """A rule with its alert state, advanced one batch at a time."""

    name: str

    @property
    def firing(self) -> bool: ...

    @property
    def statistic(self) -> float | None: ...

    def advance(
        self, outcomes: Mask, correct: Counts, count: Counts, allowed: Mask, event_time: npt.NDArray[np.float64] | None = None
    ) -> list[Judgement]: ...


class WindowJudge:
    """The plain rule on the judged window, with one episode per breach and a cool-down after it."""

    def __init__(self, rule: DegradationRule | FloorRule, baseline: Fraction | None, cooldown: int) -> None:
        self.name = rule.name
        self._rule, self._baseline, self._cooldown = rule, baseline, cooldown
        self._episode = EpisodeState()
        self._quiet = 0

    @property
    def firing(self) -> bool:
        return self._episode.firing

    @property
    def statistic(self) -> float | None:
        return None

    def advance(
        self, outcomes: Mask, correct: Counts, count: Counts, allowed: Mask, event_time: npt.NDArray[np.float64] | None = None
    ) -> list[Judgement]:
        del event_time  # the window's own ring knows its oldest event's time
        verdict = self._rule.evaluate(self._baseline, correct, count)  # type: ignore[arg-type]
        breach = verdict.breach & allowed
        quiet = min(self._quiet, int(breach.shape[0]))
        judgements: list[Judgement] = []
        for j, firing in self._episode.advance_with_cooldown(breach, verdict.clear, quiet, self._cooldown):
            judgements.append(Judgement(j, firing, int(correct[j]), int(count[j]), None))
        last_resolution = max((j.index for j in judgements if not j.firing), default=None)
        m = int(outcomes.shape[0])
        if last_resolution is not None:
            self._quiet = max(0, self._cooldown - (m - 1 - last_resolution))
        else:
            self._quiet = max(0, self._quiet - m)
        return judgements


class SequentialJudge:
    """A rule decided by a sequential test on its line (see ``sequential.py``)."""

    def __init__(self, name: str, test: SequentialTest) -> None:
        self.name = name
        self._test = test

    @property
    def firing(self) -> bool:
        return self._test.firing

    @property
    def statistic(self) -> float | None:
        return self._test.statistic

    @property
    def evidence(self) -> float:
        return self._test.evidence

    def advance(
        self, outcomes: Mask, correct: Counts, count: Counts, allowed: Mask, event_time: npt.NDArray[np.float64] | None = None
    ) -> list[Judgement]:
        del correct, count  # the test keeps its own evidence
        return [
            Judgement(t.index, t.firing, t.span_correct, t.span_count, t.statistic, t.span_start_time)
            for t in self._test.advance(outcomes, allowed, event_time)
        ]


def sequential_judge(name: str, line: float, margin: float, policy: ModelPolicy) -> SequentialJudge:
    """A sequential test centred on ``line`` with the policy's evidence, cool-down and confidence.

    A line at or below 0 (a baseline under the threshold) or at 1 keeps valid
    reference rates: the test then simply never finds the evidence to fire.
    """
    bad = min(max(line - margin, 1e-6), 1.0 - 2e-6)
    good = max(min(line + margin, 1.0 - 1e-6), bad + 1e-6)
    test = SequentialTest(good, bad, policy.evidence, policy.cooldown, line=line, z=policy.confidence_z)
    return SequentialJudge(name, test)


def degradation_judge(policy: ModelPolicy, baseline: Fraction) -> Judge:
    """The contract's rule for a model whose baseline is known."""
    if policy.decision == "window":
        rule = DegradationRule(policy.threshold, policy.min_samples, policy.recovery_margin)
        return WindowJudge(rule, baseline, policy.cooldown)
    return sequential_judge(DEGRADATION, float(baseline - exact(policy.threshold)), policy.margin, policy)


def floor_judge(policy: ModelPolicy) -> Judge | None:
    """The absolute floor's rule, if the policy sets one."""
    if policy.floor is None:
        return None
    if policy.decision == "window":
        return WindowJudge(FloorRule(policy.floor, policy.min_samples, policy.recovery_margin), None, policy.cooldown)
    return sequential_judge(FLOOR, policy.floor - policy.floor_tolerance, max(policy.floor_tolerance, 1e-3), policy)
