"""The benchmark's text report: one side-by-side table, the targets' verdicts, the timings.

``alerts``: share of seeds with any alert; ``at>=.77``: share of seeds with an
alert while true accuracy was at least 0.77 (a false or premature alarm);
``detected``: share of episodes below the line that were caught.  Delays are in
labeled events after the first event below the line (negative: caught in the
grey zone 0.75-0.77 before it); ``fire/ep``, ``res``: alerts per recovered
episode and the delay of its resolution after the recovery.  ``n/a``: the number has no
meaning for that detector (river's detectors keep no degraded state, so they
never resolve); ``-``: nothing to measure (no episode, no alert).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping

from tests.benchmarks.outcome import Summary
from tests.benchmarks.target import Verdict

COLUMNS = (
    ("scenario", 13),
    ("detector", 17),
    ("alerts", 7),
    ("at>=.77", 7),
    ("detected", 8),
    ("delay med", 9),
    ("p90", 7),
    ("max", 7),
    ("fire/ep", 7),
    ("resolved", 8),
    ("res med", 7),
    ("res max", 7),
    ("first-alert weeks", 18),
)


def _share(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:g}"


def _weeks(weeks: list[int | None] | None) -> str:
    if weeks is None:
        return "-"
    counts = Counter(weeks)
    return " ".join(f"{'none' if w is None else f'w{w}'}:{counts[w]}" for w in sorted(counts, key=lambda w: (w is None, w)))


def _cells(scenario: str, detector: str, s: Summary, resolves: bool) -> list[str]:
    recovery = s.firings_per_episode is not None
    na = "n/a"
    return [
        scenario,
        detector,
        _share(s.alert_rate),
        _share(s.false_alarm_rate),
        _share(s.detection_rate),
        _number(s.delay_median),
        _number(s.delay_p90),
        _number(s.delay_max),
        (_number(s.firings_per_episode) if resolves else na) if recovery else "-",
        (_share(s.resolved_rate) if resolves else na) if recovery else "-",
        (_number(s.resolution_median) if resolves else na) if recovery else "-",
        (_number(s.resolution_max) if resolves else na) if recovery else "-",
        _weeks(s.first_alert_weeks) + ("" if s.crossing_week is None else f" (cross w{s.crossing_week})"),
    ]


def _line(cells: Iterable[str]) -> str:
    return "  ".join(cell.ljust(width) for cell, (_, width) in zip(cells, COLUMNS, strict=True)).rstrip()


def table(summaries: Mapping[tuple[str, str], Summary], resolves: Mapping[str, bool]) -> str:
    """Rows by scenario, then detector, in the order given."""
    lines = [_line(name for name, _ in COLUMNS)]
    previous = None
    for (scenario, detector), summary in summaries.items():
        if previous is not None and scenario != previous:
            lines.append("")
        previous = scenario
        lines.append(_line(_cells(scenario, detector, summary, resolves[detector])))
    return "\n".join(lines)


def verdict_lines(detector: str, verdicts: Iterable[Verdict]) -> str:
    return "\n".join(f"{'PASS' if v.passed else 'FAIL'}  {detector} / {v.scenario}: {v.target}  [{v.measured}]" for v in verdicts)


def timing_lines(seconds: Mapping[str, float], throughput: Mapping[str, float | None], wall: float) -> str:
    rows = [
        f"  {name:<17} {seconds[name]:7.1f} s in the detector"
        + ("" if throughput.get(name) is None else f", {throughput[name]:,.0f} labeled events/s")
        for name in seconds
    ]
    return "\n".join(["time:", *rows, f"  wall {wall:.1f} s (streams, detectors, judging)"])
