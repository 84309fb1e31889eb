"""What each synthetic model's accuracy does over time, and the ``--models`` spec that names them.

The producer exists to feed the monitor streams whose decay is *known*, so every
scenario here is a closed-form statement of the truth: for event ``i`` (and its
input ``x``) it says how likely the model's prediction is to be right.  The
generator (:mod:`producer.stream`) only samples from these curves, and the
manifest (:mod:`producer.manifest`) reports them, so tests can compare what the
monitor measured with what was really there.

The lesson (scenario ``lesson``)
--------------------------------
The product grew from one post-mortem: a classifier measured at accuracy 0.85 on
2024-01-01 had fallen to 0.65 by 2024-06-01, twice the 0.1 drop its owners
would have tolerated, and nobody noticed until the numbers were pulled by hand.
The demo that was written for it drifts a toy model's input every week
(``x ~ Normal(0.5 + 0.04 * week, 0.15)`` clipped to ``[0, 1]``, 5000 events a
week) while the model predicts ``x > 0.5`` -- but its ground truth used the same
boundary as the model, so however far the inputs drifted the model stayed right
and the demo never decayed.

Here the truth is what actually hurt in production: the model was trained (and
is reliable) around its decision boundary, and the data drifted into a region
where it was never right.  The further an input lies beyond the boundary, the
more the model extrapolates, and the more often it is wrong::

    P(label == prediction | x) = a0 - s * max(0, x - 0.5)

Below the boundary the model keeps its training-time reliability ``a0``; above
it, reliability falls linearly with the distance.  As the input mean walks from
0.5 to 1.34 (nearly every input clipped at 1.0 by June), the expected accuracy
slides from 0.85 to 0.65.  ``a0`` and ``s`` are not magic numbers: with
``m(w) = E[max(0, clip(X_w, 0, 1) - 0.5)]`` for week ``w``'s input
distribution, which has the closed form ``g(mu - 0.5) - g(mu - 1)`` where
``g(d) = d * Phi(d / sd) + sd * phi(d / sd)`` is the normal partial
expectation ``E[(X - c)+]`` with ``d = mu - c``, the two conditions
``a0 - s * m(0) = 0.85`` and ``a0 - s * m(21) = 0.65`` (week 21 is the lesson's
last week) give ``s = 0.2 / (m(21) - m(0))`` and ``a0 = 0.85 + s * m(0)``; see
:class:`LessonCalibration`.

The other scenarios
-------------------
``stable``, ``sudden`` and ``gradual`` are pure concept drift: the inputs never
change, only how often the model is right, so only labels can reveal the decay
(an input-drift detector stays silent on them, by design).

The ``--models`` spec
---------------------
``NAME[=SCENARIO[(k=v,...)]]``, comma separated; commas inside parentheses belong
to the scenario's parameters, e.g.
``churn=lesson,fraud=sudden(from=0.9,to=0.6,at=20000),ads=stable``.  A bare
``NAME`` means ``NAME=stable``.  Every scenario takes ``label_ratio`` (default
1.0), the fraction of events that carry a label, and ``label_delay`` (default:
none, the label travels inside its prediction's event), how long after its
prediction each label becomes known: a duration (``2d``) or
``lognormal(median=3d,sigma=1)`` (see :mod:`producer.delay`), e.g.
``churn=lesson(label_delay=lognormal(median=3d,sigma=1))``.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from types import MappingProxyType
from typing import Any, ClassVar, cast

import numpy as np

from decaywatch.producer.delay import DelayError, LabelDelay, parse_delay

__all__ = [
    "EVENTS_PER_WEEK",
    "LESSON_END_TS",
    "SCENARIOS",
    "SECONDS_PER_WEEK",
    "SPACING_SECONDS",
    "START_TS",
    "ChangePoint",
    "Gradual",
    "Lesson",
    "LessonCalibration",
    "ModelSpec",
    "Scenario",
    "Segment",
    "SpecError",
    "Stable",
    "Sudden",
    "event_times",
    "format_models",
    "parse_models",
]

START_TS = 1_704_067_200
"""2024-01-01T00:00:00Z, when the lesson's baseline accuracy was measured: every stream starts here."""

