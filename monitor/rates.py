"""What a sequential policy costs and buys: labeled events between false alarms, and the delay to catch a fall.

Page's CUSUM (``sequential.py``) adds one of two increments per labeled
event (``log(bad/good)`` for a right prediction, ``log((1-bad)/(1-good))``
for a wrong one) to a statistic held at or above 0, and fires at
``evidence``.  With both increments rounded to whole multiples of a small
unit (at most 0.5% off), the statistic is a Markov chain on a lattice of up to
2,000 states, and the expected events to a firing from 0 (the average run
length) solve one linear system: exact up to that rounding, where the usual
closed-form approximations were off by a factor of 7 for a model at its
baseline (large steps for a wrong prediction against a small threshold).

Errors in runs (variance inflation ``phi``, ``dependence.py``) make the test
count each event for ``1 / phi`` of its evidence, so the run lengths, false
alarms and delays alike, are about ``phi`` times as long in events.

What it leaves out, each on the safe side for false alarms: the confidence
gate (an alert also needs the evidence span's accuracy beyond the line), and
``min_samples``.  The detection benchmark checks the delays against the rule.

>>> line = 0.75
>>> expected_events(accuracy=0.85, line=line, margin=0.05, evidence=12.0) > 1e8
True
>>> round(expected_events(accuracy=0.65, line=line, margin=0.05, evidence=12.0), -1)
210.0
"""

from __future__ import annotations

import math
from typing import Final

import numpy as np

from decaywatch.monitor.sequential import log_ratios, reference_accuracies

MAX_STATES: Final = 2000
"""The lattice's size at most (a dense system of 2,000 unknowns: 32 MB, well under a second)."""
RIGHT_STEPS: Final = 16
"""A right prediction's increment in lattice units, when the lattice is fine enough for it."""


def increments(line: float, margin: float) -> tuple[float, float]:
    """The test's log-likelihood ratios for a right and a wrong prediction."""
    return log_ratios(*reference_accuracies(line, margin))


def expected_events(accuracy: float, line: float, margin: float, evidence: float, phi: float = 1.0) -> float:
    """Expected labeled events from a fresh start until the test fires, for a model at ``accuracy``."""
    if not 0.0 < accuracy < 1.0:
        raise ValueError(f"accuracy must be in (0, 1), not {accuracy}")
    if phi < 1.0:
        raise ValueError(f"phi must be at least 1, not {phi}")
    right, wrong = increments(line, margin)
    unit = max(-right / RIGHT_STEPS, evidence / MAX_STATES)
    down, up = max(round(-right / unit), 1), max(round(wrong / unit), 1)
    states = max(math.ceil(evidence / unit), 1)
    at = np.arange(states)
    moves = np.zeros((states, states))
    np.add.at(moves, (at, np.maximum(at - down, 0)), accuracy)
    stay = at + up < states  # a wrong prediction from the other states fires
    moves[at[stay], at[stay] + up] += 1.0 - accuracy
    run = np.linalg.solve(np.eye(states) - moves, np.ones(states))
    return float(run[0]) * phi


def markov_phi(accuracy: float, stick: float) -> float:
    """The variance inflation of errors that follow errors with probability ``stick`` at a long-run ``accuracy``.

    >>> markov_phi(0.85, 0.15)   # independent: an error follows an error as often as anything else
    1.0
    """
    q = 1.0 - accuracy
    if not 0.0 <= stick < 1.0 or q * (1.0 - stick) / (1.0 - q) > 1.0:
        raise ValueError(f"no chain has accuracy {accuracy} with P(wrong after wrong) = {stick}")
    lam = max(stick - q * (1.0 - stick) / (1.0 - q), 0.0)
    return (1.0 + lam) / (1.0 - lam)
