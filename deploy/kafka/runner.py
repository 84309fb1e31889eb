"""Run one local Apache Kafka broker (KRaft, broker+controller in one JVM) without Docker.

Why this exists: the monitor is tested and demoed against a real broker, and a
plain JVM with the official jars is the lightest real one. The jars come from
Maven Central through ``pom.xml`` (``mvn dependency:copy-dependencies``) into a
cache shared by every run; the broker state lives in a separate data directory
so it survives restarts, and the process is started detached so
``decaywatch kafka start`` can return while the broker keeps running.

Layout::

    <cache dir>/kafka-<sha12 of pom.xml>/libs/      the jars
    <cache dir>/kafka-<sha12 of pom.xml>/libs.complete  written only after a full copy
    <data dir>/data/                                 Kafka's log.dirs (formatted once)
    <data dir>/server.properties, broker.log, broker.pid, cluster.id

Nothing here reads the environment except :meth:`BrokerSettings.from_environment`,
and nothing prints: progress goes to :mod:`logging`, failures raise
:class:`KafkaRunnerError` with enough context to act on.

Optionally a second client listener speaks SASL_PLAINTEXT with SCRAM
(``sasl_port`` plus ``scram_users``), for exercising client authentication.
Its credentials are written into the metadata log when storage is formatted
(``StorageTool format --add-scram``), so they never appear in
``server.properties``, and are kept out of reprs, logs and error messages.
The PLAINTEXT listener stays, and the controller and inter-broker traffic
stay PLAINTEXT.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

POM_PATH = Path(__file__).with_name("pom.xml")
LOG4J_CONFIG_PATH = Path(__file__).with_name("log4j2.properties")

#: The line Kafka logs once its listeners accept requests; our readiness signal.
STARTED_MARKER = b"Kafka Server started"
#: Heap above this defeats the point of a lightweight local broker.
MAX_HEAP_MB = 1024
MIN_HEAP_MB = 128
#: How many lines of broker/mvn output an error carries.
TAIL_LINES = 25

#: The SASL mechanisms the optional SCRAM listener can offer (both by default).
SCRAM_MECHANISMS = ("SCRAM-SHA-256", "SCRAM-SHA-512")
#: The listener name (and security protocol) of the optional SCRAM listener.
SASL_LISTENER = "SASL_PLAINTEXT"
#: SCRAM user names stay simple: they travel inside StorageTool's ``name=...,password=...`` syntax.
_SCRAM_NAME_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._@-")
#: Characters a SCRAM password may not contain, because StorageTool's argument syntax would split on them.
_SCRAM_PASSWORD_FORBIDDEN = frozenset(',[]"\\')
_REDACTED = "***"

#: Resolves a tool name to its path, like :func:`shutil.which`.
Which = Callable[[str], str | None]


class KafkaRunnerError(RuntimeError):
    """The broker could not be fetched, started or stopped.

    ``summary`` is one line meant for a human; ``details`` holds the evidence
    (the command that failed, the tail of its output) and may span many lines.
    """

    def __init__(self, summary: str, details: str = "") -> None:
        self.summary = summary
        self.details = details
        super().__init__(f"{summary}\n{details}" if details else summary)


class ToolMissingError(KafkaRunnerError):
    """``java`` or ``mvn`` is not on PATH (callers such as test fixtures skip on this)."""

    def __init__(self, tool: str, purpose: str) -> None:
        self.tool = tool
        super().__init__(f"`{tool}` was not found on PATH; it is needed {purpose}")


@dataclass(frozen=True, kw_only=True)
class BrokerSettings:
    """Where and how the local broker runs. Pure data: it never reads the environment.

    The controller listens on 19093 by default rather than Kafka's customary
    9093, because 9093 is Alertmanager's default port and both run side by side.

    ``sasl_port`` adds a SASL_PLAINTEXT listener offering ``scram_mechanisms``;
    ``scram_users`` (name -> password) are created for each of those mechanisms
    when storage is first formatted. The passwords are left out of ``repr``.
    """

    data_dir: Path
    cache_dir: Path
    host: str = "127.0.0.1"
    port: int = 9092
    controller_port: int = 19093
    heap_mb: int = 512
    num_partitions: int = 1
    sasl_port: int | None = None
    scram_users: Mapping[str, str] = field(default_factory=dict, repr=False, hash=False)
    scram_mechanisms: tuple[str, ...] = SCRAM_MECHANISMS

    def __post_init__(self) -> None:
        # Absolute paths, so the pid check can match the broker's command line
        # whatever the caller's working directory was.
        object.__setattr__(self, "data_dir", Path(self.data_dir).absolute())
        object.__setattr__(self, "cache_dir", Path(self.cache_dir).absolute())
        ports = {"port": self.port, "controller_port": self.controller_port}
        if self.sasl_port is not None:
            ports["sasl_port"] = self.sasl_port
        for name, value in ports.items():
            if not 1 <= value <= 65535:
                raise ValueError(f"{name} must be in 1..65535, got {value}")
        if len(set(ports.values())) < len(ports):
            raise ValueError(f"{' and '.join(ports)} must differ (got {ports})")
        self._check_scram()
        if not MIN_HEAP_MB <= self.heap_mb <= MAX_HEAP_MB:
            raise ValueError(f"heap_mb must be in {MIN_HEAP_MB}..{MAX_HEAP_MB}, got {self.heap_mb}")
        if self.num_partitions < 1:
            raise ValueError(f"num_partitions must be >= 1, got {self.num_partitions}")
        if not self.host:
            raise ValueError("host must not be empty")

    def _check_scram(self) -> None:
        object.__setattr__(self, "scram_users", dict(self.scram_users))
        object.__setattr__(self, "scram_mechanisms", tuple(self.scram_mechanisms))
        if self.scram_users and self.sasl_port is None:
            raise ValueError("scram_users need a SASL listener: set sasl_port (--sasl-port) too")
        unknown = [m for m in self.scram_mechanisms if m not in SCRAM_MECHANISMS]
        if unknown or not self.scram_mechanisms:
            raise ValueError(f"scram_mechanisms must be a non-empty subset of {SCRAM_MECHANISMS}, got {unknown or '()'}")
        for name, password in self.scram_users.items():
            if not name or not set(name) <= _SCRAM_NAME_CHARS:
                raise ValueError(f"SCRAM user name {name!r} must be non-empty and use only A-Z a-z 0-9 . _ @ -")
            # The message names the user, never the password.
            if not password:
                raise ValueError(f"SCRAM user {name!r} has an empty password")
            if set(password) & _SCRAM_PASSWORD_FORBIDDEN or " " in password or not password.isprintable():
                raise ValueError(
                    f"SCRAM user {name!r}: the password may not contain spaces, control characters "
                    "or any of , [ ] \" \\ (Kafka's --add-scram syntax cannot carry them)"
                )

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> BrokerSettings:
        """Settings with directories taken from the environment (the CLI's and fixtures' entry point).

        ``$DECAYWATCH_CACHE_DIR`` (default ``~/.cache/decaywatch``) holds the
        jars, ``$DECAYWATCH_KAFKA_DIR`` (default ``~/.cache/decaywatch/kafka-broker``)
        the broker state. Keyword overrides that are ``None`` are ignored, so
        unset command-line flags fall through to the defaults.
        """
        env = os.environ if environ is None else environ
        base = Path("~/.cache/decaywatch").expanduser()
        values: dict[str, Any] = {
            "cache_dir": Path(env["DECAYWATCH_CACHE_DIR"]).expanduser() if env.get("DECAYWATCH_CACHE_DIR") else base,
            "data_dir": Path(env["DECAYWATCH_KAFKA_DIR"]).expanduser()
            if env.get("DECAYWATCH_KAFKA_DIR")
            else base / "kafka-broker",
        }
        values.update({key: value for key, value in overrides.items() if value is not None})
        return cls(**values)

    @property
    def bootstrap_servers(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def sasl_bootstrap_servers(self) -> str | None:
        """``host:sasl_port`` of the SCRAM listener, or ``None`` without one."""
        return None if self.sasl_port is None else f"{self.host}:{self.sasl_port}"

    @property
    def storage_dir(self) -> Path:
        """Kafka's ``log.dirs``; formatted once, then kept across restarts."""
        return self.data_dir / "data"

    @property
    def properties_path(self) -> Path:
        return self.data_dir / "server.properties"

    @property
    def log_path(self) -> Path:
        return self.data_dir / "broker.log"

    @property
    def pid_path(self) -> Path:
        return self.data_dir / "broker.pid"

    @property
    def cluster_id_path(self) -> Path:
        return self.data_dir / "cluster.id"

    @property
    def scram_record_path(self) -> Path:
        """Names and mechanisms (never passwords) of the SCRAM users written at format time."""
        return self.data_dir / "scram-users.txt"


