"""A webhook receiver for Alertmanager's notifications: a tiny HTTP server on loopback that keeps what it is sent."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Notification:
    """One POST from Alertmanager: the path (which receiver) and the JSON payload (a group of alerts)."""

    path: str
    payload: dict[str, Any]

    @property
    def alerts(self) -> list[dict[str, Any]]:
        return list(self.payload.get("alerts", []))


class WebhookReceiver:
    """Collects notifications; ``url`` is the base to which receivers append their path (``/pager``, ``/chat``)."""

    def __init__(self) -> None:
        self.notifications: list[Notification] = []
        lock = threading.Lock()
        received = self.notifications

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with lock:
                    received.append(Notification(self.path, json.loads(body)))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, name="webhook", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_port}"

    def start(self) -> WebhookReceiver:
        self._thread.start()
        return self

    def alerts(self, status: str | None = None, **labels: str) -> list[tuple[str, dict[str, Any]]]:
        """``(path, alert)`` for every alert received so far with these labels (and status, if given)."""
        return [
            (n.path, alert)
            for n in list(self.notifications)
            for alert in n.alerts
            if all(alert["labels"].get(k) == v for k, v in labels.items()) and status in (None, alert["status"])
        ]

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
