"""A sequential test on the contract's line: alert as soon as the evidence is there, and not before.

The lesson's contract is ``baseline - accuracy > threshold``: accuracy below the
line ``L = baseline - threshold``.  A plain rule on a short window cries wolf
near the line; a long window is slow.  This is a Bernoulli CUSUM (Page's test)
between two reference accuracies either side of the line, ``good = L + margin``
and ``bad = L - margin``: each labeled event adds its log-likelihood ratio

    log(bad / good)            if the prediction was right (negative)
    log((1 - bad) / (1 - good))  if it was wrong          (positive)

to a statistic that never goes below zero, and the alert fires when it reaches
``evidence`` (a log-likelihood ratio: 12 means the recent events are e^12,
about 160,000 times likelier under ``bad`` than under ``good``).  The expected
increment is zero at an accuracy within a hair of the line (0.7522 for the
lesson's 0.85 - 0.1), negative above it and positive below it, so a model at
the baseline drifts back to zero and a model below the line climbs steadily:
0.85 -> 0.65 is detected in about evidence / 0.055 = 220 labeled events.

While an episode is open the mirror test runs (the same increments, negated):
the episode resolves when the evidence says accuracy is back above the line.

A CUSUM maximises over where the evidence starts, so near the line a chance
dip can look decisive.  A second condition guards against that: the accuracy
over the evidence span itself must lie below the line (to fire) or above it
(to resolve) with confidence ``z`` (a Wilson bound; z = 3 is about 99.7%).  A
real fall to 0.65 passes it as soon as the CUSUM does; a dip at 0.75 does not.

Increments are integers (the log ratios scaled by 10^6 and rounded), so the
statistic is an exact integer sum: the same events give the same alerts
whatever the batch sizes.  The recursion ``S_n = max(0, S_(n-1) + x_n)`` is
computed for a whole batch at once as ``C_n - min(0, min_(k<=n) C_k)`` with
``C`` the running sum started at ``S_0``.

Errors in runs: each increment is divided by the variance inflation of the
outcomes seen so far (``dependence.py``), and the confidence gate counts the
span's events at that weight, so a burst of errors at a steady accuracy is
not taken for a fall.  With independent errors the inflation is 1.

>>> import numpy as np
>>> test = SequentialTest(good=0.8, bad=0.7, evidence=3.0, cooldown=0, line=None)
>>> outcomes = np.array([True] * 50 + [False, True, False] * 6 + [True] * 40, dtype=bool)
>>> [(t.index, t.firing) for t in test.advance(outcomes, np.ones(108, dtype=bool))]
[(62, True), (90, False)]
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from decaywatch.monitor.dependence import INFLATION_SCALE, Dependence
from decaywatch.monitor.wilson import wilson_interval

SCALE: Final = 1_000_000
"""Log-likelihood ratios are counted in millionths (integers), so sums are exact."""


def reference_accuracies(line: float, margin: float) -> tuple[float, float]:
    """``good`` and ``bad`` for a test centred on ``line``: ``line +/- margin``, kept inside (0, 1) and apart.

    A line at or below 0 (a baseline under the threshold) or at 1 keeps valid
    reference rates: the test then simply never finds the evidence to fire.
    """
    bad = min(max(line - margin, 1e-6), 1.0 - 2e-6)
    good = max(min(line + margin, 1.0 - 1e-6), bad + 1e-6)
    return good, bad


def log_ratios(good: float, bad: float) -> tuple[float, float]:
    """The log-likelihood ratio a right prediction adds (negative) and a wrong one adds (positive)."""
    return math.log(bad / good), math.log((1.0 - bad) / (1.0 - good))


@dataclass(frozen=True, slots=True)
class TestTransition:
    """An episode opens (``firing``) or closes at event ``index`` of the batch.

    ``span_correct`` / ``span_count``: the events that built the evidence (since
    the statistic last stood at zero), so the alert can say what accuracy the
    evidence points at.
    """

    index: int
    firing: bool
    span_correct: int
    span_count: int
    statistic: float
    span_start_time: float | None = None
    """Event time of the span's first event (when the caller passes event times)."""


