"""The whole loop on the real broker: producer -> Kafka -> monitor -> metrics, alerts, dead letters.

Truth comes from the producer, not from the monitor: the streams are generated
here with the producer's API, so the exact outcome of every event is known.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from kafka import KafkaConsumer

from decaywatch.consumer.runtime import MonitorRuntime, MonitorSettings
from decaywatch.monitor.alert import DEGRADED_MESSAGE
from decaywatch.monitor.config import ModelPolicy, MonitorConfig
from decaywatch.producer.encode import encode_records
from decaywatch.producer.manifest import build_manifest
from decaywatch.producer.scenario import parse_models
from decaywatch.producer.stream import SyntheticStream, generate_all, interleave
from tests.helpers import TopicFactory, produce, scrape, unique_name, wait_until

LESSON = ModelPolicy(baseline=0.85, baseline_date="2024-01-01", threshold=0.1, windows=(1000, 10000))


def read_topic(bootstrap: str, topic: str, expected: int, timeout: float = 30.0) -> list[Any]:
    """All records of a topic (waits until at least ``expected`` arrived, or the deadline)."""
    consumer = KafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", group_id=None)
    records: list[Any] = []  # kafka-python's ConsumerRecords
    try:

        def enough() -> bool:
            for batch in consumer.poll(timeout_ms=200).values():
                records.extend(batch)
            return len(records) >= expected

        wait_until(enough, timeout=timeout, message=f"fewer than {expected} records on {topic}")
        for batch in consumer.poll(timeout_ms=500).values():  # anything beyond the expected count
            records.extend(batch)
    finally:
        consumer.close()
    return records


def local_settings(bootstrap: str, topic: str, alerts_topic: str, dlq: str, group: str, **extra: Any) -> MonitorSettings:
    """The service on these topics, in a fresh group, with its HTTP side on a free loopback port."""
    return MonitorSettings(
        kafka={"bootstrap_servers": [bootstrap]},
        topic=topic,
        alerts_topic=alerts_topic,
        dead_letter_topic=dlq,
        group=unique_name(group),
        metrics_addr="127.0.0.1",
        metrics_port=0,
        **extra,
    )


def run_until_consumed(runtime: MonitorRuntime, total: int, timeout: float = 120.0) -> None:
    service = runtime.service

    def consumed() -> bool:
        service.step(timeout_s=0.2)
        return service.totals.messages >= total

    wait_until(consumed, timeout=timeout, interval=0.0, message=f"monitor did not consume {total} messages")
    service.step(timeout_s=0.2)  # an idle poll: /metrics gets the last snapshot (exports are throttled while input flows)


def last_window_accuracy(stream: SyntheticStream, size: int) -> float:
    correct = stream.correct[stream.labeled]
    return float(np.mean(correct[-size:]))


def test_lesson_scenario_through_kafka(kafka_bootstrap: str, topic_factory: TopicFactory, kafka_client: str) -> None:
    topic, alerts_topic, dlq = topic_factory(partitions=2), topic_factory(), topic_factory()
    specs = parse_models("churn-model=lesson,fraud-model=stable")
    streams = generate_all(specs, seed=7, count=parse_models("x=lesson")[0].scenario.default_count)
    manifest = build_manifest(streams, 7, specs)
    total = produce(kafka_bootstrap, topic, encode_records(streams, interleave(streams))).total
    assert total == sum(len(s) for s in streams)

    settings = local_settings(
        kafka_bootstrap, topic, alerts_topic, dlq, "lesson", config=MonitorConfig(LESSON), kafka_client=kafka_client
    )
    with MonitorRuntime(settings) as runtime:
        run_until_consumed(runtime, total)
        metrics = scrape(runtime.http.url())

    by_model = {s.model: s for s in streams}
    for model, stream in by_model.items():
        labels = (("model", model),)
        # nothing lost, nothing counted twice: counters equal the producer's truth exactly
        assert metrics[("decaywatch_events_total", labels)] == len(stream)
        assert metrics[("decaywatch_labeled_events_total", labels)] == int(stream.labeled.sum())
        assert metrics[("decaywatch_correct_predictions_total", labels)] == int(stream.correct[stream.labeled].sum())
        for size in (1000, 10000):
            key = (("model", model), ("window", str(size)))
            assert metrics[("decaywatch_accuracy_ratio", key)] == pytest.approx(last_window_accuracy(stream, size), abs=1e-12)
            assert metrics[("decaywatch_window_labeled_events", key)] == size
        assert metrics[("decaywatch_baseline_accuracy_ratio", labels)] == 0.85
        assert metrics[("decaywatch_degradation_threshold_ratio", labels)] == 0.1

    # and within sampling error of the scenario's true accuracy in the final weeks
    churn_final = manifest["models"]["churn-model"]["segments"][-1]["expected_accuracy"]
    sigma = (churn_final * (1 - churn_final) / 10000) ** 0.5
    churn_10k = metrics[("decaywatch_accuracy_ratio", (("model", "churn-model"), ("window", "10000")))]
    assert abs(churn_10k - churn_final) < 4 * sigma + 0.005  # + the window spans ~2 weeks of a still-sloping curve
    assert metrics[("decaywatch_degraded", (("model", "churn-model"),))] == 1
    assert metrics[("decaywatch_degraded", (("model", "fraud-model"),))] == 0

    alerts = [orjson.loads(r.value) for r in read_topic(kafka_bootstrap, alerts_topic, expected=1)]
    assert [(a["model"], a["status"], a["message"]) for a in alerts] == [("churn-model", "firing", DEGRADED_MESSAGE)]
    alert = alerts[0]
    assert alert["rule"] == "degradation" and alert["baseline_accuracy"] == 0.85 and alert["baseline_date"] == "2024-01-01"
    assert alert["drop"] > 0.1 and alert["upper_bound"] < 0.75 and alert["decision"] == "sequential"
    assert alert["window"] == 1000 and alert["samples"] >= 100
    crossing = manifest["models"]["churn-model"]["first_below"]["0.75"]["ts"]
    week = 7 * 86400
    fired = alert["event_time"]
    from datetime import datetime

    fired_ts = datetime.fromisoformat(fired).timestamp()
    # the benchmark (tests/benchmarks) holds the timing targets over 30 seeds; one seed must land near the crossing
    assert crossing - 2 * week <= fired_ts <= crossing + 2 * week, (fired, manifest["models"]["churn-model"]["first_below"])


def test_malformed_messages_reach_the_dead_letter_topic(
    kafka_bootstrap: str, topic_factory: TopicFactory, kafka_client: str
) -> None:
    topic, alerts_topic, dlq = topic_factory(), topic_factory(), topic_factory()
    good = [orjson.dumps({"model": "m", "prediction": 1, "label": i % 2}) for i in range(300)]
    bad = [b"{broken", b'{"model": "m", "pred": 1}', b'{"model": "m", "prediction": 1, "label": "1"}', b"[]"]
    values = list(good)
    for i, value in enumerate(bad):
        values.insert(50 + 60 * i, value)
    total = produce(kafka_bootstrap, topic, ((b"m", v) for v in values)).total
    settings = local_settings(kafka_bootstrap, topic, alerts_topic, dlq, "dlq", batch_size=97, kafka_client=kafka_client)
    with MonitorRuntime(settings) as runtime:
        run_until_consumed(runtime, total)
        metrics = scrape(runtime.http.url())
    assert metrics[("decaywatch_events_total", (("model", "m"),))] == 300
    assert metrics[("decaywatch_labeled_events_total", (("model", "m"),))] == 300
    assert metrics[("decaywatch_correct_predictions_total", (("model", "m"),))] == 150
    reasons = {"malformed_json": 1, "missing_prediction": 1, "invalid_label": 1, "not_an_object": 1, "invalid_score": 0}
    for reason, count in reasons.items():
        assert metrics[("decaywatch_invalid_events_total", (("reason", reason),))] == count

    letters = read_topic(kafka_bootstrap, dlq, expected=len(bad))
    assert len(letters) == len(bad)
    assert sorted(r.value for r in letters) == sorted(bad)
    for record in letters:
        headers = dict(record.headers)
        assert headers["decaywatch.error.reason"].decode() in reasons
        assert headers["decaywatch.error.detail"]
        assert headers["decaywatch.source.topic"].decode() == topic
        offset = int(headers["decaywatch.source.offset"])
        assert values[offset] == record.value


def monitor_process(
    bootstrap: str, topic: str, group: str, tmp: Path, kafka_client: str = "kafka-python"
) -> tuple[subprocess.Popen[str], str]:
    command = [
        sys.executable, "-m", "decaywatch", "monitor",
        "--bootstrap-servers", bootstrap, "--topic", topic, "--group", group,
        "--alerts-topic", f"{topic}-alerts", "--dead-letter-topic", f"{topic}-dlq",
        "--metrics-port", "0", "--metrics-addr", "127.0.0.1", "--batch-size", "500",
        "--baseline", "0.85", "--kafka-client", kafka_client,
    ]  # fmt: skip
    with open(tmp / f"monitor-{group}-{len(list(tmp.iterdir()))}.log", "w+") as stderr:  # the child keeps its own copy
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=stderr, text=True, env={**os.environ})
    assert process.stdout is not None
    line = process.stdout.readline()
    match = re.search(r"metrics at (http://\S+)", line)
    assert match, f"unexpected first line {line!r}"
    return process, match.group(1)


def stop_and_count(process: subprocess.Popen[str], log_dir: Path) -> int:
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) == 0
    logs = "".join(p.read_text() for p in sorted(log_dir.iterdir()))
    counts = re.findall(r"stopped: consumed (\d+) messages \((\d+) valid", logs)
    assert counts, logs
    return int(counts[-1][1])


def test_clean_restart_resumes_from_committed_offsets(
    kafka_bootstrap: str, topic_factory: TopicFactory, tmp_path: Path, kafka_client: str
) -> None:
    topic = topic_factory(partitions=2)
    specs = parse_models("a=stable,b=sudden")
    streams = generate_all(specs, seed=3, count=30000)
    total = produce(kafka_bootstrap, topic, encode_records(streams, interleave(streams))).total
    group = unique_name("restart")

    def events_counted(url: str) -> float:
        return sum(v for (name, _), v in scrape(url).items() if name == "decaywatch_events_total")

    first, url = monitor_process(kafka_bootstrap, topic, group, tmp_path, kafka_client)
    wait_until(lambda: events_counted(url) >= 5000, timeout=60, message="first monitor made no progress")
    before = stop_and_count(first, tmp_path)
    assert 5000 <= before < total, "the stop was not mid-stream"

    second, url = monitor_process(kafka_bootstrap, topic, group, tmp_path, kafka_client)
    # the restarted monitor restores each model's state from the changelog, so what it exports covers
    # the whole stream, while it processes only what the first did not commit: no loss, no double count
    wait_until(lambda: events_counted(url) == total, timeout=60, message="second monitor did not catch up")
    after = stop_and_count(second, tmp_path)
    assert before + after == total
