"""The ground truth of a produced run, written next to the events so tests can grade the monitor.

The monitor only ever sees events; whether it measured the right accuracy,
alerted in the right week, or kept quiet on a stable model can only be judged
against what the generator actually did.  The manifest records, per model, the
scenario and its resolved parameters, the realized counts, and per segment
(each week for ``lesson``; before / ramp / after a change otherwise) both the
*expected* accuracy (mean of each event's true P(correct)) and the *realized*
one (fraction of labeled events that were correct), with index and event-time
ranges.  ``first_below`` gives, for each accuracy line (0.75 by default), the
first event at which the scenario's noise-free curve falls below it -- the
moment a correct monitor should start to see the decay.

A model with a ``label_delay`` also gets a ``labels`` entry: the delay
distribution, how many label events were sent, the true coverage (the share
of predictions whose label ever comes, and the share known by the time of the
last prediction or within a given delay), and the realized label-delay
quantiles (p50, p90, p99 of the label events sent), which is what a monitor's
``decaywatch_label_delay_seconds`` histogram should estimate.  A run without
delays records exactly what it did before delays existed.

Everything is plain JSON (ints, floats, strings, null): no numpy types leak out.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from decaywatch.producer.scenario import (
    EVENTS_PER_WEEK,
    SECONDS_PER_WEEK,
    SPACING_SECONDS,
    START_TS,
    Lesson,
    ModelSpec,
    Scenario,
)
from decaywatch.producer.stream import SyntheticStream
from decaywatch.shared.version import package_version

__all__ = ["SCHEMA", "build_manifest", "iso8601", "write_manifest"]

SCHEMA = "decaywatch.producer.manifest/1"
"""Identifies the manifest layout; bump the number when a field changes meaning (adding one does not)."""

DELAY_QUANTILES = {"p50": 0.5, "p90": 0.9, "p99": 0.99}
"""The label-delay quantiles recorded, named as dashboards name them."""

COVERAGE_WITHIN = {"1d": 86_400.0, "7d": 604_800.0, "30d": 2_592_000.0}
"""Delays for ``coverage_within``: 7d is the monitor's default ``label_ttl``, so its share is the labels it can join."""


