"""The `decaywatch` command: one parser tree, each subcommand owned by its package.

Each subcommand module exposes ``add_parser(subparsers)``, which registers its
parser and sets ``run`` (a function ``run(args) -> int`` returning the exit code),
so the packages stay independent and this file only wires them together.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any


class _PrintVersion(argparse.Action):
    """``--version``: print ``decaywatch VERSION`` (from the package metadata) and exit; looked up only when asked."""

    def __init__(self, option_strings: Sequence[str], dest: str = argparse.SUPPRESS, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(
        self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any, option_string: str | None = None
    ) -> None:
        from decaywatch.shared.version import package_version

        print(f"{parser.prog} {package_version()}")
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    """Build the whole command tree (no side effects, and nothing heavy imported: ``--help`` and ``--version`` stay instant)."""
    from decaywatch import baseline, demo, policy, replay
    from decaywatch.consumer import cli as monitor_cli
    from decaywatch.deploy.kafka import cli as kafka_cli
    from decaywatch.producer import cli as producer_cli

    parser = argparse.ArgumentParser(
        prog="decaywatch",
        description="Catch ML models that decay in production: Kafka in, Prometheus metrics and alert events out.",
    )
    parser.add_argument("--version", action=_PrintVersion, help="print the installed decaywatch version and exit")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    demo.add_parser(subparsers)
    producer_cli.add_parser(subparsers)
    monitor_cli.add_parser(subparsers)
    replay.add_parser(subparsers)
    baseline.add_parser(subparsers)
    policy.add_parser(subparsers)
    kafka_cli.add_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.run(args))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
