"""Latency from produce to ``/metrics``: how long until an event's effect can be scraped, at a steady rate.

    python -m tests.benchmarks.bench_latency [--models 10,1000] [--rate 10000] [--seconds 30] [--warmup 3]
                                             [--scrape-interval 0.01] [--kafka-client kafka-python] [--bootstrap HOST:PORT]

One local Apache Kafka broker (started as ``bench_throughput`` starts it, or
``--bootstrap``) and, per model count, a fresh topic of one partition and the
real ``decaywatch monitor`` at its default flags (state changelog on, exports
every 0.1 s) reading it as a fresh group.  Once the monitor is ready (its
``/readyz``: the partition is assigned), this process produces ``--rate``
events/s for ``--warmup`` plus ``--seconds`` seconds, paced (each event is due
at ``start + i / rate``; the loop sends what is due, then sleeps until the
next), keyed by model, models drawn uniformly with a seeded RNG, every event
labeled, through kafka-python with ``linger_ms=5`` (the Java client's default
since Kafka 4.0).  Each event's ``ts`` is the wall-clock time read right before
its ``send()``, and that time is kept here too.

What "its effect is in /metrics" means
    An event has reached ``/metrics`` when a scrape shows it counted: the
    monitor reads a partition in order, so the k-th event produced for a
    model is in the page once that model's ``decaywatch_events_total`` is at
    least k (everything the event changes, windows, rules, the counters, is
    published together, in one snapshot).  A separate process (so that
    parsing pages never delays this one's pacing) scrapes ``/metrics`` every
    ``--scrape-interval`` seconds (or back to back when a scrape takes longer)
    and keeps, per scrape, the wall-clock time the request was sent (t0), the
    time the page was read in full (t1), and every model's events_total.

    For every event (not a sample) the first scrape whose count reaches its
    ordinal bounds when its effect appeared: the page was read from one
    published snapshot at some instant between that scrape's t0 and t1, and the
    scrape before read a snapshot without it.  So the latency lies between
    *not yet* (the previous scrape's t0 minus the produce time) and *seen by*
    (this scrape's t1 minus the produce time).  The tables give quantiles of
    *seen by*, the conservative figure, which overstates the true latency by at
    most the time from one scrape's request to the next one's read: the
    interval plus a scrape's duration (for 10 models scrapes took 7-8 ms on
    a loaded 2-core machine, and the two bounds' medians were 28 ms apart;
    for 1,000 models a page is 3 MB and a scrape renders every model that
    changed, so scrapes take 30-45 ms: the table shows their median, and the
    *not yet* column the lower bound).
    Quantiles are numpy's (linear interpolation) over the events produced
    after the warm-up.  ``decaywatch_last_event_timestamp_seconds`` (the
    newest event time, here a produce time) would measure the age of the newest
    event only, which between a model's events grows with the gap between them
    (100 ms on average per model at 1,000 models and 10,000 events/s), so it is
    not used.

What bounds it
    The path: the producer's linger (up to 5 ms), the broker's append, the
    consumer's fetch (a long poll answered as soon as data arrives), decode,
    validate and the core for the batch, then the export: the service hands
    the exporter a new snapshot at most every 0.1 s (``export_interval_s`` in
    ``consumer/runtime.py``), stretched to ten times a snapshot's own duration
    when snapshots are slow (``EXPORT_SHARE`` in ``consumer/service.py``), so an
    event waits on average about half an export interval after its batch; and
    every 5 s a checkpoint (the state changelog) holds the loop while it writes
    every model touched since the last one.  The report gives the gaps between
    successive visible changes of the scraped counts: the export interval as
    seen from outside (plus up to one scrape interval).  With 1,000 models a
    snapshot of the models touched since the last one takes a good part of a
    second on a shared 2-core machine, so the interval stretches to seconds and
    dominates the latency.  *monitor CPU* and *waiting for a CPU* (run-queue
    delay of its threads, from ``/proc/PID/task/*/schedstat``) tell a monitor
    busy computing from one starved of CPU by its neighbours.

Rows report the rate actually produced; if the monitor cannot keep up,
latencies grow through the run and the *unseen* column counts the events not
in ``/metrics`` 60 s after production stopped.  The pure parts are
unit-tested in ``tests/unit/test_bench_latency.py``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

import numpy as np
import numpy.typing as npt

from tests.benchmarks.bench_throughput import (
    REPO,
    BenchError,
    _clean_env,
    _get,
    _tail,
    broker,
    code_version,
    load_average,
    markdown_table,
    proc_cpu_seconds,
    single_value,
    stop_process,
)

DEFAULT_MODELS = (10, 1000)
DEFAULT_RATE = 10_000
DEFAULT_SECONDS = 30.0
DEFAULT_WARMUP = 3.0
SCRAPE_INTERVAL_S = 0.01
LINGER_MS = 5
ACCURACY = 0.85
SEED = 20240101
SETTLE_S = 60.0
"""After production stops, how long to wait for the last events to show in ``/metrics``."""
TARGET_P99_MS = 200.0

_EVENTS_TOTAL = re.compile(r'^decaywatch_events_total\{model="((?:[^"\\]|\\.)*)"\} (\S+)$', re.MULTILINE)

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


# ------------------------------------------------------------------ pure parts


def events_by_model(page: str) -> dict[str, int]:
    """Every model's ``decaywatch_events_total`` on a Prometheus text page.

    >>> events_by_model('# TYPE decaywatch_events_total counter\\ndecaywatch_events_total{model="a"} 3.0\\n'
    ...                 'decaywatch_events_total{model="b \\\\"x\\\\""} 12.0\\ndecaywatch_labeled_events_total{model="a"} 3.0\\n')
    {'a': 3, 'b "x"': 12}
    """
    return {_unescape(m.group(1)): int(float(m.group(2))) for m in _EVENTS_TOTAL.finditer(page)}


def _unescape(label: str) -> str:
    """A label value as Prometheus' text format escapes it (backslash, quote, newline), unescaped."""
    if "\\" not in label:
        return label
    return re.sub(r"\\(.)", lambda m: "\n" if m.group(1) == "n" else m.group(1), label)


