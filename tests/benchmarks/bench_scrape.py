"""Scrape cost at fleet scale: render time and size of /metrics for 10, 1,000 and 10,000 models.

Each fleet is real monitor state (``Monitor`` fed events through ``validate``,
default policy: two count windows, three time windows, binary metrics, a
baseline and a floor), published to ``ServiceMetrics`` as the service does
after a batch.  Timed, in the scrape's own terms:

- *cold*: every model has a new snapshot since the last scrape (a busy fleet,
  where every model saw events within the scrape interval), so every model's
  text is rendered again;
- *warm*: nothing changed since the last scrape (an idle fleet);
- *library*: prometheus-client's own writer over the same registry, building a
  ``Sample`` per series as every scrape did before prepared text.

Also printed: ``publish()`` (called by the consumer after every batch), the page
size raw and gzipped as the endpoint sends it, and the share of one core a
cold scrape every 15 s takes (an upper bound on what it can cost the consumer,
which shares the interpreter with it).

    python -m tests.benchmarks.bench_scrape [--models 10 1000 10000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import dataclasses
import gzip
import statistics
import time
from collections.abc import Callable, Mapping

import numpy as np
from prometheus_client import generate_latest
from prometheus_client.exposition import choose_encoder

from decaywatch.consumer.metrics import ServiceMetrics, exposition
from decaywatch.monitor.config import Limits, ModelPolicy, MonitorConfig
from decaywatch.monitor.engine import Monitor
from decaywatch.monitor.schema import validate
from decaywatch.monitor.snapshot import ModelSnapshot

OPENMETRICS = "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.6,text/plain;version=0.0.4;q=0.3"
"""What Prometheus 3 asks for (OpenMetrics first): the format a real scrape gets."""
EVENTS_PER_MODEL = 120
INTERVAL_S = 15.0


def fleet(models: int, seed: int = 7) -> dict[str, ModelSnapshot]:
    """``models`` models' snapshots after ``EVENTS_PER_MODEL`` events each, accuracies spread around 0.85."""
    rng = np.random.default_rng(seed)
    monitor = Monitor(MonitorConfig(ModelPolicy(baseline=0.9, floor=0.5), limits=Limits(max_models=models)))
    names = [f"model-{i:05d}" for i in range(models)]
    skill = rng.uniform(0.6, 0.97, models)
    start = 1_717_200_000.0
    for step in range(0, EVENTS_PER_MODEL, 40):
        events = [
            {"model": name, "prediction": 1, "label": int(rng.random() < p), "score": round(float(rng.random()), 3)}
            for _ in range(40)
            for name, p in zip(names, skill, strict=True)
        ]
        batch, rejected = validate(events, np.full(len(events), start + step))
        assert not rejected
        monitor.process(batch)
    return monitor.snapshot()


def timed(action: Callable[[], object], repeat: int, before: Callable[[], object] = lambda: None) -> float:
    """Median seconds of ``action`` over ``repeat`` runs, ``before`` run untimed ahead of each."""
    runs = []
    for _ in range(repeat):
        before()
        started = time.perf_counter()
        action()
        runs.append(time.perf_counter() - started)
    return statistics.median(runs)


def measure(models: int, repeat: int) -> None:
    snapshot = fleet(models)
    alerts = {(m, "firing"): 1 for m in list(snapshot)[: models // 20]}
    processed: Mapping[str, float] = {m: 1_717_200_000.0 + i for i, m in enumerate(snapshot)}
    metrics = ServiceMetrics()
    registry = metrics.registry

    def publish() -> None:
        metrics.models.publish(snapshot, alerts, processed)

    def touch_all() -> None:
        """New snapshot objects for every model (same values): what a batch does to the models it saw."""
        nonlocal snapshot
        snapshot = {m: dataclasses.replace(s) for m, s in snapshot.items()}
        publish()

    publish()
    page, _ = exposition(registry, OPENMETRICS)  # also checks each family's header against the library once
    publish_s = timed(publish, repeat * 20)
    cold = timed(lambda: exposition(registry, OPENMETRICS), repeat, touch_all)
    cold_text = timed(lambda: exposition(registry, None), repeat, touch_all)
    warm = timed(lambda: exposition(registry, OPENMETRICS), repeat)
    openmetrics_writer, _ = choose_encoder(OPENMETRICS)
    library = timed(lambda: openmetrics_writer(registry), max(1, repeat // 2))
    library_text = timed(lambda: generate_latest(registry), max(1, repeat // 2))
    zipped = gzip.compress(page, compresslevel=1)
    zip_s = timed(lambda: gzip.compress(page, compresslevel=1), repeat)
    series = sum(1 for line in page.splitlines() if not line.startswith(b"#"))
    print(
        f"{models:>6,} models, {series:>7,} series: page {len(page) / 1e6:6.2f} MB, gzip {len(zipped) / 1e3:6.0f} KB ({zip_s * 1e3:5.1f} ms)\n"
        f"        render cold {cold * 1e3:7.1f} ms (text format {cold_text * 1e3:7.1f} ms), warm {warm * 1e3:6.1f} ms; "
        f"library writer {library * 1e3:7.1f} ms (text format {library_text * 1e3:7.1f} ms)\n"
        f"        publish() {publish_s * 1e6:6.0f} us; a cold scrape every {INTERVAL_S:.0f} s takes "
        f"{(cold + zip_s) / INTERVAL_S:.2%} of a core",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", type=int, nargs="+", default=[10, 1_000, 10_000])
    parser.add_argument("--repeat", type=int, default=5, help="runs per timing (the median is printed)")
    args = parser.parse_args()
    for models in args.models:
        measure(models, args.repeat)


if __name__ == "__main__":
    main()
