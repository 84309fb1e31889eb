"""The targets decaywatch's default policy must meet, one per scenario, each checked against a :class:`Summary`.

>>> from tests.benchmarks.outcome import Summary
>>> quiet = Summary(30, 0.0, 0.0, None, None, None, None, None, None, None, None, None, None, None, None)
>>> [(v.scenario, v.passed) for v in verdicts({"stable": quiet})]
[('stable', True)]
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from tests.benchmarks.outcome import Summary
from tests.benchmarks.scenario import BURSTY_STICKS, SPARSE_PER_DAY


@dataclass(frozen=True)
class Target:
    scenario: str
    text: str
    check: Callable[[Summary], bool]
    measured: Callable[[Summary], str]


@dataclass(frozen=True)
class Verdict:
    scenario: str
    target: str
    passed: bool
    measured: str


def _at_most(value: float | None, limit: float) -> bool:
    return value is not None and value <= limit


TARGETS = (
    Target(
        "stable",
        "no alert in any seed",
        lambda s: s.alert_rate == 0.0,
        lambda s: f"alert rate {s.alert_rate:.0%}",
    ),
    Target(
        "sudden",
        "detected in every seed, median delay <= 250",
        lambda s: s.detection_rate == 1.0 and _at_most(s.delay_median, 250),
        lambda s: f"detected {s.detection_rate:.0%}, median delay {s.delay_median}",
    ),
    Target(
        "sub-threshold",
        "alerts in at most 5% of seeds",
        lambda s: s.alert_rate <= 0.05,
        lambda s: f"alert rate {s.alert_rate:.0%}",
    ),
    Target(
        "gradual",
        "first alert at true accuracy >= 0.77 in at most 5% of seeds; detected in every seed",
        lambda s: s.false_alarm_rate <= 0.05 and s.detection_rate == 1.0,
        lambda s: f"early {s.false_alarm_rate:.0%}, detected {s.detection_rate:.0%}, median delay {s.delay_median}",
    ),
    Target(
        "recovery",
        "<= 1.1 firings per episode, every episode resolved within 1000",
        lambda s: _at_most(s.firings_per_episode, 1.1) and s.resolved_rate == 1.0 and _at_most(s.resolution_max, 1000),
        lambda s: f"{s.firings_per_episode} firings/episode, resolved {s.resolved_rate:.0%}, max {s.resolution_max}",
    ),
    Target(
        "lesson",
        # The issue gives no per-seed tolerance here; we hold it to the 5% its other targets allow.
        # Seeds that fire a week early do so in week 7, where the true accuracy (0.7512) is 0.0012
        # above the line: too close for any test that still catches 0.85 -> 0.65 within 250 events.
        "first alert in the crossing week or the week after, in at least 95% of seeds",
        lambda s: s.on_time_rate is not None and s.on_time_rate >= 0.95,
        lambda s: f"crossing week {s.crossing_week}, on time {s.on_time_rate:.0%}",
    ),
    *(
        Target(
            f"bursty {stick}",
            "no alert in any seed (errors in runs at a steady 0.85)",
            lambda s: s.alert_rate == 0.0,
            lambda s: f"alert rate {s.alert_rate:.0%}",
        )
        for stick in BURSTY_STICKS
    ),
    Target(
        "sparse stable",
        "no alert in any seed (50 labels an hour for 30 days)",
        lambda s: s.alert_rate == 0.0,
        lambda s: f"alert rate {s.alert_rate:.0%}",
    ),
    Target(
        "sparse fall",
        "detected in every seed within a day (1,200 labels)",
        lambda s: s.detection_rate == 1.0 and _at_most(s.delay_max, SPARSE_PER_DAY),
        lambda s: (
            f"detected {s.detection_rate:.0%}, median delay {s.delay_median} ({(s.delay_median or 0) / 50:.1f} h), "
            f"max {s.delay_max}"
        ),
    ),
    Target(
        "bursty sudden",
        "detected in every seed",
        lambda s: s.detection_rate == 1.0,
        lambda s: f"detected {s.detection_rate:.0%}, median delay {s.delay_median}",
    ),
)


def verdicts(summaries: Mapping[str, Summary], targets: tuple[Target, ...] = TARGETS) -> list[Verdict]:
    """Check every target whose scenario was run."""
    return [
        Verdict(t.scenario, t.text, t.check(summaries[t.scenario]), t.measured(summaries[t.scenario]))
        for t in targets
        if t.scenario in summaries
    ]
