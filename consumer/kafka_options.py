"""Kafka client settings shared by the producer and the monitor: flags, environment, and client kwargs.

Container users configure through the environment, so every flag here has an
environment variable (``DECAYWATCH_<FLAG>``, plus the conventional
``KAFKA_BOOTSTRAP_SERVERS``).  The environment mapping is passed in by the
entry point; nothing here reads ``os.environ`` itself.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from typing import Any

DEFAULT_BOOTSTRAP = "127.0.0.1:9092"

_SECURITY_FLAGS: tuple[tuple[str, str, str], ...] = (
    ("--security-protocol", "security_protocol", "PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL"),
    ("--sasl-mechanism", "sasl_mechanism", "PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512"),
    ("--sasl-username", "sasl_plain_username", "SASL user name"),
    ("--sasl-password", "sasl_plain_password", "SASL password (prefer the environment variable)"),
    ("--ssl-cafile", "ssl_cafile", "CA certificate file (PEM)"),
    ("--ssl-certfile", "ssl_certfile", "client certificate file (PEM)"),
    ("--ssl-keyfile", "ssl_keyfile", "client private key file (PEM)"),
)


def env_name(flag: str) -> str:
    return "DECAYWATCH_" + flag.lstrip("-").replace("-", "_").upper()


def add_kafka_arguments(parser: argparse.ArgumentParser, environ: Mapping[str, str]) -> None:
    """Add ``--bootstrap-servers`` and the client security flags, defaulting from the environment."""
    group = parser.add_argument_group("Kafka connection")
    bootstrap = environ.get("DECAYWATCH_BOOTSTRAP_SERVERS") or environ.get("KAFKA_BOOTSTRAP_SERVERS") or DEFAULT_BOOTSTRAP
    group.add_argument(
        "--bootstrap-servers",
        default=bootstrap,
        help=f"comma-separated host:port list (env DECAYWATCH_BOOTSTRAP_SERVERS or KAFKA_BOOTSTRAP_SERVERS; default {bootstrap})",
    )
    for flag, dest, text in _SECURITY_FLAGS:
        group.add_argument(flag, dest=dest, default=environ.get(env_name(flag)), help=f"{text} (env {env_name(flag)})")


def kafka_client_config(args: argparse.Namespace) -> dict[str, Any]:
    """Keyword arguments for kafka-python clients, from the parsed flags."""
    config: dict[str, Any] = {"bootstrap_servers": args.bootstrap_servers.split(",")}
    for _flag, dest, _text in _SECURITY_FLAGS:
        value = getattr(args, dest, None)
        if value:
            config[dest] = value
    return config
