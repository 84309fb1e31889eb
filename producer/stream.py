"""Sample one model's synthetic events from its scenario, as numpy columns.

Generation is pure and vectorised: every random number derives from the
``numpy.random.Generator`` passed in, so the same generator state always yields
the same stream.  That generator seeds three child generators -- inputs,
correctness, label mask -- each drawn as one whole array.  Keeping the purposes
apart buys two properties tests rely on: a run of ``count`` events is a prefix
of a longer run (event ``i``'s draws never depend on how many follow), and
changing ``label_ratio`` hides labels without changing a single prediction.

With a ``label_delay``, a fourth child generator (drawn after the other three,
so predictions and labels stay what they were without a delay) gives each
event the time its label becomes known, and the stream's :class:`Timeline`
lists predictions and label events together in event-time order.

The toy model is the lesson's: it predicts ``x > 0.5``, and its score (its
probability for class 1) is a logistic of ``x`` around that boundary.  The
logistic rather than ``x`` itself keeps scores strictly inside (0, 1), so a
monitor computing log loss never sees an infinite one.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from decaywatch.producer.scenario import ModelSpec, SpecError, event_times

__all__ = [
    "BOUNDARY",
    "SCORE_TEMPERATURE",
    "SyntheticStream",
    "Timeline",
    "generate",
    "generate_all",
    "interleave",
    "rng_for",
]

BOUNDARY = 0.5
"""The toy model predicts class 1 when its input exceeds this."""

SCORE_TEMPERATURE = 0.1
"""Width of the score's logistic: x = 0.8 scores about 0.95, x = 1.0 about 0.993."""

_ABOVE_HALF = float(np.nextafter(0.5, 1.0))

LABEL_TS_DECIMALS = 3
"""Label times are rounded to the millisecond: short JSON numbers, and what an RFC 3339 ``ts`` would carry."""


@dataclass(frozen=True, eq=False)
class Timeline:
    """One model's records in the order they happen: each prediction, and each label event once its label is known.

    Record ``r`` belongs to event ``event[r]``; ``is_label[r]`` says whether it
    is that event's label event (else its prediction); ``ts[r]`` is when it
    happens.  A label known at the very time of a prediction comes after it.
    """

    event: np.ndarray
    is_label: np.ndarray
    ts: np.ndarray

    def __len__(self) -> int:
        return len(self.event)


@dataclass(frozen=True, eq=False)
class SyntheticStream:
    """One model's events as read-only columns, index ``i`` being the ``i``-th event in event time.

    ``label`` holds the true label of *every* event; ``labeled`` says which of
    them are published (the others go out with ``label: null``), so tests can
    still see what an unlabeled event's truth was.  ``expected_accuracy`` is the
    true probability that each prediction is right given its input;
    ``population_accuracy`` is the scenario's noise-free curve (the same before
    the input was drawn).  ``segment`` numbers the scenario's segments (for
    ``lesson``, the week).  ``label_ts`` is ``None`` when labels travel inside
    their predictions; with a label delay it holds, for *every* event, when its
    label becomes known (only the ``labeled`` ones are ever sent).
    """

    model: str
    prediction: np.ndarray
    label: np.ndarray
    labeled: np.ndarray
    ts: np.ndarray
    score: np.ndarray
    x: np.ndarray
    expected_accuracy: np.ndarray
    population_accuracy: np.ndarray
    segment: np.ndarray
    label_ts: np.ndarray | None = None

    def __post_init__(self) -> None:
        columns = self._columns()
        lengths = {name: len(column) for name, column in columns.items()}
        if len(set(lengths.values())) > 1:
            raise ValueError(f"stream {self.model!r}: columns differ in length: {lengths}")
        for column in columns.values():
            column.setflags(write=False)

    def _columns(self) -> dict[str, np.ndarray]:
        return {
            "prediction": self.prediction,
            "label": self.label,
            "labeled": self.labeled,
            "ts": self.ts,
            "score": self.score,
            "x": self.x,
            "expected_accuracy": self.expected_accuracy,
            "population_accuracy": self.population_accuracy,
            "segment": self.segment,
        } | ({} if self.label_ts is None else {"label_ts": self.label_ts})

    def __len__(self) -> int:
        return len(self.prediction)

    @property
    def correct(self) -> np.ndarray:
        """Whether each prediction is right (for every event, labeled or not)."""
        return np.asarray(self.prediction == self.label, dtype=np.bool_)

    @property
    def delayed(self) -> bool:
        """Labels come as separate label events (the scenario had a ``label_delay``)."""
        return self.label_ts is not None

    @property
    def label_delay(self) -> np.ndarray:
        """Seconds from each event's prediction to its label (zeros when labels are inline)."""
        if self.label_ts is None:
            return np.zeros(len(self), dtype=np.float64)
        return np.asarray(self.label_ts - self.ts, dtype=np.float64)

    @cached_property
    def timeline(self) -> Timeline:
        """Predictions and label events merged by time (one stable argsort); just the predictions when inline."""
        n = len(self)
        if self.label_ts is None:
            timeline = Timeline(np.arange(n, dtype=np.int64), np.zeros(n, dtype=np.bool_), self.ts)
        else:
            sent = np.flatnonzero(self.labeled)
            ts = np.concatenate((self.ts, self.label_ts[sent]))
            order = np.argsort(ts, kind="stable")  # predictions come first in the concatenation: they win ties
            event = np.concatenate((np.arange(n, dtype=np.int64), sent.astype(np.int64)))[order]
            is_label = np.concatenate((np.zeros(n, dtype=np.bool_), np.ones(len(sent), dtype=np.bool_)))[order]
            timeline = Timeline(event, is_label, ts[order])
        for column in (timeline.event, timeline.is_label, timeline.ts):
            column.setflags(write=False)
        return timeline


