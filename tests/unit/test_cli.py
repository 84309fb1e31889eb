"""The ``decaywatch`` command itself: ``--version`` from the package metadata, and a parser that is cheap to build."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys

import pytest

from decaywatch.cli import main
from decaywatch.consumer.runtime import MonitorSettings
from decaywatch.shared import version

HEAVY = ("numpy", "kafka", "prometheus_client")
"""What building the parser must not import: ``decaywatch --help`` and ``--version`` stay instant."""


def test_version_is_the_package_metadata(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0
    out, err = capsys.readouterr()
    assert out == f"decaywatch {importlib.metadata.version('decaywatch')}\n" and err == ""


def test_version_without_installed_metadata_is_unknown(monkeypatch: pytest.MonkeyPatch) -> None:
    def missing(name: str) -> str:
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "version", missing)
    assert version.package_version.__wrapped__() == version.UNKNOWN


@pytest.mark.parametrize("argv", [["--help"], ["--version"], ["monitor", "--help"], ["replay", "--help"]])
def test_help_and_version_import_nothing_heavy(argv: list[str]) -> None:
    probe = (
        "import sys\n"
        "from decaywatch.cli import main\n"
        "try:\n"
        f"    main({argv!r})\n"
        "except SystemExit as exit:\n"
        "    assert exit.code == 0, exit.code\n"
        f"print(sorted(set({HEAVY!r}) & set(sys.modules)))\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], check=True, capture_output=True, text=True)
    assert done.stdout.splitlines()[-1] == "[]", done.stdout


def monitor_settings(argv: list[str], environ: dict[str, str]) -> MonitorSettings:
    import argparse

    from decaywatch.consumer import cli

    parser = argparse.ArgumentParser()
    cli.add_parser(parser.add_subparsers(), environ)
    return cli.settings_from_args(parser.parse_args(["monitor", *argv]))


def test_detailed_metrics_are_opt_in_by_flag_or_environment() -> None:
    assert not monitor_settings([], {}).detailed_metrics
    assert not monitor_settings([], {"DECAYWATCH_DETAILED_METRICS": "0"}).detailed_metrics
    assert monitor_settings([], {"DECAYWATCH_DETAILED_METRICS": "1"}).detailed_metrics
    assert monitor_settings(["--detailed-metrics"], {}).detailed_metrics
