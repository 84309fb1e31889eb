"""SASL/SCRAM on a real broker: ``decaywatch produce`` and ``decaywatch monitor`` log in with the right password
and fail in one line with a wrong one, with the password nowhere in their output or endpoints.

The module starts its own broker (free ports, a temporary data dir, the shared jar cache) with a
SASL_PLAINTEXT listener whose SCRAM user is created when storage is formatted. A wrong password makes
kafka-python retry until its 30 s bootstrap timeout, so the three wrong-password runs (monitor with
flags, monitor with environment variables, produce) run side by side, once, in a module fixture.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

from decaywatch.deploy.kafka.runner import BrokerInfo
from decaywatch.shared.kafka_settings import BOOTSTRAP_ENV, CLOSED_DURING_LOGIN, env_name
from tests.helpers import scrape, start_test_broker, unique_name, wait_until

#: ':' and '=' travel through flags, the environment and StorageTool's --add-scram syntax unharmed.
PASSWORD = "alice-s3cret:with=signs"
WRONG_PASSWORD = "mallory-guess-42"
EVENTS = 300
#: kafka-python gives up bootstrapping after 30 s; the process must be gone well before this.
FAILURE_DEADLINE = 60.0
CLIENT_ENV = [*BOOTSTRAP_ENV] + [env_name(flag) for flag in (
    "--security-protocol", "--sasl-mechanism", "--sasl-username", "--sasl-password",
    "--ssl-cafile", "--ssl-certfile", "--ssl-keyfile",
)]  # fmt: skip


@pytest.fixture(scope="module")
def sasl_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerInfo]:
    kafka, info = start_test_broker(tmp_path_factory.mktemp("kafka-sasl"), ports=3, scram_users={"alice": PASSWORD}, heap_mb=256)
    try:
        yield info
    finally:
        kafka.stop()


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without Kafka client settings (so none leak in), plus ``extra``."""
    return {**{k: v for k, v in os.environ.items() if k not in CLIENT_ENV}, **extra}


def decaywatch(*args: str) -> list[str]:
    return [sys.executable, "-m", "decaywatch", *args]


def login_flags(mechanism: str, password: str | None) -> list[str]:
    flags = ["--security-protocol", "SASL_PLAINTEXT", "--sasl-mechanism", mechanism, "--sasl-username", "alice"]
    return flags + (["--sasl-password", password] if password is not None else [])


def monitor_flags(bootstrap: str, topic: str) -> list[str]:
    return [
        "monitor", "--bootstrap-servers", bootstrap, "--topic", topic, "--group", unique_name("sasl"),
        "--alerts-topic", f"{topic}-alerts", "--dead-letter-topic", f"{topic}-dlq",
        "--metrics-port", "0", "--metrics-addr", "127.0.0.1",
    ]  # fmt: skip


def get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as response:
        return str(response.read().decode())


def events_counted(metrics_url: str) -> float:
    return sum(value for (name, _), value in scrape(metrics_url).items() if name == "decaywatch_events_total")


def test_right_password_produces_and_monitors_without_showing_it(
    sasl_broker: BrokerInfo, tmp_path: Path, kafka_client: str
) -> None:
    bootstrap = sasl_broker.sasl_bootstrap_servers
    assert bootstrap is not None
    topic = unique_name("sasl-ok")
    produced = subprocess.run(
        decaywatch("produce", "--bootstrap-servers", bootstrap, "--topic", topic, "--models", "m=stable",
                   "--count", str(EVENTS), *login_flags("SCRAM-SHA-512", PASSWORD)),
        capture_output=True, text=True, timeout=60, env=clean_env(), check=False,
    )  # fmt: skip
    assert produced.returncode == 0, produced.stderr
    assert f"sent {EVENTS} events" in produced.stdout
    assert PASSWORD not in produced.stdout + produced.stderr

    out, err = tmp_path / "monitor.out", tmp_path / "monitor.err"
    with open(out, "w") as stdout, open(err, "w") as stderr:
        monitor = subprocess.Popen(
            decaywatch(*monitor_flags(bootstrap, topic), *login_flags("SCRAM-SHA-256", PASSWORD), "--kafka-client", kafka_client),
            stdout=stdout, stderr=stderr, text=True, env=clean_env(),
        )  # fmt: skip
    try:
        found = wait_until(lambda: re.search(r"metrics at (http://\S+)", out.read_text()), timeout=45,
                           message=f"the monitor's metrics URL (stderr: {err.read_text()[-2000:]!r})")  # fmt: skip
        metrics_url = found.group(1)
        wait_until(lambda: events_counted(metrics_url) >= EVENTS, timeout=45, message=f"{EVENTS} events counted")
        models = get(metrics_url.replace("/metrics", "/models"))
        assert json.loads(models)["m"]["events"] == EVENTS
        assert PASSWORD not in models and PASSWORD not in get(metrics_url)
    finally:
        monitor.send_signal(signal.SIGTERM)
        code = monitor.wait(timeout=30)
    output = out.read_text() + err.read_text()
    assert code == 0, output
    assert PASSWORD not in output
    assert "Traceback" not in output


