"""Consumption throughput at fleet scale: raw Kafka clients and ``decaywatch monitor`` on one real broker.

One command starts a local Apache Kafka broker, produces each topic once and
prints one Markdown table (plus the ``/metrics`` render time of each monitor)::

    python -m tests.benchmarks.bench_throughput [--events 300000] [--rounds 3] [--models 10,1000]
                                                [--monitor-events 1000=60000] [--quick] [--bootstrap HOST:PORT]

The same bytes for every row
    Per model count (``--models``, default 10 and 1,000) one topic of one
    partition holds ``--events`` JSON prediction events of about 160 bytes
    (``{"model": "model-17", "prediction": 1, "label": 0, "ts": ..., "event_id":
    ..., "model_version": ..., "score": ...}``), every one labeled, models drawn
    uniformly with a seeded RNG, keyed by model.  Each topic is produced once;
    every row then reads it from the beginning as a fresh consumer group.  The
    monitor is slower with many models, so its rows may read a shorter topic
    (``--monitor-events``; by default every row reads the whole topic) that holds
    exactly the first events of the same stream; the table's ``events`` column
    says what each row read.

The rows, each its own process, one at a time
    * raw kafka-python, tuned: ``poll(max_records=5000)``,
      ``max_partition_fetch_bytes`` 4 MiB, ``fetch_max_bytes`` 64 MiB; records are
      counted, never decoded;
    * raw kafka-python with its default fetch sizes (1 MiB per partition), still
      ``poll(max_records=5000)``;
    * raw confluent-kafka (``consume(num_messages=5000)``), when
      ``confluent_kafka`` is importable ("not installed" otherwise);
    * ``decaywatch monitor`` itself as a subprocess with default flags (so the
      state changelog is on) on a free metrics port, and again with
      ``--kafka-client confluent`` when the monitor has that flag and
      confluent-kafka is installed.

What is measured
    Steady consumption: the clock and the CPU run from the end of the first
    batch to the end of the batch holding the last event, and *events/s* is
    the events in between (all but the first batch) over that time.  So
    start-up (interpreter, imports, clients, the monitor's HTTP server, joining
    the group, finding the start offset, the first fetch, the monitor's state
    restore and first checkpoint) is in no row's figures.

    - Raw rows time themselves: the clock and the process's CPU (user + sys,
      ``getrusage``) are read when the first non-empty poll has been counted
      and again right after the last expected record is counted.
    - The monitor is timed from outside.  Its first batch ends with its first
      offset commit (the first batch is always checkpointed and committed):
      the benchmark reads the group's committed offset from the broker every
      20 ms, and the first one seen gives the start instant (within ~20 ms)
      and the size of the first batch, at no cost to the monitor.  Its end is
      ``decaywatch_last_batch_timestamp_seconds``, the monitor's own wall-clock
      time at the end of the batch holding the last event (evaluated,
      exported and, when due, checkpointed and committed).  "Consumed
      everything" is known by scraping ``/metrics`` until
      ``decaywatch_events_total`` sums to the produced count (with a
      deadline); a scrape of 1,000 models costs the monitor real CPU, so they
      are made only once the process is idle (or every 10 s).  CPU is
      ``utime + stime`` from ``/proc/PID/stat``, sampled every 50 ms from
      outside and interpolated at the start and end instants, so neither the
      scrapes after the end nor the idle wait count.

    *CPU µs/event* is that CPU divided by those events.  *peak RSS* is the
    process's high-water mark over its whole life (``ru_maxrss`` for the raw
    rows, ``VmHWM`` read just before the monitor is stopped).  *vs tuned* is
    events/s over the tuned raw kafka-python row of the same model count.
    *correct*: for raw rows the count read equals the count produced (with one
    more short poll after the last one, so an over-read shows); for the monitor
    ``decaywatch_events_total`` and ``decaywatch_correct_predictions_total`` of
    every model equal what was produced, and no other model appears.

    Each figure is the median of ``--rounds`` rounds (default 3); the rows run
    one after another, interleaved per round, and nothing else of the benchmark
    runs meanwhile (its own driver only waits).  The broker shares the machine:
    on a 2-core box it and the consumer compete for the cores, as they would in
    any single-host setup.

The ``/metrics`` table times a few ``GET /metrics`` of each finished monitor
(client-side wall time over loopback, so render plus transfer) and gives the
page size; the fleet target is a monitor of 1,000 models rendering in 250 ms or
less.

The pure parts (event generation, truth, aggregation, the tables) are
unit-tested in ``tests/unit/test_bench_throughput.py``; nothing here starts a
broker in the default test run.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import importlib.util
import itertools
import json
import os
import platform
import random
import re
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
MiB = 1024 * 1024

BASE_TS = 1704067200.0
"""Event time of the first event (2024-01-01T00:00:00Z); each next event is 10 ms later."""
ACCURACY = 0.85
"""Chance that an event's prediction equals its label."""
SEED = 20240101

POLL_RECORDS = 5000
TUNED_PARTITION_FETCH_BYTES = 4 * MiB
TUNED_FETCH_MAX_BYTES = 64 * MiB

DEFAULT_EVENTS = 300_000
DEFAULT_MODELS = (10, 1000)
DEFAULT_MONITOR_EVENTS: dict[int, int] = {}
QUICK_EVENTS = 20_000
QUICK_MONITOR_EVENTS = {1000: 10_000}
RENDER_GETS = 5
RENDER_TARGET_MS = 250.0

