"""Scale-out on the real broker: model state moves with its partition.

Three ``decaywatch monitor`` processes share one consumer group over six
partitions and twenty models.  One is killed with SIGKILL, then a new one is
added.  After each move, every model is exported by exactly one process, and
its gauges and counters equal a single uninterrupted monitor's over the same
events (the reference: the core run in-process over each model's events in
order).  Alert events are at least once: deduplicated by ``alert_id``, they
equal the reference's transitions.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from kafka import KafkaConsumer, TopicPartition

from decaywatch.monitor.config import ModelPolicy, MonitorConfig
from decaywatch.monitor.engine import Monitor
from decaywatch.monitor.schema import validate
from tests.helpers import SampleKey, TopicFactory, produce, samples, scrape, unique_name, wait_until

MODELS = [f"model-{i:02d}" for i in range(20)]
POLICY = ModelPolicy(baseline=0.85, windows=(500, 2000))
COMPARED = (
    "decaywatch_events_total",
    "decaywatch_labeled_events_total",
    "decaywatch_correct_predictions_total",
    "decaywatch_accuracy_ratio",
    "decaywatch_window_labeled_events",
    "decaywatch_degraded",
    "decaywatch_rule_evidence",
)


def events_for(phase: int, per_model: int) -> dict[str, list[bytes]]:
    """Each model's next events; half the models fall to 0.6 accuracy in phase 1, and recover in phase 2."""
    rng = np.random.default_rng(100 + phase)
    out = {}
    for i, model in enumerate(MODELS):
        accuracy = 0.6 if i % 2 and phase == 1 else 0.88
        ok = rng.random(per_model) < accuracy
        start = phase * per_model
        out[model] = [
            orjson.dumps({"model": model, "prediction": 1, "label": int(o), "ts": 1704067200.0 + 60.0 * (start + j)})
            for j, o in enumerate(ok.tolist())
        ]
    return out


def round_robin(batch: dict[str, list[bytes]]) -> list[tuple[bytes | None, bytes]]:
    """The models' events as records keyed by model, taking one event of each model in turn."""
    return [
        (model.encode(), value)
        for j in range(max(map(len, batch.values())))
        for model, values in batch.items()
        if j < len(values)
        for value in [values[j]]
    ]


class Reference:
    """A single uninterrupted monitor over the same events (each model's events in its own order)."""

    def __init__(self) -> None:
        self.monitor = Monitor(MonitorConfig(POLICY))
        self.transitions: set[tuple[str, str]] = set()

    def feed(self, batch: dict[str, list[bytes]]) -> None:
        for values in batch.values():
            objects = [orjson.loads(v) for v in values]
            validated, rejected = validate(objects, np.zeros(len(objects)))
            assert not rejected
            self.transitions |= {(t.alert_id, t.status) for t in self.monitor.process(validated)}

    def samples(self) -> dict[SampleKey, float]:
        return compared(samples(self.metrics()))

    def metrics(self) -> Any:
        """What a monitor holding every model would export (the registry's families)."""
        from decaywatch.consumer.metrics import ServiceMetrics

        metrics = ServiceMetrics()
        metrics.models.publish(self.monitor.snapshot(), {}, {})
        return metrics.registry.collect()


def compared(found: dict[SampleKey, float]) -> dict[SampleKey, float]:
    """The per-model samples of the ``COMPARED`` metrics."""
    return {(name, labels): value for (name, labels), value in found.items() if name in COMPARED and "model" in dict(labels)}


class MonitorProcess:
    """``decaywatch monitor`` as a child process on a free port; ``extra`` flags go after (and override) these."""

    def __init__(self, bootstrap: str, topic: str, group: str, log: Path, kafka_client: str, extra: Sequence[str] = ()) -> None:
        command = [
            sys.executable, "-m", "decaywatch", "monitor", "--bootstrap-servers", bootstrap, "--topic", topic,
            "--group", group, "--alerts-topic", f"{topic}-alerts", "--dead-letter-topic", f"{topic}-dlq",
            "--metrics-port", "0", "--metrics-addr", "127.0.0.1", "--batch-size", "500", "--session-timeout-ms", "6000",
            "--baseline", "0.85", "--windows", "500,2000", "--kafka-client", kafka_client, *extra,
        ]  # fmt: skip
        self.log = log
        with open(log, "w") as stderr:  # the child keeps its own copy of the descriptor
            self.process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=stderr, text=True, env={**os.environ})
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        match = re.search(r"metrics at (http://\S+)", line)
        assert match, f"no URL from the monitor: {line!r}\n{log.read_text()}"
        self.url = match.group(1)

    def samples(self) -> dict[SampleKey, float]:
        return compared(scrape(self.url))

    def scrape(self) -> dict[SampleKey, float]:
        return scrape(self.url)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process.poll() is None:
            self.process.send_signal(sig)
            self.process.wait(timeout=60)


