"""Precision, recall, F1 and Brier against brute force, and rules that watch them."""

from __future__ import annotations

import tomllib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from decaywatch.consumer.metrics import ServiceMetrics
from decaywatch.monitor.config import ConfigError, MetricRule, ModelPolicy, MonitorConfig
from decaywatch.monitor.engine import Monitor
from decaywatch.monitor.schema import validate


def events(rows: list[tuple[int, int | None, float | None]]) -> list[dict[str, object]]:
    out = []
    for p, label, score in rows:
        event: dict[str, object] = {"model": "m", "prediction": p, "label": label}
        if score is not None:
            event["score"] = score
        out.append(event)
    return out


@settings(max_examples=150, deadline=None)
@given(
    rows=st.lists(
        st.tuples(st.integers(0, 1), st.one_of(st.none(), st.integers(0, 1)), st.one_of(st.none(), st.floats(0, 1))),
        max_size=120,
    ),
    size=st.integers(1, 30),
)
def test_window_metrics_equal_brute_force(rows: list[tuple[int, int | None, float | None]], size: int) -> None:
    monitor = Monitor(MonitorConfig(ModelPolicy(baseline=0.85, windows=(size,), min_samples=1, time_windows=())))
    for start in range(0, len(rows), 17):
        part = events(rows[start : start + 17])
        batch, rejected = validate(part, np.zeros(len(part)))
        assert not rejected
        monitor.process(batch)
    labeled = [r for r in rows if r[1] is not None][-size:]
    if not labeled:
        return
    metrics = monitor.snapshot()["m"].binary_metrics
    assert metrics is not None
    got = metrics[str(size)]
    tp = sum(1 for p, y, _ in labeled if p == 1 and y == 1)
    predicted = sum(1 for p, _, _ in labeled if p == 1)
    actual = sum(1 for _, y, _ in labeled if y == 1)
    scored = [(s - y) ** 2 for _, y, s in labeled if s is not None and y is not None]
    assert got["precision"] == (pytest.approx(tp / predicted) if predicted else None)
    assert got["recall"] == (pytest.approx(tp / actual) if actual else None)
    assert got["f1"] == (pytest.approx(2 * tp / (predicted + actual)) if predicted + actual else None)
    assert got["brier"] == (pytest.approx(sum(scored) / len(scored), abs=1e-6) if scored else None)


def fraud_stream(rng: np.random.Generator, n: int, recall: float) -> list[dict[str, object]]:
    """2% fraud; the model flags a fraud with probability ``recall`` and never flags a legitimate one."""
    actual = rng.random(n) < 0.02
    flagged = actual & (rng.random(n) < recall)
    return [{"model": "fraud", "prediction": int(f), "label": int(a)} for f, a in zip(flagged, actual, strict=True)]


def test_recall_rule_catches_a_fraud_model_whose_accuracy_barely_moves() -> None:
    rule = MetricRule(metric="recall", baseline=0.9, threshold=0.1, min_samples=50)
    monitor = Monitor(MonitorConfig(ModelPolicy(baseline=0.99, threshold=0.1, rules=(rule,))))
    rng = np.random.default_rng(11)
    stream = fraud_stream(rng, 100_000, 0.9) + fraud_stream(rng, 100_000, 0.5)
    transitions = []
    for start in range(0, len(stream), 5000):
        part = stream[start : start + 5000]
        batch, _ = validate(part, np.zeros(len(part)), range(start, start + len(part)))
        transitions.extend(monitor.process(batch))
    assert [(t.rule, t.status, t.metric) for t in transitions] == [("recall_degradation", "firing", "recall")]
    [alert] = transitions
    assert alert.source_index > 100_000 and alert.value < 0.8 and alert.accuracy is None  # a recall, not an accuracy
    snapshot = monitor.snapshot()["fraud"]
    accuracy = snapshot.window(10000).accuracy
    assert accuracy is not None and accuracy > 0.98  # accuracy says all is well
    metrics = ServiceMetrics()
    metrics.models.publish(monitor.snapshot(), {}, {})
    recall = metrics.registry.get_sample_value("decaywatch_recall_ratio", {"model": "fraud", "window": "10000"})
    assert recall is not None and recall < 0.7


