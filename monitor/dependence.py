"""How much a run of outcomes overstates the evidence when errors come in bursts: the variance inflation.

The sequential test (``sequential.py``) adds one log-likelihood ratio per
labeled event as if each outcome were independent of the last.  Production
errors come in runs (a client sending odd traffic for a minute, a feature
service timing out for a batch), and a run of errors at a steady long-run
accuracy then looks like strong evidence of a fall.

The model of dependence is the simplest that has runs: after a wrong
prediction the next is wrong with probability ``P(w|w)``, after a right one
with ``P(w|r)`` (a two-state Markov chain).  Its outcomes are correlated
``lambda**k`` at lag ``k``, with ``lambda = P(w|w) - P(w|r)``, so the sum of
``n`` outcomes varies ``phi = (1 + lambda) / (1 - lambda)`` times as much as
``n`` independent ones: ``n`` dependent outcomes carry the evidence of about
``n / phi`` independent ones.  The test divides each increment by ``phi``, and
its confidence gate counts ``n / phi`` events.  Independent errors keep
``phi`` at 1; a fall with bursty errors is caught about ``phi`` times later,
which is what the dependence demands.

``lambda`` is measured so that a change of accuracy does not pass for
dependence: as how much likelier two wrong predictions are one apart than
``LAG`` apart, ``(P(wrong, wrong at lag 1) - P(wrong, wrong at lag LAG)) /
(q (1 - q))`` with ``q`` the error rate.  A change of accuracy makes errors
likelier at every lag alike; a burst only at short lags (only the pairs that
straddle a change, for ``LAG`` events after it, look dependent: a small share
of what a model in service has counted).  The estimate is used only once it is
above two standard errors of independence (else ``lambda`` is 0 and ``phi``
1: errors are judged independent until they show runs).  The counts are
integers, so every event's ``phi`` (from the events before it) is the same
whatever the batch sizes.  Counts are halved each time they reach ``2 *
memory`` events, so the estimate follows a model whose errors change
character.  Dependence that lasts well beyond ``LAG`` events (slow regimes) is
only partly seen: its ``phi`` is underestimated.

>>> import numpy as np
>>> d = Dependence()
>>> runs = np.tile([True] * 40 + [False] * 8, 200)       # errors in runs of eight
>>> float(d.inflation(runs)[-1] / INFLATION_SCALE) > 5.0
True
>>> d2 = Dependence()
>>> coin = np.random.default_rng(0).random(20_000) < 0.85  # independent
>>> int(d2.inflation(coin)[-1])                          # phi = 1
1024
"""

from __future__ import annotations

import math
from typing import Any, Final

import numpy as np
import numpy.typing as npt

INFLATION_SCALE: Final = 1024
"""``phi`` is handed out in 1024ths (integers), so the test's scaled increments are exact integer arithmetic."""
MAX_LAMBDA: Final = 0.99
"""``phi`` at most 199: a model right or wrong in runs of hundreds is still judged, slowly."""
BLOCK: Final = 256
"""Events between the points where ``phi`` is worked out."""
LAG: Final = 128
"""The far lag: runs of errors much shorter than this show as dependence, changes of accuracy do not."""
MEMORY: Final = 50_000
"""Events the estimate remembers with full weight (its counts are halved at twice this)."""
_COUNTS: Final = ("events", "wrong", "pairs_near", "wrong_near", "pairs_far", "wrong_far")


