"""Kafka client settings shared by the producer and the monitor: flags, environment, client kwargs, and login failures.

Container users configure through the environment, so every flag here has an
environment variable (``DECAYWATCH_<FLAG>``, plus the conventional
``KAFKA_BOOTSTRAP_SERVERS``).  The environment mapping is passed in by the
entry point; nothing here reads ``os.environ`` itself.  It is read at one of
two moments, with the same precedence either way: when the parser is built
(``add_kafka_arguments(parser, environ)``: the flag defaults, and so
``--help``, show it; the monitor), or when the settings are resolved
(``add_kafka_arguments(parser)`` then ``kafka_client_config(args,
environ=...)``; the producer, whose ``run`` takes the environment).

Security settings become kafka-python keyword arguments.  kafka-python names
the SASL user and password ``sasl_plain_username`` / ``sasl_plain_password``
for every mechanism it offers, SCRAM-SHA-256/512 included (see
``kafka/net/sasl/scram.py``), so the ``--sasl-*`` flags map there whatever the
mechanism.  Precedence: flag, then environment, then the ``[kafka]`` table of
the config file (:func:`kafka_client_config`'s ``file_table``).  The monitor's
librdkafka client (``--kafka-client confluent``) gets the same settings renamed
by :func:`librdkafka_config`.

Secrets (the SASL password, a key password) are never printed: they are left
out of :class:`KafkaAuthenticationError` and blanked by :func:`redact`.

kafka-python 3.0 retries a refused SASL login until ``bootstrap_timeout_ms``
(30 s) and then raises a ``KafkaTimeoutError`` that does not say why, logging
every attempt meanwhile; :func:`reporting_login_failures` turns that into one
:class:`KafkaAuthenticationError`.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import re
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

DEFAULT_BOOTSTRAP = "127.0.0.1:9092"
BOOTSTRAP_ENV = ("DECAYWATCH_BOOTSTRAP_SERVERS", "KAFKA_BOOTSTRAP_SERVERS")
#: The config file's table of Kafka client settings (keys: ``bootstrap_servers`` and the ``FILE_KEYS``).
FILE_TABLE = "kafka"
#: kafka-python keyword arguments whose values are secrets.
SECRET_KEYS = frozenset({"sasl_plain_password", "ssl_password"})
REDACTED = "***"

#: (flag, kafka-python keyword, help). The config file's key is the flag without dashes, e.g. ``sasl_password``.
_SECURITY_FLAGS: tuple[tuple[str, str, str], ...] = (
    ("--security-protocol", "security_protocol", "PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL"),
    ("--sasl-mechanism", "sasl_mechanism", "PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512"),
    ("--sasl-username", "sasl_plain_username", "SASL user name (any mechanism)"),
    ("--sasl-password", "sasl_plain_password", "SASL password (prefer the environment variable: flags show in ps)"),
    ("--ssl-cafile", "ssl_cafile", "CA certificate file (PEM)"),
    ("--ssl-certfile", "ssl_certfile", "client certificate file (PEM)"),
    ("--ssl-keyfile", "ssl_keyfile", "client private key file (PEM)"),
)
#: Config-file key -> kafka-python keyword, for the security settings.
FILE_KEYS = {flag.lstrip("-").replace("-", "_"): dest for flag, dest, _text in _SECURITY_FLAGS}
#: Where ``args.bootstrap_servers`` came from: "flag", "env" or "default" (the file may replace only the last).
_BOOTSTRAP_SOURCE = "_bootstrap_source"


def env_name(flag: str) -> str:
    return "DECAYWATCH_" + flag.lstrip("-").replace("-", "_").upper()


class _Given(argparse.Action):
    """Stores the value and notes that it came from the command line."""

    def __call__(
        self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any, option: str | None = None
    ) -> None:
        setattr(namespace, self.dest, values)
        setattr(namespace, _BOOTSTRAP_SOURCE, "flag")


def bootstrap_from_env(environ: Mapping[str, str]) -> str | None:
    """The bootstrap list from the first non-blank of ``BOOTSTRAP_ENV``, else ``None``.

    >>> bootstrap_from_env({"DECAYWATCH_BOOTSTRAP_SERVERS": " ", "KAFKA_BOOTSTRAP_SERVERS": "k:9092"})
    'k:9092'
    """
    return next((environ[name].strip() for name in BOOTSTRAP_ENV if environ.get(name, "").strip()), None)


def add_kafka_arguments(parser: argparse.ArgumentParser, environ: Mapping[str, str] | None = None) -> None:
    """Add ``--bootstrap-servers`` and the client security flags.

    With ``environ`` the flags default from it now (and ``--help`` shows the
    bootstrap list in use); without, they default to ``None`` and
    :func:`kafka_client_config` reads the environment it is given at run time.
    """
    group = parser.add_argument_group("Kafka connection")
    if environ is None:
        default, source = None, "default"
        shown = f"${BOOTSTRAP_ENV[0]}, else ${BOOTSTRAP_ENV[1]}, else {DEFAULT_BOOTSTRAP}"
    else:
        from_env = bootstrap_from_env(environ)
        default, source = from_env or DEFAULT_BOOTSTRAP, "env" if from_env else "default"
        shown = f"{default}; env {BOOTSTRAP_ENV[0]} or {BOOTSTRAP_ENV[1]}"
    group.add_argument(
        "--bootstrap-servers",
        default=default,
        action=_Given,
        metavar="HOST:PORT[,...]",
        help=f"comma-separated Kafka bootstrap servers (default: {shown})",
    )
    parser.set_defaults(**{_BOOTSTRAP_SOURCE: source})
    add_security_arguments(group, environ)


def add_security_arguments(group: Any, environ: Mapping[str, str] | None = None) -> None:
    """Add the security flags to a parser or argument group.

    With ``environ`` the defaults come from it now; without, they stay ``None``
    and :func:`security_config` reads the environment it is given at run time.
    """
    for flag, dest, text in _SECURITY_FLAGS:
        default = environ.get(env_name(flag)) if environ is not None else None
        group.add_argument(flag, dest=dest, default=default, help=f"{text} (env {env_name(flag)})")


def security_config(
    args: argparse.Namespace, environ: Mapping[str, str] | None = None, file_table: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """kafka-python's security keyword arguments: each from its flag, else ``environ``, else ``file_table``.

    >>> args = argparse.Namespace(security_protocol="SASL_PLAINTEXT", sasl_plain_password=None)
    >>> sorted(security_config(args, {"DECAYWATCH_SASL_PASSWORD": "s3cret"}, {"sasl_username": "alice"}).items())
    [('sasl_plain_password', 's3cret'), ('sasl_plain_username', 'alice'), ('security_protocol', 'SASL_PLAINTEXT')]
    """
    known = {"bootstrap_servers", *FILE_KEYS}
    unknown = set(file_table or {}) - known
    if unknown:
        raise ValueError(f"[{FILE_TABLE}] has unknown key(s) {sorted(unknown)}; known: {sorted(known)}")
    from_file = {FILE_KEYS[key]: value for key, value in (file_table or {}).items() if key in FILE_KEYS}
    config: dict[str, Any] = {}
    for flag, dest, _text in _SECURITY_FLAGS:
        value = getattr(args, dest, None)
        if not value and environ is not None:
            value = environ.get(env_name(flag))
        if not value:
            value = from_file.get(dest)
        if value:
            if not isinstance(value, str):
                raise ValueError(f"[{FILE_TABLE}] {flag.lstrip('-').replace('-', '_')} must be a string")
            config[dest] = value
    return config


def kafka_client_config(
    args: argparse.Namespace,
    file_table: Mapping[str, Any] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Keyword arguments for kafka-python clients: each setting from its flag, else the environment, else the file.

    The environment is ``environ`` when given, else what the flag defaults took
    from it when the parser was built (:func:`add_kafka_arguments`).
    ``file_table`` is the config file's ``[kafka]`` table: it fills what neither
    a flag nor the environment set; the bootstrap list falls back to
    ``DEFAULT_BOOTSTRAP``.

    >>> args = argparse.Namespace(bootstrap_servers="k1:9092, k2:9092", sasl_mechanism="SCRAM-SHA-256")
    >>> kafka_client_config(args)
    {'bootstrap_servers': ['k1:9092', 'k2:9092'], 'sasl_mechanism': 'SCRAM-SHA-256'}
    >>> args = argparse.Namespace(bootstrap_servers=None, _bootstrap_source="default")
    >>> kafka_client_config(args, {"bootstrap_servers": "file:9092"}, environ={"KAFKA_BOOTSTRAP_SERVERS": "env:9092"})
    {'bootstrap_servers': ['env:9092']}
    """
    servers = [server.strip() for server in _bootstrap(args, file_table, environ).split(",") if server.strip()]
    return {"bootstrap_servers": servers, **security_config(args, environ, file_table)}