SAMPLE_INTERVAL_S = 0.05
IDLE_WINDOW_S = 0.5
IDLE_CPU_FRACTION = 0.1
"""The monitor counts as idle when it used less than this share of one core over the last ``IDLE_WINDOW_S``."""
FALLBACK_SCRAPE_S = 10.0

TUNED = "kafka-python, tuned"
DEFAULT = "kafka-python, default fetch sizes"
CONFLUENT = "confluent-kafka"
MONITOR = "decaywatch monitor"
MONITOR_CONFLUENT = "decaywatch monitor --kafka-client confluent"
ROW_NOTES = {
    TUNED: "raw `poll(max_records=5000)`, 4 MiB partition fetch, 64 MiB fetch, no decode",
    DEFAULT: "raw `poll(max_records=5000)`, kafka-python's default fetch sizes (1 MiB per partition), no decode",
    CONFLUENT: "raw `consume(num_messages=5000)`, librdkafka's defaults, no decode; librdkafka prefetches on its own "
    "thread from the assignment on, so fetching done before its first batch ended is not in its figures",
    MONITOR: "the real command, default flags (state changelog on)",
    MONITOR_CONFLUENT: "the real command with the confluent-kafka client",
}

Truth = dict[str, tuple[int, int]]
"""Per model: (events, correct predictions)."""


class BenchError(RuntimeError):
    """A row could not be measured (the process failed, or a deadline passed)."""


# ------------------------------------------------------------------ the events and their truth


def event_value(index: int, model: str, prediction: int, label: int, score: float) -> bytes:
    """One prediction event as JSON, about 160 bytes; ``ts`` grows by 10 ms per index.

    >>> event_value(17, "model-3", 1, 0, 0.5)
    b'{"model": "model-3", "prediction": 1, "label": 0, "ts": 1704067200.17, "event_id": "evt-0000000000000017", "model_version": "2024.01.15-r3", "score": 0.5000}'
    """
    return (
        f'{{"model": "{model}", "prediction": {prediction}, "label": {label}, "ts": {BASE_TS + index * 0.01:.2f}, '
        f'"event_id": "evt-{index:016d}", "model_version": "2024.01.15-r3", "score": {score:.4f}}}'
    ).encode()


def generate_events(models: int, count: int, seed: int = SEED) -> list[tuple[bytes, bytes]]:
    """``count`` seeded ``(key, value)`` records over ``models`` models (``model-0`` ...), every event labeled.

    A shorter count gives a prefix of a longer one: the same seed, the same first events.

    >>> generate_events(3, 5) == generate_events(3, 8)[:5]
    True
    """
    if models < 1 or count < 0:
        raise ValueError(f"need models >= 1 and count >= 0, got {models} and {count}")
    rng = random.Random(seed)
    names = [f"model-{m}" for m in range(models)]
    records = []
    for index in range(count):
        model = names[rng.randrange(models)]
        prediction = rng.randrange(2)
        label = prediction if rng.random() < ACCURACY else 1 - prediction
        records.append((model.encode(), event_value(index, model, prediction, label, rng.random())))
    return records


def truth_of(values: Iterator[bytes] | Sequence[bytes]) -> Truth:
    """Per model, how many events and how many correct predictions (``prediction == label``), read back from the JSON.

    >>> truth_of([b'{"model": "a", "prediction": 1, "label": 1}', b'{"model": "a", "prediction": 0, "label": 1}'])
    {'a': (2, 1)}
    """
    events: dict[str, int] = {}
    correct: dict[str, int] = {}
    for value in values:
        event = json.loads(value)
        model = event["model"]
        events[model] = events.get(model, 0) + 1
        correct[model] = correct.get(model, 0) + int(event["label"] is not None and event["prediction"] == event["label"])
    return {model: (n, correct[model]) for model, n in events.items()}


def gauges_match(events: Mapping[str, float], correct: Mapping[str, float], truth: Truth) -> str | None:
    """``None`` when the monitor's per-model counters equal the truth, else what differs first.

    >>> gauges_match({"a": 2.0}, {"a": 1.0}, {"a": (2, 1)}) is None
    True
    >>> gauges_match({"a": 2.0}, {"a": 2.0}, {"a": (2, 1)})
    'model a: 2 events, 2 correct; produced 2 and 1'
    """
    models = set(truth)
    if set(events) != models or set(correct) != models:
        extra = sorted((set(events) | set(correct)) - models)[:3]
        missing = sorted(models - set(events))[:3]
        return f"models differ: {len(set(events))} exported, {len(models)} produced (extra {extra}, missing {missing})"
    for model in sorted(models):
        n, right = truth[model]
        if events[model] != n or correct[model] != right:
            return f"model {model}: {events[model]:g} events, {correct[model]:g} correct; produced {n} and {right}"
    return None


def parse_monitor_events(text: str) -> dict[int, int]:
    """``--monitor-events`` as {model count: events}.

    >>> parse_monitor_events("1000=60000, 10=300000")
    {1000: 60000, 10: 300000}
    >>> parse_monitor_events("")
    {}
    """
    caps: dict[int, int] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        models, sep, events = item.partition("=")
        if not sep:
            raise argparse.ArgumentTypeError(f"expected MODELS=EVENTS, got {item!r}")
        caps[int(models)] = int(events)
    return caps


# ------------------------------------------------------------------ measurements and the tables


