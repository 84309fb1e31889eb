"""The monitor's own alert events pushed to a real Alertmanager (consumer/alertmanager.py, API v2).

A firing event becomes an active alert with the model and severity labels, its
resolution makes it disappear, and events published while Alertmanager is down
are delivered once it is back.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from decaywatch.consumer.alertmanager import AlertmanagerSink
from tests.e2e.configs import alertmanager_config
from tests.e2e.conftest import Processes
from tests.e2e.processes import Alertmanager
from tests.e2e.webhook import WebhookReceiver
from tests.helpers import wait_until
from tests.unit.test_alertmanager_sink import alert_event


def start_alertmanager(binary: str, workdir: Path, webhook: WebhookReceiver, processes: Processes) -> Alertmanager:
    workdir.mkdir(parents=True, exist_ok=True)
    config = alertmanager_config(workdir / "alertmanager.yml", webhook.url)
    return processes.add(Alertmanager(binary, config, workdir)).start()


def fast_sink(*alertmanagers: Alertmanager) -> AlertmanagerSink:
    return AlertmanagerSink(
        [am.url for am in alertmanagers], resend_interval_s=2.0, backoff_initial_s=0.1, backoff_max_s=0.5
    ).start()


def labels_of(alerts: list[dict[str, Any]]) -> list[dict[str, str]]:
    return [alert["labels"] for alert in alerts]


def test_pushed_alert_fires_resolves_and_survives_a_restart(
    alertmanager_binary: str, tmp_path: Path, webhook: WebhookReceiver, processes: Processes
) -> None:
    am = start_alertmanager(alertmanager_binary, tmp_path / "am", webhook, processes)
    sink = fast_sink(am)
    try:
        sink.publish(alert_event(model="churn", alert_id="a" * 16))
        active = wait_until(lambda: am.alerts(model="churn"), timeout=15, message="the churn alert in Alertmanager")
        assert labels_of(active) == [
            {
                "alertname": "DecaywatchModelDegraded",
                "model": "churn",
                "severity": "warning",
                "rule": "degradation",
                "metric": "accuracy",
                "alert_id": "a" * 16,
            }
        ]
        assert active[0]["annotations"]["summary"] == "Model performance degraded significantly"
        # The real routing tree: a warning goes to the chat receiver.
        wait_until(lambda: webhook.alerts(model="churn"), timeout=15, message="the churn notification")
        assert {path for path, _ in webhook.alerts(model="churn")} == {"/chat"}

        sink.publish(alert_event(model="churn", alert_id="a" * 16, status="resolved", emitted_at="2025-01-01T12:05:00.000Z"))
        wait_until(lambda: not am.alerts(model="churn"), timeout=15, message="the churn alert to resolve")

        am.stop()
        attempts = sink.failed_attempts
        sink.publish(alert_event(model="fraud", rule="floor", alert_id="b" * 16))  # while Alertmanager is down
        wait_until(lambda: sink.failed_attempts > attempts, timeout=15, message="a failed delivery to the stopped Alertmanager")
        assert sink.pending == 1

        am.start()
        back = wait_until(lambda: am.alerts(model="fraud"), timeout=15, message="the fraud alert after the restart")
        assert labels_of(back)[0]["severity"] == "critical"
        assert labels_of(back)[0]["alertname"] == "DecaywatchAccuracyBelowFloor"
        wait_until(lambda: sink.pending == 0, timeout=10, message="nothing pending")
    finally:
        assert sink.close(timeout=5) == 0


def test_both_members_of_an_ha_pair_get_every_alert(
    alertmanager_binary: str, tmp_path: Path, webhook: WebhookReceiver, processes: Processes
) -> None:
    pair = [start_alertmanager(alertmanager_binary, tmp_path / f"am-{i}", webhook, processes) for i in (1, 2)]
    sink = fast_sink(*pair)
    try:
        sink.publish(alert_event(model="churn", alert_id="c" * 16))
        wait_until(lambda: all(am.alerts(model="churn") for am in pair), timeout=15, message="the alert in both")
    finally:
        assert sink.close(timeout=5) == 0