def test_brier_rule_fires_on_a_rise() -> None:
    rule = MetricRule(metric="brier", baseline=0.1, threshold=0.05, min_samples=100)
    monitor = Monitor(MonitorConfig(ModelPolicy(baseline=0.85, windows=(500,), min_samples=100, rules=(rule,))))
    good = [{"model": "m", "prediction": 1, "label": 1, "score": 0.8}] * 600  # squared error 0.04
    bad = [{"model": "m", "prediction": 1, "label": 1, "score": 0.5}] * 600  # 0.25
    batch, _ = validate(good + bad, np.zeros(1200))
    [alert] = [t for t in monitor.process(batch) if t.rule == "brier_degradation"]
    assert alert.status == "firing" and alert.drop > 0.05 and alert.decision == "window"


def test_rules_from_toml() -> None:
    doc = tomllib.loads(
        """
[models.fraud]
baseline = 0.99
[[models.fraud.rules]]
metric = "recall"
baseline = 0.9
threshold = 0.1
"""
    )
    [rule] = MonitorConfig.from_mapping(doc).policy_for("fraud").rules
    assert rule == MetricRule("recall", 0.9, 0.1)
    with pytest.raises(ConfigError, match="only"):
        MetricRule("f1", 0.8, 0.1, decision="sequential")
    with pytest.raises(ConfigError, match="metric must be one of"):
        MonitorConfig.from_mapping({"defaults": {"rules": [{"metric": "auc", "baseline": 0.9, "threshold": 0.1}]}})


def test_alert_events_name_what_they_measure() -> None:
    """``accuracy`` holds an accuracy or is absent; a metric rule's value is in ``value`` beside ``metric``."""
    rule = MetricRule(metric="precision", baseline=0.9, threshold=0.1, decision="window", min_samples=20)
    monitor = Monitor(MonitorConfig(ModelPolicy(baseline=0.9, windows=(50,), min_samples=20, decision="window", rules=(rule,))))
    # every prediction positive, half of them wrong: accuracy and precision both 0.5
    events = [{"model": "m", "prediction": 1, "label": i % 2, "ts": float(i)} for i in range(60)]
    batch, _ = validate(events, np.zeros(60))
    by_rule = {t.rule: t.to_event(0.0) for t in monitor.process(batch)}
    accuracy, precision = by_rule["degradation"], by_rule["precision_degradation"]
    assert accuracy["metric"] == "accuracy" and accuracy["accuracy"] == accuracy["value"] == 0.5
    assert accuracy["baseline_accuracy"] == accuracy["baseline"] == 0.9
    assert precision["metric"] == "precision" and precision["value"] == 0.5 and precision["baseline"] == 0.9
    assert "accuracy" not in precision and "baseline_accuracy" not in precision
    assert precision["window_accuracy"] == 0.5  # context: always the judged window's accuracy


@pytest.mark.parametrize("decision", ["window", "sequential"])
def test_a_rule_on_accuracy_with_its_own_baseline(decision: str) -> None:
    rule = MetricRule(metric="accuracy", baseline=0.95, threshold=0.1, decision=decision, min_samples=50)
    monitor = Monitor(MonitorConfig(ModelPolicy(baseline=0.8, threshold=0.2, windows=(200,), min_samples=50, rules=(rule,))))
    rng = np.random.default_rng(5)
    right = np.concatenate([rng.random(2000) < 0.95, rng.random(2000) < 0.78])  # under 0.95 - 0.1, above 0.8 - 0.2
    events = [{"model": "m", "prediction": 1, "label": int(ok), "ts": float(i)} for i, ok in enumerate(right)]
    batch, _ = validate(events, np.zeros(len(events)))
    transitions = monitor.process(batch)
    assert [(t.rule, t.status, t.metric) for t in transitions] == [("accuracy_degradation", "firing", "accuracy")]
    assert transitions[0].source_index >= 2000 and transitions[0].accuracy == transitions[0].value < 0.85