@dataclass(frozen=True)
class Measurement:
    """One row in one round: ``timed_events`` (all but the first batch) took ``seconds`` and ``cpu_seconds``."""

    events: int
    """Events read in all."""
    timed_events: int
    seconds: float
    cpu_seconds: float
    peak_rss_bytes: int
    problem: str | None = None
    """``None`` when what was read equals what was produced, else what differs."""
    note: str = ""
    """Shown in the progress line only (e.g. the size of the first batch)."""

    @property
    def rate(self) -> float:
        return self.timed_events / self.seconds if self.seconds > 0 else float("inf")

    @property
    def cpu_us_per_event(self) -> float:
        return self.cpu_seconds / self.timed_events * 1e6 if self.timed_events else float("nan")


@dataclass(frozen=True)
class RowResult:
    """A row over all rounds: medians, or why there are none."""

    topic: str
    consumer: str
    events: int | None = None
    rate: float | None = None
    cpu_us_per_event: float | None = None
    peak_rss_bytes: float | None = None
    verdict: str = ""
    ratio: float | None = None


def summarize(topic: str, consumer: str, rounds: Sequence[Measurement | str], raw_check: bool) -> RowResult:
    """Medians of the rounds that ran; a round that failed (a ``str``: the error) makes the verdict say so.

    >>> ok = Measurement(1500, 1000, 0.5, 0.01, 50 * 2**20)
    >>> row = summarize("10 models", "x", [ok, Measurement(1500, 1000, 1.0, 0.02, 60 * 2**20), ok], raw_check=True)
    >>> row.rate, round(row.cpu_us_per_event or 0, 3), row.verdict
    (2000.0, 10.0, 'yes (count = produced)')
    """
    measured = [m for m in rounds if isinstance(m, Measurement)]
    errors = [m for m in rounds if isinstance(m, str)]
    problems = [m.problem for m in measured if m.problem is not None]
    if errors:
        verdict = f"error in {len(errors)} of {len(rounds)} round(s): {errors[0]}"
    elif problems:
        verdict = f"**no** in {len(problems)} of {len(rounds)} round(s): {problems[0]}"
    else:
        verdict = "yes (count = produced)" if raw_check else "yes (per-model events and correct)"
    if not measured:
        return RowResult(topic, consumer, verdict=verdict)
    return RowResult(
        topic,
        consumer,
        events=measured[0].events,
        rate=statistics.median(m.rate for m in measured),
        cpu_us_per_event=statistics.median(m.cpu_us_per_event for m in measured),
        peak_rss_bytes=statistics.median(m.peak_rss_bytes for m in measured),
        verdict=verdict,
    )


def with_ratios(rows: Sequence[RowResult], reference: str = TUNED) -> list[RowResult]:
    """Each row's events/s over the ``reference`` row's of the same topic."""
    base = {row.topic: row.rate for row in rows if row.consumer == reference and row.rate}
    out = []
    for row in rows:
        ref = base.get(row.topic)
        ratio = row.rate / ref if row.rate is not None and ref else None
        out.append(RowResult(**{**row.__dict__, "ratio": ratio}))
    return out


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]], right: set[int] | frozenset[int] = frozenset()) -> str:
    """A Markdown table padded to aligned columns; columns in ``right`` are right-aligned.

    >>> print(markdown_table(["a", "n"], [["x", "1"], ["yy", "22"]], right={1}))
    | a  |  n |
    |----|---:|
    | x  |  1 |
    | yy | 22 |
    """
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]

    def line(cells: Sequence[str]) -> str:
        return (
            "| "
            + " | ".join(c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True)))
            + " |"
        )

    rule = "|" + "|".join(("-" * (w + 1) + ":") if i in right else "-" * (w + 2) for i, w in enumerate(widths)) + "|"
    return "\n".join([line(header), rule, *(line(r) for r in rows)])


def _number(value: float | None, spec: str) -> str:
    return "—" if value is None else format(value, spec)


def render_rows(rows: Sequence[RowResult]) -> str:
    """The throughput table.

    >>> print(render_rows([RowResult("10 models", "confluent-kafka", verdict="not installed")]))
    | topic     | consumer        | events | events/s | CPU µs/event | peak RSS | vs tuned | correct       |
    |-----------|-----------------|-------:|---------:|-------------:|---------:|---------:|---------------|
    | 10 models | confluent-kafka |      — |        — |            — |        — |        — | not installed |
    """
    header = ["topic", "consumer", "events", "events/s", "CPU µs/event", "peak RSS", "vs tuned", "correct"]
    body = [
        [
            row.topic,
            row.consumer,
            _number(row.events, ","),
            _number(row.rate, ",.0f"),
            _number(row.cpu_us_per_event, ".1f"),
            "—" if row.peak_rss_bytes is None else f"{row.peak_rss_bytes / MiB:.0f} MiB",
            "—" if row.ratio is None else f"{row.ratio:.2f}x",
            row.verdict,
        ]
        for row in rows
    ]
    return markdown_table(header, body, right={2, 3, 4, 5, 6})


@dataclass(frozen=True)
class RenderTiming:
    """``GET /metrics`` of a finished monitor: page size and client-side wall time of each GET."""

    topic: str
    consumer: str
    models: int
    page_bytes: int
    seconds: tuple[float, ...]


