"""``decaywatch monitor --alertmanager-url``: the service's own push, end to end on real components.

Kafka (the session broker) -> the monitor process -> a real Alertmanager. The
model falls (an alert becomes active), Alertmanager is stopped, the model
recovers while it is down (the resolution waits, counted as pending), and when
Alertmanager is back the resolution is delivered and the alert is gone. The
monitor's /healthz, /readyz and /models are checked on the way.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import orjson

from tests.e2e.conftest import Processes
from tests.e2e.processes import Monitor, get_json, http_get
from tests.e2e.test_alertmanager_push import start_alertmanager
from tests.e2e.webhook import WebhookReceiver
from tests.helpers import TopicFactory, produce, scrape, wait_until


def send(bootstrap: str, topic: str, accuracy: float, count: int, rng: np.random.Generator, start: int) -> int:
    events = (
        {"model": "pushed", "prediction": 1, "label": int(ok), "ts": 1704067200.0 + start + i}
        for i, ok in enumerate((rng.random(count) < accuracy).tolist())
    )
    produce(bootstrap, topic, ((b"pushed", orjson.dumps(event)) for event in events))
    return start + count


def metric(url: str, name: str, **labels: str) -> float | None:
    """The first sample of ``name`` with these labels on the page at ``url``, if any."""
    for (sample, found), value in scrape(url).items():
        if sample == name and all(dict(found).get(k) == v for k, v in labels.items()):
            return float(value)
    return None


def test_monitor_pushes_fires_and_resolves_across_an_alertmanager_restart(
    kafka_bootstrap: str,
    topic_factory: TopicFactory,
    alertmanager_binary: str,
    tmp_path: Path,
    webhook: WebhookReceiver,
    processes: Processes,
) -> None:
    topic = topic_factory()
    am = start_alertmanager(alertmanager_binary, tmp_path / "am", webhook, processes)
    monitor = processes.add(
        Monitor(
            [
                "--bootstrap-servers",
                kafka_bootstrap,
                "--topic",
                topic,
                "--group",
                f"{topic}-g",
                "--alerts-topic",
                f"{topic}-alerts",
                "--dead-letter-topic",
                f"{topic}-dlq",
                "--baseline",
                "0.85",
                "--alertmanager-url",
                am.url,
            ],
            tmp_path,
        )
    ).start()
    assert monitor.url is not None
    base = monitor.url  # without the /metrics path
    scrape = f"{base}/metrics"
    assert http_get(f"{base}/healthz")[0] == 200 and http_get(f"{base}/readyz")[0] == 200

    rng = np.random.default_rng(5)
    sent = send(kafka_bootstrap, topic, 0.85, 3000, rng, 0)
    sent = send(kafka_bootstrap, topic, 0.55, 1500, rng, sent)
    active = wait_until(lambda: am.alerts(model="pushed"), timeout=60, message="the monitor's alert in Alertmanager")
    labels = active[0]["labels"]
    assert (labels["alertname"], labels["severity"], labels["rule"]) == ("DecaywatchModelDegraded", "warning", "degradation")
    assert active[0]["annotations"]["summary"] == "Model performance degraded significantly"
    models = get_json(f"{base}/models")
    assert models["pushed"]["state"] == "degraded" and models["pushed"]["open_alert_ids"] == [labels["alert_id"]]

    am.stop()
    sent = send(kafka_bootstrap, topic, 0.97, 4000, rng, sent)
    wait_until(
        lambda: metric(scrape, "decaywatch_degraded", model="pushed") == 0.0,
        timeout=60,
        message="the monitor to see the recovery",
    )
    wait_until(
        lambda: (metric(scrape, "decaywatch_alertmanager_failed_attempts_total") or 0) > 0,
        timeout=30,
        message="failed pushes while Alertmanager is down",
    )
    assert metric(scrape, "decaywatch_alertmanager_pending_alerts") == 1.0
    wait_until(  # consumption goes on while Alertmanager is down
        lambda: metric(scrape, "decaywatch_events_total", model="pushed") == sent, timeout=30, message="every event counted"
    )

    am.start()
    wait_until(
        lambda: metric(scrape, "decaywatch_alertmanager_pending_alerts") == 0.0,
        timeout=60,
        message="the resolution delivered after the restart",
    )
    assert not am.alerts(model="pushed")
    assert get_json(f"{base}/models")["pushed"]["state"] == "ok"
