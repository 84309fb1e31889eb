"""Read-only views of the monitor's state, for exporters (metrics, terminal table, /models).

A snapshot is built after each batch and handed over whole, so a reader on
another thread (a Prometheus scrape) never sees a half-updated model.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class WindowSnapshot:
    size: int
    labeled: int
    correct: int
    accuracy: float | None
    drop: float | None
    """Baseline minus accuracy (``None`` until both exist)."""
    time_span: tuple[float, float] | None


@dataclass(frozen=True, slots=True)
class ModelSnapshot:
    model: str
    events: int
    labeled: int
    correct: int
    last_event_time: float | None
    baseline: float | None
    baseline_date: str | None
    threshold: float
    floor: float | None
    judged_window: int
    windows: tuple[WindowSnapshot, ...]
    degraded: bool
    """A degradation episode is open."""
    below_floor: bool
    """A floor episode is open."""
    open_alert_ids: tuple[str, ...]

    def window(self, size: int) -> WindowSnapshot:
        return next(w for w in self.windows if w.size == size)

    @property
    def judged(self) -> WindowSnapshot:
        return self.window(self.judged_window)
