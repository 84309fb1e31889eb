"""``decaywatch kafka {start,stop,status,fetch}``: the local broker from the command line.

This is the only layer that reads the environment (through
:meth:`BrokerSettings.from_environment`) and prints; failures become one
error line on stderr (plus the evidence, indented) and exit code 1, because a
traceback says less than the command that failed and the log's last lines.
"""

from __future__ import annotations

import argparse
import logging
import sys
import textwrap
import warnings
from pathlib import Path
from typing import Any

from decaywatch.deploy.kafka.runner import SCRAM_MECHANISMS, BrokerSettings, KafkaRunnerError, LocalKafka

#: ``status`` exit code when no broker runs (0 means running), so scripts can branch on it.
EXIT_NOT_RUNNING = 3
DEFAULT_TIMEOUTS = {"start": 90.0, "stop": 30.0, "fetch": 600.0, "status": 0.0}


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``kafka`` on the ``decaywatch`` command tree and set ``args.run``."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "kafka",
        help="run a local Apache Kafka broker (no Docker: Java + jars from Maven Central)",
        description=(
            "Run a single-node Apache Kafka broker (KRaft) for development and tests. "
            "Jars are fetched once with Maven into $DECAYWATCH_CACHE_DIR (default ~/.cache/decaywatch); "
            "broker state lives in $DECAYWATCH_KAFKA_DIR (default ~/.cache/decaywatch/kafka-broker). "
            "With --sasl-port and --scram-user a second client listener requires SASL/SCRAM, e.g. "
            "'decaywatch kafka start --sasl-port 9094 --scram-user alice:alice-secret', then clients use "
            "--bootstrap-servers 127.0.0.1:9094 --security-protocol SASL_PLAINTEXT --sasl-mechanism SCRAM-SHA-256 "
            "--sasl-username alice (password in DECAYWATCH_SASL_PASSWORD)."
        ),
    )
    parser.add_argument(
        "action",
        choices=("start", "stop", "status", "fetch"),
        help="start (detached; idempotent), stop, status (exit 0 running, 3 not), fetch (download jars only)",
    )
    parser.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="client (PLAINTEXT) port (default 9092)")
    parser.add_argument("--controller-port", type=int, help="KRaft controller port (default 19093; 9093 is Alertmanager's)")
    parser.add_argument(
        "--sasl-port",
        type=int,
        help="also listen for SASL_PLAINTEXT clients (SCRAM) on this port; the PLAINTEXT port stays",
    )
    parser.add_argument(
        "--scram-user",
        action="append",
        type=_scram_user,
        metavar="NAME:PASSWORD",
        help="a SCRAM user for the SASL listener (repeatable); created when storage is first formatted, "
        'so later changes need a fresh --data-dir. Passwords may not contain , [ ] " \\ or spaces',
    )
    parser.add_argument(
        "--scram-mechanism",
        action="append",
        choices=SCRAM_MECHANISMS,
        help="SCRAM mechanism the SASL listener offers (repeatable; default both)",
    )
    parser.add_argument("--data-dir", type=_path, help="broker state: data/, server.properties, broker.log")
    parser.add_argument("--cache-dir", type=_path, help="where the downloaded jars are kept")
    parser.add_argument("--heap-mb", type=int, help="broker JVM heap in MB (default 512, at most 1024)")
    parser.add_argument(
        "--timeout",
        type=float,
        help="seconds to wait (defaults: start 90, stop 30 before SIGKILL, fetch 600)",
    )
    parser.set_defaults(run=run)
    return parser


def run(args: argparse.Namespace) -> int:
    """Carry out one action; returns the exit code."""
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    try:
        settings = BrokerSettings.from_environment(
            host=args.host,
            port=args.port,
            controller_port=args.controller_port,
            data_dir=args.data_dir,
            cache_dir=args.cache_dir,
            heap_mb=args.heap_mb,
            sasl_port=args.sasl_port,
            scram_users=dict(args.scram_user) if args.scram_user else None,
            scram_mechanisms=tuple(dict.fromkeys(args.scram_mechanism)) if args.scram_mechanism else None,
        )
    except ValueError as exc:
        return _fail(args.action, str(exc))
    kafka = LocalKafka(settings)
    timeout = args.timeout if args.timeout is not None else DEFAULT_TIMEOUTS[args.action]
    try:
        return _ACTIONS[args.action](kafka, timeout)
    except KafkaRunnerError as exc:
        return _fail(args.action, exc.summary, exc.details)
    except OSError as exc:
        return _fail(args.action, str(exc))


def _start(kafka: LocalKafka, timeout: float) -> int:
    # The broker outlives this command on purpose; don't let `python -X dev` call that a leak.
    warnings.filterwarnings("ignore", message=r"subprocess \d+ is still running", category=ResourceWarning)
    info = kafka.start(timeout=timeout)
    if info.already_running:
        print(f"Kafka broker already running at {info.bootstrap_servers} (pid {info.pid})")
    else:
        print(f"Kafka broker running at {info.bootstrap_servers} (pid {info.pid}), started in {info.started_in_seconds:.1f} s")
    print(f"  bootstrap servers: {info.bootstrap_servers}")
    if info.sasl_bootstrap_servers:
        print(f"  SASL_PLAINTEXT:    {info.sasl_bootstrap_servers} (SCRAM users: {_scram_summary(kafka)})")
    print(f"  log file:          {info.log_path}")
    print(f"  data dir:          {kafka.settings.data_dir}")
    return 0


def _stop(kafka: LocalKafka, timeout: float) -> int:
    if kafka.stop(timeout=timeout):
        print(f"Kafka broker stopped ({kafka.settings.data_dir})")
    else:
        print(f"No Kafka broker running ({kafka.settings.data_dir})")
    return 0


def _status(kafka: LocalKafka, timeout: float) -> int:
    status = kafka.status()
    if status.running:
        print(f"running at {status.bootstrap_servers} (pid {status.pid})")
        if status.sasl_bootstrap_servers:
            print(f"  SASL_PLAINTEXT: {status.sasl_bootstrap_servers} (SCRAM users: {_scram_summary(kafka)})")
    else:
        print("not running")
    print(f"  log file: {status.log_path}")
    print(f"  data dir: {status.data_dir}")
    return 0 if status.running else EXIT_NOT_RUNNING


def _fetch(kafka: LocalKafka, timeout: float) -> int:
    print(kafka.fetch(timeout=timeout))
    return 0


_ACTIONS = {"start": _start, "stop": _stop, "status": _status, "fetch": _fetch}


def _fail(action: str, summary: str, details: str = "") -> int:
    print(f"decaywatch kafka {action}: error: {summary}", file=sys.stderr)
    if details:
        print(textwrap.indent(details, "    "), file=sys.stderr)
    return 1


def _path(value: str) -> Path:
    return Path(value).expanduser()


def _scram_summary(kafka: LocalKafka) -> str:
    """``alice (SCRAM-SHA-256, SCRAM-SHA-512)``: the users formatted into storage (never their passwords)."""
    users: dict[str, list[str]] = {}
    for mechanism, name in kafka.scram_credentials():
        users.setdefault(name, []).append(mechanism)
    return "; ".join(f"{name} ({', '.join(mechanisms)})" for name, mechanisms in users.items()) or "none"


def _scram_user(value: str) -> tuple[str, str]:
    """``NAME:PASSWORD`` (the password may itself contain ``:``); the error message never repeats the value."""
    name, colon, password = value.partition(":")
    if not (name and colon and password):
        raise argparse.ArgumentTypeError("expected NAME:PASSWORD with both parts non-empty")
    return name, password
