"""Prometheus' and Alertmanager's own checkers on the files in deploy/: config, rules, rule unit tests, routing.

``promtool test rules`` runs deploy/prometheus/tests/*.yml: for every alert one
case where it fires (with its rendered annotations) and one where it stays silent.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.e2e.processes import DEPLOY, require_tool

PROMETHEUS_DIR = DEPLOY / "prometheus"
ALERTMANAGER_CONFIG = DEPLOY / "alertmanager" / "alertmanager.yml"


def run_tool(*argv: str | Path, cwd: Path = PROMETHEUS_DIR) -> str:
    """The tool's standard output; a non-zero exit fails the test with everything it printed."""
    done = subprocess.run([str(a) for a in argv], cwd=cwd, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, f"{' '.join(map(str, argv))} exited with {done.returncode}:\n{done.stdout}{done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def promtool() -> str:
    return require_tool("promtool")


@pytest.fixture(scope="module")
def amtool() -> str:
    return require_tool("amtool")


def test_prometheus_config_is_valid(promtool: str) -> None:
    output = run_tool(promtool, "check", "config", "prometheus.yml")
    assert "2 rule files found" in output


def test_rule_files_are_valid(promtool: str) -> None:
    run_tool(promtool, "check", "rules", *sorted((PROMETHEUS_DIR / "rules").glob("*.yml")))


def test_rule_unit_tests_pass(promtool: str) -> None:
    tests = sorted((PROMETHEUS_DIR / "tests").glob("*.yml"))
    assert tests, "no promtool rule tests found"
    run_tool(promtool, "test", "rules", *tests)


def test_alertmanager_config_is_valid(amtool: str) -> None:
    output = run_tool(amtool, "check-config", ALERTMANAGER_CONFIG)
    assert "SUCCESS" in output


@pytest.mark.parametrize(
    ("labels", "receiver"),
    [
        (["alertname=DecaywatchAccuracyBelowFloor", "severity=critical", "model=churn"], "pager"),
        (["alertname=DecaywatchMonitorDown", "severity=critical"], "pager"),
        (["alertname=DecaywatchModelDegraded", "severity=warning", "model=churn"], "chat"),
        (["alertname=DecaywatchConsumerLagHigh", "severity=warning"], "chat"),
        (["alertname=SomethingElse"], "chat"),
    ],
)
def test_alertmanager_routes_by_severity(amtool: str, labels: list[str], receiver: str) -> None:
    output = run_tool(amtool, "config", "routes", "test", f"--config.file={ALERTMANAGER_CONFIG}", *labels)
    assert output.strip() == receiver