def iso8601(ts: float) -> str:
    """Epoch seconds as ISO 8601 UTC with milliseconds, e.g. ``2024-01-01T00:02:00.960Z``."""
    return datetime.fromtimestamp(ts, tz=UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _ts_at(index: int) -> float:
    """Event time of index ``index`` (valid one past the end too, where a ramp may finish)."""
    return (START_TS * EVENTS_PER_WEEK + index * SECONDS_PER_WEEK) / EVENTS_PER_WEEK


def _ratio(numerator: int, denominator: int) -> float | None:
    return numerator / denominator if denominator else None


def _mean(values: np.ndarray) -> float | None:
    return float(values.mean()) if len(values) else None


def _segment(stream: SyntheticStream, scenario: Scenario, name: str, start: int, stop: int) -> dict[str, Any]:
    part = slice(start, stop)
    labeled = stream.labeled[part]
    n_labeled = int(labeled.sum())
    n_correct = int((stream.correct[part] & labeled).sum())
    entry: dict[str, Any] = {
        "name": name,
        "start": start,
        "stop": stop,
        "events": stop - start,
        "ts_first": float(stream.ts[start]),
        "ts_last": float(stream.ts[stop - 1]),
        "time_first": iso8601(float(stream.ts[start])),
        "time_last": iso8601(float(stream.ts[stop - 1])),
        "labeled": n_labeled,
        "correct": n_correct,
        "expected_accuracy": _mean(stream.expected_accuracy[part]),
        "realized_accuracy": _ratio(n_correct, n_labeled),
        "population_accuracy": _mean(stream.population_accuracy[part]),
        "x_mean": _mean(stream.x[part]),
    }
    if isinstance(scenario, Lesson):
        entry["input_mean_unclipped"] = Lesson.week_input_mean(start // EVENTS_PER_WEEK)
    return entry


def _change_point(index: int, kind: str, accuracy_from: float, accuracy_to: float, span: int) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "kind": kind,
        "index": index,
        "ts": _ts_at(index),
        "time": iso8601(_ts_at(index)),
        "from": accuracy_from,
        "to": accuracy_to,
        "span": span,
    }
    if span > 1:
        entry.update(end_index=index + span, end_ts=_ts_at(index + span), end_time=iso8601(_ts_at(index + span)))
    return entry


def _first_below(stream: SyntheticStream, segment_names: list[str], threshold: float) -> dict[str, Any] | None:
    below = np.flatnonzero(stream.population_accuracy < threshold)
    if not len(below):
        return None
    index = int(below[0])
    return {
        "index": index,
        "ts": float(stream.ts[index]),
        "time": iso8601(float(stream.ts[index])),
        "segment": segment_names[int(stream.segment[index])],
        "population_accuracy": float(stream.population_accuracy[index]),
    }


def _labels(stream: SyntheticStream, scenario: Scenario) -> dict[str, Any]:
    """The truth about a delayed stream's labels (numpy's default linear interpolation for the quantiles)."""
    if scenario.label_delay is None or stream.label_ts is None:
        raise ValueError(f"stream {stream.model!r} has no label delay")
    n = len(stream)
    sent = stream.labeled
    delays = stream.label_delay[sent]
    last_label = float(stream.label_ts[sent].max()) if len(delays) else None
    return {
        "delay": scenario.label_delay.describe(),
        "label_events": int(sent.sum()),
        "coverage": int(sent.sum()) / n,
        "coverage_at_last_prediction": int((sent & (stream.label_ts <= stream.ts[-1])).sum()) / n,
        "coverage_within": {name: int((delays <= limit).sum()) / n for name, limit in COVERAGE_WITHIN.items()},
        "delay_quantiles_seconds": {
            name: float(np.quantile(delays, q)) if len(delays) else None for name, q in DELAY_QUANTILES.items()
        },
        "distribution_quantiles_seconds": {name: scenario.label_delay.quantile(q) for name, q in DELAY_QUANTILES.items()},
        "delay_mean_seconds": _mean(delays),
        "delay_max_seconds": float(delays.max()) if len(delays) else None,
        "ts_last_label": last_label,
        "time_last_label": iso8601(last_label) if last_label is not None else None,
    }


def _model_entry(stream: SyntheticStream, spec: ModelSpec, thresholds: Sequence[float]) -> dict[str, Any]:
    n = len(stream)
    scenario = spec.scenario.resolve(n)
    segments = scenario.segments(n)
    n_labeled = int(stream.labeled.sum())
    n_correct = int((stream.correct & stream.labeled).sum())
    entry: dict[str, Any] = {
        "spec": str(ModelSpec(spec.model, scenario)),
        "scenario": scenario.name,
        "params": scenario.params(),
        "events": n,
        "labeled": n_labeled,
        "correct": n_correct,
        "expected_accuracy": _mean(stream.expected_accuracy),
        "realized_accuracy": _ratio(n_correct, n_labeled),
        "population_accuracy": _mean(stream.population_accuracy),
        "ts_first": float(stream.ts[0]),
        "ts_last": float(stream.ts[-1]),
        "time_first": iso8601(float(stream.ts[0])),
        "time_last": iso8601(float(stream.ts[-1])),
    }
    if isinstance(scenario, Lesson):
        cal = scenario.calibration
        entry["calibration"] = {
            "formula": "P(correct | x) = a0 - slope * max(0, x - 0.5)",
            "a0": cal.a0,
            "slope": cal.slope,
            "excess_week_0": cal.excess_first,
            "excess_last_week": cal.excess_last,
            "last_week": cal.last_week,
        }
    entry["change_points"] = [
        _change_point(cp.index, cp.kind, cp.accuracy_from, cp.accuracy_to, cp.span) for cp in scenario.change_points(n)
    ]
    names = [segment.name for segment in segments]
    entry["first_below"] = {repr(float(t)): _first_below(stream, names, float(t)) for t in thresholds}
    entry["segments"] = [_segment(stream, scenario, s.name, s.start, s.stop) for s in segments]
    if stream.delayed:
        entry["labels"] = _labels(stream, scenario)
    return entry


def build_manifest(
    streams: Sequence[SyntheticStream],
    seed: int,
    specs: Sequence[ModelSpec],
    *,
    thresholds: Sequence[float] = (0.75,),
) -> dict[str, Any]:
    """The JSON-serialisable ground truth for ``streams``, generated from ``specs`` under ``seed``.

    ``streams`` and ``specs`` must describe the same models in the same order
    (as :func:`producer.stream.generate_all` returns them).  ``thresholds`` are
    the accuracy lines for ``first_below``.  ``decaywatch_version`` records
    the decaywatch that generated the run (with ``numpy``, what the same seed's
    bytes depend on).
    """
    if [s.model for s in streams] != [s.model for s in specs]:
        raise ValueError(
            f"streams {[s.model for s in streams]} do not match specs {[s.model for s in specs]} (same models, same order)"
        )
    if any(len(s) == 0 for s in streams):
        raise ValueError("every stream needs at least one event")
    models = {spec.model: _model_entry(stream, spec, thresholds) for stream, spec in zip(streams, specs, strict=True)}
    label_events = {"label_events": sum(m["labels"]["label_events"] for m in models.values() if "labels" in m)}
    return {
        "schema": SCHEMA,
        "decaywatch_version": package_version(),
        "seed": int(seed),
        "rng": "numpy PCG64 per model: SeedSequence(seed, spawn_key=(BLAKE2b-64 of the UTF-8 model id,))",
        "numpy": np.__version__,
        "event_time": {
            "start_ts": float(START_TS),
            "start_time": iso8601(START_TS),
            "spacing_seconds": SPACING_SECONDS,
            "events_per_week": EVENTS_PER_WEEK,
        },
        "thresholds": [float(t) for t in thresholds],
        "events": sum(m["events"] for m in models.values()),
        "labeled": sum(m["labeled"] for m in models.values()),
        **(label_events if any(s.delayed for s in streams) else {}),
        "models": models,
    }


def write_manifest(path: str | os.PathLike[str], manifest: dict[str, Any]) -> Path:
    """Write ``manifest`` as indented JSON, atomically (a reader never sees half a file); returns the path."""
    target = Path(path)
    data = orjson.dumps(manifest, option=orjson.OPT_INDENT_2 | orjson.OPT_APPEND_NEWLINE)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        Path(tmp).chmod(0o644)  # mkstemp's 0600 would hide the manifest from other users (e.g. a container)
        Path(tmp).replace(target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target
