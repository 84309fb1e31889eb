"""Test copies of the deploy/ configs: the project's real files, pointed at loopback processes and sped up.

Only what cannot work on a test machine is changed (host names, ports, paths)
plus the timings (1 s scrapes and evaluations, short ``for:`` and grouping
delays); rules, routes, receivers and inhibitions are the real ones.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from tests.e2e.processes import DEPLOY

PROMETHEUS_CONFIG = DEPLOY / "prometheus" / "prometheus.yml"
RULE_FILES = (
    DEPLOY / "prometheus" / "rules" / "decaywatch-recording.yml",
    DEPLOY / "prometheus" / "rules" / "decaywatch-alerts.yml",
)
ALERTMANAGER_CONFIG = DEPLOY / "alertmanager" / "alertmanager.yml"


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def write_yaml(path: Path, document: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(document, sort_keys=False, width=1000))
    return path


def shortened_rules(dest_dir: Path, for_duration: str = "2s") -> list[Path]:
    """Copies of the rule files with every ``for:`` set to ``for_duration`` (production values are minutes)."""
    copies = []
    for source in RULE_FILES:
        document = load_yaml(source)
        for group in document["groups"]:
            for rule in group["rules"]:
                if "for" in rule:
                    rule["for"] = for_duration
        copies.append(write_yaml(dest_dir / source.name, document))
    return copies


def prometheus_config(
    dest_dir: Path,
    *,
    targets: Mapping[str, str],
    alertmanager: str,
    rule_files: list[Path],
    interval: str = "1s",
) -> Path:
    """deploy/prometheus/prometheus.yml with static targets replaced per job (``targets``: job -> host:port).

    The file_sd job reads an empty target list from ``dest_dir/targets`` (the
    example's hosts do not exist here). A job this function does not know
    fails the test, so a new job in the real file gets a look here too.
    """
    config = load_yaml(PROMETHEUS_CONFIG)
    config["global"].update(scrape_interval=interval, evaluation_interval=interval, scrape_timeout=interval)
    config["rule_files"] = [str(path) for path in rule_files]
    config["alerting"]["alertmanagers"] = [{"static_configs": [{"targets": [alertmanager]}]}]
    targets_dir = dest_dir / "targets"
    targets_dir.mkdir(parents=True, exist_ok=True)
    (targets_dir / "none.json").write_text("[]")
    for job in config["scrape_configs"]:
        name = job["job_name"]
        if "file_sd_configs" in job:
            job["file_sd_configs"] = [{"files": [str(targets_dir / "*.json")], "refresh_interval": "1s"}]
        elif name in targets:
            job["static_configs"] = [{"targets": [targets[name]]}]
        else:
            raise AssertionError(f"scrape job {name!r} of {PROMETHEUS_CONFIG} has no test target")
    return write_yaml(dest_dir / "prometheus.yml", config)


def alertmanager_config(dest: Path, webhook_url: str, group_wait: str = "1s") -> Path:
    """deploy/alertmanager/alertmanager.yml, every webhook sent to ``{webhook_url}/{receiver}``, grouping sped up."""
    config = load_yaml(ALERTMANAGER_CONFIG)
    for receiver in config["receivers"]:
        for webhook in receiver.get("webhook_configs", []):
            webhook["url"] = f"{webhook_url}/{receiver['name']}"

    def speed_up(route: dict[str, Any]) -> None:
        for key in ("group_wait", "group_interval"):
            if key in route or route is config["route"]:
                route[key] = group_wait
        for child in route.get("routes", []):
            speed_up(child)

    speed_up(config["route"])
    return write_yaml(dest, config)