def _score(x: np.ndarray, prediction: np.ndarray) -> np.ndarray:
    """The model's P(class 1): a logistic of ``x``, forced to the prediction's side of 0.5 against rounding."""
    score = 1.0 / (1.0 + np.exp(-(x - BOUNDARY) / SCORE_TEMPERATURE))
    return np.where(prediction == 1, np.maximum(score, _ABOVE_HALF), np.minimum(score, 0.5))


def generate(spec: ModelSpec, rng: np.random.Generator, count: int | None = None) -> SyntheticStream:
    """Sample ``count`` events (default: the scenario's natural length) of ``spec``'s model from ``rng``.

    Raises :class:`~decaywatch.producer.scenario.SpecError` when the scenario's parameters
    do not fit in ``count`` events (a change point beyond the end).
    """
    n = spec.scenario.default_count if count is None else count
    scenario = spec.scenario.resolve(n)
    n = int(n)
    index = np.arange(n, dtype=np.int64)

    # One generator per purpose, each drawn in a single call: event i's draws do
    # not depend on n, so a shorter run is a prefix of a longer one.
    input_rng, truth_rng, label_rng = (np.random.default_rng(s) for s in rng.integers(0, 2**63, size=3).tolist())
    x = scenario.sample_x(input_rng, index)
    prediction = (x > BOUNDARY).astype(np.int8)
    expected = scenario.accuracy_given_x(index, x)
    correct = truth_rng.random(n) < expected
    label = np.where(correct, prediction, 1 - prediction).astype(np.int8)
    labeled = label_rng.random(n) < scenario.label_ratio
    ts = event_times(n)
    label_ts = None
    if scenario.label_delay is not None:
        delay_rng = np.random.default_rng(int(rng.integers(0, 2**63)))
        known = np.round(ts + scenario.label_delay.sample(delay_rng, n), LABEL_TS_DECIMALS)
        label_ts = np.maximum(known, ts)  # rounding must not put a label before its prediction

    return SyntheticStream(
        model=spec.model,
        prediction=prediction,
        label=label,
        labeled=labeled,
        ts=ts,
        score=_score(x, prediction),
        x=x,
        expected_accuracy=np.asarray(expected, dtype=np.float64),
        population_accuracy=np.asarray(scenario.population_accuracy(index), dtype=np.float64),
        segment=scenario.segment_ids(n),
        label_ts=label_ts,
    )


def rng_for(seed: int, model: str) -> np.random.Generator:
    """The generator for ``model`` under ``seed``: keyed by the model's *name*, not its position.

    ``SeedSequence(seed, spawn_key=(BLAKE2b-64 of the UTF-8 name,))`` -- the
    same child a ``spawn`` would make, but addressed by name, so adding,
    removing or reordering other models never changes this model's stream.
    (Python's ``hash()`` is salted per process, hence BLAKE2b.)
    """
    checked: object = seed  # typed int, checked all the same: seeds come from the command line and from callers' data
    if isinstance(checked, bool) or not isinstance(checked, (int, np.integer)) or checked < 0:
        raise SpecError(f"seed must be a non-negative integer, got {seed!r}")
    digest = hashlib.blake2b(model.encode("utf-8"), digest_size=8).digest()
    key = int.from_bytes(digest, "big")
    return np.random.default_rng(np.random.SeedSequence(int(seed), spawn_key=(key,)))


def generate_all(specs: Sequence[ModelSpec], seed: int, count: int | None = None) -> list[SyntheticStream]:
    """Generate every model's stream, each from its own :func:`rng_for` generator (order follows ``specs``)."""
    names = [spec.model for spec in specs]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise SpecError(f"model names must be unique, repeated: {', '.join(duplicates)}")
    return [generate(spec, rng_for(seed, spec.model), count) for spec in specs]


def interleave(streams: Sequence[SyntheticStream]) -> tuple[np.ndarray, np.ndarray]:
    """The merged order of all streams' records by time: ``(stream_index, record_index)`` arrays.

    ``record_index`` indexes each stream's :attr:`~SyntheticStream.timeline`:
    with inline labels, its events; with delayed labels, its predictions and
    label events together.  A stable sort, so simultaneous records keep the
    order of ``streams`` and each stream's own order: the publisher sends one
    realistic mixed stream, and every model's records still arrive in time order.
    """
    if not streams:
        return np.zeros(0, dtype=np.intp), np.zeros(0, dtype=np.int64)
    timelines = [s.timeline for s in streams]
    lengths = np.array([len(t) for t in timelines], dtype=np.int64)
    offsets = np.concatenate(([0], np.cumsum(lengths)[:-1]))
    order = np.argsort(np.concatenate([t.ts for t in timelines]), kind="stable")
    stream_index = np.repeat(np.arange(len(streams), dtype=np.intp), lengths)[order]
    return stream_index, order - offsets[stream_index]
