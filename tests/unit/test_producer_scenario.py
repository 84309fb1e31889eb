"""Scenario definitions and the ``--models`` spec: parsing, errors, and the lesson's calibration."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given
from hypothesis import strategies as st

from decaywatch.producer.scenario import (
    EVENTS_PER_WEEK,
    LESSON_END_TS,
    SPACING_SECONDS,
    START_TS,
    ChangePoint,
    Gradual,
    Lesson,
    ModelSpec,
    Scenario,
    Segment,
    SpecError,
    Stable,
    Sudden,
    event_times,
    format_models,
    parse_models,
)

FloatArray = npt.NDArray[np.float64]


def clipped_normal_expectation(f: Callable[[FloatArray], FloatArray], mean: float, sd: float) -> float:
    """E[f(clip(X, 0, 1))] for X ~ Normal(mean, sd), by brute numeric integration (independent of the closed form)."""
    grid = np.linspace(mean - 10 * sd, mean + 10 * sd, 400_001)
    density = np.exp(-0.5 * ((grid - mean) / sd) ** 2) / (sd * math.sqrt(2 * math.pi))
    values = f(np.clip(grid, 0.0, 1.0)) * density
    return float(np.sum((values[1:] + values[:-1]) / 2 * np.diff(grid)))


# --- the spec parser -------------------------------------------------------------------------


def test_parses_the_documented_example() -> None:
    specs = parse_models("churn=lesson,fraud=sudden(from=0.9,to=0.6,at=20000),ads=stable")
    assert specs == [
        ModelSpec("churn", Lesson()),
        ModelSpec("fraud", Sudden(start_accuracy=0.9, end_accuracy=0.6, at=20000)),
        ModelSpec("ads", Stable()),
    ]


def test_bare_name_plays_stable_and_whitespace_is_ignored() -> None:
    specs = parse_models(" a , b = gradual( start = 10 , span=20 ) ,c=stable(accuracy=0.7)")
    assert specs == [
        ModelSpec("a", Stable()),
        ModelSpec("b", Gradual(start=10, span=20)),
        ModelSpec("c", Stable(accuracy=0.7)),
    ]


def test_empty_parentheses_mean_defaults() -> None:
    assert parse_models("m=sudden()") == [ModelSpec("m", Sudden())]


def test_integer_params_accept_integral_floats_and_underscores() -> None:
    assert parse_models("m=sudden(at=2e4)")[0].scenario == Sudden(at=20000)
    assert parse_models("m=sudden(at=20_000)")[0].scenario == Sudden(at=20000)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "no models given"),
        ("a,,b", "empty model entry"),
        ("a,", "empty model entry"),
        ("a=sudden(at=5", r"unclosed '\('"),
        ("a=sudden)at=5(", r"unbalanced '\)' at position 8"),
        ("a=sudenn", "unknown scenario 'sudenn'.*did you mean 'sudden'"),
        ("a=nonsense", r"known: gradual, lesson, stable, sudden"),
        ("a=sudden(speed=3)", "model 'a': sudden: unknown parameter 'speed' \\(known: from, to, at, label_ratio, label_delay\\)"),
        ("a=sudden(at)", "expected k=v, got 'at'"),
        ("a=sudden(at=)", "expected k=v"),
        ("a=sudden(at=1,at=2)", "'at' given twice"),
        ("a=sudden(at=1.5)", "at must be an integer, got '1.5'"),
        ("a=stable(accuracy=high)", "accuracy must be a number, got 'high'"),
        ("a=stable(accuracy=nan)", "accuracy must be a number"),
        ("a=stable(accuracy=1.5)", r"accuracy must be within \[0, 1\], got 1.5"),
        ("a=stable(label_ratio=-0.1)", r"label_ratio must be within \[0, 1\]"),
        ("a=sudden(at=-1)", "at must be >= 0"),
        ("a=gradual(span=0)", "span must be >= 1"),
        ("a=", "missing scenario after '='"),
        ("=lesson", "empty model name"),
        ("a b=lesson", "must not contain whitespace"),
        ("a(x)=lesson", "must not contain"),
        ("a=lesson,a=stable", "model 'a' given twice"),
        ("a=lesson(from=0.99,to=0.1)", r"lesson: from=0.99, to=0.1 need P\(correct \| x\) between"),
        ("a=lesson extra", "expected SCENARIO or SCENARIO"),
    ],
)
def test_bad_specs_fail_with_a_clear_message(text: str, message: str) -> None:
    with pytest.raises(SpecError, match=message):
        parse_models(text)


def test_errors_name_the_model() -> None:
    with pytest.raises(SpecError, match=r"^model 'fraud': sudden: at must be an integer"):
        parse_models("churn=lesson,fraud=sudden(at=x)")


model_names = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-_.:", min_size=1, max_size=20)
probabilities = st.floats(min_value=0.0, max_value=1.0, allow_nan=False)
scenarios = st.one_of(
    st.builds(Stable, accuracy=probabilities, label_ratio=probabilities),
    st.builds(
        Sudden,
        start_accuracy=probabilities,
        end_accuracy=probabilities,
        at=st.none() | st.integers(0, 10**9),
        label_ratio=probabilities,
    ),
    st.builds(
        Gradual,
        start_accuracy=probabilities,
        end_accuracy=probabilities,
        start=st.none() | st.integers(0, 10**9),
        span=st.none() | st.integers(1, 10**9),
        label_ratio=probabilities,
    ),
    st.builds(
        Lesson,
        start_accuracy=st.floats(0.8, 0.9),
        end_accuracy=st.floats(0.6, 0.7),
        label_ratio=probabilities,
    ),
)


@given(st.lists(st.tuples(model_names, scenarios), min_size=1, max_size=5, unique_by=lambda t: t[0]))
def test_format_then_parse_round_trips(models: list[tuple[str, Scenario]]) -> None:
    specs = [ModelSpec(name, scenario) for name, scenario in models]
    assert parse_models(format_models(specs)) == specs


def test_spec_shows_only_non_default_params() -> None:
    assert str(ModelSpec("m", Sudden())) == "m=sudden"
    assert str(ModelSpec("m", Sudden(end_accuracy=0.5, at=7))) == "m=sudden(to=0.5,at=7)"


# --- count-dependent defaults ---------------------------------------------------------------


def test_sudden_defaults_to_half_the_stream_and_rejects_a_change_beyond_it() -> None:
    assert Sudden().resolve(1001).at == 500
    assert Sudden(at=999).resolve(1000).at == 999
    with pytest.raises(SpecError, match="at=1000 is beyond the stream's 1000 events"):
        Sudden(at=1000).resolve(1000)


def test_gradual_defaults_to_the_middle_half_and_rejects_a_ramp_past_the_end() -> None:
    resolved = Gradual().resolve(1000)
    assert (resolved.start, resolved.span) == (250, 500)
    assert resolved.change_points(1000) == [ChangePoint(250, "ramp", 0.85, 0.65, 500)]
    with pytest.raises(SpecError, match="ends at 1001, beyond the stream's 1000 events"):
        Gradual(start=501, span=500).resolve(1000)


@pytest.mark.parametrize("count", [0, -5, 1.5, True])
def test_counts_must_be_positive_integers(count: object) -> None:
    with pytest.raises(SpecError, match="count must be a positive integer"):
        Stable().resolve(count)  # type: ignore[arg-type]  # not always an int, on purpose: the check under test


def test_curves_of_an_unresolved_scenario_refuse_to_guess() -> None:
    with pytest.raises(SpecError, match="resolve"):
        Sudden().population_accuracy(np.arange(10))
    with pytest.raises(SpecError, match="resolve"):
        Gradual().population_accuracy(np.arange(10))


def test_segments() -> None:
    assert Stable().segments(10) == [Segment("all", 0, 10)]
    assert Sudden(at=4).segments(10) == [Segment("before", 0, 4), Segment("after", 4, 10)]
    assert Sudden(at=0).segments(10) == [Segment("after", 0, 10)]
    assert Gradual(start=2, span=3).segments(10) == [
        Segment("before", 0, 2),
        Segment("ramp", 2, 5),
        Segment("after", 5, 10),
    ]
    assert Gradual(start=0, span=10).segments(10) == [Segment("ramp", 0, 10)]
    assert Lesson().segments(12_000) == [
        Segment("week 0", 0, 5000),
        Segment("week 1", 5000, 10000),
        Segment("week 2", 10000, 12000),
    ]
    assert Gradual(start=2, span=3).segment_ids(10).tolist() == [0, 0, 1, 1, 1, 2, 2, 2, 2, 2]


# --- the event-time grid --------------------------------------------------------------------


def test_event_times_follow_the_lessons_spacing() -> None:
    ts = event_times(Lesson.NATURAL_COUNT)
    assert Lesson.NATURAL_COUNT == 108_571 == (152 * 5000) // 7
    assert ts[0] == START_TS == 1_704_067_200
    assert ts[EVENTS_PER_WEEK] == START_TS + 7 * 86_400
    assert np.allclose(np.diff(ts), SPACING_SECONDS)
    assert SPACING_SECONDS == 120.96
    assert LESSON_END_TS - 2 * SPACING_SECONDS < ts[-1] < LESSON_END_TS  # 108,571.4 spacings fit in 152 days
    assert repr(float(ts[1])) == "1704067320.96"  # one rounding only: short, exact-looking decimals


# --- the lesson's calibration ---------------------------------------------------------------


def test_lesson_calibration_hits_its_targets_exactly() -> None:
    lesson = Lesson()
    cal = lesson.calibration
    assert cal.last_week == 21
    assert lesson.week_accuracy(0) == pytest.approx(0.85, abs=1e-12)
    assert lesson.week_accuracy(21) == pytest.approx(0.65, abs=1e-12)
    assert cal.a0 == pytest.approx(0.8772196, abs=1e-6)
    assert cal.slope == pytest.approx(0.4549899, abs=1e-6)


@pytest.mark.parametrize("week", [0, 1, 5, 8, 13, 21, 30])
def test_closed_form_matches_numeric_integration(week: int) -> None:
    lesson = Lesson()
    cal = lesson.calibration
    mean = 0.5 + 0.04 * week

    def accuracy(x: np.ndarray) -> np.ndarray:
        return cal.a0 - cal.slope * np.maximum(0.0, x - 0.5)

    assert lesson.week_accuracy(week) == pytest.approx(clipped_normal_expectation(accuracy, mean, 0.15), abs=1e-7)


def test_calibration_targets_hold_by_numeric_integration() -> None:
    cal = Lesson().calibration

    def accuracy(x: np.ndarray) -> np.ndarray:
        return cal.a0 - cal.slope * np.maximum(0.0, x - 0.5)

    assert clipped_normal_expectation(accuracy, 0.5, 0.15) == pytest.approx(0.85, abs=1e-6)
    assert clipped_normal_expectation(accuracy, 0.5 + 0.04 * 21, 0.15) == pytest.approx(0.65, abs=1e-6)


def test_lesson_truth_is_a_probability_everywhere_and_worst_at_the_far_edge() -> None:
    lesson = Lesson()
    x = np.linspace(0, 1, 1001)
    p = lesson.accuracy_given_x(np.zeros_like(x, dtype=np.int64), x)
    assert ((p >= 0) & (p <= 1)).all()
    assert p[0] == p[500] == pytest.approx(lesson.calibration.a0)  # reliable up to the boundary
    assert np.all(np.diff(p[500:]) < 0)  # then worse with every step of extrapolation
    assert p[-1] == pytest.approx(0.6497, abs=1e-4)


def test_lesson_accuracy_falls_every_week_and_first_drops_below_075_in_week_8() -> None:
    lesson = Lesson()
    weekly = [lesson.week_accuracy(w) for w in range(22)]
    assert all(later < earlier for earlier, later in itertools.pairwise(weekly))
    assert weekly[7] > 0.75 > weekly[8]
    curve = lesson.population_accuracy(np.arange(Lesson.NATURAL_COUNT))
    assert int(np.flatnonzero(curve < 0.75)[0]) == 8 * EVENTS_PER_WEEK


def test_lesson_targets_can_be_moved() -> None:
    lesson = Lesson(start_accuracy=0.9, end_accuracy=0.7)
    assert lesson.week_accuracy(0) == pytest.approx(0.9, abs=1e-12)
    assert lesson.week_accuracy(21) == pytest.approx(0.7, abs=1e-12)


def test_params_report_every_value_by_spec_name() -> None:
    assert Sudden(at=3).params() == {"from": 0.85, "to": 0.65, "at": 3, "label_ratio": 1.0}
    assert Lesson().params() == {"from": 0.85, "to": 0.65, "label_ratio": 1.0}