#: kafka-python keyword -> librdkafka property, for every setting :func:`kafka_client_config` can hold
#: (``ssl_password`` and ``client_id`` are not flags, but callers building the settings by hand use them).
LIBRDKAFKA_KEYS = {
    "security_protocol": "security.protocol",
    "sasl_mechanism": "sasl.mechanisms",
    "sasl_plain_username": "sasl.username",
    "sasl_plain_password": "sasl.password",
    "ssl_cafile": "ssl.ca.location",
    "ssl_certfile": "ssl.certificate.location",
    "ssl_keyfile": "ssl.key.location",
    "ssl_password": "ssl.key.password",
    "client_id": "client.id",
}


def librdkafka_config(kafka: Mapping[str, Any]) -> dict[str, str]:
    """The same client settings as librdkafka properties (for ``--kafka-client confluent``).

    One reader resolves flags, environment and file into kafka-python's
    keywords (:func:`kafka_client_config`); this only renames them, so both
    clients are configured from the same place.  A key it does not know is an
    error rather than a silent omission: a dropped security setting would
    connect in the clear or fail to log in far from its cause.  librdkafka
    names the SASL user and password ``sasl.username`` / ``sasl.password``
    for every mechanism, as kafka-python does with its ``sasl_plain_*``.

    >>> librdkafka_config({"bootstrap_servers": ["k1:9092", "k2:9092"], "security_protocol": "SASL_SSL",
    ...                    "sasl_mechanism": "SCRAM-SHA-512", "sasl_plain_username": "alice", "ssl_cafile": "/ca.pem"})
    {'bootstrap.servers': 'k1:9092,k2:9092', 'security.protocol': 'SASL_SSL', 'sasl.mechanisms': 'SCRAM-SHA-512', 'sasl.username': 'alice', 'ssl.ca.location': '/ca.pem'}
    """
    unknown = set(kafka) - {"bootstrap_servers", *LIBRDKAFKA_KEYS}
    if unknown:
        raise ValueError(
            f"Kafka setting(s) {sorted(unknown)} have no librdkafka equivalent here; known: {sorted(LIBRDKAFKA_KEYS)}"
        )
    servers = kafka.get("bootstrap_servers", DEFAULT_BOOTSTRAP)
    config = {"bootstrap.servers": servers if isinstance(servers, str) else ",".join(servers)}
    config.update({LIBRDKAFKA_KEYS[key]: str(value) for key, value in kafka.items() if key in LIBRDKAFKA_KEYS and value})
    return config


