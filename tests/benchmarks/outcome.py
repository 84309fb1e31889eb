"""What one detector did on one stream, judged against the stream's true accuracy, and the summary over seeds.

An *episode* is a maximal run of events whose true accuracy is below the
contract's line (0.75).  Its *approach* starts after the last event at or above
:data:`~tests.benchmarks.scenario.EARLY` (0.77) before it: an alert in the grey
zone between the two lines counts as a detection (with a negative delay), an
alert above 0.77 is a false alarm.  An episode that ends before the stream does
has *recovered*; its resolution is the first one from the recovery up to the
next approach.

>>> import numpy as np
>>> from tests.benchmarks.detector import Alerts
>>> from tests.benchmarks.scenario import Stream
>>> truth = np.array([0.85] * 4 + [0.76] * 2 + [0.65] * 4 + [0.85] * 4)
>>> stream = Stream(np.ones(14, bool), truth)
>>> run = judge(stream, Alerts(np.array([7]), np.array([11]), 0.0), resolves=True)
>>> [(e.delay, e.firings, e.resolution_delay) for e in run.episodes], run.false_alarm
([(1, 1, 1)], False)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tests.benchmarks.detector import Alerts
from tests.benchmarks.scenario import EARLY, EVENTS_PER_WEEK, LINE, Stream


@dataclass(frozen=True)
class Episode:
    """One stretch below the line: how soon it was caught, how often it fired, how soon it resolved."""

    delay: int | None
    """First alert from the approach on, minus the first event below the line; None if never."""
    firings: int
    """Alerts from the approach to the next approach (re-fires after recovery included)."""
    recovered: bool
    resolution_delay: int | None
    """First resolution after the recovery, minus the recovery; None if none (or the detector never resolves)."""


@dataclass(frozen=True)
class Run:
    """One detector on one stream."""

    alerts: int
    false_alarm: bool
    """An alert while true accuracy was at least 0.77."""
    episodes: tuple[Episode, ...]
    first_alert_week: int | None
    crossing_week: int | None
    events: int
    seconds: float


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """``[start, stop)`` of every maximal run of True."""
    edges = np.diff(np.concatenate(([0], mask.astype(np.int8), [0])))
    return list(zip(np.flatnonzero(edges == 1).tolist(), np.flatnonzero(edges == -1).tolist(), strict=True))


def _first(positions: np.ndarray, start: int, stop: int) -> int | None:
    inside = positions[(positions >= start) & (positions < stop)]
    return int(inside[0]) if inside.size else None


def judge(stream: Stream, alerts: Alerts, resolves: bool) -> Run:
    """Measure ``alerts`` against ``stream``'s truth."""
    n, truth, firing = len(stream), stream.accuracy, alerts.firing
    calm = np.flatnonzero(truth >= EARLY)
    spans = _runs(truth < LINE)
    approaches = [int(calm[calm < start][-1]) + 1 if (calm < start).any() else 0 for start, _ in spans]
    limits = [*approaches[1:], n][: len(spans)]
    episodes = []
    for (start, stop), approach, limit in zip(spans, approaches, limits, strict=True):
        caught = _first(firing, approach, stop)
        resolved = _first(alerts.resolved, stop, limit) if resolves else None
        episodes.append(
            Episode(
                delay=None if caught is None else caught - start,
                firings=int(((firing >= approach) & (firing < limit)).sum()),
                recovered=stop < n,
                resolution_delay=None if resolved is None else resolved - stop,
            )
        )
    return Run(
        alerts=int(firing.size),
        false_alarm=bool((truth[firing] >= EARLY).any()),
        episodes=tuple(episodes),
        first_alert_week=int(firing[0]) // EVENTS_PER_WEEK if firing.size else None,
        crossing_week=spans[0][0] // EVENTS_PER_WEEK if spans else None,
        events=n,
        seconds=alerts.seconds,
    )


def _quantile(values: list[int], q: float) -> float | None:
    return float(np.quantile(values, q)) if values else None


@dataclass(frozen=True)
class Summary:
    """One detector on one scenario, over its seeds; None where a number does not apply."""

    seeds: int
    alert_rate: float
    """Share of seeds with at least one alert."""
    false_alarm_rate: float
    """Share of seeds with an alert while true accuracy was at least 0.77."""
    detection_rate: float | None
    """Share of episodes (all seeds) caught before they ended."""
    delay_median: float | None
    delay_p90: float | None
    delay_max: int | None
    firings_per_episode: float | None
    """Mean alerts per recovered episode."""
    resolved_rate: float | None
    """Share of recovered episodes that resolved."""
    resolution_median: float | None
    resolution_max: int | None
    crossing_week: int | None
    first_alert_weeks: list[int | None] | None
    on_time_rate: float | None
    """Share of seeds whose first alert came in the crossing week or the week after."""
    events_per_second: float | None


def summarize(runs: list[Run], resolves: bool, weekly: bool) -> Summary:
    """Summarize one detector's runs on one scenario."""
    episodes = [e for run in runs for e in run.episodes]
    delays = [e.delay for e in episodes if e.delay is not None]
    recovered = [e for e in episodes if e.recovered]
    resolutions = [e.resolution_delay for e in recovered if e.resolution_delay is not None]
    weeks = [(run.first_alert_week, run.crossing_week) for run in runs if run.crossing_week is not None] if weekly else []
    seconds = sum(run.seconds for run in runs)
    return Summary(
        seeds=len(runs),
        alert_rate=sum(run.alerts > 0 for run in runs) / len(runs),
        false_alarm_rate=sum(run.false_alarm for run in runs) / len(runs),
        detection_rate=len(delays) / len(episodes) if episodes else None,
        delay_median=_quantile(delays, 0.5),
        delay_p90=_quantile(delays, 0.9),
        delay_max=max(delays) if delays else None,
        firings_per_episode=float(np.mean([e.firings for e in recovered])) if recovered else None,
        resolved_rate=len(resolutions) / len(recovered) if recovered and resolves else None,
        resolution_median=_quantile(resolutions, 0.5) if resolves else None,
        resolution_max=max(resolutions) if resolves and resolutions else None,
        crossing_week=min(c for _, c in weeks) if weeks else None,
        first_alert_weeks=[w for w, _ in weeks] if weeks else None,
        on_time_rate=sum(w is not None and c <= w <= c + 1 for w, c in weeks) / len(weeks) if weeks else None,
        events_per_second=sum(run.events for run in runs) / seconds if seconds > 0 else None,
    )