def due(start: float, now: float, rate: float, total: int) -> int:
    """How many of ``total`` paced events (event i at ``start + i / rate``) are due at ``now``.

    >>> due(100.0, 100.0, 1000, 50), due(100.0, 100.0105, 1000, 50), due(100.0, 200.0, 1000, 50), due(100.0, 99.0, 1000, 50)
    (1, 11, 50, 0)
    """
    if now < start:
        return 0
    return min(total, math.floor((now - start) * rate) + 1)


def ordinals(model_index: npt.NDArray[np.integer[Any]], models: int) -> IntArray:
    """Each event's 1-based position among its model's events, in produce order.

    >>> ordinals(np.array([0, 1, 0, 0, 1]), 2).tolist()
    [1, 1, 2, 3, 2]
    """
    result = np.zeros(model_index.shape[0], dtype=np.int64)
    for m in range(models):
        where = np.flatnonzero(model_index == m)
        result[where] = np.arange(1, where.shape[0] + 1)
    return result


@dataclass(frozen=True)
class Scrapes:
    """What the scraper saw: per scrape the request time ``t0``, the read time ``t1``, and each model's count."""

    t0: FloatArray
    t1: FloatArray
    counts: IntArray
    """Shape (scrapes, models): ``decaywatch_events_total`` per model (0 while absent)."""

    @classmethod
    def from_records(cls, records: Sequence[tuple[float, float, Mapping[str, int]]], names: Sequence[str]) -> Scrapes:
        """From ``(t0, t1, counts by model id)`` records; models not in ``names`` are ignored.

        >>> s = Scrapes.from_records([(1.0, 1.1, {}), (2.0, 2.1, {"b": 4, "a": 1})], ["a", "b"])
        >>> s.counts.tolist()
        [[0, 0], [1, 4]]
        """
        column = {name: i for i, name in enumerate(names)}
        counts = np.zeros((len(records), len(names)), dtype=np.int64)
        for r, (_t0, _t1, seen) in enumerate(records):
            for name, count in seen.items():
                if name in column:
                    counts[r, column[name]] = count
        return cls(
            np.array([r[0] for r in records], dtype=np.float64), np.array([r[1] for r in records], dtype=np.float64), counts
        )