class Dependence:
    """Counts of errors one and ``LAG`` apart, and the variance inflation ``phi`` they imply at each event."""

    def __init__(self, memory: int = MEMORY) -> None:
        if memory < 1:
            raise ValueError(f"memory must be at least 1 event, not {memory}")
        self.memory = memory
        self.counts = np.zeros(len(_COUNTS), dtype=np.int64)
        """Events, wrong ones, pairs one apart and wrong-wrong ones among them, and the same ``LAG`` apart."""
        self.recent = np.zeros(0, dtype=bool)
        """The last ``LAG`` outcomes' errors (True = wrong), oldest first."""
        self.into_block = 0
        """Events since the last block's start (``phi`` is worked out at each)."""
        self._phi = INFLATION_SCALE
        """The current block's ``phi``, in 1024ths."""

    def inflation(self, outcomes: npt.NDArray[np.bool_]) -> npt.NDArray[np.int64]:
        """``phi`` in 1024ths for each outcome (True = right); the outcomes are counted.

        ``phi`` is worked out every ``BLOCK`` events (at fixed positions in the
        model's stream of labeled events, from the counts before that event)
        and holds until the next: a few scalar steps per block, not per event.
        """
        m = int(outcomes.shape[0])
        if not m:
            return np.zeros(0, dtype=np.int64)
        h = int(self.recent.shape[0])
        wrong = ~outcomes
        padded = np.concatenate([np.zeros(LAG - h, dtype=bool), self.recent, wrong])  # event j at LAG + j
        near_ok = np.ones(m, dtype=bool)
        near_ok[: max(1 - h, 0)] = False  # the model's first event has nothing one before it
        far_ok = np.ones(m, dtype=bool)
        far_ok[: max(LAG - h, 0)] = False
        columns = (wrong, near_ok, wrong & padded[LAG - 1 : LAG - 1 + m] & near_ok, far_ok, wrong & padded[:m] & far_ok)
        self.recent = padded[max(LAG - h, m) :].copy()  # the last LAG events (fewer early on)
        if self.into_block and self.into_block + m < BLOCK:  # no block starts here (a fleet's model, a small batch)
            self.counts += [m, *(int(np.count_nonzero(column)) for column in columns)]
            self.into_block += m
            return np.full(m, self._phi, dtype=np.int64)
        prefix = np.zeros((len(_COUNTS), m + 1), dtype=np.int64)
        prefix[0, 1:] = np.arange(1, m + 1)
        for k, column in enumerate(columns, start=1):
            np.cumsum(column, out=prefix[k, 1:])
        base = [int(c) for c in self.counts]
        starts = np.arange((BLOCK - self.into_block) % BLOCK, m, BLOCK)
        values = []
        for j, column in zip(starts.tolist(), prefix[:, starts].T.tolist(), strict=True):
            counts = [b + c for b, c in zip(base, column, strict=True)]
            if counts[0] >= 2 * self.memory:  # halved at a block's start, so the estimate follows a change
                counts = [c // 2 for c in counts]
                base = [c - p for c, p in zip(counts, prefix[:, j].tolist(), strict=True)]
            values.append(_phi(*counts))
        self.counts = np.array(base, dtype=np.int64) + prefix[:, m]
        self.into_block = (self.into_block + m) % BLOCK
        lengths = np.diff(np.append(starts, m))
        head = int(starts[0]) if starts.size else m
        out = np.repeat(np.array([self._phi, *values], dtype=np.int64), np.concatenate([[head], lengths]))
        if values:
            self._phi = values[-1]
        return out

    def state(self) -> dict[str, Any]:
        return {
            "counts": {name: int(c) for name, c in zip(_COUNTS, self.counts, strict=True)},
            "recent": "".join("1" if w else "0" for w in self.recent.tolist()),
            "into_block": self.into_block,
            "phi": self._phi,
        }

    def restore(self, state: dict[str, Any]) -> None:
        named, recent, into_block, phi = state["counts"], state["recent"], state["into_block"], state["phi"]
        if not isinstance(named, dict) or set(named) != set(_COUNTS):
            raise ValueError(f"dependence state {state!r}")
        counts = [named[name] for name in _COUNTS]
        if (
            any(type(c) is not int or c < 0 for c in counts)
            or not isinstance(recent, str)
            or len(recent) > LAG
            or set(recent) - {"0", "1"}
            or type(into_block) is not int
            or not 0 <= into_block < BLOCK
            or type(phi) is not int
            or phi < INFLATION_SCALE
        ):
            raise ValueError(f"dependence state {state!r}")
        self.counts = np.array(counts, dtype=np.int64)
        self.recent = np.array([c == "1" for c in recent], dtype=bool)
        self.into_block, self._phi = into_block, phi

    @property
    def phi(self) -> float:
        """The inflation the current block's outcomes are judged with."""
        return self._phi / INFLATION_SCALE


def _phi(events: int, wrong: int, pairs_near: int, wrong_near: int, pairs_far: int, wrong_far: int) -> int:
    """``phi`` in 1024ths (rounded up) from the counts (see ``Dependence.counts``)."""
    q = (wrong + 0.5) / (events + 1.0)
    variance = q * (1.0 - q)
    if not pairs_far:
        return INFLATION_SCALE
    estimate = (wrong_near / max(pairs_near, 1) - wrong_far / pairs_far) / variance
    # under independence each difference term has variance about 2 q^2 (1 - q^2)
    se = math.sqrt(2.0 * q * q * (1.0 - q * q) / pairs_far) / variance
    lam = min(estimate, MAX_LAMBDA) if estimate > 2.0 * se else 0.0
    return math.ceil((1.0 + lam) / (1.0 - lam) * INFLATION_SCALE)