@dataclass(frozen=True)
class BrokerInfo:
    """A running broker, as returned by :meth:`LocalKafka.start`.

    ``started_in_seconds`` is the wall time the ``start`` call took (download
    and formatting included); ``already_running`` says the call found the
    broker up and started nothing.
    """

    bootstrap_servers: str
    pid: int
    log_path: Path
    started_in_seconds: float
    already_running: bool = False
    sasl_bootstrap_servers: str | None = None


@dataclass(frozen=True)
class BrokerStatus:
    running: bool
    pid: int | None
    bootstrap_servers: str
    log_path: Path
    data_dir: Path
    sasl_bootstrap_servers: str | None = None


def render_server_properties(settings: BrokerSettings) -> str:
    """The broker's ``server.properties``: a single KRaft node that is both broker and controller.

    Replication factors and ISR minimums are 1 because there is one node;
    ``group.initial.rebalance.delay.ms=0`` so consumers in tests get their
    partitions at once instead of after Kafka's 3 s grace period.
    """
    host, port, cport = settings.host, settings.port, settings.controller_port
    listeners = [f"PLAINTEXT://{host}:{port}", f"CONTROLLER://{host}:{cport}"]
    advertised = [f"PLAINTEXT://{host}:{port}"]
    protocols = ["PLAINTEXT:PLAINTEXT", "CONTROLLER:PLAINTEXT"]
    if settings.sasl_port is not None:
        listeners.append(f"{SASL_LISTENER}://{host}:{settings.sasl_port}")
        advertised.append(f"{SASL_LISTENER}://{host}:{settings.sasl_port}")
        protocols.append(f"{SASL_LISTENER}:{SASL_LISTENER}")
    lines = [
        "# Generated by decaywatch (deploy/kafka/runner.py) and rewritten on every start.",
        "process.roles=broker,controller",
        "node.id=1",
        f"controller.quorum.voters=1@{host}:{cport}",
        f"listeners={','.join(listeners)}",
        f"advertised.listeners={','.join(advertised)}",
        "controller.listener.names=CONTROLLER",
        "inter.broker.listener.name=PLAINTEXT",
        f"listener.security.protocol.map={','.join(protocols)}",
        f"log.dirs={settings.storage_dir}",
        f"num.partitions={settings.num_partitions}",
        "offsets.topic.replication.factor=1",
        "offsets.topic.num.partitions=1",
        "transaction.state.log.replication.factor=1",
        "transaction.state.log.min.isr=1",
        "share.coordinator.state.topic.replication.factor=1",
        "share.coordinator.state.topic.min.isr=1",
        "group.initial.rebalance.delay.ms=0",
        "auto.create.topics.enable=true",
    ]
    if settings.sasl_port is not None:
        lines += _sasl_listener_properties(settings.scram_mechanisms)
    return "\n".join(lines) + "\n"