class SequentialTest:
    """Page's CUSUM for a fall of a success rate from ``good`` to ``bad``, with a mirror test for recovery.

    Public parameters: ``good``, ``bad``, ``evidence``, ``cooldown`` (labeled
    events after a resolution during which no new episode may open), ``line``
    and ``z`` (the span's accuracy must be beyond ``line`` with confidence ``z``;
    ``line=None`` turns that check off), ``discount_bursts`` (divide the evidence
    by the outcomes' variance inflation).  Learned state: the statistic, the
    evidence span, whether an episode is open, and the counts of errors in runs.
    """

    def __init__(
        self,
        good: float,
        bad: float,
        evidence: float,
        cooldown: int,
        line: float | None = None,
        z: float = 3.0,
        discount_bursts: bool = True,
    ) -> None:
        if not 0.0 < bad < good < 1.0:
            raise ValueError(f"need 0 < bad < good < 1, not bad={bad}, good={good}")
        if evidence <= 0:
            raise ValueError(f"evidence must be positive, not {evidence}")
        self.good, self.bad, self.evidence, self.cooldown = good, bad, evidence, cooldown
        self.line, self.z = line, z
        right, wrong = log_ratios(good, bad)
        self._right, self._wrong = round(right * SCALE), round(wrong * SCALE)  # < 0, > 0
        self._limit = round(evidence * SCALE)
        self.discount_bursts = discount_bursts
        self.dependence = Dependence()
        """Errors in runs: each increment is divided by the variance inflation (see ``dependence.py``)."""
        self._reset()

    def _reset(self) -> None:
        self.firing = False
        self._statistic = 0
        self._span_correct = 0
        self._span_count = 0
        self._quiet = 0  # labeled events still to wait (cool-down) before a new episode may open
        self._span_start_time: float | None = None

    def state(self) -> dict[str, Any]:
        """What the test has learned (its parameters come from the policy)."""
        return {
            "firing": self.firing,
            "statistic": self._statistic,
            "span_correct": self._span_correct,
            "span_count": self._span_count,
            "quiet": self._quiet,
            "span_start_time": self._span_start_time,
            "dependence": self.dependence.state(),
        }

    def restore(self, state: dict[str, Any]) -> None:
        firing, start = state["firing"], state["span_start_time"]
        counts = [state[key] for key in ("statistic", "span_correct", "span_count", "quiet")]
        if (
            type(firing) is not bool
            or any(type(c) is not int for c in counts)
            or not (start is None or type(start) in (int, float))
        ):
            raise ValueError(f"sequential test state {state!r}")
        statistic, span_correct, span_count, quiet = counts
        if statistic < 0 or not 0 <= span_correct <= span_count or quiet < 0:
            raise ValueError(f"sequential test state {state!r}")
        self.firing = firing
        self._statistic, self._span_correct, self._span_count, self._quiet = statistic, span_correct, span_count, quiet
        self._span_start_time = None if start is None else float(start)
        self.dependence = Dependence()
        if "dependence" in state:  # checkpoints from before it start with no pairs counted
            self.dependence.restore(state["dependence"])

    @property
    def statistic(self) -> float:
        """The running evidence (a log-likelihood ratio) of the test now active: a fall, or while firing, a recovery."""
        return self._statistic / SCALE

    @property
    def break_even(self) -> float:
        """The accuracy at which the expected increment is zero (just above the contract's line)."""
        return self._wrong / (self._wrong - self._right)

    def advance(
        self,
        outcomes: npt.NDArray[np.bool_],
        allowed: npt.NDArray[np.bool_],
        event_time: npt.NDArray[np.float64] | None = None,
    ) -> list[TestTransition]:
        """Feed a batch of outcomes (True = correct); ``allowed[j]`` False forbids opening an episode at ``j``.

        Returns the transitions in order.  With ``event_time``, each transition
        also says when its evidence began.
        """
        transitions: list[TestTransition] = []
        start, m = 0, int(outcomes.shape[0])
        phi = self.dependence.inflation(outcomes)  # counted either way, so turning the discount on finds it learned
        if not self.discount_bursts:
            phi = np.full_like(phi, INFLATION_SCALE)
        while start < m:
            segment = outcomes[start:]
            sign = -1 if self.firing else 1
            steps = np.where(segment, self._right, self._wrong).astype(np.int64) * INFLATION_SCALE // phi[start:] * sign
            running = self._statistic + np.cumsum(steps)
            floor = np.minimum.accumulate(np.minimum(running, 0))
            statistic = running - floor
            hits = statistic >= self._limit
            if self.line is not None and hits.any():
                hits &= self._span_beyond_line(segment, statistic, phi[start:])
            if not self.firing:
                quiet = min(self._quiet, segment.shape[0])
                hits[:quiet] = False
                hits &= allowed[start:]
            if not hits.any():
                self._carry(segment, statistic, event_time, start)
                self._quiet = max(0, self._quiet - int(segment.shape[0]))
                break
            j = int(np.argmax(hits))
            span_correct, span_count = self._span_at(segment, statistic, j)
            began = self._began(event_time, start, j, span_count)
            self.firing = not self.firing
            transitions.append(
                TestTransition(start + j, self.firing, span_correct, span_count, float(statistic[j]) / SCALE, began)
            )
            self._statistic, self._span_correct, self._span_count = 0, 0, 0
            self._span_start_time = None
            self._quiet = 0 if self.firing else self.cooldown
            start += j + 1
        return transitions

    def _span_beyond_line(
        self, segment: npt.NDArray[np.bool_], statistic: npt.NDArray[np.int64], phi: npt.NDArray[np.int64]
    ) -> npt.NDArray[np.bool_]:
        """Per event: is the accuracy over the evidence span beyond the line with confidence ``z``?

        The span's events count ``1 / phi`` each (its effective size, with the inflation at that event).
        """
        index = np.arange(segment.shape[0])
        last_zero = np.maximum.accumulate(np.where(statistic == 0, index, -1))
        correct_so_far = np.concatenate(([0], np.cumsum(segment, dtype=np.int64)))
        fresh = last_zero >= 0
        span_count = np.where(fresh, index - last_zero, self._span_count + index + 1)
        span_correct = np.where(
            fresh, correct_so_far[index + 1] - correct_so_far[last_zero + 1], self._span_correct + correct_so_far[index + 1]
        )
        weight = INFLATION_SCALE / phi
        lower, upper = wilson_interval(span_correct * weight, span_count * weight, self.z)
        assert self.line is not None
        return lower > self.line if self.firing else upper < self.line

    def _span_at(self, segment: npt.NDArray[np.bool_], statistic: npt.NDArray[np.int64], j: int) -> tuple[int, int]:
        """Correct and total events since the statistic last stood at zero, up to ``j``."""
        zeros = np.flatnonzero(statistic[: j + 1] == 0)
        if zeros.size:
            first = int(zeros[-1]) + 1
            return int(np.count_nonzero(segment[first : j + 1])), j + 1 - first
        return self._span_correct + int(np.count_nonzero(segment[: j + 1])), self._span_count + j + 1

    def _began(self, event_time: npt.NDArray[np.float64] | None, start: int, j: int, span_count: int) -> float | None:
        """Event time of the first event of a span that ends at ``start + j`` and holds ``span_count`` events."""
        if event_time is None or span_count == 0:
            return None
        first = start + j - span_count + 1
        return float(event_time[first]) if first >= start else self._span_start_time

    def _carry(
        self,
        segment: npt.NDArray[np.bool_],
        statistic: npt.NDArray[np.int64],
        event_time: npt.NDArray[np.float64] | None,
        start: int,
    ) -> None:
        last = int(statistic.shape[0]) - 1
        span_correct, span_count = self._span_at(segment, statistic, last)
        self._span_start_time = self._began(event_time, start, last, span_count)
        self._span_correct, self._span_count = span_correct, span_count
        self._statistic = int(statistic[-1])