def _bootstrap(args: argparse.Namespace, file_table: Mapping[str, Any] | None, environ: Mapping[str, str] | None) -> str:
    source = getattr(args, _BOOTSTRAP_SOURCE, "flag")
    given: str | None = args.bootstrap_servers
    if given and source == "flag":
        return given
    from_env = bootstrap_from_env(environ) if environ is not None else None
    if from_env:
        return from_env
    if given and source == "env":
        return given
    if file_table and file_table.get("bootstrap_servers"):
        from_file = file_table["bootstrap_servers"]
        if not isinstance(from_file, str):
            raise ValueError(f"[{FILE_TABLE}] bootstrap_servers must be a string like 'host:9092,host2:9092'")
        return from_file
    return given or DEFAULT_BOOTSTRAP


def redact(text: str, config: Mapping[str, Any]) -> str:
    """``text`` with every secret value of ``config`` replaced by ``***``.

    >>> redact("login as alice/s3cret failed", {"sasl_plain_username": "alice", "sasl_plain_password": "s3cret"})
    'login as alice/*** failed'
    """
    for key in SECRET_KEYS:
        secret = config.get(key)
        if secret:
            text = text.replace(str(secret), REDACTED)
    return text


class KafkaAuthenticationError(Exception):
    """The client could not log in to Kafka over SASL.

    ``str()`` is one line naming the user, mechanism and bootstrap servers and
    the reason; the password never appears in it. ``refused`` is true when the
    broker said so (wrong credentials, a mechanism it does not offer, a listener
    without SASL), false when it only closed every connection before the login
    completed, which is what a refusal looks like when kafka-python misses the
    broker's last response (it drops bytes that arrive together with the close).
    """

    def __init__(self, config: Mapping[str, Any], reason: str, *, refused: bool = True) -> None:
        self.username = config.get("sasl_plain_username")
        self.mechanism = config.get("sasl_mechanism")
        servers = config.get("bootstrap_servers", ())
        self.bootstrap = servers if isinstance(servers, str) else ",".join(servers)
        self.reason = redact(reason, config)
        self.refused = refused
        super().__init__(
            f"Kafka authentication failed for user {self.username!r} ({self.mechanism}) at {self.bootstrap}: {self.reason}"
        )


