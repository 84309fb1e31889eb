"""``decaywatch policy``: the rates it prints are the core's, in events, time and for a fleet."""

from __future__ import annotations

import re

import pytest

from decaywatch.cli import main
from decaywatch.monitor.rates import expected_events, markov_phi


def test_prints_the_false_alarm_interval_and_the_delay_in_events_time_and_for_a_fleet(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["policy", "--baseline", "0.85", "--evidence", "6", "--labels-per-day", "1000", "--models", "50"]) == 0
    out = capsys.readouterr().out
    quiet, delay = expected_events(0.85, 0.75, 0.05, 6.0), expected_events(0.65, 0.75, 0.05, 6.0)
    assert f"a false alarm every {quiet:,.0f} labeled events on average" in out
    assert f"fall to 0.65: caught after {delay:,.0f} labeled events on average" in out
    per_day = 50 * 1000 / quiet
    assert f"for 50 such models: {per_day:.2g} false alarms a day" in out
    assert re.search(r"\(\d[\d,.]* (hours|minutes) at 1,000 labels a day\)", out)


def test_errors_in_runs_lengthen_both_by_their_inflation(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["policy", "--baseline", "0.85", "--error-runs", "0.7"]) == 0
    out = capsys.readouterr().out
    phi = markov_phi(0.85, 0.7)
    assert f"phi {phi:.2f}" in out
    assert f"caught after {expected_events(0.65, 0.75, 0.05, 12.0, phi):,.0f} labeled events" in out


def test_a_bad_policy_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["policy", "--baseline", "1.5"]) == 2
    assert capsys.readouterr().err.startswith("decaywatch policy: baseline must be in [0, 1]")
