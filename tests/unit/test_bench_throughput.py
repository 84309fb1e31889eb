"""The pure parts of the throughput benchmark (tests/benchmarks/bench_throughput.py), with no broker:
the events and their truth, the check of the monitor's counters, the aggregation over rounds and the tables.
"""

from __future__ import annotations

import argparse
import json

import pytest

from tests.benchmarks.bench_throughput import (
    CONFLUENT,
    MONITOR,
    TUNED,
    Measurement,
    RenderTiming,
    RowResult,
    counter_by_model,
    cpu_at,
    gauges_match,
    generate_events,
    is_idle,
    markdown_table,
    parse_monitor_events,
    render_rows,
    render_timings,
    single_value,
    summarize,
    truth_of,
    with_ratios,
)

MiB = 2**20


def test_events_are_seeded_labeled_json_of_about_160_bytes_keyed_by_model() -> None:
    records = generate_events(50, 2000)

    assert records == generate_events(50, 2000)
    assert records != generate_events(50, 2000, seed=1)
    assert len(records) == 2000
    sizes = [len(value) for _, value in records]
    assert min(sizes) >= 150 and max(sizes) <= 170
    for index, (key, value) in enumerate(records):
        event = json.loads(value)
        assert set(event) == {"model", "prediction", "label", "ts", "event_id", "model_version", "score"}
        assert key == event["model"].encode()
        assert event["prediction"] in (0, 1) and event["label"] in (0, 1)
        assert event["ts"] == pytest.approx(1704067200.0 + index * 0.01)
        assert 0.0 <= event["score"] <= 1.0
    assert {json.loads(value)["model"] for _, value in records} == {f"model-{m}" for m in range(50)}


def test_a_shorter_topic_holds_the_first_events_of_a_longer_one() -> None:
    assert generate_events(1000, 300) == generate_events(1000, 1200)[:300]


def test_event_generation_rejects_impossible_sizes() -> None:
    with pytest.raises(ValueError, match="models >= 1"):
        generate_events(0, 10)
    assert generate_events(3, 0) == []


def test_truth_counts_events_and_correct_predictions_per_model() -> None:
    values = [
        b'{"model": "a", "prediction": 1, "label": 1}',
        b'{"model": "a", "prediction": 0, "label": 1}',
        b'{"model": "b", "prediction": 0, "label": 0}',
        b'{"model": "b", "prediction": 1, "label": null}',
    ]
    assert truth_of(values) == {"a": (2, 1), "b": (2, 1)}


def test_truth_of_generated_events_adds_up_and_is_near_the_accuracy() -> None:
    records = generate_events(10, 20_000)
    truth = truth_of(value for _, value in records)

    assert sum(n for n, _ in truth.values()) == 20_000
    assert sum(c for _, c in truth.values()) / 20_000 == pytest.approx(0.85, abs=0.01)


def test_gauges_match_only_when_every_model_equals_the_truth() -> None:
    truth = {"a": (3, 2), "b": (1, 1)}
    assert gauges_match({"a": 3.0, "b": 1.0}, {"a": 2.0, "b": 1.0}, truth) is None
    assert "model a" in (gauges_match({"a": 2.0, "b": 1.0}, {"a": 2.0, "b": 1.0}, truth) or "")
    assert "model b" in (gauges_match({"a": 3.0, "b": 1.0}, {"a": 2.0, "b": 0.0}, truth) or "")
    missing = gauges_match({"a": 3.0}, {"a": 2.0}, truth) or ""
    assert "models differ" in missing and "'b'" in missing
    extra = gauges_match({"a": 3.0, "b": 1.0, "c": 1.0}, {"a": 2.0, "b": 1.0, "c": 0.0}, truth) or ""
    assert "models differ" in extra and "'c'" in extra


def test_counters_are_read_per_model_from_a_prometheus_page() -> None:
    page = (
        "# HELP decaywatch_events_total Valid prediction events.\n"
        "# TYPE decaywatch_events_total counter\n"
        'decaywatch_events_total{model="model-1"} 12.0\n'
        'decaywatch_events_total{model="model-2"} 3.0\n'
        "# HELP decaywatch_last_batch_timestamp_seconds Wall-clock time the last batch was committed.\n"
        "# TYPE decaywatch_last_batch_timestamp_seconds gauge\n"
        "decaywatch_last_batch_timestamp_seconds 1.7e+09\n"
    )
    assert counter_by_model(page, "decaywatch_events_total") == {"model-1": 12.0, "model-2": 3.0}
    assert single_value(page, "decaywatch_last_batch_timestamp_seconds") == 1.7e9
    assert single_value(page, "decaywatch_batches_total") is None


def test_monitor_event_caps_parse_and_refuse_garbage() -> None:
    assert parse_monitor_events("1000=60000") == {1000: 60000}
    with pytest.raises(argparse.ArgumentTypeError, match="MODELS=EVENTS"):
        parse_monitor_events("1000")