def render_timings(timings: Sequence[RenderTiming], target_ms: float = RENDER_TARGET_MS) -> str:
    """The ``/metrics`` table: median over every GET of every round, and the slowest.

    >>> print(render_timings([RenderTiming("1,000 models", "decaywatch monitor", 1000, 3 * 2**20, (0.3, 0.2, 0.4))]))
    | topic        | consumer           | models | page size | GET /metrics, median |  slowest | ≤ 250 ms |
    |--------------|--------------------|-------:|----------:|---------------------:|---------:|----------|
    | 1,000 models | decaywatch monitor |  1,000 |  3072 KiB |             300.0 ms | 400.0 ms | no       |
    """
    grouped: dict[tuple[str, str], list[RenderTiming]] = {}
    for timing in timings:
        grouped.setdefault((timing.topic, timing.consumer), []).append(timing)
    body = []
    for (topic, consumer), group in grouped.items():
        seconds = [s for t in group for s in t.seconds]
        median_ms = statistics.median(seconds) * 1000
        body.append(
            [
                topic,
                consumer,
                f"{group[-1].models:,}",
                f"{statistics.median(t.page_bytes for t in group) / 1024:.0f} KiB",
                f"{median_ms:.1f} ms",
                f"{max(seconds) * 1000:.1f} ms",
                "yes" if median_ms <= target_ms else "no",
            ]
        )
    header = ["topic", "consumer", "models", "page size", "GET /metrics, median", "slowest", f"≤ {target_ms:g} ms"]
    return markdown_table(header, body, right={2, 3, 4, 5})


def cpu_at(samples: Sequence[tuple[float, float]], when: float) -> float:
    """CPU seconds at ``when``, interpolated linearly between ``(time, cpu)`` samples (clamped at the ends).

    >>> cpu_at([(0.0, 1.0), (1.0, 3.0)], 0.25)
    1.5
    >>> cpu_at([(0.0, 1.0), (1.0, 3.0)], 5.0)
    3.0
    """
    if not samples:
        raise ValueError("no CPU samples")
    if when <= samples[0][0]:
        return samples[0][1]
    for (t0, c0), (t1, c1) in itertools.pairwise(samples):
        if t0 <= when <= t1:
            return c0 if t1 == t0 else c0 + (c1 - c0) * (when - t0) / (t1 - t0)
    return samples[-1][1]


def is_idle(samples: Sequence[tuple[float, float]], window: float = IDLE_WINDOW_S, fraction: float = IDLE_CPU_FRACTION) -> bool:
    """Whether the samples' last ``window`` seconds used less than ``fraction`` of one core.

    >>> is_idle([(0.0, 5.0), (0.3, 5.0), (0.6, 5.01)])
    True
    >>> is_idle([(0.0, 5.0), (0.6, 5.5)])
    False
    >>> is_idle([(0.0, 5.0), (0.2, 5.0)])  # not yet a whole window
    False
    """
    if len(samples) < 2 or samples[-1][0] - samples[0][0] < window:
        return False
    end_t, end_c = samples[-1]
    return end_c - cpu_at(samples, end_t - window) < fraction * window


def counter_by_model(page: str, name: str) -> dict[str, float]:
    """Samples ``name{model="..."}`` of a Prometheus text page, by model.

    >>> counter_by_model('# HELP x\\nx_total{model="a"} 3.0\\nx_total{model="b"} 1.0\\ny_total{model="a"} 9.0\\n', "x_total")
    {'a': 3.0, 'b': 1.0}
    """
    from prometheus_client.parser import text_string_to_metric_families

    values: dict[str, float] = {}
    for family in text_string_to_metric_families(page):
        for sample in family.samples:
            if sample.name == name and "model" in sample.labels:
                values[sample.labels["model"]] = sample.value
    return values


def single_value(page: str, name: str) -> float | None:
    """The value of an unlabeled sample ``name`` on a Prometheus text page (``None`` when absent).

    >>> single_value("a 1.5\\nb_total 2.0\\n", "b_total")
    2.0
    """
    match = re.search(rf"^{re.escape(name)} (\S+)$", page, re.MULTILINE)
    return float(match.group(1)) if match else None


# ------------------------------------------------------------------ the raw consumers (run as child processes)


def _cpu_self() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _peak_rss_self() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


def consume_kafka_python(bootstrap: str, topic: str, expected: int, tuned: bool, deadline_s: float) -> dict[str, Any]:
    """Read ``topic`` from the beginning as a fresh group, counting records; the clock starts at assignment."""
    from kafka import KafkaConsumer

    sizes = {"max_partition_fetch_bytes": TUNED_PARTITION_FETCH_BYTES, "fetch_max_bytes": TUNED_FETCH_MAX_BYTES} if tuned else {}
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap.split(","),
        group_id=f"bench-{uuid.uuid4().hex[:12]}",
        client_id="bench-throughput",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        **sizes,
    )
    try:
        consumer.subscribe([topic])
        count = 0
        start: tuple[float, float, int] | None = None  # clock, CPU and count after the first batch
        deadline = time.monotonic() + deadline_s
        while count < expected and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=500, max_records=POLL_RECORDS).values():
                count += len(records)
            if start is None and count:
                start = (time.perf_counter(), _cpu_self(), count)
        end = (time.perf_counter(), _cpu_self(), count)
        if count >= expected:  # one more short poll: an over-read must show
            for records in consumer.poll(timeout_ms=300, max_records=POLL_RECORDS).values():
                count += len(records)
    finally:
        consumer.close(autocommit=False)
    return _figures(start or end, end, count)


