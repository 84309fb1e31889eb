"""``decaywatch monitor``: run the monitor service.

The parser builder (``add_parser``) and ``run(args) -> exit code`` are split,
as in kafka-python's own command-line tools, so tests can drive either.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from decaywatch.shared.kafka_settings import (
    KafkaAuthenticationError,
    add_kafka_arguments,
    env_name,
    kafka_client_config,
    redact,
    reporting_login_failures,
)
from decaywatch.shared.logs import configure_logging
from decaywatch.shared.policy_flags import add_policy_arguments, load_config, read_document

if TYPE_CHECKING:
    from decaywatch.consumer.endpoints import TlsSettings
    from decaywatch.consumer.runtime import MonitorSettings

log = logging.getLogger("decaywatch")

#: The values of ``--kafka-client`` (as ``decaywatch.consumer.runtime.KAFKA_CLIENTS``, which the parser must not import).
KAFKA_CLIENTS = ("kafka-python", "confluent")
CONFLUENT_INSTALL = "pip install 'decaywatch[confluent]'"


def add_parser(subparsers: Any, environ: Mapping[str, str] | None = None) -> argparse.ArgumentParser:
    env = os.environ if environ is None else environ
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "monitor",
        help="consume prediction events and export rolling accuracy, metrics and alerts",
        description="Consume prediction events from Kafka, keep rolling accuracy per model, "
        "export Prometheus metrics and publish alert events.",
    )
    add_kafka_arguments(parser, env)
    add_service_arguments(parser, env)
    add_policy_arguments(parser)
    parser.set_defaults(run=run)
    return parser


def _env(env: Mapping[str, str], flag: str, default: str) -> str:
    return env.get(env_name(flag), default)


def add_service_arguments(parser: argparse.ArgumentParser, env: Mapping[str, str]) -> None:
    group = parser.add_argument_group("topics and service")
    group.add_argument("--topic", default=_env(env, "--topic", "predictions"), help="prediction events topic")
    group.add_argument(
        "--labels-topic",
        default=_env(env, "--labels-topic", "") or None,
        help="label events also come on this topic (same partition count as --topic, keyed by model id)",
    )
    group.add_argument("--alerts-topic", default=_env(env, "--alerts-topic", "model-alerts"), help="alert events topic")
    group.add_argument(
        "--dead-letter-topic", default=_env(env, "--dead-letter-topic", "predictions-dlq"), help="rejected events topic"
    )
    group.add_argument("--group", default=_env(env, "--group", "decaywatch-monitor"), help="consumer group id")
    group.add_argument(
        "--metrics-port",
        type=int,
        default=int(_env(env, "--metrics-port", "9464")),
        help="HTTP port for /metrics, /healthz, /readyz, /models (0 = pick a free one and print it)",
    )
    group.add_argument("--metrics-addr", default=_env(env, "--metrics-addr", "0.0.0.0"), help="HTTP bind address")
    group.add_argument("--batch-size", type=int, default=int(_env(env, "--batch-size", "50000")), help="most records per poll")
    group.add_argument(
        "--log-format", choices=("text", "json"), default=_env(env, "--log-format", "text"), help="log line format"
    )
    group.add_argument(
        "--kafka-client",
        choices=KAFKA_CLIENTS,
        default=_env(env, "--kafka-client", KAFKA_CLIENTS[0]),
        help="Kafka client library: kafka-python (default), or confluent (librdkafka, several times faster; "
        f"{CONFLUENT_INSTALL})",
    )
    group.add_argument(
        "--state-topic",
        default=_env(env, "--state-topic", ""),
        help="compacted changelog that carries model state when partitions move (default GROUP-state)",
    )
    group.add_argument(
        "--checkpoint-interval",
        type=float,
        default=float(_env(env, "--checkpoint-interval", "5")),
        help="seconds between state checkpoints, each followed by the offset commit (default 5)",
    )
    group.add_argument("--no-state", action="store_true", help="keep no state changelog: a moved partition's models start afresh")
    group.add_argument(
        "--detailed-metrics",
        action="store_true",
        default=_env(env, "--detailed-metrics", "") not in ("", "0", "false"),
        help="also export the per-model series no dashboard or rule uses (late events, firing of the degradation and floor rules)",
    )
    group.add_argument(
        "--session-timeout-ms",
        type=int,
        default=int(_env(env, "--session-timeout-ms", "0")) or None,
        help="how soon the group notices a dead monitor (default kafka-python's 45000)",
    )
    group.add_argument(
        "--metrics-certfile", default=_env(env, "--metrics-certfile", "") or None, help="serve HTTPS with this certificate (PEM)"
    )
    group.add_argument(
        "--metrics-keyfile", default=_env(env, "--metrics-keyfile", "") or None, help="the certificate's private key (PEM)"
    )
    group.add_argument(
        "--metrics-client-cafile",
        default=_env(env, "--metrics-client-cafile", "") or None,
        help="require client certificates signed by this CA (mutual TLS)",
    )
    group.add_argument(
        "--alertmanager-url",
        action="append",
        default=[u for u in _env(env, "--alertmanager-url", "").split(",") if u],
        help="also push alerts to this Alertmanager (API v2); repeat for an HA pair (env: comma-separated)",
    )


def settings_from_args(args: argparse.Namespace) -> MonitorSettings:
    from decaywatch.consumer.runtime import MonitorSettings
    from decaywatch.monitor.config import ConfigError

    document = read_document(args)
    try:
        kafka = kafka_client_config(args, document.get("kafka"))
    except ValueError as error:
        raise ConfigError(f"[kafka] {error}") from None
    return MonitorSettings(
        kafka=kafka,
        topic=args.topic,
        labels_topic=args.labels_topic or None,
        alerts_topic=args.alerts_topic,
        dead_letter_topic=args.dead_letter_topic,
        group=args.group,
        metrics_addr=args.metrics_addr,
        metrics_port=args.metrics_port,
        batch_size=args.batch_size,
        config=load_config(args, document),
        alertmanager_urls=tuple(args.alertmanager_url),
        tls=_tls(args),
        state_topic=None if args.no_state else args.state_topic,
        session_timeout_ms=args.session_timeout_ms,
        checkpoint_interval_s=args.checkpoint_interval,
        kafka_client=_kafka_client(args),
        detailed_metrics=args.detailed_metrics,
    )


def _kafka_client(args: argparse.Namespace) -> str:
    """The chosen client, checked to be installed (the environment variable is not checked by argparse)."""
    import importlib.util

    from decaywatch.monitor.config import ConfigError

    client = str(getattr(args, "kafka_client", KAFKA_CLIENTS[0]))
    if client not in KAFKA_CLIENTS:
        raise ConfigError(f"--kafka-client must be one of {', '.join(KAFKA_CLIENTS)}, not {client!r}")
    if client == "confluent" and importlib.util.find_spec("confluent_kafka") is None:
        raise ConfigError(f"--kafka-client confluent needs the confluent-kafka package: {CONFLUENT_INSTALL}")
    return client


def _tls(args: argparse.Namespace) -> TlsSettings | None:
    from decaywatch.consumer.endpoints import TlsSettings
    from decaywatch.monitor.config import ConfigError

    certfile, keyfile = getattr(args, "metrics_certfile", None), getattr(args, "metrics_keyfile", None)
    if not certfile and not keyfile:
        return None
    if not (certfile and keyfile):
        raise ConfigError("--metrics-certfile and --metrics-keyfile go together")
    return TlsSettings(certfile, keyfile, getattr(args, "metrics_client_cafile", None))


def run(args: argparse.Namespace) -> int:
    from decaywatch.consumer.runtime import MonitorRuntime
    from decaywatch.consumer.topics import TopicLayoutError
    from decaywatch.monitor.config import ConfigError

    configure_logging(args.log_format)
    try:
        settings = settings_from_args(args)
    except ConfigError as error:
        print(f"decaywatch monitor: {error}", file=sys.stderr)
        return 2
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    try:
        with reporting_login_failures(settings.kafka):
            runtime = MonitorRuntime(settings)
        with runtime:
            print(f"decaywatch monitor: metrics at {runtime.http.url()}", flush=True)
            log.info(
                "consuming %s as group %s from %s (client: %s)",
                " and ".join(runtime.topics),
                settings.group,
                ",".join(settings.kafka["bootstrap_servers"]),
                settings.kafka_client,
            )
            runtime.service.run(stop)
            totals = runtime.service.totals
            log.info(
                "stopped: consumed %d messages (%d valid, %d rejected) in %d batches; last batch committed",
                totals.messages,
                totals.valid,
                totals.rejected,
                totals.batches,
            )
    except KafkaAuthenticationError as error:  # names user and mechanism, never the password
        print(f"decaywatch monitor: {error}", file=sys.stderr)
        return 1
    except TopicLayoutError as error:
        print(f"decaywatch monitor: {error}", file=sys.stderr)
        return 2
    except Exception as error:  # one clear line, not a traceback loop
        from kafka.errors import KafkaError

        if isinstance(error, (KafkaError, OSError, *_client_errors(settings.kafka_client))):
            name, text = type(error).__name__, str(error)
            line = text if text.startswith(f"{name}:") else f"{name}: {text}"  # kafka-python's errors name themselves
            print(f"decaywatch monitor: {redact(line, settings.kafka)}", file=sys.stderr)
            return 1
        raise
    return 0


def _client_errors(client: str) -> tuple[type[Exception], ...]:
    """The confluent client's own error types, reported in one line like kafka-python's."""
    if client != "confluent":
        return ()
    from confluent_kafka import KafkaException

    from decaywatch.consumer.confluent import KafkaClientError

    return (KafkaException, KafkaClientError)