@dataclass(frozen=True)
class Visibility:
    """Per event: bounds of its produce-to-``/metrics`` latency in seconds (``inf`` where never seen)."""

    seen_by: FloatArray
    """The first scrape that shows the event: its read time minus the produce time (an upper bound)."""
    not_yet: FloatArray
    """The scrape before it: its request time minus the produce time (a lower bound; at least 0)."""


def visibility(produced: FloatArray, model_index: IntArray, scrapes: Scrapes) -> Visibility:
    """Bounds on each event's latency: between the last scrape that did not count it and the first that did.

    >>> s = Scrapes(np.array([0.0, 0.1, 0.2]), np.array([0.01, 0.11, 0.21]), np.array([[0], [1], [3]]))
    >>> v = visibility(np.array([0.02, 0.05, 0.08, 0.3]), np.array([0, 0, 0, 0]), s)
    >>> [round(x, 3) for x in v.seen_by.tolist()], [round(x, 3) for x in v.not_yet.tolist()]
    ([0.09, 0.16, 0.13, inf], [0.0, 0.05, 0.02, 0.0])
    """
    models = scrapes.counts.shape[1]
    ordinal = ordinals(model_index, models)
    seen_by = np.full(produced.shape[0], np.inf)
    not_yet = np.zeros(produced.shape[0])
    n = scrapes.t0.shape[0]
    for m in range(models):
        events = np.flatnonzero(model_index == m)
        if not events.size:
            continue
        reached = np.maximum.accumulate(scrapes.counts[:, m]) if n else np.zeros(0, np.int64)
        first = np.searchsorted(reached, ordinal[events], side="left")
        seen = first < n
        seen_by[events[seen]] = scrapes.t1[first[seen]] - produced[events[seen]]
        before = np.maximum(first - 1, 0)
        has_before = first >= 1
        lower = np.where(has_before, scrapes.t0[np.minimum(before, max(n - 1, 0))] - produced[events], 0.0) if n else 0.0
        not_yet[events] = np.maximum(lower, 0.0)
    return Visibility(seen_by, not_yet)


@dataclass(frozen=True)
class Quantiles:
    """p50, p90, p99 and max of some durations, in seconds."""

    p50: float
    p90: float
    p99: float
    max: float

    @classmethod
    def of(cls, values: npt.ArrayLike) -> Quantiles:
        """numpy's linear-interpolation quantiles; all NaN when there are no values.

        >>> q = Quantiles.of(np.arange(101) / 1000)
        >>> (q.p50, q.p90, q.p99, q.max)
        (0.05, 0.09, 0.099, 0.1)
        """
        data = np.asarray(values, dtype=np.float64)
        if not data.size:
            return cls(math.nan, math.nan, math.nan, math.nan)
        p50, p90, p99 = (float(x) for x in np.quantile(data, [0.5, 0.9, 0.99]))
        return cls(p50, p90, p99, float(data.max()))

    def ms(self) -> list[str]:
        return [f"{x * 1000:,.0f} ms" if math.isfinite(x) else "—" for x in (self.p50, self.p90, self.p99, self.max)]


def change_gaps(scrapes: Scrapes) -> FloatArray:
    """Seconds between successive scrapes whose page differs from the one before (new counts: a new export).

    >>> change_gaps(Scrapes(np.array([0.0, 0.1, 0.2, 0.3, 0.4]), np.zeros(5), np.array([[1], [1], [2], [2], [5]]))).tolist()
    [0.2]
    """
    if scrapes.t0.shape[0] < 2:
        return np.zeros(0)
    changed = np.flatnonzero((np.diff(scrapes.counts, axis=0) != 0).any(axis=1)) + 1
    return np.diff(scrapes.t0[changed])


# ------------------------------------------------------------------ the scraper (a child process)