def exported(monitors: list[MonitorProcess]) -> tuple[dict[str, int], dict[Any, float]]:
    """How many processes export each model, and the union of their samples."""
    owners: dict[str, int] = defaultdict(int)
    union: dict[Any, float] = {}
    for monitor in monitors:
        samples = monitor.samples()
        for model in {dict(labels)["model"] for _, labels in samples}:
            owners[model] += 1
        union.update(samples)
    return owners, union


def settled(monitors: list[MonitorProcess], reference: Reference) -> bool:
    owners, union = exported(monitors)
    return all(owners.get(m) == 1 for m in MODELS) and union == reference.samples()


def describe(monitors: list[MonitorProcess], reference: Reference) -> str:
    owners, union = exported(monitors)
    expected = reference.samples()
    wrong = sorted(k for k in expected if union.get(k) != expected[k])[:5]
    return f"owners {dict(owners)}; first differences {[(k, union.get(k), expected[k]) for k in wrong]}"


@pytest.mark.timeout(600)
def test_state_moves_with_partitions_through_a_kill_and_a_new_member(
    kafka_bootstrap: str, topic_factory: TopicFactory, tmp_path: Path, kafka_client: str
) -> None:
    topic = topic_factory(partitions=6)
    group = unique_name("scale")
    reference = Reference()
    monitors = [MonitorProcess(kafka_bootstrap, topic, group, tmp_path / f"monitor-{i}.log", kafka_client) for i in range(3)]
    try:
        for phase, per_model in ((0, 1500), (1, 1000), (2, 1000)):
            if phase == 1:
                monitors[0].stop(signal.SIGKILL)  # a crash: no clean shutdown, no final commit
                monitors = monitors[1:]
            if phase == 2:
                monitors.append(MonitorProcess(kafka_bootstrap, topic, group, tmp_path / "monitor-new.log", kafka_client))
            batch = events_for(phase, per_model)
            produce(kafka_bootstrap, topic, round_robin(batch))
            reference.feed(batch)
            wait_until(
                lambda: settled(monitors, reference),  # noqa: B023 - called at once, within this iteration
                timeout=120,
                interval=1.0,
                message=f"phase {phase}: every model exported once, equal to the reference",
            )
    except AssertionError as error:
        raise AssertionError(f"{error}: {describe(monitors, reference)}") from None
    finally:
        for monitor in monitors:
            monitor.stop()

    consumer = KafkaConsumer(f"{topic}-alerts", bootstrap_servers=kafka_bootstrap, auto_offset_reset="earliest", group_id=None)
    seen: set[tuple[str, str]] = set()
    try:

        def all_alerts() -> bool:
            for records in consumer.poll(timeout_ms=500).values():
                seen.update((orjson.loads(r.value)["alert_id"], orjson.loads(r.value)["status"]) for r in records)
            return seen >= reference.transitions

        wait_until(all_alerts, timeout=30, message="every reference alert on the alerts topic")
    finally:
        consumer.close()
    assert reference.transitions and seen == reference.transitions


# -- label events on their own topic: pending predictions move with their partition --------------------------

LABEL_COMPARED = (*COMPARED, "decaywatch_pending_predictions", "decaywatch_labels_joined_total")


def predictions_for(phase: int, per_model: int) -> dict[str, list[bytes]]:
    """Each model's next predictions, with an ``event_id`` and no label."""
    return {
        model: [
            orjson.dumps(
                {"model": model, "prediction": 1, "event_id": f"{phase}-{j}", "ts": 1704067200.0 + 60.0 * (phase * per_model + j)}
            )
            for j in range(per_model)
        ]
        for model in MODELS
    }


