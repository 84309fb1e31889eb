"""The policy's rates against a plain simulation of the CUSUM they approximate."""

from __future__ import annotations

import numpy as np
import pytest

from decaywatch.monitor.rates import expected_events, increments, markov_phi


def simulated_mean_run(accuracy: float, evidence: float, events: int, seed: int) -> float:
    """Mean labeled events between firings of S = max(0, S + x), restarted at 0 after each firing."""
    right, wrong = increments(0.75, 0.05)
    steps = np.where(np.random.default_rng(seed).random(events) < accuracy, right, wrong)
    runs, start = [], 0
    while start < events:
        running = np.cumsum(steps[start:])
        statistic = running - np.minimum.accumulate(np.minimum(running, 0.0))
        hits = np.flatnonzero(statistic >= evidence)
        if not hits.size:
            break
        runs.append(int(hits[0]) + 1)
        start += int(hits[0]) + 1
    return float(np.mean(runs))


@pytest.mark.parametrize(("accuracy", "evidence"), [(0.85, 3.0), (0.8, 4.0), (0.65, 12.0), (0.72, 8.0)])
def test_the_lattice_run_length_is_near_the_simulated_one(accuracy: float, evidence: float) -> None:
    predicted = expected_events(accuracy, 0.75, 0.05, evidence)
    events = int(min(max(predicted * 60, 20_000), 6_000_000))
    assert 0.8 * predicted <= simulated_mean_run(accuracy, evidence, events, seed=1) <= 1.25 * predicted


def test_runs_of_errors_cost_their_inflation_in_delay_and_bring_false_alarms_no_sooner() -> None:
    phi = markov_phi(0.85, 0.7)
    assert phi == pytest.approx(4.6667, rel=1e-3)
    assert expected_events(0.65, 0.75, 0.05, 12.0, phi) == pytest.approx(phi * expected_events(0.65, 0.75, 0.05, 12.0), rel=0.1)
    assert expected_events(0.85, 0.75, 0.05, 12.0, phi) >= expected_events(0.85, 0.75, 0.05, 12.0)


def test_impossible_inputs_are_refused() -> None:
    with pytest.raises(ValueError, match="accuracy"):
        expected_events(1.0, 0.75, 0.05, 12.0)
    with pytest.raises(ValueError, match="no chain"):
        markov_phi(0.3, 0.0)