def scrape_loop(
    url: str, interval: float, stop: threading.Event, ready: Path | None = None
) -> list[tuple[float, float, dict[str, int]]]:
    """``GET /metrics`` every ``interval`` seconds (back to back when slower) until ``stop`` is set.

    ``ready`` is created once the first scrape is in, so the caller can start producing only then.
    """
    records: list[tuple[float, float, dict[str, int]]] = []
    next_at = time.time()
    while not stop.is_set():
        t0 = time.time()
        status, body = _get(url, timeout=30)
        t1 = time.time()
        if status == 200:
            records.append((t0, t1, events_by_model(body.decode())))
            if ready is not None and len(records) == 1:
                ready.touch()
        next_at = max(next_at + interval, t1)
        stop.wait(max(0.0, next_at - time.time()))
    return records


def _scraper_child(url: str, interval: float, out: Path) -> int:
    stop = threading.Event()

    def on_term(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_term)
    records = scrape_loop(url, interval, stop, out.with_suffix(".ready"))
    out.write_text(json.dumps(records))
    return 0


@contextlib.contextmanager
def scraper(url: str, interval: float, workdir: Path) -> Iterator[list[tuple[float, float, dict[str, int]]]]:
    """A scraping process for the ``with`` block; the list it yields is filled with its records when the block ends."""
    out = workdir / f"scrapes-{uuid.uuid4().hex[:8]}.json"
    command = [sys.executable, "-m", "tests.benchmarks.bench_latency", "--scraper", url, "--out", str(out)]
    command += ["--scrape-interval", str(interval)]
    process = subprocess.Popen(command, cwd=REPO, env=_clean_env(), stdin=subprocess.DEVNULL)
    records: list[tuple[float, float, dict[str, int]]] = []
    try:
        deadline = time.monotonic() + 30
        while not out.with_suffix(".ready").exists():
            if process.poll() is not None or time.monotonic() > deadline:
                raise BenchError("the scraper did not complete a first scrape within 30 s")
            time.sleep(0.02)
        yield records
    finally:
        stop_process(process, 60.0)
    if process.returncode != 0 or not out.exists():
        raise BenchError(f"the scraper exited with {process.returncode}")
    records.extend((float(t0), float(t1), dict(counts)) for t0, t1, counts in json.loads(out.read_text()))


# ------------------------------------------------------------------ the monitor and the producer


@contextlib.contextmanager
def monitor(bootstrap: str, topic: str, workdir: Path, extra: Sequence[str]) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """``decaywatch monitor`` on ``topic`` as a fresh group, until it is ready; yields the process and its base URL."""
    group = f"bench-latency-{uuid.uuid4().hex[:12]}"
    command = [sys.executable, "-m", "decaywatch", "monitor", "--bootstrap-servers", bootstrap, "--topic", topic]
    command += ["--group", group, "--metrics-port", "0", "--metrics-addr", "127.0.0.1", *extra]
    log_path = workdir / f"{group}.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            command, cwd=REPO, env=_clean_env(), stdout=subprocess.PIPE, stderr=log, stdin=subprocess.DEVNULL, text=True
        )
    try:
        url = _ready_url(process, time.monotonic() + 90)
        yield process, url
    except BenchError as error:
        raise BenchError(f"{error}; monitor log: {_tail(log_path.read_text(errors='replace'), 3)}") from None
    finally:
        stop_process(process)
        warnings = [line for line in log_path.read_text(errors="replace").splitlines() if "WARNING" in line or "ERROR" in line]
        if warnings:
            print(f"  the monitor logged {len(warnings)} warning(s) or error(s); first: {warnings[0][:300]}", flush=True)


def _ready_url(process: subprocess.Popen[str], deadline: float) -> str:
    assert process.stdout is not None
    url = None
    for line in process.stdout:  # the URL is the first thing it prints; the pipe is not read after
        if match := re.search(r"metrics at (http://\S+)/metrics", line):
            url = match.group(1)
            break
    if url is None:
        raise BenchError(f"the monitor exited with {process.wait()} before printing its metrics URL")
    threading.Thread(target=lambda: [None for _ in process.stdout or ()], daemon=True).start()  # keep the pipe drained
    while _get(f"{url}/readyz")[0] != 200:
        if process.poll() is not None:
            raise BenchError(f"the monitor exited with {process.returncode}")
        if time.monotonic() > deadline:
            raise BenchError("the monitor was not ready (no partition assigned) within 90 s")
        time.sleep(0.1)
    return url