LESSON_END_TS = 1_717_200_000
"""2024-06-01T00:00:00Z, when the lesson's model was found at 0.65."""

SECONDS_PER_WEEK = 7 * 86_400
EVENTS_PER_WEEK = 5_000
SPACING_SECONDS = SECONDS_PER_WEEK / EVENTS_PER_WEEK
"""120.96 s between consecutive events of one model: the lesson's 5000 events a week."""

DEFAULT_COUNT = 100_000
"""Events per model for the scenarios that have no natural length of their own."""


class SpecError(ValueError):
    """A ``--models`` spec or scenario parameter is invalid; the message says what and where."""


def event_times(count: int) -> np.ndarray:
    """Event time (epoch seconds) of events ``0 .. count-1``: evenly spaced from 2024-01-01, 7 days per 5000 events.

    Computed as one exact integer numerator divided once, so each value is the
    double nearest to the true decimal time and prints short (``1704067320.96``).
    """
    index = np.arange(count, dtype=np.int64)
    return (START_TS * EVENTS_PER_WEEK + index * SECONDS_PER_WEEK) / EVENTS_PER_WEEK


@dataclass(frozen=True)
class Segment:
    """A run of events ``[start, stop)`` that the manifest summarises on its own (a week, or before/after a change)."""

    name: str
    start: int
    stop: int


@dataclass(frozen=True)
class ChangePoint:
    """Where a scenario's accuracy starts to change, and to what.

    A step (``sudden``) changes at once (``span`` 1); a ramp (``gradual``) moves
    linearly from ``accuracy_from`` at ``index`` to ``accuracy_to`` at ``index + span``.
    """

    index: int
    kind: str
    accuracy_from: float
    accuracy_to: float
    span: int = 1


class Scenario(ABC):
    """The truth of one synthetic model: how its inputs are drawn and how likely it is to be right.

    Subclasses are frozen dataclasses whose fields are the spec's parameters;
    ``PARAMS`` maps each spec name (``from`` is a Python keyword, hence the
    indirection) to its field and type.  Count-dependent defaults (``at=None``
    meaning half the stream) are filled in by :meth:`resolve`; the curve methods
    (:meth:`accuracy_given_x`, :meth:`population_accuracy`) need the resolved
    scenario, because a default like "half the stream" is meaningless without a
    stream length.
    """

    name: ClassVar[str]
    PARAMS: ClassVar[Mapping[str, tuple[str, type]]]
    label_ratio: float
    label_delay: LabelDelay | None

    @property
    def default_count(self) -> int:
        """The scenario's natural length, used when no count is given."""
        return DEFAULT_COUNT

    def resolve(self, count: int) -> Scenario:
        """This scenario with count-dependent defaults filled in, checked against a stream of ``count`` events."""
        _check_count(count)
        return self

    @abstractmethod
    def sample_x(self, rng: np.random.Generator, index: np.ndarray) -> np.ndarray:
        """Draw the model's input feature ``x`` in [0, 1] for the events at ``index`` (vectorised)."""

    @abstractmethod
    def accuracy_given_x(self, index: np.ndarray, x: np.ndarray) -> np.ndarray:
        """The true probability that each event's prediction is correct, given its input."""

    @abstractmethod
    def population_accuracy(self, index: np.ndarray) -> np.ndarray:
        """Expected accuracy at each index before its input is drawn: the scenario's noise-free curve."""

    @abstractmethod
    def segments(self, count: int) -> list[Segment]:
        """How the manifest splits a stream of ``count`` events (empty segments left out)."""

    def change_points(self, count: int) -> list[ChangePoint]:
        """Indices where accuracy starts to change (none for scenarios that drift continuously or not at all)."""
        return []

    def segment_ids(self, count: int) -> np.ndarray:
        """Each event's position in :meth:`segments` (int32), so streams can be grouped without the scenario."""
        sizes = [s.stop - s.start for s in self.segments(count)]
        return np.repeat(np.arange(len(sizes), dtype=np.int32), sizes)

    def with_label_delay(self, delay: LabelDelay | None) -> Scenario:
        """This scenario with its labels ``delay`` after their predictions (as a command-wide default sets it)."""
        changed: Scenario = dataclasses.replace(cast("Any", self), label_delay=delay)  # every subclass is a dataclass
        return changed

    def params(self) -> dict[str, int | float | str | None]:
        """Every parameter by its spec name (defaults included): what the manifest records.

        ``label_delay`` is listed (as its spec text) only when given, so a run
        without delayed labels records exactly what it did before they existed.
        """
        values: dict[str, int | float | str | None] = {}
        for spec_name, (attr, _) in self.PARAMS.items():
            value = getattr(self, attr)
            if isinstance(value, LabelDelay):
                values[spec_name] = str(value)
            elif spec_name != "label_delay":
                values[spec_name] = value
        return values

    def spec(self) -> str:
        """The shortest spec text that parses back to this scenario (only non-default parameters)."""
        defaults = type(self)()
        given = [
            f"{spec_name}={_format_value(getattr(self, attr))}"
            for spec_name, (attr, _) in self.PARAMS.items()
            if getattr(self, attr) is not None and getattr(self, attr) != getattr(defaults, attr)
        ]
        return f"{self.name}({','.join(given)})" if given else self.name