@dataclass(frozen=True)
class Finished:
    code: int
    stdout: str
    stderr: str
    seconds: float


@pytest.fixture(scope="module")
def wrong_password_runs(sasl_broker: BrokerInfo) -> Mapping[str, Finished]:
    """Four processes with a wrong password, run side by side: monitor with flags, with the environment, produce,
    and the monitor on librdkafka without a state topic."""
    bootstrap = sasl_broker.sasl_bootstrap_servers
    assert bootstrap is not None
    topic = unique_name("sasl-wrong")
    by_env = {
        "DECAYWATCH_BOOTSTRAP_SERVERS": bootstrap, "DECAYWATCH_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
        "DECAYWATCH_SASL_MECHANISM": "SCRAM-SHA-512", "DECAYWATCH_SASL_USERNAME": "alice",
        "DECAYWATCH_SASL_PASSWORD": WRONG_PASSWORD,
    }  # fmt: skip
    commands = {
        "monitor-flags": (decaywatch(*monitor_flags(bootstrap, topic), *login_flags("SCRAM-SHA-256", WRONG_PASSWORD)),
                          clean_env()),
        "monitor-env": (decaywatch("monitor", "--topic", topic, "--metrics-port", "0", "--metrics-addr", "127.0.0.1"),
                        clean_env(**by_env)),
        "produce-env": (decaywatch("produce", "--topic", topic, "--models", "m=stable", "--count", "5"),
                        clean_env(**by_env)),
        "monitor-confluent": (decaywatch(*monitor_flags(bootstrap, topic), *login_flags("SCRAM-SHA-256", WRONG_PASSWORD),
                                         "--kafka-client", "confluent", "--no-state"), clean_env()),
    }  # fmt: skip
    began = time.monotonic()
    processes = {
        name: subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        for name, (argv, env) in commands.items()
    }
    finished: dict[str, Finished] = {}
    try:
        for name, process in processes.items():
            stdout, stderr = process.communicate(timeout=max(began + FAILURE_DEADLINE - time.monotonic(), 0.1))
            finished[name] = Finished(process.returncode, stdout, stderr, time.monotonic() - began)
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.kill()
                process.wait(5)
    return finished


def assert_one_line_login_failure(run: Finished, command: str, mechanism: str) -> None:
    lines = run.stderr.splitlines()
    assert run.code == 1, run.stderr
    assert len(lines) == 1, f"expected one error line, got:\n{run.stderr}"
    assert lines[0].startswith(f"decaywatch {command}: ")
    assert f"Kafka authentication failed for user 'alice' ({mechanism})" in lines[0]
    assert "Traceback" not in run.stderr
    assert WRONG_PASSWORD not in run.stdout + run.stderr and PASSWORD not in run.stdout + run.stderr
    assert run.seconds < FAILURE_DEADLINE


def test_wrong_password_in_flags_stops_the_monitor_with_one_line(wrong_password_runs: Mapping[str, Finished]) -> None:
    run = wrong_password_runs["monitor-flags"]
    assert_one_line_login_failure(run, "monitor", "SCRAM-SHA-256")
    assert "metrics at" not in run.stdout


def test_wrong_password_in_the_environment_stops_the_monitor_with_one_line(
    wrong_password_runs: Mapping[str, Finished],
) -> None:
    assert_one_line_login_failure(wrong_password_runs["monitor-env"], "monitor", "SCRAM-SHA-512")


def test_wrong_password_stops_produce_with_one_line(wrong_password_runs: Mapping[str, Finished]) -> None:
    assert_one_line_login_failure(wrong_password_runs["produce-env"], "produce", "SCRAM-SHA-512")


def test_wrong_password_stops_the_monitor_on_librdkafka_with_the_same_last_line(
    wrong_password_runs: Mapping[str, Finished],
) -> None:
    """The monitor's start-up probes (the input topics' layout, creating the output topics) use kafka-python
    whichever client then consumes, so they meet the refusal first: the broker's words, or, when kafka-python
    misses the broker's last response (a race), that it closed every connection during the login. Any log
    lines about it come before the command's line, which ends the output."""
    run = wrong_password_runs["monitor-confluent"]
    assert run.code == 1, run.stderr
    last = run.stderr.splitlines()[-1]
    assert last.startswith("decaywatch monitor: Kafka authentication failed for user 'alice' (SCRAM-SHA-256)"), run.stderr
    assert "invalid credentials" in last or CLOSED_DURING_LOGIN in last, last
    assert "Traceback" not in run.stderr
    assert WRONG_PASSWORD not in run.stdout + run.stderr and PASSWORD not in run.stdout + run.stderr
    assert run.seconds < FAILURE_DEADLINE
