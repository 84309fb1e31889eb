"""The `decaywatch` command: one parser tree, each subcommand owned by its package.

Each subcommand module exposes ``add_parser(subparsers)``, which registers its
parser and sets ``run`` (a function ``run(args) -> int`` returning the exit code),
so the packages stay independent and this file only wires them together.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def build_parser() -> argparse.ArgumentParser:
    """Build the whole command tree (no side effects: nothing is imported eagerly that starts work)."""
    from decaywatch.consumer import cli as monitor_cli
    from decaywatch import baseline, demo, replay
    from decaywatch.deploy.kafka import cli as kafka_cli
    from decaywatch.producer import cli as producer_cli

    parser = argparse.ArgumentParser(
        prog="decaywatch",
        description="Catch ML models that decay in production: Kafka in, Prometheus metrics and alert events out.",
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    demo.add_parser(subparsers)
    producer_cli.add_parser(subparsers)
    monitor_cli.add_parser(subparsers)
    replay.add_parser(subparsers)
    baseline.add_parser(subparsers)
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