def proc_run_delay_seconds(pid: int) -> float:
    """Seconds the process's threads spent runnable but waiting for a CPU (``/proc/PID/task/*/schedstat``, field 2).

    Threads that ended are not counted: the monitor's threads live as long as it does.
    """
    total = 0
    for stat in Path(f"/proc/{pid}/task").glob("*/schedstat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            total += int(stat.read_text().split()[1])
    return total / 1e9


def create_topic(bootstrap: str, name: str) -> None:
    from kafka.admin import KafkaAdminClient, NewTopic

    admin = KafkaAdminClient(bootstrap_servers=bootstrap.split(","), client_id="bench-latency")
    try:
        admin.create_topics([NewTopic(name, 1, 1)])
    finally:
        admin.close()


@dataclass(frozen=True)
class Produced:
    """What the paced producer sent: per event its model and its produce time; and the seconds it took."""

    model_index: IntArray
    produced: FloatArray
    seconds: float


def produce_paced(bootstrap: str, topic: str, names: Sequence[str], rate: float, seconds: float, seed: int = SEED) -> Produced:
    """Send ``rate * seconds`` events at ``rate`` per second, each stamped with its produce time; flush at the end."""
    from decaywatch.producer.publisher import make_kafka_producer

    total = int(rate * seconds)
    rng = random.Random(seed)
    picks = [rng.randrange(len(names)) for _ in range(total)]
    predictions = [rng.randrange(2) for _ in range(total)]
    right = [rng.random() < ACCURACY for _ in range(total)]
    keys = [name.encode() for name in names]
    produced = np.zeros(total, dtype=np.float64)
    producer = make_kafka_producer(bootstrap, client_id="bench-latency", linger_ms=LINGER_MS)
    try:
        start = time.time() + 0.05
        i = 0
        while i < total:
            until = due(start, time.time(), rate, total)
            while i < until:
                m, p = picks[i], predictions[i]
                label = p if right[i] else 1 - p
                ts = time.time()
                value = f'{{"model": "{names[m]}", "prediction": {p}, "label": {label}, "ts": {ts:.6f}, "event_id": "e{i}"}}'
                producer.send(topic, key=keys[m], value=value.encode())
                produced[i] = ts
                i += 1
            pause = start + i / rate - time.time()
            if pause > 0:
                time.sleep(max(pause, 0.001))  # at least 1 ms: 10 events a burst at 10,000/s, not a sleep per event
        elapsed = time.time() - start
        producer.flush(timeout=60)
    finally:
        producer.close(timeout=10)
    return Produced(np.asarray(picks, dtype=np.int64), produced, elapsed)


# ------------------------------------------------------------------ one model count


@dataclass(frozen=True)
class LatencyResult:
    models: int
    rate: float
    """Events/s actually produced."""
    events: int
    """Events measured (after the warm-up)."""
    seen_by: Quantiles
    not_yet: Quantiles
    unseen: int
    scrapes: int
    scrape_seconds: float
    """Median duration of one scrape."""
    export_gaps: Quantiles
    batches: float | None
    mean_batch_ms: float | None
    monitor_cpu: float
    """Share of one core the monitor used while producing."""
    monitor_run_wait: float = 0.0
    """Seconds per second the monitor's threads were runnable but waited for a CPU, while producing."""


def measure(
    bootstrap: str, workdir: Path, models: int, rate: float, seconds: float, warmup: float, interval: float, extra: Sequence[str]
) -> LatencyResult:
    names = [f"model-{m}" for m in range(models)]
    topic = f"bench-latency-{models}m-{uuid.uuid4().hex[:6]}"
    create_topic(bootstrap, topic)
    with monitor(bootstrap, topic, workdir, extra) as (process, url):
        with scraper(f"{url}/metrics", interval, workdir) as records:
            cpu_before, wait_before, wall_before = proc_cpu_seconds(process.pid), proc_run_delay_seconds(process.pid), time.time()
            sent = produce_paced(bootstrap, topic, names, rate, warmup + seconds)
            wall = time.time() - wall_before
            cpu = (proc_cpu_seconds(process.pid) - cpu_before) / wall
            run_wait = (proc_run_delay_seconds(process.pid) - wait_before) / wall
            expected = np.bincount(sent.model_index, minlength=models)
            deadline = time.monotonic() + SETTLE_S
            status, body = 0, b""
            while time.monotonic() < deadline:
                status, body = _get(f"{url}/metrics", timeout=30)
                counts = events_by_model(body.decode()) if status == 200 else {}
                if all(counts.get(name, 0) >= expected[m] for m, name in enumerate(names)):
                    break
                time.sleep(0.5)
            time.sleep(max(0.2, 3 * interval))  # the scraper sees the last change too
        final = body.decode() if status == 200 else ""
    scrapes = Scrapes.from_records(records, names)
    bounds = visibility(sent.produced, sent.model_index, scrapes)
    measured = sent.produced >= sent.produced[0] + warmup
    seen = measured & np.isfinite(bounds.seen_by)
    batches = single_value(final, "decaywatch_batches_total")
    duration_sum = single_value(final, "decaywatch_batch_duration_seconds_sum")
    duration_count = single_value(final, "decaywatch_batch_duration_seconds_count")
    return LatencyResult(
        models=models,
        rate=sent.produced.shape[0] / sent.seconds,
        events=int(measured.sum()),
        seen_by=Quantiles.of(bounds.seen_by[seen]),
        not_yet=Quantiles.of(bounds.not_yet[seen]),
        unseen=int((measured & ~np.isfinite(bounds.seen_by)).sum()),
        scrapes=int(scrapes.t0.shape[0]),
        scrape_seconds=float(np.median(scrapes.t1 - scrapes.t0)) if scrapes.t0.size else math.nan,
        export_gaps=Quantiles.of(change_gaps(scrapes)),
        batches=batches,
        mean_batch_ms=duration_sum / duration_count * 1000 if duration_sum is not None and duration_count else None,
        monitor_cpu=cpu,
        monitor_run_wait=run_wait,
    )


def render(results: Sequence[LatencyResult], target_ms: float = TARGET_P99_MS) -> str:
    """The latency table and, below it, what explains it.

    >>> q = Quantiles(0.04, 0.08, 0.11, 0.2)
    >>> print(render([LatencyResult(10, 9999.0, 300000, q, q, 0, 3000, 0.002, q, 300.0, 1.5, 0.4)]))
    | models | events/s |  events |   p50 |   p90 |    p99 |    max | p99 ≤ 200 ms | unseen | not yet: p50 / p99 |
    |-------:|---------:|--------:|------:|------:|-------:|-------:|--------------|-------:|-------------------:|
    |     10 |    9,999 | 300,000 | 40 ms | 80 ms | 110 ms | 200 ms | yes          |      0 |     40 ms / 110 ms |
    <BLANKLINE>
    | models | scrapes | scrape, median | gap between visible exports: p50 / p90 / max | batches | mean batch | monitor CPU | waiting for a CPU |
    |-------:|--------:|---------------:|----------------------------------------------|--------:|-----------:|------------:|------------------:|
    |     10 |   3,000 |         2.0 ms | 40 ms / 80 ms / 200 ms                       |     300 |     1.5 ms |         40% |                0% |
    """
    rows = []
    for r in results:
        p50, p90, p99, top = r.seen_by.ms()
        low50, _low90, low99, _lowmax = r.not_yet.ms()
        ok = "yes" if r.seen_by.p99 * 1000 <= target_ms else "no"
        rows.append(
            [f"{r.models:,}", f"{r.rate:,.0f}", f"{r.events:,}", p50, p90, p99, top, ok, f"{r.unseen:,}", f"{low50} / {low99}"]
        )
    header = [
        "models",
        "events/s",
        "events",
        "p50",
        "p90",
        "p99",
        "max",
        f"p99 ≤ {target_ms:g} ms",
        "unseen",
        "not yet: p50 / p99",
    ]
    first = markdown_table(header, rows, right={0, 1, 2, 3, 4, 5, 6, 8, 9})
    rows = []
    for r in results:
        g50, g90, _g99, gmax = r.export_gaps.ms()
        rows.append(
            [
                f"{r.models:,}",
                f"{r.scrapes:,}",
                f"{r.scrape_seconds * 1000:.1f} ms",
                f"{g50} / {g90} / {gmax}",
                "—" if r.batches is None else f"{r.batches:,.0f}",
                "—" if r.mean_batch_ms is None else f"{r.mean_batch_ms:.1f} ms",
                f"{r.monitor_cpu:.0%}",
                f"{r.monitor_run_wait:.0%}",
            ]
        )
    header = [
        "models",
        "scrapes",
        "scrape, median",
        "gap between visible exports: p50 / p90 / max",
        "batches",
        "mean batch",
        "monitor CPU",
        "waiting for a CPU",
    ]
    second = markdown_table(header, rows, right={0, 1, 2, 4, 5, 6, 7})
    return first + "\n\n" + second


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument(
        "--models", default=",".join(map(str, DEFAULT_MODELS)), help="model counts, one run each (default 10,1000)"
    )
    parser.add_argument("--rate", type=float, default=DEFAULT_RATE, help="events per second (default 10000)")
    parser.add_argument("--seconds", type=float, default=DEFAULT_SECONDS, help="measured seconds per model count (default 30)")
    parser.add_argument("--warmup", type=float, default=DEFAULT_WARMUP, help="seconds produced first, not measured (default 3)")
    parser.add_argument("--scrape-interval", type=float, default=SCRAPE_INTERVAL_S, help="seconds between scrapes (default 0.01)")
    parser.add_argument("--kafka-client", help="pass --kafka-client to the monitor (default: the monitor's default)")
    parser.add_argument(
        "--monitor-arg", action="append", default=[], help="pass this to the monitor too (repeat; e.g. --monitor-arg=--no-state)"
    )
    parser.add_argument("--bootstrap", help="use this running broker (host:port) instead of starting a local one")
    parser.add_argument("--scraper", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.scraper:
        return _scraper_child(args.scraper, args.scrape_interval, Path(args.out))
    counts = [int(m) for m in args.models.split(",") if m.strip()]
    extra = (["--kafka-client", args.kafka_client] if args.kafka_client else []) + list(args.monitor_arg)
    from decaywatch.deploy.kafka.runner import KafkaRunnerError

    began = time.monotonic()
    load_before = load_average()
    results = []
    with tempfile.TemporaryDirectory(prefix="decaywatch-bench-latency-") as tmp:
        try:
            with broker(Path(tmp), args.bootstrap) as bootstrap:
                for models in counts:
                    result = measure(
                        bootstrap, Path(tmp), models, args.rate, args.seconds, args.warmup, args.scrape_interval, extra
                    )
                    results.append(result)
                    p50, p90, p99, top = result.seen_by.ms()
                    print(f"{models:,} models: p50 {p50}, p90 {p90}, p99 {p99}, max {top}", flush=True)
        except KafkaRunnerError as error:
            print(f"cannot run a local Kafka broker: {error.summary}", file=sys.stderr)
            return 2
    print()
    print(
        f"Produce-to-/metrics latency ('seen by': the first scrape showing the event, read time minus produce time): "
        f"{args.rate:,.0f} events/s paced for {args.warmup:g} s warm-up + {args.seconds:g} s measured, one partition, "
        f"every event labeled, scrapes every {args.scrape_interval * 1000:g} ms; monitor flags: {' '.join(extra) or 'defaults'}; "
        f"decaywatch {code_version()}, "
        f"{os.cpu_count()} cores."
    )
    print()
    print(render(results))
    print(f"\n(whole benchmark: {time.monotonic() - began:.0f} s; load average {load_before} before, {load_average()} after)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
