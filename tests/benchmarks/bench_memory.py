"""Memory over a long run: RSS of the service loop after 1 million and 10 million events.

The whole service path runs (decode, validate, the core, the metrics exporter
rendering a scrape every 100 batches, the alert and dead-letter sinks), fed by
a source that generates batches lazily, so the benchmark itself holds nothing.
The stream mixes two lesson models with events that invent a new model id
(``--invented``, default 2%), so the cap on tracked models ([limits]
max_models) and idle expiry are exercised: memory must level off, not grow
with the number of model ids seen.

    python -m tests.benchmarks.bench_memory [--events 10000000] [--invented 0.02] [--max-models 10000]

Kafka's own client buffers are not part of this measurement (there is no
broker in the loop); kafka-python's fetch buffers are bounded by
``max_partition_fetch_bytes`` and ``fetch_max_bytes``.
"""

from __future__ import annotations

import argparse
import resource
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import orjson
from prometheus_client import generate_latest

from decaywatch.consumer.metrics import ServiceMetrics
from decaywatch.consumer.service import MonitorService
from decaywatch.consumer.source import RawBatch
from decaywatch.monitor.config import Limits, ModelPolicy, MonitorConfig
from decaywatch.monitor.engine import Monitor

BATCH = 5000


def rss_mib() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class GeneratedSource:
    """Batches of encoded events made on demand: two steady models plus invented model ids."""

    def __init__(self, total: int, invented: float, seed: int = 1) -> None:
        self.total, self.invented, self.sent = total, invented, 0
        self._rng = np.random.default_rng(seed)
        self._offset = 0

    def poll(self, timeout_s: float) -> RawBatch | None:
        if self.sent >= self.total:
            return None
        n = min(BATCH, self.total - self.sent)
        rng = self._rng
        correct = (rng.random(n) < 0.85).tolist()
        fresh = (rng.random(n) < self.invented).tolist()
        values: list[bytes | None] = []
        for i in range(n):
            model = f"invented-{self._offset + i}" if fresh[i] else ("churn-model" if i % 2 else "fraud-model")
            event = {"model": model, "prediction": 1, "label": int(correct[i]), "ts": 1704067200.0 + (self._offset + i) * 0.1,
                     "score": 0.7, "features": {"x": 0.5}}  # fmt: skip
            values.append(orjson.dumps(event))
        self.sent += n
        offsets = list(range(self._offset, self._offset + n))
        self._offset += n
        return RawBatch(values, [None] * n, np.full(n, time.time()), ["predictions"] * n, [0] * n, offsets)

    def commit(self) -> bool:
        return True

    def lag(self) -> dict[tuple[str, int], int]:
        return {("predictions", 0): self.total - self.sent}

    def rebalances(self) -> list[tuple[str, set[int]]]:
        return []

    def close(self) -> None:
        pass


class NullSink:
    def publish(self, *args: Any) -> None:
        pass

    def flush(self) -> None:
        pass


class AdvancingClock:
    """Wall clock for the service that advances 0.5 s per reading (about 1.5 s a batch), so idle expiry happens within the run."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        self.now += 0.5
        return self.now


def run(total: int, invented: float, max_models: int, idle: str) -> Iterator[tuple[int, float, int]]:
    config = MonitorConfig(ModelPolicy(baseline=0.85), limits=Limits(max_models=max_models, idle_expiry=idle))
    metrics = ServiceMetrics()
    source = GeneratedSource(total, invented)
    service = MonitorService(source, Monitor(config), NullSink(), NullSink(), metrics, AdvancingClock())
    batches = 0
    while service.step() is not None:
        batches += 1
        if batches % 100 == 0:
            generate_latest(metrics.registry)  # a scrape
        yield service.totals.messages, rss_mib(), len(service.snapshot())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--invented", type=float, default=0.02, help="share of events with a never-seen model id")
    parser.add_argument("--max-models", type=int, default=10_000)
    parser.add_argument("--idle-expiry", default="1h", help="wall-clock idle time before a model is forgotten")
    args = parser.parse_args()
    marks = {1_000_000, 2_000_000, 5_000_000, 10_000_000, args.events}
    started = time.perf_counter()
    print(f"start: RSS {rss_mib():.1f} MiB")
    for messages, rss, models in run(args.events, args.invented, args.max_models, args.idle_expiry):
        if messages in marks:
            rate = messages / (time.perf_counter() - started)
            print(
                f"after {messages:>11,} events: RSS {rss:7.1f} MiB, {models:,} models tracked, {rate:,.0f} events/s", flush=True
            )


if __name__ == "__main__":
    main()
