"""The PromQL of deploy/: every expression in the Grafana dashboard and the Prometheus rules, and the metrics they name.

Shared by the fast config checks (tests/unit/test_deploy_configs.py: only
metrics the monitor exports, recording rules, ``up`` and ``ALERTS`` are used) and the end-to-end run (tests/e2e: each
expression returns data from a real Prometheus).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from decaywatch.consumer.metrics import ServiceMetrics

REPO = Path(__file__).resolve().parents[1]
DEPLOY = REPO / "deploy"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "decaywatch.json"
RECORDING_RULES = DEPLOY / "prometheus" / "rules" / "decaywatch-recording.yml"
ALERTING_RULES = DEPLOY / "prometheus" / "rules" / "decaywatch-alerts.yml"
RULE_FILES = (RECORDING_RULES, ALERTING_RULES)

#: A decaywatch metric name, with the ``level:`` prefix and ``:operations`` suffix of
#: a recording rule when there is one (``model:decaywatch_events:rate5m``).
DECAYWATCH_NAME = re.compile(r"(?<![\w:])(?:[a-z_]+:)?decaywatch_[a-z0-9_]+(?::[a-z0-9_]+)?")
#: Grafana's variables: ``$model``, ``${model}``, ``$__rate_interval``, ...
GRAFANA_VARIABLE = re.compile(r"\$(?:\{(\w+)\}|(\w+))")
#: What the variables stand for when a query is sent to Prometheus directly.
GRAFANA_DURATIONS = {"__rate_interval": "5m", "__interval": "15s", "__range": "1h"}


@dataclass(frozen=True)
class Query:
    """One PromQL expression and where it comes from (for messages)."""

    where: str
    expr: str


@cache
def exported_metrics() -> frozenset[str]:
    """Every series name the monitor exports, read from its real registry (consumer/metrics.py).

    Families yield no samples before a model is seen, so names are derived from
    each family's type, as the exposition format writes them.
    """
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}
    return frozenset(family.name + suffix for family in ServiceMetrics().registry.collect() for suffix in suffixes[family.type])


def metric_names(expr: str) -> set[str]:
    """The decaywatch metric and recording-rule names an expression refers to.

    >>> sorted(metric_names('model:decaywatch_accuracy:ratio_rate5m / rate(decaywatch_events_total[5m])'))
    ['decaywatch_events_total', 'model:decaywatch_accuracy:ratio_rate5m']
    """
    return set(DECAYWATCH_NAME.findall(expr))


def load_rules() -> list[dict[str, Any]]:
    """Every rule of both rule files, in order."""
    rules: list[dict[str, Any]] = []
    for path in RULE_FILES:
        for group in yaml.safe_load(path.read_text())["groups"]:
            rules.extend(group["rules"])
    return rules


def recorded_names() -> set[str]:
    return {rule["record"] for rule in load_rules() if "record" in rule}


def rule_queries() -> list[Query]:
    return [Query(rule.get("record") or rule["alert"], str(rule["expr"])) for rule in load_rules()]


def load_dashboard() -> dict[str, Any]:
    return dict(json.loads(DASHBOARD.read_text()))


def _panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels", []))  # rows may hold collapsed panels


def dashboard_queries(dashboard: dict[str, Any] | None = None) -> list[Query]:
    """Panel targets, annotation queries and the template variables' queries (``label_values(...)`` as its selector)."""
    dashboard = dashboard if dashboard is not None else load_dashboard()
    queries = [
        Query(f"panel {panel['title']!r} target {target['refId']}", target["expr"])
        for panel in _panels(dashboard["panels"])
        for target in panel.get("targets", [])
    ]
    queries += [Query(f"annotation {a['name']!r}", a["expr"]) for a in dashboard["annotations"]["list"] if "expr" in a]
    for variable in dashboard["templating"]["list"]:
        if variable.get("type") == "query":
            match = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", variable["query"]["query"])
            assert match, f"variable {variable['name']}: only label_values(selector, label) is supported here"
            queries.append(Query(f"variable {variable['name']!r}", match.group(1)))
    return queries


def substitute_grafana_variables(expr: str) -> str:
    """The query as Prometheus would get it with every template variable at "All" (``.*``)."""

    def value(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        return GRAFANA_DURATIONS.get(name, ".*")

    return GRAFANA_VARIABLE.sub(value, expr)
