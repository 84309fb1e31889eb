"""The pure parts of the latency benchmark (tests/benchmarks/bench_latency.py), with no broker:
reading the exporter's page, pacing, each event's ordinal, the bounds on its latency, the quantiles and the table.
"""

from __future__ import annotations

import math
import time

import numpy as np
import pytest

from decaywatch.consumer.metrics import ServiceMetrics, exposition
from decaywatch.monitor.config import ModelPolicy, MonitorConfig
from decaywatch.monitor.engine import Monitor
from decaywatch.monitor.schema import validate
from tests.benchmarks.bench_latency import (
    LatencyResult,
    Quantiles,
    Scrapes,
    change_gaps,
    due,
    events_by_model,
    ordinals,
    render,
    visibility,
)


def test_events_by_model_reads_the_exporters_own_page() -> None:
    monitor = Monitor(MonitorConfig(ModelPolicy(baseline=0.85)))
    names = ["a", 'quote"d', "back\\slash", "model-17"]
    events = [{"model": name, "prediction": 1, "label": i % 2} for i in range(30) for name in names[: 1 + i % 4]]
    batch, rejected = validate(events, np.zeros(len(events)))
    assert not rejected
    monitor.process(batch)
    snapshot = monitor.snapshot()
    metrics = ServiceMetrics()
    metrics.models.publish(snapshot, {}, dict.fromkeys(snapshot, time.time()))

    page, _content_type = exposition(metrics.registry, None)

    assert events_by_model(page.decode()) == {name: snapshot[name].events for name in names}


def test_events_by_model_ignores_other_families() -> None:
    page = 'decaywatch_labeled_events_total{model="a"} 9.0\ndecaywatch_events_total{model="a"} 1e+06\n'

    assert events_by_model(page) == {"a": 1_000_000}


def test_pacing_releases_every_event_on_time_and_never_more_than_the_total() -> None:
    counts = [due(10.0, 10.0 + t / 1000, 500, 1000) for t in range(0, 3000, 7)]

    assert counts == sorted(counts)
    assert counts[0] == 1 and counts[-1] == 1000
    assert due(10.0, 11.0, 500, 1000) == 501  # events 0..500 are due at 10 s + i / 500 <= 11 s


def test_ordinals_count_each_models_events_in_order() -> None:
    rng = np.random.default_rng(3)
    model_index = rng.integers(0, 7, 500)

    got = ordinals(model_index, 7)

    seen: dict[int, int] = {}
    expected = []
    for m in model_index.tolist():
        seen[m] = seen.get(m, 0) + 1
        expected.append(seen[m])
    assert got.tolist() == expected


@pytest.mark.parametrize("seed", range(5))
def test_visibility_brackets_the_true_latency_within_one_scrape(seed: int) -> None:
    """Events appear in /metrics at known instants; scrapes every 10 ms (2 ms each) must bracket each instant."""
    rng = np.random.default_rng(seed)
    models, n = 3, 400
    model_index = rng.integers(0, models, n)
    produced = np.sort(rng.uniform(0.0, 2.0, n))
    appears = produced + rng.uniform(0.005, 0.2, n)
    # a model's events appear in order: an event is visible once it and every earlier one of its model are
    for m in range(models):
        where = np.flatnonzero(model_index == m)
        appears[where] = np.maximum.accumulate(appears[where])
    t0 = np.arange(0.0, 3.0, 0.01)
    t1 = t0 + 0.002
    read = t0 + rng.uniform(0.0, 0.002, t0.shape[0])  # each scrape reads the snapshot somewhere in [t0, t1]
    counts = np.array([[int(((model_index == m) & (appears <= r)).sum()) for m in range(models)] for r in read])

    bounds = visibility(produced, model_index.astype(np.int64), Scrapes(t0, t1, counts))

    true = appears - produced
    assert np.all(np.isfinite(bounds.seen_by))
    assert np.all(bounds.not_yet <= true + 1e-12)
    assert np.all(true <= bounds.seen_by + 1e-12)
    assert np.all(bounds.seen_by - bounds.not_yet <= 0.01 + 0.002 + 1e-9)


def test_events_never_scraped_are_infinite() -> None:
    scrapes = Scrapes(np.array([0.0, 1.0]), np.array([0.1, 1.1]), np.array([[0], [1]]))

    bounds = visibility(np.array([0.5, 0.6]), np.array([0, 0]), scrapes)

    assert bounds.seen_by[0] == pytest.approx(0.6)
    assert bounds.not_yet[0] == 0.0  # the scrape before it was sent before the event was produced
    assert math.isinf(bounds.seen_by[1])


def test_scrapes_from_records_put_models_in_the_given_order_and_drop_others() -> None:
    scrapes = Scrapes.from_records([(1.0, 1.5, {"b": 2, "zz": 9}), (2.0, 2.5, {"a": 1, "b": 3})], ["a", "b"])

    assert scrapes.counts.tolist() == [[0, 2], [1, 3]]
    assert scrapes.t0.tolist() == [1.0, 2.0] and scrapes.t1.tolist() == [1.5, 2.5]


def test_quantiles_interpolate_linearly_and_are_nan_without_values() -> None:
    q = Quantiles.of([0.3, 0.1, 0.2])

    assert (q.p50, q.max) == (0.2, 0.3)
    assert q.p99 == pytest.approx(0.298)
    assert all(math.isnan(x) for x in (Quantiles.of([]).p50, Quantiles.of([]).max))
    assert Quantiles.of([]).ms() == ["—"] * 4


def test_change_gaps_are_the_intervals_between_new_pages() -> None:
    counts = np.array([[0, 0], [1, 0], [1, 0], [1, 0], [1, 2], [1, 2], [3, 2]])
    t0 = np.arange(7, dtype=np.float64) * 0.05
    scrapes = Scrapes(t0, t0 + 0.001, counts)

    assert change_gaps(scrapes).tolist() == pytest.approx([0.15, 0.1])


def test_the_table_says_whether_p99_meets_the_target() -> None:
    fast, slow = Quantiles(0.04, 0.08, 0.15, 0.3), Quantiles(0.2, 0.5, 0.9, 1.2)
    rows = [
        LatencyResult(10, 10_000.0, 300_000, fast, fast, 0, 3_000, 0.002, fast, 400.0, 2.0, 0.5),
        LatencyResult(1000, 9_990.0, 299_000, slow, slow, 12, 200, 0.09, slow, 150.0, 30.0, 0.9),
    ]

    table = render(rows)

    lines = table.splitlines()
    assert "| 150 ms |" in lines[2] and "| yes " in lines[2]
    assert "| 900 ms |" in lines[3] and "| no " in lines[3] and "|     12 |" in lines[3]
