"""The on-call path on real components, end to end.

Kafka (the session broker) -> ``decaywatch monitor`` (a subprocess) -> Prometheus
scraping it with the project's recording and alerting rules -> Alertmanager with
the project's routes -> a webhook receiver standing in for the chat and pager.

Two models are produced as ``decaywatch produce`` sends them (the producer's
streams and publisher, through ``tests.helpers.produce``): ``decayer`` drops suddenly
from 0.85 to 0.6 accuracy after 3,000 events, ``healthy`` holds 0.85 and its
labels come an hour (event time) after its predictions, as separate label
events the monitor joins, so the label-health series exist too. The
monitor judges 1,000-event windows against a 0.85 baseline with a 0.1 threshold
(and a 0.5 floor, so the floor series exist too).

To fit a test run, Prometheus scrapes and evaluates every second, the rules are a
generated copy of deploy/prometheus/rules with every ``for:`` shortened to 2 s
(the files in deploy/ keep their production minutes), and Alertmanager groups
after 1 s. Everything else is the real configuration.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from kafka.admin import KafkaAdminClient

from decaywatch.producer.encode import encode_records
from decaywatch.producer.scenario import parse_models
from decaywatch.producer.stream import generate_all, interleave
from tests.e2e.configs import alertmanager_config, prometheus_config, shortened_rules
from tests.e2e.conftest import Processes
from tests.e2e.processes import Alertmanager, Monitor, Prometheus, get_json
from tests.e2e.webhook import WebhookReceiver
from tests.helpers import produce, unique_name, wait_until
from tests.queries import Query, dashboard_queries, recorded_names, rule_queries, substitute_grafana_variables

log = logging.getLogger(__name__)

MODELS = "decayer=sudden(from=0.85,to=0.6,at=3000),healthy=stable(label_delay=1h)"
EVENTS_PER_MODEL = 8000
#: Events per second over both models: the run takes ~8 s, so rates and alerts evolve over several scrapes.
RATE = 2000

#: Alerts whose expression returns nothing on a healthy run by design, with the part of
#: the expression (before its threshold) that must return data instead.
SILENT_BY_DESIGN = {
    "DecaywatchAccuracyBelowFloor": "decaywatch_below_floor",
    "DecaywatchNoEvents": "time() - decaywatch_last_processed_timestamp_seconds",
    "DecaywatchNoLabels": "sum by (job, instance, model) (increase(decaywatch_events_total[1h])) > 0",
    "DecaywatchInvalidEventsHigh": "instance:decaywatch_invalid_events:ratio_rate5m",
    "DecaywatchMonitorDown": 'up{job=~"decaywatch.*"}',
    "DecaywatchConsumerLagHigh": "instance:decaywatch_consumer_lag_messages:sum",
    "DecaywatchLabelsLate": "time() - model:decaywatch_labels_joined:last_timestamp_seconds",
    "DecaywatchLabelCoverageLow": "decaywatch_label_coverage_ratio",
}


@dataclass
class OncallRun:
    prometheus: Prometheus
    alertmanager: Alertmanager
    webhook: WebhookReceiver
    monitor: Monitor
    degraded: tuple[str, dict[str, Any]]
    """The webhook's (path, alert) for DecaywatchModelDegraded on the decaying model."""


def create_topics(admin: KafkaAdminClient, prefix: str) -> list[str]:
    names = [unique_name(f"{prefix}-{kind}") for kind in ("predictions", "alerts", "dlq")]
    admin.create_topics({name: {"num_partitions": 1, "replication_factor": 1} for name in names}, wait_for_metadata=True)
    return names


def synthetic_records() -> Iterator[tuple[bytes, bytes]]:
    """The events ``decaywatch produce --models MODELS --count EVENTS_PER_MODEL --seed 42`` sends."""
    streams = generate_all(parse_models(MODELS), 42, EVENTS_PER_MODEL)
    return encode_records(streams, interleave(streams))


def start_monitor(bootstrap: str, topics: list[str], workdir: Path, processes: Processes) -> Monitor:
    topic, alerts_topic, dlq = topics
    # fmt: off
    args = [
        "--bootstrap-servers", bootstrap, "--topic", topic, "--alerts-topic", alerts_topic,
        "--dead-letter-topic", dlq, "--group", unique_name("oncall"),
        "--baseline", "0.85", "--baseline-date", "2024-01-01", "--threshold", "0.1", "--floor", "0.5",
        "--windows", "1000", "--min-samples", "500",
    ]
    # fmt: on
    return processes.add(Monitor(args, workdir)).start()


def start_prometheus(
    binary: str, workdir: Path, monitor: Monitor, alertmanager: Alertmanager, processes: Processes
) -> Prometheus:
    """Prometheus with the project's config and (for: shortened) rules, scraping the monitor every second."""
    workdir.mkdir()
    prometheus = Prometheus(binary, workdir / "prometheus.yml", workdir)
    prometheus_config(
        workdir,
        targets={
            "decaywatch": monitor.target,
            "prometheus": f"127.0.0.1:{prometheus.port}",
            "alertmanager": f"127.0.0.1:{alertmanager.port}",
        },
        alertmanager=f"127.0.0.1:{alertmanager.port}",
        rule_files=shortened_rules(workdir / "rules"),
    )
    processes.add(prometheus).start()
    wait_until(lambda: prometheus.query('up{job="decaywatch"} == 1'), timeout=30, message="Prometheus scraping the monitor")
    return prometheus


