"""The detectors compared, behind one small protocol: outcome bits in, alert positions out.

A detector keeps no state between runs: ``run`` starts from scratch on every
stream.  ``Alerts.firing`` and ``Alerts.resolved`` are positions in the stream
(labeled events); a detector that keeps no degraded state (river's drift
detectors) has ``resolves = False`` and never reports a resolution.

>>> import numpy as np
>>> detector = DecaywatchDetector("window 4", policy(baseline=0.85, decision="window", windows=(4,), min_samples=4))
>>> alerts = detector.run(np.array([True] * 8 + [False] * 4 + [True] * 8))
>>> alerts.firing.tolist(), alerts.resolved.tolist()
([9], [15])
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from decaywatch.monitor.config import ModelPolicy, MonitorConfig
from decaywatch.monitor.engine import Monitor
from decaywatch.monitor.schema import EventBatch

Positions = npt.NDArray[np.int64]


@dataclass(frozen=True)
class Alerts:
    """Where a detector fired and resolved in one stream, and the time it spent doing so."""

    firing: Positions
    resolved: Positions
    seconds: float


class Detector(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def resolves(self) -> bool:
        """Whether the detector reports resolutions (keeps a degraded state)."""

    def run(self, correct: npt.NDArray[np.bool_]) -> Alerts: ...


def policy(**settings: Any) -> ModelPolicy:
    """A ``ModelPolicy`` from the settings it knows (so the benchmark runs before and after new fields land)."""
    known = {f.name for f in dataclasses.fields(ModelPolicy)}
    return ModelPolicy(**{key: value for key, value in settings.items() if key in known})


@dataclass(frozen=True)
class DecaywatchDetector:
    """The monitor's core on bit batches (no JSON): one fresh ``Monitor`` per stream, ``chunk`` events per batch."""

    name: str
    policy: ModelPolicy
    chunk: int = 5000
    resolves: bool = True
    seconds_apart: float = 1.0
    """Event time between labeled events (the label rate: rules count labels, event-time windows see the rate)."""

    def run(self, correct: npt.NDArray[np.bool_]) -> Alerts:
        monitor = Monitor(MonitorConfig(self.policy))
        firing: list[int] = []
        resolved: list[int] = []
        seconds = 0.0
        for start in range(0, len(correct), self.chunk):
            bits = correct[start : start + self.chunk]
            n = len(bits)
            source = np.arange(start, start + n, dtype=np.int64)
            batch = EventBatch(
                models=("m",),
                model_codes=np.zeros(n, np.int32),
                labeled=np.ones(n, bool),
                correct=bits,
                event_time=source.astype(np.float64) * self.seconds_apart,
                source_index=source,
            )
            began = time.perf_counter()
            transitions = monitor.process(batch)
            seconds += time.perf_counter() - began
            for t in transitions:
                (firing if t.status == "firing" else resolved).append(t.source_index)
        return Alerts(np.array(firing, np.int64), np.array(resolved, np.int64), seconds)


class DriftDetector(Protocol):
    """river's ``base.DriftDetector``: ``update(x)``, then read ``drift_detected``."""

    @property
    def drift_detected(self) -> bool: ...

    def update(self, x: Any) -> Any: ...


@dataclass(frozen=True)
class RiverDetector:
    """A river drift detector fed the error bit (1 = wrong), one event at a time; every drift is an alert."""

    name: str
    make: Callable[[], DriftDetector]
    resolves: bool = False

    def run(self, correct: npt.NDArray[np.bool_]) -> Alerts:
        detector = self.make()
        firing: list[int] = []
        began = time.perf_counter()
        for i, error in enumerate((~correct).astype(np.int64).tolist()):
            detector.update(error)
            if detector.drift_detected:
                firing.append(i)
        seconds = time.perf_counter() - began
        return Alerts(np.array(firing, np.int64), np.zeros(0, np.int64), seconds)


def detectors(with_river: bool = True) -> list[Detector]:
    """decaywatch's default policy, the same with errors counted as independent (the rule before bursts were
    discounted), the plain window rules, then river's detectors (defaults) if installed."""
    window = {"baseline": 0.85, "threshold": 0.1, "decision": "window", "recovery_margin": 0.0}
    found: list[Detector] = [
        DecaywatchDetector("decaywatch", policy(baseline=0.85, threshold=0.1)),
        DecaywatchDetector("decaywatch iid", policy(baseline=0.85, threshold=0.1, discount_bursts=False)),
        DecaywatchDetector("window 500", policy(**window, windows=(500,), min_samples=500)),
        DecaywatchDetector("window 1000", policy(**window, windows=(1000,), min_samples=1000)),
    ]
    if with_river:
        try:
            from river import drift
            from river.drift import binary
        except ImportError:
            return found
        found += [
            RiverDetector("river ADWIN", drift.ADWIN),
            RiverDetector("river DDM", binary.DDM),
            RiverDetector("river PageHinkley", drift.PageHinkley),
        ]
    return found