_ERROR_PREFIX = re.compile(r"^(\[Error \d+\] )?(\w+Error: )*")
#: kafka-python's error for a connection the broker closed (``KafkaConnectionError('socket disconnected')``).
_CLOSED_BY_BROKER = ("socket disconnected",)
CLOSED_DURING_LOGIN = (
    "the broker closed every connection before the SASL login completed "
    "(wrong user or password, a mechanism this listener does not offer, or a listener without SASL)"
)


def login_failure_reason(error: BaseException) -> str:
    """The broker's words from a kafka-python login error, without the repeated type prefixes.

    >>> from kafka.errors import SaslAuthenticationFailedError as E
    >>> login_failure_reason(E("SaslAuthenticationFailedError: Authentication failed: invalid credentials"))
    'Authentication failed: invalid credentials'
    """
    from kafka.errors import IllegalSaslStateError

    if isinstance(error, IllegalSaslStateError):
        return "the listener at this address does not do SASL (IllegalSaslStateError)"
    reason = _ERROR_PREFIX.sub("", str(error)).strip()
    if reason and reason != type(error).__name__:
        return reason
    description = getattr(error, "description", "")  # kafka-python's text for a bare broker error code
    return f"{description} ({type(error).__name__})" if description else type(error).__name__


class _HeldBack(logging.Handler):
    """Keeps kafka-python's log records and sorts the errors they carry (records hold the exception as an argument)."""

    def __init__(self) -> None:
        from kafka.errors import (
            IllegalSaslStateError,
            KafkaConnectionError,
            KafkaTimeoutError,
            RequestTimedOutError,
            SaslAuthenticationFailedError,
            UnsupportedSaslMechanismError,
        )

        super().__init__()
        self._login_errors = (SaslAuthenticationFailedError, UnsupportedSaslMechanismError, IllegalSaslStateError)
        self._connection_error = KafkaConnectionError
        # A timeout says nothing either way: the last try before the bootstrap deadline is cut short by it.
        self._timeouts = (KafkaTimeoutError, RequestTimedOutError)
        self.records: list[logging.LogRecord] = []
        self.login_error: BaseException | None = None
        self.closed_by_broker = 0
        self.other_errors = 0

    def emit(self, record: logging.LogRecord) -> None:  # runs under the handler's lock
        self.records.append(record)
        args = record.args if isinstance(record.args, tuple) else ()
        for error in [*args, record.exc_info[1] if record.exc_info else None]:
            if not isinstance(error, BaseException) or isinstance(error, self._timeouts):
                continue
            if isinstance(error, self._login_errors):
                self.login_error = self.login_error or error
            elif isinstance(error, self._connection_error) and error.args == _CLOSED_BY_BROKER:
                self.closed_by_broker += 1
            else:
                self.other_errors += 1

    def authentication_error(self, config: Mapping[str, Any]) -> KafkaAuthenticationError | None:
        if self.login_error is not None:
            return KafkaAuthenticationError(config, login_failure_reason(self.login_error))
        if self.closed_by_broker and not self.other_errors:
            return KafkaAuthenticationError(config, CLOSED_DURING_LOGIN, refused=False)
        return None


@contextlib.contextmanager
def reporting_login_failures(config: Mapping[str, Any], logger_name: str = "kafka") -> Iterator[None]:
    """Around creating kafka-python clients: a failed SASL login becomes one :class:`KafkaAuthenticationError`.

    While the block runs, kafka-python's log records are held back (a failed
    login logs five lines per retry). If the block raises a Kafka error after
    the broker refused a login, or after it closed every connection before a
    login completed, :class:`KafkaAuthenticationError` is raised instead and
    the held records are dropped; otherwise they are released as they would
    have been logged. Without SASL in ``config`` this does nothing.
    """
    if not str(config.get("security_protocol", "")).upper().startswith("SASL"):
        yield
        return
    from kafka.errors import KafkaError

    kafka_log = logging.getLogger(logger_name)
    held = _HeldBack()
    propagate = kafka_log.propagate
    kafka_log.addHandler(held)
    kafka_log.propagate = False
    try:
        yield
    except KafkaError:
        _restore(kafka_log, held, propagate)
        failure = held.authentication_error(config)
        if failure is None:
            _release(held.records)
            raise
        raise failure from None
    except BaseException:
        _restore(kafka_log, held, propagate)
        _release(held.records)
        raise
    _restore(kafka_log, held, propagate)
    _release(held.records)


def _restore(kafka_log: logging.Logger, held: logging.Handler, propagate: bool) -> None:
    kafka_log.removeHandler(held)
    kafka_log.propagate = propagate


def _release(records: Sequence[logging.LogRecord]) -> None:
    for record in records:
        logging.getLogger(record.name).handle(record)