def _figures(start: tuple[float, float, int], end: tuple[float, float, int], count: int) -> dict[str, Any]:
    return {
        "events": count,
        "timed_events": end[2] - start[2],
        "first_batch": start[2],
        "seconds": end[0] - start[0],
        "cpu_seconds": end[1] - start[1],
        "peak_rss_bytes": _peak_rss_self(),
    }


def consume_confluent(bootstrap: str, topic: str, expected: int, deadline_s: float) -> dict[str, Any]:
    """Like :func:`consume_kafka_python` with confluent-kafka's ``Consumer`` at librdkafka's defaults."""
    ck: Any = importlib.import_module("confluent_kafka")
    consumer = ck.Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"bench-{uuid.uuid4().hex[:12]}",
            "client.id": "bench-throughput",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    errors: list[str] = []
    try:
        consumer.subscribe([topic])
        count = 0
        start: tuple[float, float, int] | None = None
        deadline = time.monotonic() + deadline_s
        while count < expected and time.monotonic() < deadline:
            for message in consumer.consume(num_messages=POLL_RECORDS, timeout=0.5):
                if message.error() is None:
                    count += 1
                elif len(errors) < 3:
                    errors.append(str(message.error()))
            if start is None and count:
                start = (time.perf_counter(), _cpu_self(), count)
        end = (time.perf_counter(), _cpu_self(), count)
        if count >= expected:
            count += sum(1 for m in consumer.consume(num_messages=POLL_RECORDS, timeout=0.3) if m.error() is None)
    finally:
        consumer.close()
    return {**_figures(start or end, end, count), "errors": errors}


def run_child(kind: str, bootstrap: str, topic: str, expected: int) -> Measurement:
    """One raw consumer in a fresh interpreter; it prints its figures as one JSON line."""
    deadline = 60.0 + expected / 2000
    command = [sys.executable, "-m", "tests.benchmarks.bench_throughput", "--child", kind]
    command += ["--bootstrap", bootstrap, "--topic", topic, "--expect", str(expected), "--deadline", str(deadline)]
    try:
        done = subprocess.run(
            command, cwd=REPO, env=_clean_env(), capture_output=True, text=True, timeout=deadline + 60, check=False
        )
    except subprocess.TimeoutExpired as error:
        raise BenchError(f"{kind} did not finish within {deadline + 60:.0f} s") from error
    if done.returncode != 0 or not done.stdout.strip():
        raise BenchError(f"{kind} exited {done.returncode}: {_tail(done.stderr, 5)}")
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    problem = None if figures["events"] == expected else f"read {figures['events']:,} of {expected:,}"
    if figures.get("errors"):
        problem = f"{problem or 'errors'}: {figures['errors'][0]}"
    return Measurement(
        events=figures["events"],
        timed_events=figures["timed_events"],
        seconds=figures["seconds"],
        cpu_seconds=figures["cpu_seconds"],
        peak_rss_bytes=figures["peak_rss_bytes"],
        problem=problem,
        note=f"first batch {figures['first_batch']:,} events",
    )


# ------------------------------------------------------------------ the monitor (a subprocess, watched from outside)


def proc_cpu_seconds(pid: int) -> float:
    """``utime + stime`` of a process (all its threads) from ``/proc/PID/stat``."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def proc_peak_rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise BenchError(f"no VmHWM for pid {pid}")


class CpuSampler:
    """Reads a process's CPU every ``interval`` seconds on a thread: ``(time.time(), cpu seconds)`` samples."""

    def __init__(self, pid: int, interval: float = SAMPLE_INTERVAL_S) -> None:
        self.pid = pid
        self.interval = interval
        self.samples: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="cpu-sampler", daemon=True)

    def start(self) -> CpuSampler:
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.samples.append((time.time(), proc_cpu_seconds(self.pid)))
            except OSError:
                return  # the process is gone
            self._stop.wait(self.interval)

    def recent(self, seconds: float) -> list[tuple[float, float]]:
        samples = list(self.samples)
        if not samples:
            return []
        return [s for s in samples if s[0] >= samples[-1][0] - seconds - self.interval]

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)