def _sasl_listener_properties(mechanisms: tuple[str, ...]) -> list[str]:
    """SCRAM on the SASL listener only; credentials come from the metadata log, so the JAAS entries are empty."""
    prefix = f"listener.name.{SASL_LISTENER.lower()}"
    lines = [f"{prefix}.sasl.enabled.mechanisms={','.join(mechanisms)}"]
    lines += [
        f"{prefix}.{mechanism.lower()}.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;"
        for mechanism in mechanisms
    ]
    return lines


def scram_format_arguments(settings: BrokerSettings) -> list[str]:
    """``--add-scram MECHANISM=[name=N,password=P]`` for every user and mechanism, in a stable order.

    These hold the passwords: :func:`_run` blanks them in any error it raises.
    """
    arguments: list[str] = []
    for name, password in sorted(settings.scram_users.items()):
        for mechanism in settings.scram_mechanisms:
            arguments += ["--add-scram", f"{mechanism}=[name={name},password={password}]"]
    return arguments


def new_cluster_id(token_bytes: Callable[[int], bytes] = secrets.token_bytes) -> str:
    """A KRaft cluster id: 16 random bytes, base64url without padding (what ``kafka-storage random-uuid`` prints).

    Like Kafka's own ``Uuid.randomUuid()``, an id starting with "-" is drawn
    again: ``StorageTool`` would read ``--cluster-id -abc...`` as a missing
    value followed by an option (1 start in 64 failed that way).
    """
    while True:
        cluster_id = base64.urlsafe_b64encode(token_bytes(16)).rstrip(b"=").decode("ascii")
        if not cluster_id.startswith("-"):
            return cluster_id


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on ``host`` that nothing listens on right now (for tests; racy by nature)."""
    return free_ports(1, host)[0]


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """``count`` distinct free ports: all sockets stay bound until all are picked, so none repeats."""
    with contextlib.ExitStack() as stack:
        ports = []
        for _ in range(count):
            sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            sock.bind((host, 0))
            ports.append(int(sock.getsockname()[1]))
        return ports


class LocalKafka:
    """Fetch, start, stop and inspect one local broker described by :class:`BrokerSettings`.

    Every operation is idempotent and safe to call from separate processes:
    the pid file plus a check of the process's command line tells whether
    *our* broker runs, and file locks serialise concurrent starts and downloads.

    ``which`` resolves tool names to paths (default :func:`shutil.which`); it
    is a parameter so a missing ``java``/``mvn`` or a stand-in script can be
    exercised without patching.
    """

    def __init__(
        self,
        settings: BrokerSettings,
        *,
        which: Which = shutil.which,
        pom_path: Path = POM_PATH,
        log4j_config_path: Path = LOG4J_CONFIG_PATH,
    ) -> None:
        self.settings = settings
        self._which = which
        self._pom_path = pom_path
        self._log4j_config_path = log4j_config_path
        # The broker this object spawned, kept so it can be reaped (an
        # unreaped child stays a zombie that still "exists" for os.kill).
        self._process: subprocess.Popen[bytes] | None = None

    # ---------------------------------------------------------------- jars

    @property
    def jar_cache_dir(self) -> Path:
        """``<cache>/kafka-<sha12>``: a new pom.xml gets a new directory, so stale jars are never mixed in."""
        digest = hashlib.sha256(self._pom_path.read_bytes()).hexdigest()[:12]
        return self.settings.cache_dir / f"kafka-{digest}"

    @property
    def libs_dir(self) -> Path:
        return self.jar_cache_dir / "libs"

    def fetch(self, timeout: float = 600.0) -> Path:
        """Download the broker's jars once and return the directory holding them.

        Runs ``mvn`` only when the completion marker is missing; the marker is
        written after a full copy, so an interrupted download is redone, never
        half-used.
        """
        version_dir = self.jar_cache_dir
        libs, marker = version_dir / "libs", version_dir / "libs.complete"
        if marker.is_file():
            return libs
        mvn = self._require("mvn", "to download Kafka's jars from Maven Central (install Maven 3)")
        version_dir.mkdir(parents=True, exist_ok=True)
        with _file_lock(version_dir / ".lock"):
            if marker.is_file():  # another process finished the download while we waited
                return libs
            shutil.rmtree(libs, ignore_errors=True)
            # mvn runs on a copy of the POM so it never writes into the installed package.
            pom = version_dir / "pom.xml"
            shutil.copyfile(self._pom_path, pom)
            command = [
                mvn, "-q", "-B", "-f", str(pom), "dependency:copy-dependencies",
                f"-DoutputDirectory={libs}", "-DincludeScope=runtime",
            ]  # fmt: skip
            log.info("Downloading Kafka's jars (~45 MB, once) into %s", libs)
            output = _run(command, timeout=timeout, what="Downloading Kafka's jars with Maven")
            jars = sorted(libs.glob("*.jar"))
            if not any(jar.name.startswith("kafka_") for jar in jars):
                raise KafkaRunnerError(
                    f"Maven finished but no Kafka jar landed in {libs}",
                    _describe(command, output),
                )
            marker.write_text(f"{len(jars)} jars\n")
        log.info("Fetched %d jars into %s", len(jars), libs)
        return libs

    # ---------------------------------------------------------------- lifecycle

    def start(self, timeout: float = 90.0) -> BrokerInfo:
        """Start the broker detached and return once it serves requests.

        Idempotent: if our broker already runs, its info comes back and nothing
        is started. Storage is formatted only on the first start (no
        ``meta.properties`` yet), so topics survive restarts. ``timeout``
        bounds formatting plus waiting for "Kafka Server started"; the one-off
        download has its own limit (see :meth:`fetch`). On failure the process
        is killed and the error carries the tail of ``broker.log``.
        """
        began = time.monotonic()
        settings = self.settings
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        with _file_lock(settings.data_dir / "broker.lock"):
            pid = self._running_pid()
            if pid is not None:
                bootstrap = self._running_bootstrap()
                if bootstrap != settings.bootstrap_servers:
                    log.warning(
                        "Broker in %s already runs at %s, not %s", settings.data_dir, bootstrap, settings.bootstrap_servers
                    )
                return BrokerInfo(
                    bootstrap,
                    pid,
                    settings.log_path,
                    time.monotonic() - began,
                    already_running=True,
                    sasl_bootstrap_servers=self._running_sasl_bootstrap(),
                )
            java = self._require("java", "to run the Kafka broker (install a JDK 17 or newer)")
            for port in (settings.port, settings.controller_port, settings.sasl_port):
                if port is not None:
                    _ensure_port_free(settings.host, port)
            libs = self.fetch()
            deadline = time.monotonic() + timeout
            settings.properties_path.write_text(render_server_properties(settings))
            settings.storage_dir.mkdir(exist_ok=True)
            if not (settings.storage_dir / "meta.properties").exists():
                self._format(java, libs, deadline)
            else:
                self._warn_if_scram_users_changed()
            process = self._spawn(java, libs)
            self._wait_until_started(process, deadline, timeout)
        elapsed = time.monotonic() - began
        log.info("Kafka broker up at %s (pid %d) in %.1f s", settings.bootstrap_servers, process.pid, elapsed)
        return BrokerInfo(
            settings.bootstrap_servers,
            process.pid,
            settings.log_path,
            elapsed,
            sasl_bootstrap_servers=settings.sasl_bootstrap_servers,
        )

    def stop(self, timeout: float = 30.0) -> bool:
        """Stop our broker: SIGTERM (Kafka shuts down cleanly), SIGKILL if it outlives ``timeout``.

        Returns ``True`` if a broker was stopped, ``False`` if none ran (a
        stale pid file is removed either way).
        """
        settings = self.settings
        if not settings.data_dir.is_dir():
            return False
        with _file_lock(settings.data_dir / "broker.lock"):
            pid = self._running_pid()
            if pid is None:
                settings.pid_path.unlink(missing_ok=True)
                return False
            log.info("Stopping Kafka broker (pid %d)", pid)
            _signal(pid, signal.SIGTERM)
            if not self._wait_for_exit(pid, time.monotonic() + timeout):
                log.warning("Broker pid %d ignored SIGTERM for %.0f s; sending SIGKILL", pid, timeout)
                _signal(pid, signal.SIGKILL)
                if not self._wait_for_exit(pid, time.monotonic() + 10.0):
                    raise KafkaRunnerError(f"Broker pid {pid} survived SIGKILL")
            settings.pid_path.unlink(missing_ok=True)
            return True

    def status(self) -> BrokerStatus:
        """Whether our broker runs; read-only (a stale pid file is reported as not running, not removed)."""
        pid = self._running_pid()
        settings = self.settings
        if pid is None:
            return BrokerStatus(
                False, None, settings.bootstrap_servers, settings.log_path, settings.data_dir, settings.sasl_bootstrap_servers
            )
        return BrokerStatus(
            True, pid, self._running_bootstrap(), settings.log_path, settings.data_dir, self._running_sasl_bootstrap()
        )

    def scram_credentials(self) -> list[tuple[str, str]]:
        """``(mechanism, user name)`` pairs written into storage when it was formatted (empty if none or not yet)."""
        try:
            lines = self.settings.scram_record_path.read_text().splitlines()
        except FileNotFoundError:
            return []
        pairs = (line.split(" ", 1) for line in lines if " " in line)
        return [(mechanism, name) for mechanism, name in pairs]

    # ---------------------------------------------------------------- internals

    def _require(self, tool: str, purpose: str) -> str:
        path = self._which(tool)
        if not path:
            raise ToolMissingError(tool, purpose)
        return path

    def _java_command(self, java: str, libs: Path, *args: str, heap_mb: int) -> list[str]:
        return [
            java, f"-Xmx{heap_mb}m", f"-Xms{min(heap_mb, 256)}m", "-cp", f"{libs}{os.sep}*",
            "-Djava.awt.headless=true", f"-Dlog4j2.configurationFile={self._log4j_config_path}", *args,
        ]  # fmt: skip

    def _format(self, java: str, libs: Path, deadline: float) -> None:
        """Format storage once, reusing ``cluster.id`` if a previous attempt already chose one.

        No ``--standalone``: the quorum is fixed by ``controller.quorum.voters``,
        and Kafka refuses that flag together with a static voter set.
        """
        settings = self.settings
        if settings.cluster_id_path.is_file():
            cluster_id = settings.cluster_id_path.read_text().strip()
        else:
            cluster_id = new_cluster_id()
            settings.cluster_id_path.write_text(cluster_id + "\n")
        command = self._java_command(
            java, libs, "kafka.tools.StorageTool", "format",
            "--config", str(settings.properties_path), "--cluster-id", cluster_id,
            *scram_format_arguments(settings), heap_mb=256,
        )  # fmt: skip
        log.info("Formatting Kafka storage in %s (cluster id %s)", settings.storage_dir, cluster_id)
        _run(
            command,
            timeout=max(deadline - time.monotonic(), 1.0),
            what="Formatting Kafka storage",
            secrets=tuple(settings.scram_users.values()),
        )
        _write_atomically(settings.scram_record_path, _scram_record(settings))

    def _warn_if_scram_users_changed(self) -> None:
        """SCRAM users are created at format time only; say so if users are requested that differ from those."""
        settings = self.settings
        if not settings.scram_users:
            return
        try:
            formatted = settings.scram_record_path.read_text()
        except FileNotFoundError:  # formatted before SCRAM users existed here: none were added
            formatted = ""
        if formatted != _scram_record(settings):
            log.warning(
                "SCRAM users are created only when storage is first formatted; %s was formatted with "
                "other users or mechanisms, so the requested ones are not added (use a new data dir, "
                "or change them with Kafka's admin API)",
                settings.storage_dir,
            )

    def _spawn(self, java: str, libs: Path) -> subprocess.Popen[bytes]:
        """Start the JVM in its own session (Ctrl-C in the caller's terminal must not reach it)."""
        settings = self.settings
        if settings.log_path.exists():  # keep the previous run's log for post-mortems
            settings.log_path.replace(settings.log_path.with_name(settings.log_path.name + ".1"))
        command = self._java_command(java, libs, "kafka.Kafka", str(settings.properties_path), heap_mb=settings.heap_mb)
        with open(settings.log_path, "wb") as log_file:
            process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                cwd=settings.data_dir,
                start_new_session=True,
            )
        self._process = process
        _write_atomically(settings.pid_path, f"{process.pid}\n")
        return process

    def _wait_until_started(self, process: subprocess.Popen[bytes], deadline: float, timeout: float) -> None:
        """Poll the log for the ready line; fail fast if the JVM exits, kill it if the deadline passes."""
        log_path = self.settings.log_path
        position, carry = 0, b""
        with open(log_path, "rb") as stream:
            while True:
                stream.seek(position)
                chunk = stream.read()
                position += len(chunk)
                if STARTED_MARKER in carry + chunk:
                    return
                carry = (carry + chunk)[-len(STARTED_MARKER) :]
                code = process.poll()
                if code is not None:
                    self.settings.pid_path.unlink(missing_ok=True)
                    raise KafkaRunnerError(
                        f"Kafka broker exited with code {code} while starting; see {log_path}",
                        _tail_file(log_path),
                    )
                if time.monotonic() >= deadline:
                    self._kill(process)
                    raise KafkaRunnerError(
                        f"Kafka broker did not report 'Kafka Server started' within {timeout:g} s and was killed; see {log_path}",
                        _tail_file(log_path),
                    )
                time.sleep(0.1)

    def _kill(self, process: subprocess.Popen[bytes]) -> None:
        process.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=10)
        self.settings.pid_path.unlink(missing_ok=True)

    def _running_pid(self) -> int | None:
        """The pid from the pid file if that process is alive and is our broker's JVM.

        Checking the command line (``kafka.Kafka`` plus *this* data dir's
        server.properties) guards against pid reuse after a crash or reboot.
        """
        try:
            pid = int(self.settings.pid_path.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None
        if not self._is_alive(pid):
            return None
        command_line = _command_line(pid)
        if "kafka.Kafka" in command_line and str(self.settings.properties_path) in command_line:
            return pid
        return None

    def _is_alive(self, pid: int) -> bool:
        if self._process is not None and self._process.pid == pid:
            return self._process.poll() is None  # also reaps our own child
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        # A zombie still "exists"; Linux shows it with state Z.
        with contextlib.suppress(OSError, IndexError):
            stat = Path(f"/proc/{pid}/stat").read_text()
            return stat.rsplit(")", 1)[1].split()[0] != "Z"
        return True

    def _wait_for_exit(self, pid: int, deadline: float) -> bool:
        while self._is_alive(pid):
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.1)
        return True

    def _running_sasl_bootstrap(self) -> str | None:
        """The running broker's SASL listener address, if its server.properties advertises one."""
        with contextlib.suppress(OSError):
            for line in self.settings.properties_path.read_text().splitlines():
                key, _, value = line.partition("=")
                if key.strip() == "advertised.listeners":
                    for listener in value.strip().split(","):
                        name, _, address = listener.partition("://")
                        if name == SASL_LISTENER:
                            return address
        return None

    def _running_bootstrap(self) -> str:
        """The running broker's address from its server.properties, which may differ from our settings."""
        with contextlib.suppress(OSError):
            for line in self.settings.properties_path.read_text().splitlines():
                key, _, value = line.partition("=")
                if key.strip() == "advertised.listeners":
                    return value.strip().split(",")[0].split("://", 1)[-1]
        return self.settings.bootstrap_servers


