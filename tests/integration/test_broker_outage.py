"""The broker stops for 30 seconds mid-stream and comes back: nothing is lost.

The test runs a broker of its own (stopping the session's would break other
tests). The producer keeps sending through the outage (kafka-python buffers
and retries), the monitor keeps polling; ``/readyz`` reports the outage and
the recovery; afterwards the counters equal the producer's truth exactly.
The monitor runs on each client (``kafka_client``).
"""

from __future__ import annotations

import re
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from kafka.admin import KafkaAdminClient

from decaywatch.producer.encode import encode_records
from decaywatch.producer.publisher import PublishReport
from decaywatch.producer.scenario import parse_models
from decaywatch.producer.stream import generate_all, interleave
from tests.helpers import produce, scrape, start_test_broker, wait_until

OUTAGE_S = 30.0


def ready(base: str) -> int:
    try:
        return int(urllib.request.urlopen(f"{base}/readyz", timeout=3).status)
    except urllib.error.HTTPError as error:
        return int(error.code)
    except OSError:
        return 0


def counters(base: str) -> dict[tuple[str, str], float]:
    return {
        (name, dict(labels)["model"]): value
        for (name, labels), value in scrape(f"{base}/metrics").items()
        if name in ("decaywatch_events_total", "decaywatch_labeled_events_total", "decaywatch_correct_predictions_total")
    }


@pytest.mark.timeout(400)
def test_monitor_and_producer_ride_out_a_broker_outage(tmp_path: Path, kafka_client: str) -> None:
    broker, info = start_test_broker(tmp_path / "broker")
    bootstrap = info.bootstrap_servers
    monitor = None
    try:
        admin = KafkaAdminClient(bootstrap_servers=bootstrap)
        admin.create_topics({"predictions": {"num_partitions": 2, "replication_factor": 1}}, wait_for_metadata=True)
        admin.close()
        specs = parse_models("a=stable,b=sudden")
        streams = generate_all(specs, seed=9, count=30_000)
        total = sum(len(s) for s in streams)

        with open(tmp_path / "monitor.log", "w") as log:  # the monitor writes to its own copy of the descriptor
            monitor = subprocess.Popen(
                [sys.executable, "-m", "decaywatch", "monitor", "--bootstrap-servers", bootstrap, "--metrics-port", "0",
                 "--metrics-addr", "127.0.0.1", "--baseline", "0.85", "--checkpoint-interval", "1",
                 "--kafka-client", kafka_client],
                stdout=subprocess.PIPE, stderr=log, text=True,
            )  # fmt: skip
        assert monitor.stdout is not None
        match = re.search(r"metrics at (http://\S+)/metrics", monitor.stdout.readline())
        assert match, (tmp_path / "monitor.log").read_text()
        base = match.group(1)
        wait_until(lambda: ready(base) == 200, timeout=60, message="the monitor to become ready")

        reports: list[PublishReport] = []

        def send() -> None:  # checked below, in the test's thread
            records = encode_records(streams, interleave(streams))
            reports.append(
                produce(
                    bootstrap, "predictions", records, rate=1500.0, flush_timeout=240, check=False, delivery_timeout_ms=180_000
                )
            )

        sender = threading.Thread(target=send, daemon=True)
        sender.start()
        wait_until(lambda: sum(counters(base).get(("decaywatch_events_total", m), 0) for m in ("a", "b")) > 3000, timeout=60)

        broker.stop()
        down_at = time.monotonic()
        wait_until(lambda: ready(base) == 503, timeout=OUTAGE_S, message="/readyz to report the outage")
        wait_until(lambda: time.monotonic() - down_at >= OUTAGE_S, timeout=OUTAGE_S + 5, interval=0.5)
        broker.start(timeout=120)
        wait_until(lambda: ready(base) == 200, timeout=90, message="/readyz to report the recovery")

        sender.join(timeout=300)
        assert reports and reports[0].ok and reports[0].total == total, reports
        wait_until(
            lambda: sum(counters(base).get(("decaywatch_events_total", m), 0) for m in ("a", "b")) >= total,
            timeout=120,
            message="every event counted after the outage",
        )
        got = counters(base)
        for stream in streams:
            assert got[("decaywatch_events_total", stream.model)] == len(stream)
            assert got[("decaywatch_labeled_events_total", stream.model)] == int(stream.labeled.sum())
            assert got[("decaywatch_correct_predictions_total", stream.model)] == int(stream.correct[stream.labeled].sum())
    finally:
        if monitor is not None and monitor.poll() is None:
            monitor.terminate()
            monitor.wait(timeout=60)
        broker.stop()
