"""Many models in one batch are measured together (``FleetMeasure``): the results must equal each model alone.

The reference is one monitor per model, fed that model's events only, one
event at a time; the fleet is one monitor fed every model's events
interleaved, in batches of any size.  Alerts (every field), snapshots and
checkpoints must agree.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from decaywatch.monitor import state
from decaywatch.monitor.config import MetricRule, ModelPolicy, MonitorConfig
from decaywatch.monitor.engine import Monitor
from decaywatch.monitor.schema import validate
from decaywatch.monitor.tracker import ModelTracker

POLICIES = {
    "sequential": ModelPolicy(baseline=0.8, windows=(7, 40), min_samples=5, evidence=3.0, time_windows=("1h",)),
    "window": ModelPolicy(
        baseline=0.8, windows=(5, 30), min_samples=5, decision="window", floor=0.5, cooldown=3,
        rules=(MetricRule(metric="recall", baseline=0.8, threshold=0.2, min_samples=3),),
    ),
    "learned": ModelPolicy(windows=(6,), min_samples=3, learn_baseline_from=20, evidence=2.0, positive_label=None),
}  # fmt: skip


def plain(value: Any) -> Any:
    """NaN-safe comparison form."""
    if isinstance(value, float) and math.isnan(value):
        return "nan"
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


def alone(events: list[dict[str, Any]], model: str, policy: ModelPolicy) -> tuple[list[Any], ModelTracker]:
    """The reference: one tracker on its own (``RingSet.measure``, not the fleet path), one event at a time."""
    tracker = ModelTracker(model, policy)
    alerts: list[Any] = []
    for i, event in enumerate(events):
        batch, _ = validate([event], np.zeros(1), [i])
        alerts += [plain(t.to_event(0.0)) | {"index": t.source_index} for t in tracker.update(batch.rows(np.arange(1)))]
    return alerts, tracker


def run(events: list[dict[str, Any]], cuts: list[int], policy: ModelPolicy) -> tuple[list[Any], Monitor]:
    monitor = Monitor(MonitorConfig(policy))
    bounds = sorted({0, len(events), *(c for c in cuts if c <= len(events))})
    alerts: list[Any] = []
    for lo, hi in itertools.pairwise(bounds):
        batch, rejected = validate(events[lo:hi], np.zeros(hi - lo), range(lo, hi))
        assert not rejected
        alerts += [plain(t.to_event(0.0)) | {"index": t.source_index} for t in monitor.process(batch)]
    return alerts, monitor


def run_more(monitor: Monitor, events: list[dict[str, Any]]) -> list[Any]:
    alerts: list[Any] = []
    for lo in range(0, len(events), 7):
        batch, _ = validate(events[lo : lo + 7], np.zeros(len(events[lo : lo + 7])), range(lo, lo + len(events[lo : lo + 7])))
        alerts += [plain(t.to_event(0.0)) for t in monitor.process(batch)]
    return alerts


@settings(max_examples=60, deadline=None)
@given(
    policy=st.sampled_from(sorted(POLICIES)),
    rows=st.lists(
        st.tuples(st.integers(0, 5), st.booleans(), st.integers(0, 1), st.sampled_from([True, True, True, False])),
        max_size=400,
    ),
    cuts=st.lists(st.integers(0, 400), max_size=6),
)
def test_a_fleet_equals_each_model_alone(policy: str, rows: list[tuple[int, bool, int, bool]], cuts: list[int]) -> None:
    events = [
        {"model": f"m{model}", "prediction": label if right else 1 - label, "ts": 1e9 + 60.0 * i}
        | ({"label": label} if labeled else {})
        for i, (model, right, label, labeled) in enumerate(rows)
    ]
    fleet_alerts, fleet = run(events, cuts, POLICIES[policy])
    for model in sorted({str(e["model"]) for e in events}):
        mine = [i for i, e in enumerate(events) if e["model"] == model]
        alone_alerts, reference = alone([events[i] for i in mine], model, POLICIES[policy])
        expected = [a | {"index": mine[a["index"]]} for a in alone_alerts]
        assert [a for a in fleet_alerts if a["model"] == model] == expected
        tracker = fleet.tracked(model)
        assert tracker is not None
        assert plain(tracker.snapshot()) == plain(reference.snapshot())
        # the rings hold the same events in the same order (positions may differ): what they drop next agrees too,
        # also after a checkpoint round trip
        restored = state.load(state.dump(tracker), tracker.policy, model)
        assert plain(restored.snapshot()) == plain(reference.snapshot())
        tail = [{"model": model, "prediction": 1, "label": int(i % 3 == 0), "ts": 2e9 + i} for i in range(60)]
        fleet.adopt(restored)
        reference_more = []
        for i, event in enumerate(tail):
            batch, _ = validate([event], np.zeros(1), [i])
            reference_more += [plain(t.to_event(0.0)) for t in reference.update(batch.rows(np.arange(1)))]
        assert run_more(fleet, tail) == reference_more