# -------------------------------------------------------------------- helpers


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """An exclusive advisory lock, released when the block exits or the process dies."""
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _scram_record(settings: BrokerSettings) -> str:
    """What :meth:`LocalKafka._format` wrote: one ``mechanism name`` line per credential, no passwords."""
    return "".join(f"{m} {name}\n" for name in sorted(settings.scram_users) for m in settings.scram_mechanisms)


def _run(command: list[str], *, timeout: float, what: str, secrets: Sequence[str] = ()) -> str:
    """Run a short-lived tool, returning its combined output or raising with the command and its tail.

    Every string in ``secrets`` reads ``***`` in the command and output an error carries.
    """
    try:
        result = subprocess.run(
            command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            timeout=timeout, check=False,
        )  # fmt: skip
    except subprocess.TimeoutExpired as exc:
        output = _decode(exc.output)
        raise KafkaRunnerError(f"{what} timed out after {timeout:.0f} s", _describe(command, output, secrets)) from None
    output = _decode(result.stdout)
    if result.returncode != 0:
        raise KafkaRunnerError(f"{what} failed (exit code {result.returncode})", _describe(command, output, secrets))
    return output


def _describe(command: list[str], output: str, secrets: Sequence[str] = ()) -> str:
    tail = _tail(output)
    text = f"command: {subprocess.list2cmdline(command)}\n" + (f"output (last lines):\n{tail}" if tail else "no output")
    for secret in secrets:
        text = text.replace(secret, _REDACTED)
    return text