@pytest.fixture(scope="module")
def oncall(
    kafka_bootstrap: str,
    kafka_admin: KafkaAdminClient,
    prometheus_binary: str,
    alertmanager_binary: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[OncallRun]:
    """Start the whole path, produce both models through it, wait for the alert, hand it to the tests, stop it all."""
    workdir = tmp_path_factory.mktemp("oncall")
    topics = create_topics(kafka_admin, "oncall")
    processes = Processes()
    webhook = WebhookReceiver().start()
    try:
        (workdir / "alertmanager").mkdir()
        am_config = alertmanager_config(workdir / "alertmanager" / "alertmanager.yml", webhook.url)
        alertmanager = processes.add(Alertmanager(alertmanager_binary, am_config, workdir / "alertmanager")).start()
        monitor = start_monitor(kafka_bootstrap, topics, workdir, processes)
        prometheus = start_prometheus(prometheus_binary, workdir / "prometheus", monitor, alertmanager, processes)
        produce(kafka_bootstrap, topics[0], synthetic_records(), rate=RATE)
        wait_for_all_events(prometheus, monitor)

        def degraded_notifications() -> list[tuple[str, dict[str, Any]]]:
            monitor.assert_running()
            return webhook.alerts(alertname="DecaywatchModelDegraded", model="decayer", status="firing")

        notifications = wait_until(
            degraded_notifications,
            timeout=60,
            message="Alertmanager's notification of DecaywatchModelDegraded for decayer",
        )
        yield OncallRun(prometheus, alertmanager, webhook, monitor, notifications[0])
    finally:
        processes.stop_all()
        webhook.close()
        try:
            kafka_admin.delete_topics(topics)
        except Exception as exc:  # cleanup only: a leftover topic must not fail the tests
            log.warning("could not delete test topics %s: %s", topics, exc)


def wait_for_all_events(prometheus: Prometheus, monitor: Monitor) -> None:
    """Wait until Prometheus has scraped the count of every event produced; fail at once if the monitor died."""
    expected = 2 * EVENTS_PER_MODEL

    def all_seen() -> bool:
        monitor.assert_running()
        return any(float(s["value"][1]) == expected for s in prometheus.query("sum(decaywatch_events_total)"))

    wait_until(all_seen, timeout=60, message=f"Prometheus to see all {expected} events processed")


def test_degraded_model_reaches_the_chat_receiver(oncall: OncallRun) -> None:
    path, alert = oncall.degraded
    assert path == "/chat"  # severity warning routes to the chat receiver
    assert alert["labels"]["severity"] == "warning"
    assert alert["labels"]["job"] == "decaywatch"
    description = alert["annotations"]["description"]
    assert "Model decayer" in description and "baseline of 85%" in description and "threshold of 10%" in description
    assert alert["annotations"]["runbook_url"].endswith("#decaywatchmodeldegraded")
    assert [a["labels"]["model"] for a in oncall.alertmanager.alerts(alertname="DecaywatchModelDegraded")] == ["decayer"]


def test_healthy_model_raises_no_alert(oncall: OncallRun) -> None:
    # Every event has been processed and scraped by now: the monitor's verdict on the healthy
    # model never flipped in any scrape of the run, and nothing fired or was notified for it.
    assert oncall.prometheus.query('max_over_time(decaywatch_degraded{model="healthy"}[5m]) == 0')
    assert oncall.prometheus.query('ALERTS{model="healthy"}') == []
    assert oncall.prometheus.query('decaywatch_alerts_total{model="healthy"} > 0') == []
    assert oncall.alertmanager.alerts(model="healthy") == []
    assert oncall.webhook.alerts(model="healthy") == []


def missing_data(run: OncallRun, queries: list[Query]) -> list[str]:
    return [f"{q.where}: {q.expr}" for q in queries if not run.prometheus.query(q.expr)]


def wait_for_data(run: OncallRun, queries: list[Query], what: str) -> None:
    """Wait until every query returns data; on timeout, name the queries that still return none."""
    missing: list[str] = []

    def complete() -> bool:
        missing[:] = missing_data(run, queries)
        return not missing

    try:
        wait_until(complete, timeout=30, message=what)
    except AssertionError as error:
        raise AssertionError(f"{error}; no data for: {missing}") from None


def test_every_dashboard_query_returns_data(oncall: OncallRun) -> None:
    queries = [Query(q.where, substitute_grafana_variables(q.expr)) for q in dashboard_queries()]
    wait_for_data(oncall, queries, "data for every dashboard query")
    models = get_json(f"{oncall.prometheus.url}/api/v1/label/model/values?match[]=decaywatch_events_total")["data"]
    assert sorted(models) == ["decayer", "healthy"]  # what the $model variable offers


def test_every_rule_expression_returns_data(oncall: OncallRun) -> None:
    queries = []
    for query in rule_queries():
        probe = SILENT_BY_DESIGN.get(query.where)
        if probe is not None:
            assert probe in query.expr, f"{query.where}: the probe {probe!r} is no longer part of its expression"
            queries.append(Query(f"{query.where} (without its threshold)", probe))
        else:
            queries.append(query)
    queries += [Query(f"recorded series {name}", name) for name in sorted(recorded_names())]
    wait_for_data(oncall, queries, "data for every rule expression")
    # ... and the silent ones are silent on this healthy run.
    for name in SILENT_BY_DESIGN:
        expr = next(q.expr for q in rule_queries() if q.where == name)
        assert oncall.prometheus.query(expr) == [], f"{name} returned data on a healthy run: {expr}"
