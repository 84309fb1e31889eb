"""Synthetic stream generation: determinism, seeding by model name, and that each scenario's truth is really sampled."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from decaywatch.producer.scenario import (
    EVENTS_PER_WEEK,
    SPACING_SECONDS,
    START_TS,
    Gradual,
    Lesson,
    ModelSpec,
    Scenario,
    SpecError,
    Stable,
    Sudden,
    parse_models,
)
from decaywatch.producer.stream import SyntheticStream, generate, generate_all, interleave, rng_for


@pytest.fixture(scope="module")
def lesson() -> SyntheticStream:
    return generate(ModelSpec("churn", Lesson()), rng_for(42, "churn"))


def within_sampling_error(realized: float, expected_p: np.ndarray, z: float = 5.0) -> bool:
    """|realized accuracy - mean p| within z standard errors of a sum of independent Bernoullis."""
    n = len(expected_p)
    se = math.sqrt(float(np.sum(expected_p * (1 - expected_p)))) / n
    return abs(realized - float(expected_p.mean())) <= z * se


def assert_streams_equal(a: SyntheticStream, b: SyntheticStream) -> None:
    assert a.model == b.model
    for name, column in a._columns().items():
        np.testing.assert_array_equal(column, b._columns()[name], err_msg=name)


# --- shape and invariants -------------------------------------------------------------------


def test_lesson_has_its_natural_length_time_grid_and_dtypes(lesson: SyntheticStream) -> None:
    assert len(lesson) == 108_571
    assert lesson.prediction.dtype == np.int8 and lesson.label.dtype == np.int8
    assert lesson.labeled.dtype == np.bool_ and lesson.labeled.all()
    assert lesson.ts.dtype == np.float64
    assert lesson.ts[0] == START_TS and np.allclose(np.diff(lesson.ts), SPACING_SECONDS)
    assert lesson.segment.tolist() == (np.arange(108_571) // EVENTS_PER_WEEK).tolist()


def test_columns_are_read_only(lesson: SyntheticStream) -> None:
    with pytest.raises(ValueError, match="read-only"):
        lesson.label[0] = 1


def test_other_scenarios_default_to_100k_events() -> None:
    for scenario in (Stable(), Sudden(), Gradual()):
        assert len(generate(ModelSpec("m", scenario), np.random.default_rng(0))) == 100_000


@settings(max_examples=40, deadline=None)
@given(
    spec=st.sampled_from(["m=lesson", "m=stable", "m=sudden", "m=gradual(label_ratio=0.5)", "m=stable(accuracy=0)"]),
    seed=st.integers(0, 2**32),
    count=st.integers(1, 3000),
)
def test_every_event_is_consistent(spec: str, seed: int, count: int) -> None:
    stream = generate(parse_models(spec)[0], np.random.default_rng(seed), count)
    assert len(stream) == count
    assert ((stream.x >= 0) & (stream.x <= 1)).all()
    assert (stream.prediction == (stream.x > 0.5)).all()  # the toy model
    assert ((stream.score > 0.5) == (stream.prediction == 1)).all()  # score agrees with prediction
    assert ((stream.score > 0) & (stream.score < 1)).all()
    assert np.isin(stream.label, (0, 1)).all()
    assert ((stream.expected_accuracy >= 0) & (stream.expected_accuracy <= 1)).all()


def test_a_model_that_is_never_right_is_never_right() -> None:
    stream = generate(ModelSpec("m", Stable(accuracy=0.0)), np.random.default_rng(1), 1000)
    assert not stream.correct.any()
    stream = generate(ModelSpec("m", Stable(accuracy=1.0)), np.random.default_rng(1), 1000)
    assert stream.correct.all()


def test_a_change_point_past_the_count_is_an_error() -> None:
    with pytest.raises(SpecError, match="beyond the stream"):
        generate(ModelSpec("m", Sudden(at=20_000)), np.random.default_rng(0), 10_000)


# --- determinism and seeding ----------------------------------------------------------------


def test_same_seed_same_streams_different_seed_different_streams() -> None:
    specs = parse_models("a=lesson,b=sudden,c=gradual(label_ratio=0.5)")
    first, again, other = (generate_all(specs, seed, 5000) for seed in (7, 7, 8))
    for x, y in zip(first, again, strict=True):
        assert_streams_equal(x, y)
    for x, y in zip(first, other, strict=True):
        assert not np.array_equal(x.x, y.x)


def test_streams_are_keyed_by_model_name_not_position() -> None:
    alone = generate_all(parse_models("fraud=sudden"), 42, 2000)[0]
    crowded = generate_all(parse_models("ads=stable,churn=lesson,fraud=sudden,zeta=gradual"), 42, 2000)
    assert_streams_equal(alone, crowded[2])
    assert not np.array_equal(crowded[0].x, crowded[3].x)  # different names, independent draws


@pytest.mark.parametrize("scenario", [Lesson(), Stable(label_ratio=0.5), Sudden(at=300), Gradual(start=100, span=400)])
def test_a_shorter_run_is_a_prefix_of_a_longer_one(scenario: Scenario) -> None:
    short = generate(ModelSpec("m", scenario), rng_for(5, "m"), 1000)
    long = generate(ModelSpec("m", scenario), rng_for(5, "m"), 12_000)
    for name, column in short._columns().items():
        np.testing.assert_array_equal(column, long._columns()[name][:1000], err_msg=name)


def test_rng_for_is_reproducible_and_rejects_bad_seeds() -> None:
    assert rng_for(1, "m").random() == rng_for(1, "m").random()
    assert rng_for(1, "m").random() != rng_for(1, "n").random()
    with pytest.raises(SpecError, match="non-negative integer"):
        rng_for(-1, "m")


def test_duplicate_models_are_refused() -> None:
    with pytest.raises(SpecError, match="repeated: a"):
        generate_all([ModelSpec("a"), ModelSpec("a")], 0, 10)


def test_label_ratio_hides_labels_without_changing_anything_else() -> None:
    full = generate(ModelSpec("m", Sudden()), np.random.default_rng(3), 50_000)
    partial = generate(ModelSpec("m", Sudden(label_ratio=0.3)), np.random.default_rng(3), 50_000)
    for name in ("prediction", "label", "x", "score", "expected_accuracy"):
        np.testing.assert_array_equal(getattr(full, name), getattr(partial, name))
    assert full.labeled.all()
    assert partial.labeled.mean() == pytest.approx(0.3, abs=5 * math.sqrt(0.3 * 0.7 / 50_000))
    none = generate(ModelSpec("m", Stable(label_ratio=0.0)), np.random.default_rng(3), 1000)
    assert not none.labeled.any()


# --- the lesson -----------------------------------------------------------------------------


def test_lesson_expected_accuracy_starts_at_085_and_ends_at_065(lesson: SyntheticStream) -> None:
    week = lesson.segment
    assert lesson.expected_accuracy[week == 0].mean() == pytest.approx(0.85, abs=0.01)
    assert lesson.expected_accuracy[week == 21].mean() == pytest.approx(0.65, abs=0.01)
    assert lesson.population_accuracy[0] == pytest.approx(0.85, abs=1e-12)
    assert lesson.population_accuracy[-1] == pytest.approx(0.65, abs=1e-12)


def test_lesson_realized_accuracy_tracks_expected_every_week(lesson: SyntheticStream) -> None:
    for week in range(22):
        in_week = lesson.segment == week
        realized = float(lesson.correct[in_week].mean())
        assert within_sampling_error(realized, lesson.expected_accuracy[in_week]), week


def test_lesson_expected_accuracy_is_the_truth_given_each_input(lesson: SyntheticStream) -> None:
    # Pool events by their truth: within each bin the realized rate matches P(correct | x).
    bins = np.digitize(lesson.expected_accuracy, np.linspace(0.64, 0.88, 13))
    for b in np.unique(bins):
        members = bins == b
        if members.sum() > 500:
            assert within_sampling_error(float(lesson.correct[members].mean()), lesson.expected_accuracy[members])


def test_lesson_input_mean_drifts_004_per_week_before_clipping_matters(lesson: SyntheticStream) -> None:
    for week in range(4):  # mean + 2.3 sd <= 1: clipping moves the mean by < 0.001
        mean = float(lesson.x[lesson.segment == week].mean())
        assert mean == pytest.approx(0.5 + 0.04 * week, abs=4 * 0.15 / math.sqrt(EVENTS_PER_WEEK))


def test_lesson_input_follows_the_clipped_normal_every_week(lesson: SyntheticStream) -> None:
    grid = np.linspace(-2.0, 3.0, 200_001)
    for week in range(22):
        mean = 0.5 + 0.04 * week
        density = np.exp(-0.5 * ((grid - mean) / 0.15) ** 2)
        clipped_mean = float(np.sum(np.clip(grid, 0, 1) * density) / np.sum(density))
        x = lesson.x[lesson.segment == week]
        assert float(x.mean()) == pytest.approx(clipped_mean, abs=5 * 0.15 / math.sqrt(len(x))), week
    assert (lesson.x[lesson.segment == 21] == 1.0).mean() > 0.95  # by June nearly every input is clipped


def test_lesson_count_can_be_cut_short_or_run_long() -> None:
    short = generate(ModelSpec("m", Lesson()), np.random.default_rng(0), 12_000)
    assert short.segment.max() == 2
    long = generate(ModelSpec("m", Lesson()), np.random.default_rng(0), 150_000)
    assert long.population_accuracy[-1] == pytest.approx(0.6497, abs=1e-3)  # the drift continues, flattening


# --- sudden and gradual ---------------------------------------------------------------------


def test_sudden_steps_down_at_its_change_point() -> None:
    stream = generate(ModelSpec("m", Sudden(start_accuracy=0.9, end_accuracy=0.6, at=20_000)), np.random.default_rng(5))
    before, after = slice(0, 20_000), slice(20_000, None)
    assert (stream.expected_accuracy[before] == 0.9).all() and (stream.expected_accuracy[after] == 0.6).all()
    assert within_sampling_error(float(stream.correct[before].mean()), stream.expected_accuracy[before])
    assert within_sampling_error(float(stream.correct[after].mean()), stream.expected_accuracy[after])
    assert stream.segment[19_999] == 0 and stream.segment[20_000] == 1


def test_sudden_defaults_to_the_middle() -> None:
    stream = generate(ModelSpec("m", Sudden()), np.random.default_rng(5), 1000)
    assert stream.expected_accuracy[499] == 0.85 and stream.expected_accuracy[500] == 0.65


def test_gradual_ramps_linearly_between_its_levels() -> None:
    stream = generate(ModelSpec("m", Gradual(start=10_000, span=40_000)), np.random.default_rng(6))
    p = stream.expected_accuracy
    assert (p[:10_000] == 0.85).all() and np.allclose(p[50_000:], 0.65)
    assert p[30_000] == pytest.approx(0.75)
    assert np.allclose(np.diff(p[10_000:50_001]), -0.2 / 40_000)
    ramp = slice(10_000, 50_000)
    assert within_sampling_error(float(stream.correct[ramp].mean()), p[ramp])
    assert stream.segment[9_999] == 0 and stream.segment[10_000] == 1 and stream.segment[50_000] == 2


def test_concept_drift_scenarios_keep_their_inputs_still() -> None:
    stream = generate(ModelSpec("m", Sudden()), np.random.default_rng(9))
    halves = stream.x[:50_000], stream.x[50_000:]
    assert abs(halves[0].mean() - halves[1].mean()) < 0.01  # only the labels reveal the decay
    assert stream.prediction.mean() == pytest.approx(0.5, abs=0.01)


# --- interleaving ---------------------------------------------------------------------------


@settings(max_examples=50, deadline=None)
@given(counts=st.lists(st.integers(1, 300), min_size=1, max_size=4), seed=st.integers(0, 1000))
def test_interleave_merges_by_time_and_keeps_each_streams_order(counts: list[int], seed: int) -> None:
    streams = [generate(ModelSpec(f"m{i}", Stable()), np.random.default_rng(seed + i), count) for i, count in enumerate(counts)]
    stream_index, event_index = interleave(streams)
    assert len(stream_index) == len(event_index) == sum(counts)
    ts = np.array([streams[s].ts[i] for s, i in zip(stream_index, event_index, strict=True)])
    assert (np.diff(ts) >= 0).all()
    for s, count in enumerate(counts):
        assert event_index[stream_index == s].tolist() == list(range(count))
    # simultaneous events keep the order the streams were given in
    ties = np.flatnonzero(np.diff(ts) == 0)
    assert (stream_index[ties] < stream_index[ties + 1]).all()


def test_interleave_of_nothing_is_empty() -> None:
    stream_index, event_index = interleave([])
    assert len(stream_index) == len(event_index) == 0