def test_cpu_is_interpolated_between_samples_and_idleness_needs_a_whole_quiet_window() -> None:
    samples = [(10.0, 1.0), (10.5, 1.4), (11.0, 1.4), (11.5, 1.41)]
    assert cpu_at(samples, 10.25) == pytest.approx(1.2)
    assert cpu_at(samples, 9.0) == 1.0 and cpu_at(samples, 12.0) == 1.41
    assert is_idle(samples, window=0.5)
    assert is_idle(samples, window=1.0)  # 0.01 s of CPU in the last second
    assert not is_idle(samples, window=1.5)  # 0.41 s in the last 1.5 s
    with pytest.raises(ValueError, match="no CPU samples"):
        cpu_at([], 1.0)


def test_medians_of_rounds_and_the_verdicts() -> None:
    rounds = [
        Measurement(10_000, 8_000, 1.0, 0.08, 50 * MiB),
        Measurement(10_000, 8_000, 2.0, 0.12, 70 * MiB),
        Measurement(10_000, 8_000, 4.0, 0.10, 60 * MiB),
    ]
    row = summarize("10 models", MONITOR, rounds, raw_check=False)
    assert (row.events, row.rate, row.peak_rss_bytes) == (10_000, 4000.0, 60 * MiB)
    assert row.cpu_us_per_event == pytest.approx(12.5)
    assert row.verdict == "yes (per-model events and correct)"

    wrong = summarize("10 models", TUNED, [rounds[0], Measurement(10_000, 8_000, 1.0, 0.1, 1, problem="read 9 of 10")], True)
    assert wrong.verdict.startswith("**no** in 1 of 2") and "read 9 of 10" in wrong.verdict

    failed = summarize("10 models", TUNED, ["the monitor exited with 1"], raw_check=True)
    assert failed.rate is None and failed.verdict == "error in 1 of 1 round(s): the monitor exited with 1"


def test_ratios_are_to_the_tuned_row_of_the_same_topic() -> None:
    rows = with_ratios(
        [
            RowResult("10 models", TUNED, 100, rate=200.0),
            RowResult("10 models", MONITOR, 100, rate=50.0),
            RowResult("1,000 models", TUNED, 100, rate=100.0),
            RowResult("1,000 models", MONITOR, 100, rate=10.0),
            RowResult("1,000 models", CONFLUENT, verdict="not installed"),
        ]
    )
    assert [r.ratio for r in rows] == [1.0, 0.25, 1.0, 0.1, None]


def test_the_table_is_markdown_with_one_line_per_row() -> None:
    rows = with_ratios(
        [
            RowResult("10 models", TUNED, 300_000, 123_456.7, 6.04, 48 * MiB, "yes (count = produced)"),
            RowResult("10 models", CONFLUENT, verdict="not installed"),
        ]
    )
    lines = render_rows(rows).splitlines()

    assert len(lines) == 4
    assert all(line.startswith("| ") and line.endswith(" |") and line.count("|") == 9 for line in (lines[0], *lines[2:]))
    assert set(lines[1]) <= {"|", "-", ":"} and lines[1].count(":") == 5  # five right-aligned numeric columns
    assert len({len(line) for line in lines}) == 1  # padded to aligned columns
    cells = [cell.strip() for cell in lines[2].strip("|").split("|")]
    assert cells == ["10 models", TUNED, "300,000", "123,457", "6.0", "48 MiB", "1.00x", "yes (count = produced)"]
    assert [cell.strip() for cell in lines[3].strip("|").split("|")][2:] == ["—"] * 5 + ["not installed"]


def test_the_render_table_compares_the_median_with_the_target() -> None:
    timings = [
        RenderTiming("1,000 models", MONITOR, 1000, 2 * MiB, (0.30, 0.26)),
        RenderTiming("1,000 models", MONITOR, 1000, 2 * MiB, (0.10,)),
        RenderTiming("10 models", MONITOR, 10, 40 * 1024, (0.004, 0.005)),
    ]
    lines = render_timings(timings).splitlines()

    assert len(lines) == 4
    first = [cell.strip() for cell in lines[2].strip("|").split("|")]
    assert first == ["1,000 models", MONITOR, "1,000", "2048 KiB", "260.0 ms", "300.0 ms", "no"]
    assert lines[3].rstrip(" |").endswith("yes")


def test_markdown_table_right_aligns_only_the_named_columns() -> None:
    table = markdown_table(["name", "value"], [["a", "1"], ["bbbbbb", "10,000"]], right={1})
    assert table.splitlines() == [
        "| name   |  value |",
        "|--------|-------:|",
        "| a      |      1 |",
        "| bbbbbb | 10,000 |",
    ]