def labels_for(phase: int, per_model: int) -> dict[str, list[bytes]]:
    """Labels for 80% of this phase's predictions, then for the rest of the last phase's (they waited through a move).

    Half the models fall to 0.6 accuracy in phase 1 and recover in phase 2.
    """
    rng = np.random.default_rng(200 + phase)
    out = {}
    for i, model in enumerate(MODELS):
        accuracy = 0.6 if i % 2 and phase == 1 else 0.88
        ids = [(phase, j) for j in range(per_model) if j % 5] + [(phase - 1, j) for j in range(per_model) if phase and not j % 5]
        ok = rng.random(len(ids)) < accuracy
        out[model] = [
            orjson.dumps(
                {"model": model, "label": int(o), "event_id": f"{p}-{j}", "ts": 1704067200.0 + 60.0 * (phase * per_model + 2 * k)}
            )
            for k, ((p, j), o) in enumerate(zip(ids, ok.tolist(), strict=True))
        ]
    return out


def behind(bootstrap: str, group: str, topics: Sequence[str]) -> dict[tuple[str, int], tuple[int | None, int]]:
    """The partitions of these topics the group has not committed to their end: (committed, end)."""
    probe = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)  # reads; never joins
    try:
        partitions = [TopicPartition(t, p) for t in topics for p in probe.partitions_for_topic(t) or ()]
        ends = probe.end_offsets(partitions)
        committed = {tp: probe.committed(tp) for tp in partitions}
    finally:
        probe.close(autocommit=False)
    return {(tp.topic[-4:], tp.partition): (committed[tp], ends[tp]) for tp in partitions if (committed[tp] or 0) != ends[tp]}


@pytest.mark.timeout(600)
def test_pending_predictions_move_with_their_partition_through_a_kill_and_a_new_member(
    kafka_bootstrap: str, topic_factory: TopicFactory, tmp_path: Path, kafka_client: str
) -> None:
    """Three monitors, predictions and labels on two topics: each model's gauges equal a single monitor's after each move.

    Labels are produced once the predictions they follow are handled and
    committed, so the join order (which decides the count windows) is the
    labels topic's, as in the reference.
    """
    topic, labels_topic = topic_factory(partitions=6), topic_factory(partitions=6)
    group = unique_name("scale-labels")
    extra = ["--labels-topic", labels_topic, "--checkpoint-interval", "1"]
    reference = Reference()

    def compare(found: dict[SampleKey, float]) -> dict[SampleKey, float]:
        return {k: v for k, v in found.items() if k[0] in LABEL_COMPARED and "model" in dict(k[1])}

    def settled() -> bool:
        union: dict[Any, float] = {}
        owners: dict[str, int] = defaultdict(int)
        for monitor in monitors:
            found = compare(monitor.scrape())
            for model in {dict(labels)["model"] for _, labels in found}:
                owners[model] += 1
            union.update(found)
        expected = compare(samples(reference.metrics()))
        return all(owners.get(m) == 1 for m in MODELS) and union == expected

    monitors = [MonitorProcess(kafka_bootstrap, topic, group, tmp_path / f"m{i}.log", kafka_client, extra) for i in range(3)]
    try:
        for phase, per_model in ((0, 600), (1, 500), (2, 500)):
            if phase == 1:
                monitors[0].stop(signal.SIGKILL)
                monitors = monitors[1:]
            if phase == 2:
                monitors.append(MonitorProcess(kafka_bootstrap, topic, group, tmp_path / "new.log", kafka_client, extra))
            for target, batch in ((topic, predictions_for(phase, per_model)), (labels_topic, labels_for(phase, per_model))):
                produce(kafka_bootstrap, target, round_robin(batch))
                reference.feed(batch)
                wait_until(settled, timeout=120, interval=1.0, message=f"phase {phase}, {target}: gauges equal the reference")
                try:
                    wait_until(lambda: not behind(kafka_bootstrap, group, [topic, labels_topic]), timeout=60)
                except AssertionError:
                    raise AssertionError(
                        f"not committed to the end: {behind(kafka_bootstrap, group, [topic, labels_topic])}"
                    ) from None
        assert (
            sum(v for (name, _l), v in compare(samples(reference.metrics())).items() if name == "decaywatch_pending_predictions")
            > 0
        )
    finally:
        for monitor in monitors:
            monitor.stop()