def _tail(text: str, lines: int = TAIL_LINES) -> str:
    return "\n".join(text.rstrip().splitlines()[-lines:])


def _tail_file(path: Path, lines: int = TAIL_LINES) -> str:
    """The last lines of a possibly large file (reads only its end)."""
    try:
        with open(path, "rb") as stream:
            stream.seek(0, os.SEEK_END)
            stream.seek(max(stream.tell() - 16384, 0))
            return f"{path.name} (last lines):\n" + _tail(_decode(stream.read()), lines)
    except OSError as exc:
        return f"(could not read {path}: {exc})"


def _decode(data: bytes | str | None) -> str:
    if data is None:
        return ""
    return data if isinstance(data, str) else data.decode("utf-8", errors="replace")


def _ensure_port_free(host: str, port: int) -> None:
    """Fail with a clear message before launching a JVM that would die on ``Address already in use``.

    SO_REUSEADDR mirrors the JVM's server sockets, so ports in TIME_WAIT are
    not mistaken for taken.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise KafkaRunnerError(
                f"Cannot start Kafka: {host}:{port} is not available ({exc.strerror}); "
                "stop whatever uses it or choose another port"
            ) from None


def _command_line(pid: int) -> str:
    """A process's command line, arguments joined by spaces: /proc on Linux, ``ps`` elsewhere; "" if unreadable."""
    if not sys.platform.startswith("linux"):
        result = subprocess.run(["ps", "-p", str(pid), "-o", "command="], capture_output=True, text=True, check=False)
        return result.stdout.strip()
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return ""
    return raw.replace(b"\0", b" ").decode(errors="replace").strip()


def _signal(pid: int, signum: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signum)


def _write_atomically(path: Path, text: str) -> None:
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(text)
    temporary.replace(path)


__all__ = [
    "SCRAM_MECHANISMS",
    "BrokerInfo",
    "BrokerSettings",
    "BrokerStatus",
    "KafkaRunnerError",
    "LocalKafka",
    "ToolMissingError",
    "free_port",
    "free_ports",
    "new_cluster_id",
    "render_server_properties",
    "scram_format_arguments",
]
