"""A live per-model table for a terminal: events, rolling accuracy, baseline, drop, status.

On a terminal the table is redrawn in place at the bottom of the screen, and
alert lines scroll above it; elsewhere (a log file, CI) it is printed as plain
lines at most every ``plain_interval_s`` seconds so logs stay readable.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import TextIO

from decaywatch.monitor.snapshot import ModelSnapshot


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _date(epoch: float | None) -> str:
    return "-" if epoch is None else datetime.fromtimestamp(epoch, tz=UTC).strftime("%Y-%m-%d")


def status_of(snapshot: ModelSnapshot) -> str:
    if snapshot.degraded:
        return "DEGRADED"
    if snapshot.below_floor:
        return "BELOW FLOOR"
    if snapshot.baseline is None:
        return "learning baseline"
    if snapshot.judged.labeled < 1 or snapshot.judged.accuracy is None:
        return "warming up"
    return "ok"


def render(models: Mapping[str, ModelSnapshot], invalid: int, invalid_label: str = "invalid events (dead-lettered)") -> list[str]:
    """The table as lines (no colours, so it reads the same in a log)."""
    labels = list(dict.fromkeys(w.label for m in models.values() for w in m.windows))
    header = ["model", "events", "labeled", "event time"] + [f"acc@{s}" for s in labels] + ["baseline", "drop", "status"]
    rows = [header]
    for name in sorted(models):
        m = models[name]
        accuracy = {w.label: w.accuracy for w in m.windows}
        rows.append(
            [name, f"{m.events:,}", f"{m.labeled:,}", _date(m.last_event_time)]
            + [_pct(accuracy.get(s)) for s in labels]
            + [_pct(m.baseline), _pct(m.judged.drop), status_of(m)]
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    lines.append(f"{invalid_label}: {invalid:,}")
    return lines


class LiveTable:
    """Draws the table on ``out``; ``alert`` lines are printed above it as they come."""

    def __init__(self, out: TextIO, clock: Callable[[], float], interactive: bool, plain_interval_s: float = 5.0) -> None:
        self._out = out
        self._clock = clock
        self._interactive = interactive
        self._plain_interval_s = plain_interval_s
        self._drawn = 0
        self._last_plain = float("-inf")
        self._pending: list[str] = []

    def alert(self, line: str) -> None:
        self._pending.append(line)

    def draw(self, models: Mapping[str, ModelSnapshot], invalid: int, force: bool = False) -> None:
        if self._interactive:
            if self._drawn:
                self._out.write(f"\x1b[{self._drawn}F\x1b[J")  # back to the table's first line, clear below
            for line in self._pending:
                self._out.write(line + "\n")
            table = render(models, invalid)
            self._out.write("\n".join(table) + "\n")
            self._drawn = len(table)
        else:
            for line in self._pending:
                self._out.write(line + "\n")
            now = self._clock()
            if force or now - self._last_plain >= self._plain_interval_s:
                self._out.write("\n".join(render(models, invalid)) + "\n\n")
                self._last_plain = now
        self._pending.clear()
        self._out.flush()