def _get(url: str, timeout: float = 10.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return int(response.status), response.read()
    except urllib.error.HTTPError as error:
        return int(error.code), b""
    except OSError:
        return 0, b""


def _clean_env() -> dict[str, str]:
    """The environment without DECAYWATCH_* and KAFKA_* settings, so every process runs at its defaults."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DECAYWATCH_", "KAFKA_"))}
    env["PYTHONUNBUFFERED"] = "1"
    return env


def stop_process(process: subprocess.Popen[Any], grace_s: float = 30.0) -> None:
    """SIGTERM, then SIGKILL if it is still running after ``grace_s`` (a clean stop lets it flush and commit)."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(grace_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(5)


def _tail(text: str, lines: int) -> str:
    return " | ".join(text.strip().splitlines()[-lines:]) or "(no output)"


def committed_offset(admin: Any, group: str) -> int:
    """The sum of ``group``'s committed offsets as the broker knows them (0 before its first commit)."""
    from kafka.errors import KafkaError

    try:
        offsets = admin.list_group_offsets(group).get(group, {})
    except KafkaError:  # the group (or its coordinator) is not there yet
        return 0
    return sum(max(0, int(meta.offset)) for meta in offsets.values())


@dataclass
class MonitorRun:
    """``decaywatch monitor`` on a topic until it has handled ``expected`` events."""

    bootstrap: str
    topic: str
    expected: int
    workdir: Path
    extra_args: Sequence[str] = ()
    lines: list[str] = field(default_factory=list)
    """The monitor's stdout."""

    def measure(self, truth: Truth, models: int, topic_label: str, consumer: str) -> tuple[Measurement, RenderTiming]:
        from kafka.admin import KafkaAdminClient

        group = f"bench-monitor-{uuid.uuid4().hex[:12]}"
        command = [sys.executable, "-m", "decaywatch", "monitor", "--bootstrap-servers", self.bootstrap]
        command += ["--topic", self.topic, "--group", group, "--metrics-port", "0", "--metrics-addr", "127.0.0.1"]
        command += list(self.extra_args)
        log_path = self.workdir / f"{group}.log"
        admin = KafkaAdminClient(bootstrap_servers=self.bootstrap.split(","), client_id="bench-throughput-watch")
        with open(log_path, "wb") as log:
            process = subprocess.Popen(
                command, cwd=REPO, env=_clean_env(), stdout=subprocess.PIPE, stderr=log, stdin=subprocess.DEVNULL, text=True
            )
        sampler = CpuSampler(process.pid).start()
        threading.Thread(target=self._drain, args=(process,), daemon=True).start()
        try:
            return self._watch(process, sampler, admin, group, truth, models, topic_label, consumer)
        except BenchError as error:
            raise BenchError(f"{error}; monitor log: {_tail(log_path.read_text(errors='replace'), 3)}") from None
        finally:
            sampler.stop()
            admin.close()
            stop_process(process)

    def _drain(self, process: subprocess.Popen[str]) -> None:
        assert process.stdout is not None
        for line in process.stdout:
            self.lines.append(line.rstrip("\n"))

    def _url(self) -> str | None:
        for line in list(self.lines):
            if match := re.search(r"metrics at (http://\S+)/metrics", line):
                return match.group(1)
        return None

    def _alive(self, process: subprocess.Popen[str]) -> None:
        if process.poll() is not None:
            raise BenchError(f"the monitor exited with {process.returncode}")

    def _first_batch(self, process: subprocess.Popen[str], admin: Any, group: str, deadline: float) -> tuple[float, int]:
        """When the first batch ended (its commit first showed; the time the showing request was sent), and its size."""
        while True:
            self._alive(process)
            asked = time.time()
            committed = committed_offset(admin, group)
            if committed:
                return asked, committed
            if time.monotonic() > deadline:
                raise BenchError("the monitor committed nothing within its first minute")
            time.sleep(0.02)

    def _watch(
        self,
        process: subprocess.Popen[str],
        sampler: CpuSampler,
        admin: Any,
        group: str,
        truth: Truth,
        models: int,
        topic_label: str,
        consumer: str,
    ) -> tuple[Measurement, RenderTiming]:
        start, first_batch = self._first_batch(process, admin, group, time.monotonic() + 60)
        url = self._url()
        if url is None:
            raise BenchError("the monitor committed before printing its metrics URL")
        deadline = time.monotonic() + 120 + self.expected / 500
        last_scrape = 0.0
        page = ""
        while True:
            self._alive(process)
            now = time.monotonic()
            idle = is_idle(sampler.recent(IDLE_WINDOW_S))
            if (idle and now - last_scrape >= IDLE_WINDOW_S) or now - last_scrape >= FALLBACK_SCRAPE_S:
                last_scrape = now
                status, body = _get(f"{url}/metrics", timeout=30)
                if status == 200:
                    page = body.decode()
                    if idle and sum(counter_by_model(page, "decaywatch_events_total").values()) >= self.expected:
                        break
            if now > deadline:
                seen = sum(counter_by_model(page, "decaywatch_events_total").values()) if page else 0
                raise BenchError(f"the monitor handled {seen:,.0f} of {self.expected:,} events before the deadline")
            time.sleep(SAMPLE_INTERVAL_S)
        peak = proc_peak_rss_bytes(process.pid)
        samples = list(sampler.samples)
        end = single_value(page, "decaywatch_last_batch_timestamp_seconds")
        if end is None:
            raise BenchError("no decaywatch_last_batch_timestamp_seconds on the page")
        gets = [self._time_get(f"{url}/metrics") for _ in range(RENDER_GETS)]
        events = counter_by_model(page, "decaywatch_events_total")
        correct = counter_by_model(page, "decaywatch_correct_predictions_total")
        measurement = Measurement(
            events=int(sum(events.values())),
            timed_events=int(sum(events.values())) - first_batch,
            seconds=end - start,
            cpu_seconds=cpu_at(samples, end) - cpu_at(samples, start),
            peak_rss_bytes=peak,
            problem=gauges_match(events, correct, truth),
            note=f"first batch {first_batch:,} events",
        )
        return measurement, RenderTiming(topic_label, consumer, models, max(size for _, size in gets), tuple(s for s, _ in gets))

    @staticmethod
    def _time_get(url: str) -> tuple[float, int]:
        """Wall time and size of one GET."""
        started = time.perf_counter()
        status, body = _get(url, timeout=30)
        if status != 200:
            raise BenchError(f"GET {url} answered {status}")
        return time.perf_counter() - started, len(body)


# ------------------------------------------------------------------ the benchmark


@dataclass(frozen=True)
class Topic:
    """A produced topic: its name, how many events it holds, and their truth."""

    name: str
    events: int
    truth: Truth


@dataclass(frozen=True)
class TopicSet:
    """One model count: the topic every raw row reads, and the (possibly shorter) one the monitor rows read."""

    models: int
    full: Topic
    monitor: Topic

    @property
    def label(self) -> str:
        return f"{self.models:,} models"


def produce_topics(bootstrap: str, models: int, events: int, monitor_events: int) -> TopicSet:
    """Create and fill the topic(s) of one model count: ``events`` events, and the first ``monitor_events`` again."""
    from kafka.admin import KafkaAdminClient, NewTopic

    from decaywatch.producer.publisher import make_kafka_producer, publish

    records = generate_events(models, events)
    sizes = [(f"bench-{models}m-{events}", events)]
    if monitor_events < events:
        sizes.append((f"bench-{models}m-{monitor_events}", monitor_events))
    admin = KafkaAdminClient(bootstrap_servers=bootstrap.split(","), client_id="bench-throughput")
    try:
        suffix = uuid.uuid4().hex[:6]
        names = [f"{name}-{suffix}" for name, _ in sizes]
        admin.create_topics([NewTopic(name, 1, 1) for name in names])
    finally:
        admin.close()
    topics = []
    for name, (_, count) in zip(names, sizes, strict=True):
        producer = make_kafka_producer(bootstrap)
        try:
            report = publish(records[:count], producer, name, flush_timeout=300)
        finally:
            producer.close(timeout=10)
        if not report.ok:
            raise BenchError(
                f"producing {name} failed: {report.failed} of {report.total} ({report.errors}, {report.flush_error})"
            )
        print(f"produced {count:,} events of {models:,} models to {name} at {report.events_per_second:,.0f} events/s", flush=True)
        topics.append(Topic(name, count, truth_of(value for _, value in records[:count])))
    return TopicSet(models, topics[0], topics[-1])


def monitor_has_flag(flag: str) -> bool:
    done = subprocess.run(
        [sys.executable, "-m", "decaywatch", "monitor", "--help"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return flag in done.stdout


def confluent_installed() -> bool:
    return importlib.util.find_spec("confluent_kafka") is not None


Runner = Callable[[str, TopicSet, Path], tuple[Measurement, RenderTiming | None]]


def plan_rows() -> list[tuple[str, Runner | str]]:
    """The rows in order: a runner, or the reason the row cannot run."""

    def raw(kind: str) -> Runner:
        def run(bootstrap: str, topics: TopicSet, workdir: Path) -> tuple[Measurement, RenderTiming | None]:
            return run_child(kind, bootstrap, topics.full.name, topics.full.events), None

        return run

    def monitor(consumer: str, extra: Sequence[str]) -> Runner:
        def run(bootstrap: str, topics: TopicSet, workdir: Path) -> tuple[Measurement, RenderTiming | None]:
            watched = MonitorRun(bootstrap, topics.monitor.name, topics.monitor.events, workdir, extra)
            return watched.measure(topics.monitor.truth, topics.models, topics.label, consumer)

        return run

    confluent = confluent_installed()
    kafka_client_flag = monitor_has_flag("--kafka-client")
    rows: list[tuple[str, Runner | str]] = [(TUNED, raw("kafka-python-tuned")), (DEFAULT, raw("kafka-python-default"))]
    rows.append((CONFLUENT, raw("confluent") if confluent else "not installed"))
    rows.append((MONITOR, monitor(MONITOR, ())))
    if not confluent:
        rows.append((MONITOR_CONFLUENT, "not installed"))
    elif not kafka_client_flag:
        rows.append((MONITOR_CONFLUENT, "the monitor has no --kafka-client flag yet"))
    else:
        rows.append((MONITOR_CONFLUENT, monitor(MONITOR_CONFLUENT, ("--kafka-client", "confluent"))))
    return rows


@contextlib.contextmanager
def broker(workdir: Path, external: str | None) -> Iterator[str]:
    """The bootstrap address of a broker: ``external`` as given, or a local one started for the run and stopped after."""
    if external:
        yield external
        return
    from decaywatch.deploy.kafka.runner import BrokerSettings, LocalKafka, free_ports

    port, controller = free_ports(2)
    kafka = LocalKafka(
        BrokerSettings(
            data_dir=workdir / "broker",
            cache_dir=BrokerSettings.from_environment().cache_dir,
            port=port,
            controller_port=controller,
        )
    )
    info = kafka.start(timeout=180)
    print(f"broker up at {info.bootstrap_servers} in {info.started_in_seconds:.1f} s", flush=True)
    try:
        yield info.bootstrap_servers
    finally:
        kafka.stop()


def bench(
    bootstrap: str, workdir: Path, model_counts: Sequence[int], events: int, monitor_caps: Mapping[int, int], rounds: int
) -> tuple[list[RowResult], list[RenderTiming]]:
    topic_sets = [produce_topics(bootstrap, m, events, min(events, monitor_caps.get(m, events))) for m in model_counts]
    rows = plan_rows()
    results: dict[tuple[str, str], list[Measurement | str]] = {}
    timings: list[RenderTiming] = []
    for round_no in range(1, rounds + 1):
        for topics in topic_sets:
            for consumer, runner in rows:
                if isinstance(runner, str):
                    continue
                started = time.monotonic()
                try:
                    measurement, timing = runner(bootstrap, topics, workdir)
                except BenchError as error:
                    results.setdefault((topics.label, consumer), []).append(str(error))
                    print(f"round {round_no}, {topics.label}, {consumer}: error: {error}", flush=True)
                    continue
                results.setdefault((topics.label, consumer), []).append(measurement)
                if timing is not None:
                    timings.append(timing)
                print(
                    f"round {round_no}, {topics.label}, {consumer}: {measurement.events:,} events, "
                    f"{measurement.rate:,.0f} events/s, {measurement.cpu_us_per_event:.1f} CPU µs/event "
                    f"({time.monotonic() - started:.1f} s with start-up{'; ' + measurement.note if measurement.note else ''})",
                    flush=True,
                )
    summary = []
    for topics in topic_sets:
        for consumer, runner in rows:
            if isinstance(runner, str):
                summary.append(RowResult(topics.label, consumer, verdict=runner))
            else:
                summary.append(
                    summarize(
                        topics.label, consumer, results[(topics.label, consumer)], consumer not in (MONITOR, MONITOR_CONFLUENT)
                    )
                )
    return with_ratios(summary), timings


def describe_run(events: int, monitor_caps: Mapping[int, int], model_counts: Sequence[int], rounds: int) -> str:
    import kafka

    event_bytes = len(generate_events(max(model_counts), 1)[0][1])
    caps = ", ".join(
        f"{min(events, monitor_caps[m]):,} for {m:,} models" for m in model_counts if monitor_caps.get(m, events) < events
    )
    return (
        f"{events:,} events per topic (~{event_bytes} B each, 1 partition, all labeled)"
        + (f"; the monitor rows read the first {caps}" if caps else "")
        + f"; median of {rounds} round(s); decaywatch {code_version()}, kafka-python {kafka.__version__}"
        + (f", confluent-kafka {_confluent_version()}" if confluent_installed() else "")
        + f", Python {platform.python_version()}, {os.cpu_count()} cores"
    )


def code_version() -> str:
    """The commit the benchmark ran on, and whether the working tree had changes."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True)
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=REPO, capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return "(not a git checkout)"
    return head.stdout.strip() + (" with uncommitted changes" if dirty.stdout.strip() else "")


def _confluent_version() -> str:
    version: Any = importlib.import_module("confluent_kafka").version()  # a string, or (string, int) in older releases
    return str(version[0] if isinstance(version, tuple) else version)


def load_average() -> str:
    return ", ".join(f"{x:.2f}" for x in os.getloadavg())


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--events", type=int, help=f"events per topic (default {DEFAULT_EVENTS:,}; --quick {QUICK_EVENTS:,})")
    parser.add_argument("--rounds", type=int, help="rounds; each figure is the median (default 3; --quick 1)")
    parser.add_argument(
        "--models", default=",".join(map(str, DEFAULT_MODELS)), help="model counts, one topic each (default 10,1000)"
    )
    parser.add_argument(
        "--monitor-events",
        type=parse_monitor_events,
        help="MODELS=EVENTS,...: the monitor rows of that model count read only the first EVENTS events "
        "(default: every row reads the whole topic; --quick 1000=10000)",
    )
    parser.add_argument("--quick", action="store_true", help="tiny sizes and one round: checks that every row works")
    parser.add_argument("--bootstrap", help="use this running broker (host:port) instead of starting a local one")
    for hidden in ("--child", "--topic", "--expect", "--deadline"):
        parser.add_argument(hidden, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return _child(args)

    events = args.events or (QUICK_EVENTS if args.quick else DEFAULT_EVENTS)
    rounds = args.rounds or (1 if args.quick else 3)
    caps = (
        args.monitor_events
        if args.monitor_events is not None
        else (QUICK_MONITOR_EVENTS if args.quick else DEFAULT_MONITOR_EVENTS)
    )
    model_counts = [int(m) for m in args.models.split(",") if m.strip()]
    if events < 1 or rounds < 1 or not model_counts:
        parser.error("--events and --rounds must be positive and --models not empty")
    from decaywatch.deploy.kafka.runner import KafkaRunnerError

    began = time.monotonic()
    load_before = load_average()
    with tempfile.TemporaryDirectory(prefix="decaywatch-bench-") as tmp:
        try:
            with broker(Path(tmp), args.bootstrap) as bootstrap:
                rows, timings = bench(bootstrap, Path(tmp), model_counts, events, caps, rounds)
        except KafkaRunnerError as error:
            print(f"cannot run a local Kafka broker: {error.summary}", file=sys.stderr)
            return 2
    print()
    print(f"Consumption throughput: {describe_run(events, caps, model_counts, rounds)}.")
    print()
    print(render_rows(rows))
    print()
    for consumer, note in ROW_NOTES.items():
        print(f"- {consumer}: {note}")
    print(
        "- events/s and CPU µs/event: steady consumption, from the end of the first batch to the end of the last "
        "(start-up, group join, first fetch, state restore and first checkpoint excluded); peak RSS: of the whole "
        "process; correct: what was read equals what was produced"
    )
    if timings:
        print()
        print(render_timings(timings))
    print(f"\n(whole benchmark: {time.monotonic() - began:.0f} s; load average {load_before} before, {load_average()} after)")
    return 0


def _child(args: argparse.Namespace) -> int:
    expected, deadline = int(args.expect), float(args.deadline)
    if args.child == "confluent":
        figures = consume_confluent(args.bootstrap, args.topic, expected, deadline)
    elif args.child in ("kafka-python-tuned", "kafka-python-default"):
        figures = consume_kafka_python(args.bootstrap, args.topic, expected, args.child == "kafka-python-tuned", deadline)
    else:
        print(f"unknown child {args.child!r}", file=sys.stderr)
        return 2
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
