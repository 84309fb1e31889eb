"""Real Prometheus, Alertmanager and decaywatch monitor processes on loopback, for the end-to-end tests.

Each server gets a free port and a temporary storage directory, logs to a file
whose tail is quoted when something goes wrong, is waited for with a deadline
(``/-/ready`` for Prometheus and Alertmanager, the printed metrics URL and
``/readyz`` for the monitor), and is stopped with SIGTERM, then SIGKILL.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Self

from decaywatch.deploy.kafka.runner import free_ports
from tests.helpers import skip_unless_ci, wait_until

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
LOG_TAIL_LINES = 30
#: Debian names the Alertmanager binary prometheus-alertmanager; upstream's tarball calls it alertmanager.
TOOL_NAMES = {
    "prometheus": ("prometheus",),
    "promtool": ("promtool",),
    "alertmanager": ("prometheus-alertmanager", "alertmanager"),
    "amtool": ("amtool",),
}


def require_tool(tool: str) -> str:  # noqa: RET503 - skip_unless_ci() never returns
    """Path of a Prometheus tool; skip locally (fail under CI) when it is not installed."""
    for name in TOOL_NAMES[tool]:
        path = shutil.which(name)
        if path:
            return path
    skip_unless_ci(f"`{TOOL_NAMES[tool][0]}` is not installed (deploy/prometheus/install.sh installs it)")


def http_get(url: str, timeout: float = 5.0) -> tuple[int, bytes]:
    """Status and body of a GET; ``(0, b"")`` when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return int(response.status), response.read()
    except urllib.error.HTTPError as error:
        return int(error.code), error.read()
    except OSError:
        return 0, b""


def get_json(url: str) -> Any:
    status, body = http_get(url)
    assert status == 200, f"GET {url} answered {status}: {body[:500]!r}"
    return json.loads(body)


def terminate(process: subprocess.Popen[Any] | None, timeout: float) -> None:
    """SIGTERM, then SIGKILL if it has not exited within ``timeout`` seconds; nothing if it already exited."""
    if process is None or process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(5)


def tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


class ServerProcess:
    """One server process: started, waited for, stopped; can be started again on the same port and storage."""

    name = "server"

    def __init__(self, argv: Sequence[str], port: int, workdir: Path) -> None:
        self.argv = list(argv)
        self.port = port
        self.workdir = workdir
        self.log_path = workdir / f"{self.name}.log"
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> Self:
        with open(self.log_path, "ab") as log:
            self._process = subprocess.Popen(
                self.argv, cwd=self.workdir, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
        wait_until(self._ready, timeout=timeout, interval=0.1, message=f"{self.name} at {self.url}/-/ready")
        return self

    def _ready(self) -> bool:
        assert self._process is not None
        if self._process.poll() is not None:
            raise AssertionError(f"{self.name} exited with {self._process.returncode}; log:\n{tail(self.log_path)}")
        return http_get(f"{self.url}/-/ready", timeout=1.0)[0] == 200

    def stop(self, timeout: float = 15.0) -> None:
        process, self._process = self._process, None
        terminate(process, timeout)


class Prometheus(ServerProcess):
    name = "prometheus"

    def __init__(self, binary: str, config: Path, workdir: Path, port: int | None = None) -> None:
        port = port or free_ports(1)[0]
        argv = [
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--log.level=warn",
        ]
        super().__init__(argv, port, workdir)

    def query(self, expr: str) -> list[dict[str, Any]]:
        """The result of an instant query (vector, or a scalar as a one-element list)."""
        answer = get_json(f"{self.url}/api/v1/query?{urllib.parse.urlencode({'query': expr})}")
        assert answer["status"] == "success", f"query {expr!r} failed: {answer}"
        data = answer["data"]
        return data["result"] if data["resultType"] in ("vector", "matrix") else [data["result"]]

    def alerts(self) -> list[dict[str, Any]]:
        return list(get_json(f"{self.url}/api/v1/alerts")["data"]["alerts"])

    def targets(self) -> list[dict[str, Any]]:
        return list(get_json(f"{self.url}/api/v1/targets")["data"]["activeTargets"])


class Alertmanager(ServerProcess):
    name = "alertmanager"

    def __init__(self, binary: str, config: Path, workdir: Path, port: int | None = None) -> None:
        port = port or free_ports(1)[0]
        argv = [
            binary,
            f"--config.file={config}",
            f"--storage.path={workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=",  # no gossip: a single, isolated instance
            "--log.level=warn",
        ]
        super().__init__(argv, port, workdir)

    def alerts(self, **labels: str) -> list[dict[str, Any]]:
        """Active alerts (what ``GET /api/v2/alerts`` lists), optionally only those with these labels."""
        query = urllib.parse.urlencode([("filter", f'{key}="{value}"') for key, value in labels.items()])
        return list(get_json(f"{self.url}/api/v2/alerts?{query}"))


class Monitor:
    """``decaywatch monitor`` as a subprocess on a free metrics port; stdout is drained by a thread."""

    URL_PATTERN = re.compile(r"metrics at (http://\S+)/metrics")

    def __init__(self, args: Sequence[str], workdir: Path) -> None:
        self.argv = [
            sys.executable,
            "-m",
            "decaywatch",
            "monitor",
            "--metrics-port",
            "0",
            "--metrics-addr",
            "127.0.0.1",
            *args,
        ]
        self.workdir = workdir
        self.log_path = workdir / "monitor.log"
        self.lines: list[str] = []
        self._process: subprocess.Popen[str] | None = None

    def start(self, timeout: float = 60.0) -> Self:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        with open(self.log_path, "ab") as log:
            self._process = subprocess.Popen(
                self.argv, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=log, stdin=subprocess.DEVNULL, text=True
            )
        threading.Thread(target=self._drain, name="monitor-stdout", daemon=True).start()
        wait_until(self._ready, timeout=timeout, interval=0.1, message="the monitor to print its URL and be ready")
        return self

    def _drain(self) -> None:
        assert self._process is not None and self._process.stdout is not None
        for line in self._process.stdout:
            self.lines.append(line.rstrip("\n"))

    @property
    def url(self) -> str | None:
        for line in self.lines:
            if match := self.URL_PATTERN.search(line):
                return match.group(1)
        return None

    @property
    def target(self) -> str:
        """``host:port`` for a Prometheus scrape config."""
        assert self.url is not None
        return self.url.removeprefix("http://")

    def assert_running(self) -> None:
        """Fail at once, with the monitor's last log lines, if it has exited (rather than at a wait's deadline)."""
        assert self._process is not None, "the monitor was not started"
        if self._process.poll() is not None:
            raise AssertionError(
                f"the monitor exited with {self._process.returncode}; stdout: {self.lines}; log:\n{tail(self.log_path)}"
            )

    def _ready(self) -> bool:
        self.assert_running()
        return self.url is not None and http_get(f"{self.url}/readyz", timeout=1.0)[0] == 200

    def stop(self, timeout: float = 20.0) -> None:
        process, self._process = self._process, None
        terminate(process, timeout)
