"""The variance inflation of errors in runs: exact whatever the batches, near the truth of a Markov chain, blind to a
change of accuracy, and what it does to the sequential test."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from decaywatch.monitor.dependence import INFLATION_SCALE, Dependence
from decaywatch.monitor.rates import markov_phi
from decaywatch.monitor.sequential import SequentialTest
from tests.benchmarks.scenario import bursty, piecewise


@settings(max_examples=100, deadline=None)
@given(
    stick=st.sampled_from([0.15, 0.6, 0.95]),
    length=st.integers(0, 3000),
    cuts=st.lists(st.integers(0, 3000), max_size=6),
    memory=st.sampled_from([40, 700, 50_000]),
    seed=st.integers(0, 2**32 - 1),
)
def test_the_same_inflation_whatever_the_batches(stick: float, length: int, cuts: list[int], memory: int, seed: int) -> None:
    outcomes = bursty(np.random.default_rng(seed), [(length, 0.85, 0.85)], stick).correct
    one = Dependence(memory)
    whole = one.inflation(outcomes)
    parts = Dependence(memory)
    bounds = sorted({0, length, *(c for c in cuts if c <= length)})
    pieces = [parts.inflation(outcomes[lo:hi]) for lo, hi in itertools.pairwise(bounds)]
    assert np.array_equal(np.concatenate([np.zeros(0, np.int64), *pieces]), whole)
    assert parts.state() == one.state()
    restored = Dependence(memory)
    restored.restore(one.state())
    more = np.random.default_rng(seed + 1).random(50) < 0.8
    assert np.array_equal(restored.inflation(more), one.inflation(more))


@pytest.mark.parametrize(("accuracy", "stick"), [(0.85, 0.5), (0.85, 0.7), (0.85, 0.9), (0.95, 0.8), (0.7, 0.6)])
def test_a_long_markov_stream_is_judged_near_its_true_inflation(accuracy: float, stick: float) -> None:
    outcomes = bursty(np.random.default_rng(5), [(100_000, accuracy, accuracy)], stick).correct
    estimate = Dependence().inflation(outcomes)[-1] / INFLATION_SCALE
    truth = markov_phi(accuracy, stick)
    assert 0.7 * truth <= estimate <= 1.05 * truth  # leaning low (two standard errors below), never far above


def test_independent_errors_and_a_change_of_accuracy_are_not_inflated() -> None:
    rng = np.random.default_rng(9)
    independent = rng.random(50_000) < 0.85
    assert set(Dependence().inflation(independent)[1000:].tolist()) == {INFLATION_SCALE}
    # a model that falls from 0.85 to 0.45 and comes back: errors are likelier at every lag alike. Only pairs that
    # straddle the change look dependent (for LAG events), a small share of what a model in service has counted.
    shifted = piecewise(rng, [(20_000, 0.85, 0.85), (2000, 0.45, 0.45), (3000, 0.85, 0.85)]).correct
    assert Dependence().inflation(shifted)[1000:].max() <= 1.1 * INFLATION_SCALE


def test_counts_are_halved_at_twice_the_memory_so_the_estimate_follows_a_change_of_character() -> None:
    rng = np.random.default_rng(2)
    independent = rng.random(20_000) < 0.85
    runs = bursty(rng, [(20_000, 0.85, 0.85)], 0.9).correct
    forgetful, lifelong = Dependence(memory=2000), Dependence(memory=10**9)
    for d in (forgetful, lifelong):
        d.inflation(independent)
        d.inflation(runs)
    assert int(forgetful.counts[0]) <= 4000 and int(lifelong.counts[0]) == 40_000
    assert forgetful.phi > 1.5 * lifelong.phi


def test_a_restore_refuses_state_it_cannot_use() -> None:
    good = Dependence().state()
    for bad in ({**good, "recent": "012"}, {**good, "recent": "1" * 129}, {**good, "counts": {"events": 1}}):
        with pytest.raises(ValueError, match="dependence state"):
            Dependence().restore(bad)


def test_bursts_at_a_steady_accuracy_page_only_when_counted_as_independent() -> None:
    outcomes = bursty(np.random.default_rng(11), [(100_000, 0.85, 0.85)], 0.9).correct
    allowed = np.ones(outcomes.shape[0], dtype=bool)
    counted = SequentialTest(0.8, 0.7, 12.0, 0, line=0.75, discount_bursts=False).advance(outcomes, allowed)
    discounted = SequentialTest(0.8, 0.7, 12.0, 0, line=0.75).advance(outcomes, allowed)
    assert len(counted) > 10 and discounted == []


def test_a_real_fall_with_independent_errors_is_caught_as_fast_as_before() -> None:
    stream = piecewise(np.random.default_rng(4), [(20_000, 0.85, 0.85), (5000, 0.65, 0.65)]).correct
    allowed = np.ones(stream.shape[0], dtype=bool)
    before = SequentialTest(0.8, 0.7, 12.0, 0, line=0.75, discount_bursts=False).advance(stream, allowed)
    now = SequentialTest(0.8, 0.7, 12.0, 0, line=0.75).advance(stream, allowed)
    assert now and before and now[0].index == before[0].index > 20_000