class _ConceptDrift(Scenario):
    """Scenarios where only the truth moves: inputs stay Uniform(0, 1), accuracy depends on the index alone.

    Uniform inputs make the toy model predict each class half the time; as
    nothing about the inputs changes, only labels can reveal these decays.
    """

    def sample_x(self, rng: np.random.Generator, index: np.ndarray) -> np.ndarray:
        return rng.random(len(index))

    def accuracy_given_x(self, index: np.ndarray, x: np.ndarray) -> np.ndarray:
        return self.population_accuracy(index)


def _check_probability(scenario: str, param: str, value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise SpecError(f"{scenario}: {param} must be within [0, 1], got {_format_value(value)}")


def _check_delay(scenario: str, delay: object) -> None:
    if delay is not None and not isinstance(delay, LabelDelay):
        raise SpecError(f"{scenario}: label_delay must be a LabelDelay (see parse_delay), got {delay!r}")


def _check_count(count: object) -> None:
    if isinstance(count, bool) or not isinstance(count, (int, np.integer)) or count < 1:
        raise SpecError(f"count must be a positive integer, got {count!r}")


@dataclass(frozen=True)
class Stable(_ConceptDrift):
    """Accuracy holds at ``accuracy`` throughout: the control the monitor must not alert on."""

    name: ClassVar[str] = "stable"
    PARAMS: ClassVar[Mapping[str, tuple[str, type]]] = {
        "accuracy": ("accuracy", float),
        "label_ratio": ("label_ratio", float),
        "label_delay": ("label_delay", LabelDelay),
    }
    accuracy: float = 0.85
    label_ratio: float = 1.0
    label_delay: LabelDelay | None = None

    def __post_init__(self) -> None:
        _check_probability(self.name, "accuracy", self.accuracy)
        _check_probability(self.name, "label_ratio", self.label_ratio)
        _check_delay(self.name, self.label_delay)

    def population_accuracy(self, index: np.ndarray) -> np.ndarray:
        return np.full(len(index), self.accuracy, dtype=np.float64)

    def segments(self, count: int) -> list[Segment]:
        return [Segment("all", 0, count)]


@dataclass(frozen=True)
class Sudden(_ConceptDrift):
    """Accuracy drops from ``from`` to ``to`` at event index ``at`` (default: half the stream): a bad deploy."""

    name: ClassVar[str] = "sudden"
    PARAMS: ClassVar[Mapping[str, tuple[str, type]]] = {
        "from": ("start_accuracy", float),
        "to": ("end_accuracy", float),
        "at": ("at", int),
        "label_ratio": ("label_ratio", float),
        "label_delay": ("label_delay", LabelDelay),
    }
    start_accuracy: float = 0.85
    end_accuracy: float = 0.65
    at: int | None = None
    label_ratio: float = 1.0
    label_delay: LabelDelay | None = None

    def __post_init__(self) -> None:
        _check_probability(self.name, "from", self.start_accuracy)
        _check_probability(self.name, "to", self.end_accuracy)
        _check_probability(self.name, "label_ratio", self.label_ratio)
        _check_delay(self.name, self.label_delay)
        if self.at is not None and self.at < 0:
            raise SpecError(f"sudden: at must be >= 0, got {self.at}")

    def resolve(self, count: int) -> Sudden:
        _check_count(count)
        at = self._at(count)
        if at >= count:
            raise SpecError(f"sudden: at={at} is beyond the stream's {count} events (need at < {count})")
        return dataclasses.replace(self, at=at)

    def _at(self, count: int) -> int:
        return count // 2 if self.at is None else self.at

    def _resolved_at(self) -> int:
        if self.at is None:
            raise SpecError("sudden: the change index is unknown until resolve(count) fills in the default")
        return self.at

    def population_accuracy(self, index: np.ndarray) -> np.ndarray:
        at = self._resolved_at()
        return np.where(index < at, self.start_accuracy, self.end_accuracy).astype(np.float64)

    def segments(self, count: int) -> list[Segment]:
        at = self._at(count)
        return _nonempty([Segment("before", 0, at), Segment("after", at, count)])

    def change_points(self, count: int) -> list[ChangePoint]:
        return [ChangePoint(self._at(count), "step", self.start_accuracy, self.end_accuracy)]


@dataclass(frozen=True)
class Gradual(_ConceptDrift):
    """Accuracy falls linearly from ``from`` to ``to`` over ``span`` events from ``start``: the world moving on.

    Defaults: the ramp covers the middle half of the stream (``start`` = count // 4,
    ``span`` = count // 2), leaving a flat stretch on each side to measure the levels.
    """

    name: ClassVar[str] = "gradual"
    PARAMS: ClassVar[Mapping[str, tuple[str, type]]] = {
        "from": ("start_accuracy", float),
        "to": ("end_accuracy", float),
        "start": ("start", int),
        "span": ("span", int),
        "label_ratio": ("label_ratio", float),
        "label_delay": ("label_delay", LabelDelay),
    }
    start_accuracy: float = 0.85
    end_accuracy: float = 0.65
    start: int | None = None
    span: int | None = None
    label_ratio: float = 1.0
    label_delay: LabelDelay | None = None

    def __post_init__(self) -> None:
        _check_probability(self.name, "from", self.start_accuracy)
        _check_probability(self.name, "to", self.end_accuracy)
        _check_probability(self.name, "label_ratio", self.label_ratio)
        _check_delay(self.name, self.label_delay)
        if self.start is not None and self.start < 0:
            raise SpecError(f"gradual: start must be >= 0, got {self.start}")
        if self.span is not None and self.span < 1:
            raise SpecError(f"gradual: span must be >= 1, got {self.span}")

    def _ramp(self, count: int) -> tuple[int, int]:
        start = count // 4 if self.start is None else self.start
        span = max(1, count // 2) if self.span is None else self.span
        return start, span

    def resolve(self, count: int) -> Gradual:
        _check_count(count)
        start, span = self._ramp(count)
        if start + span > count:
            raise SpecError(
                f"gradual: the ramp start={start}, span={span} ends at {start + span}, beyond the stream's {count} events"
            )
        return dataclasses.replace(self, start=start, span=span)

    def population_accuracy(self, index: np.ndarray) -> np.ndarray:
        if self.start is None or self.span is None:
            raise SpecError("gradual: the ramp is unknown until resolve(count) fills in the defaults")
        start, span = self.start, self.span
        progress = np.clip((index - start) / span, 0.0, 1.0)
        return self.start_accuracy + (self.end_accuracy - self.start_accuracy) * progress

    def segments(self, count: int) -> list[Segment]:
        start, span = self._ramp(count)
        return _nonempty(
            [Segment("before", 0, start), Segment("ramp", start, start + span), Segment("after", start + span, count)]
        )

    def change_points(self, count: int) -> list[ChangePoint]:
        start, span = self._ramp(count)
        return [ChangePoint(start, "ramp", self.start_accuracy, self.end_accuracy, span)]


def _nonempty(segments: list[Segment]) -> list[Segment]:
    return [s for s in segments if s.stop > s.start]


def _normal_cdf(z: float) -> float:
    return 0.5 * (1.0 + math.erf(z / math.sqrt(2.0)))


def _normal_pdf(z: float) -> float:
    return math.exp(-0.5 * z * z) / math.sqrt(2.0 * math.pi)


@dataclass(frozen=True)
class LessonCalibration:
    """The lesson's truth constants, derived (not chosen) from the accuracies it must hit.

    ``P(correct | x) = a0 - slope * max(0, x - boundary)``; ``excess_first`` and
    ``excess_last`` are ``E[max(0, clip(X) - boundary)]`` in week 0 and in the
    lesson's last week, the two points the line is pinned to.
    """

    a0: float
    slope: float
    excess_first: float
    excess_last: float
    last_week: int


@dataclass(frozen=True)
class Lesson(Scenario):
    """The post-mortem replayed with a truth that decays: inputs drift to where the model was never right.

    See the module docstring for the story and the calibration.  ``from``/``to``
    retarget the week-0 and last-week accuracies (defaults 0.85 and 0.65); the
    drift itself is fixed to the lesson's.  With a ``count`` longer than the
    natural 108,571 events the drift simply continues (accuracy flattens just
    below ``to``, since nearly every input is already clipped at 1.0).
    """

    name: ClassVar[str] = "lesson"
    PARAMS: ClassVar[Mapping[str, tuple[str, type]]] = {
        "from": ("start_accuracy", float),
        "to": ("end_accuracy", float),
        "label_ratio": ("label_ratio", float),
        "label_delay": ("label_delay", LabelDelay),
    }
    BOUNDARY: ClassVar[float] = 0.5
    BASE_MEAN: ClassVar[float] = 0.5
    WEEKLY_DRIFT: ClassVar[float] = 0.04
    SD: ClassVar[float] = 0.15
    NATURAL_COUNT: ClassVar[int] = (LESSON_END_TS - START_TS) * EVENTS_PER_WEEK // SECONDS_PER_WEEK

    start_accuracy: float = 0.85
    end_accuracy: float = 0.65
    label_ratio: float = 1.0
    label_delay: LabelDelay | None = None

    def __post_init__(self) -> None:
        _check_probability(self.name, "from", self.start_accuracy)
        _check_probability(self.name, "to", self.end_accuracy)
        _check_probability(self.name, "label_ratio", self.label_ratio)
        _check_delay(self.name, self.label_delay)
        cal = self.calibration
        lowest = min(cal.a0, cal.a0 - cal.slope * (1.0 - self.BOUNDARY))
        highest = max(cal.a0, cal.a0 - cal.slope * (1.0 - self.BOUNDARY))
        if lowest < 0.0 or highest > 1.0:
            raise SpecError(
                f"lesson: from={_format_value(self.start_accuracy)}, to={_format_value(self.end_accuracy)} "
                f"need P(correct | x) between {lowest:.3f} and {highest:.3f}, outside [0, 1]"
            )

    @property
    def default_count(self) -> int:
        return self.NATURAL_COUNT

    @classmethod
    def week_input_mean(cls, week: int) -> float:
        """Mean of week ``week``'s input before clipping: 0.5 + 0.04 * week."""
        return round(cls.BASE_MEAN + cls.WEEKLY_DRIFT * week, 12)  # 0.82, not 0.8200000000000001

    @classmethod
    def week_excess(cls, week: int) -> float:
        """``E[max(0, clip(X, 0, 1) - 0.5)]`` for week ``week``'s input, in closed form.

        ``(min(X, 1) - 0.5)+ = (X - 0.5)+ - (X - 1)+`` (the clip at 0 lies below
        the boundary and never matters), and ``E[(X - c)+] = g(mu - c)``.
        """

        def partial_expectation(d: float) -> float:
            return d * _normal_cdf(d / cls.SD) + cls.SD * _normal_pdf(d / cls.SD)

        mean = cls.week_input_mean(week)
        return partial_expectation(mean - cls.BOUNDARY) - partial_expectation(mean - 1.0)

    @cached_property
    def calibration(self) -> LessonCalibration:
        """Solve ``a0 - s * m(0) = from`` and ``a0 - s * m(last) = to`` for ``a0`` and ``s``."""
        last_week = (self.NATURAL_COUNT - 1) // EVENTS_PER_WEEK
        first, last = self.week_excess(0), self.week_excess(last_week)
        slope = (self.start_accuracy - self.end_accuracy) / (last - first)
        return LessonCalibration(
            a0=self.start_accuracy + slope * first,
            slope=slope,
            excess_first=first,
            excess_last=last,
            last_week=last_week,
        )

    def week_accuracy(self, week: int) -> float:
        """Expected accuracy over week ``week``'s input distribution (exact, no sampling)."""
        cal = self.calibration
        return cal.a0 - cal.slope * self.week_excess(week)

    def sample_x(self, rng: np.random.Generator, index: np.ndarray) -> np.ndarray:
        mean = self.BASE_MEAN + self.WEEKLY_DRIFT * (index // EVENTS_PER_WEEK)
        return np.clip(mean + self.SD * rng.standard_normal(len(index)), 0.0, 1.0)

    def accuracy_given_x(self, index: np.ndarray, x: np.ndarray) -> np.ndarray:
        cal = self.calibration
        return cal.a0 - cal.slope * np.maximum(0.0, x - self.BOUNDARY)

    def population_accuracy(self, index: np.ndarray) -> np.ndarray:
        weeks = index // EVENTS_PER_WEEK
        if len(weeks) == 0:
            return np.zeros(0, dtype=np.float64)
        per_week = np.array([self.week_accuracy(w) for w in range(int(weeks.max()) + 1)])
        return np.asarray(per_week[weeks], dtype=np.float64)

    def segments(self, count: int) -> list[Segment]:
        weeks = (count + EVENTS_PER_WEEK - 1) // EVENTS_PER_WEEK
        return [Segment(f"week {w}", w * EVENTS_PER_WEEK, min((w + 1) * EVENTS_PER_WEEK, count)) for w in range(weeks)]

    def segment_ids(self, count: int) -> np.ndarray:
        return (np.arange(count) // EVENTS_PER_WEEK).astype(np.int32)


SCENARIOS: Mapping[str, type[Scenario]] = MappingProxyType({cls.name: cls for cls in (Lesson, Stable, Sudden, Gradual)})
"""Every scenario by the name the ``--models`` spec uses."""


@dataclass(frozen=True)
class ModelSpec:
    """One model of the ``--models`` spec: its id (the Kafka key) and the scenario it plays."""

    model: str
    scenario: Scenario = dataclasses.field(default_factory=Stable)

    def __post_init__(self) -> None:
        _check_model_name(self.model)

    def __str__(self) -> str:
        return f"{self.model}={self.scenario.spec()}"


_NAME_FORBIDDEN = re.compile(r"[\s=(),]")
_SCENARIO_RE = re.compile(r"([A-Za-z_][A-Za-z0-9_-]*)\s*(?:\((.*)\))?", re.DOTALL)


def _check_model_name(model: str) -> None:
    if not model:
        raise SpecError("empty model name")
    if _NAME_FORBIDDEN.search(model):
        raise SpecError(f"model name {model!r} must not contain whitespace or any of '=(),'")


def _format_value(value: object) -> str:
    return repr(value) if isinstance(value, float) else str(value)


def _split_top_level(text: str) -> list[str]:
    """Split on commas outside parentheses; unbalanced parentheses are an error, not a guess."""
    parts: list[str] = []
    depth = 0
    current: list[str] = []
    for pos, char in enumerate(text):
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
            if depth < 0:
                raise SpecError(f"unbalanced ')' at position {pos} in {text!r}")
        elif char == "," and depth == 0:
            parts.append("".join(current))
            current = []
            continue
        current.append(char)
    if depth:
        raise SpecError(f"unclosed '(' in {text!r}")
    parts.append("".join(current))
    return parts


def _parse_value(scenario: str, param: str, raw: str, kind: type) -> int | float | LabelDelay:
    if kind is LabelDelay:
        try:
            return parse_delay(raw)
        except DelayError as exc:
            raise SpecError(f"{scenario}: {param}: {exc}") from None
    try:
        if kind is int:
            try:
                return int(raw)
            except ValueError:
                number = float(raw)
                if not number.is_integer():
                    raise ValueError from None
                return int(number)
        number = float(raw)
        if not math.isfinite(number):
            raise ValueError
        return number
    except (ValueError, OverflowError):
        expected = "an integer" if kind is int else "a number"
        raise SpecError(f"{scenario}: {param} must be {expected}, got {raw!r}") from None


def _parse_scenario(text: str) -> Scenario:
    match = _SCENARIO_RE.fullmatch(text)
    if match is None:
        raise SpecError(f"expected SCENARIO or SCENARIO(k=v,...), got {text!r}")
    name, body = match.group(1), match.group(2)
    cls = SCENARIOS.get(name)
    if cls is None:
        close = difflib.get_close_matches(name, SCENARIOS, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise SpecError(f"unknown scenario {name!r} (known: {', '.join(sorted(SCENARIOS))}){hint}")
    kwargs: dict[str, int | float | LabelDelay] = {}
    seen: set[str] = set()
    if body is not None and body.strip():
        for item in _split_top_level(body):  # label_delay=lognormal(median=3d,sigma=1) holds commas
            key, sep, raw = item.partition("=")
            key, raw = key.strip(), raw.strip()
            if not sep or not key or not raw:
                raise SpecError(f"{name}: expected k=v, got {item.strip()!r}")
            if key not in cls.PARAMS:
                raise SpecError(f"{name}: unknown parameter {key!r} (known: {', '.join(cls.PARAMS)})")
            if key in seen:
                raise SpecError(f"{name}: parameter {key!r} given twice")
            seen.add(key)
            attr, kind = cls.PARAMS[key]
            kwargs[attr] = _parse_value(name, key, raw, kind)
    return cls(**kwargs)


def parse_models(text: str) -> list[ModelSpec]:
    """Parse ``NAME[=SCENARIO[(k=v,...)]],...`` into model specs, in the order given.

    Raises :class:`SpecError` naming the offending model and what is wrong with
    it: empty entries, unbalanced parentheses, unknown scenarios or parameters,
    values out of range, duplicate model names.
    """
    if not text.strip():
        raise SpecError("no models given (expected NAME[=SCENARIO[(k=v,...)]],...)")
    specs: list[ModelSpec] = []
    seen: set[str] = set()
    for raw in _split_top_level(text):
        entry = raw.strip()
        if not entry:
            raise SpecError(f"empty model entry in {text!r} (stray comma?)")
        model, sep, scenario_text = entry.partition("=")
        model, scenario_text = model.strip(), scenario_text.strip()
        try:
            _check_model_name(model)
            if sep and not scenario_text:
                raise SpecError("missing scenario after '='")
            scenario = _parse_scenario(scenario_text) if sep else Stable()
        except SpecError as exc:
            raise SpecError(f"model {model or entry!r}: {exc}") from None
        if model in seen:
            raise SpecError(f"model {model!r} given twice")
        seen.add(model)
        specs.append(ModelSpec(model, scenario))
    return specs


def format_models(specs: Sequence[ModelSpec]) -> str:
    """The ``--models`` text for ``specs``; ``parse_models(format_models(s)) == s``."""
    return ",".join(str(spec) for spec in specs)
