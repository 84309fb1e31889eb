"""The service's HTTP side: ``/metrics`` for Prometheus, ``/healthz``, ``/readyz`` and ``/models``.

Served from a daemon thread pool, so a slow or stuck scrape never holds up
consumption (the scrape reads an immutable snapshot; it takes no lock the
consumer needs).  ``/metrics`` is written by ``metrics.exposition`` from text
kept per model, negotiating the format as prometheus-client's own handler does
(OpenMetrics when the ``Accept`` header asks for it, gzip when accepted);
``name[]``-filtered scrapes and methods other than GET go to that handler.
"""

from __future__ import annotations

import gzip
import ssl
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from socketserver import ThreadingMixIn
from typing import Any
from urllib.parse import parse_qs
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import orjson
from prometheus_client import CollectorRegistry, make_wsgi_app
from prometheus_client.exposition import gzip_accepted

from decaywatch.consumer.metrics import exposition

Readiness = Callable[[], tuple[bool, str]]
StartResponse = Callable[..., Any]


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # the stdlib's signature, parameter name included
        """Scrapes every few seconds would flood the log; access logging stays off."""


class HttpEndpoints:
    """A WSGI application routing the four paths."""

    def __init__(self, registry: CollectorRegistry, readiness: Readiness, models: Callable[[], Any]) -> None:
        self._registry = registry
        self._library_metrics = make_wsgi_app(registry)
        self._readiness = readiness
        self._models = models

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "/")
        if path == "/metrics":
            return self._scrape(environ, start_response)
        if path == "/healthz":
            return _text(start_response, "200 OK", "ok\n")
        if path == "/readyz":
            ready, reason = self._readiness()
            return _text(start_response, "200 OK" if ready else "503 Service Unavailable", reason + "\n")
        if path == "/models":
            body = orjson.dumps(self._models(), option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY)
            start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
            return [body]
        return _text(start_response, "404 Not Found", "not found: try /metrics, /healthz, /readyz or /models\n")

    def _scrape(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        """``/metrics``: the page from kept per-model text, compressed for speed rather than size.

        gzip at level 1 takes a few milliseconds for a 1,000-model page where
        prometheus-client's level 9 takes over 100 ms, for about a third more
        bytes (~250 KB every 15 s).
        """
        if environ.get("REQUEST_METHOD", "GET") != "GET" or "name[]" in parse_qs(environ.get("QUERY_STRING", "")):
            page: Iterable[bytes] = self._library_metrics(environ, start_response)  # prometheus-client's WSGI app is untyped
            return page
        body, content_type = exposition(self._registry, environ.get("HTTP_ACCEPT"))
        headers = [("Content-Type", content_type)]
        if gzip_accepted(environ.get("HTTP_ACCEPT_ENCODING") or ""):
            body = gzip.compress(body, compresslevel=1)
            headers.append(("Content-Encoding", "gzip"))
        headers.append(("Content-Length", str(len(body))))
        start_response("200 OK", headers)
        return [body]


def _text(start_response: StartResponse, status: str, body: str) -> list[bytes]:
    data = body.encode()
    start_response(status, [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(data)))])
    return [data]


@dataclass(frozen=True, slots=True)
class TlsSettings:
    """HTTPS for the endpoints, as prometheus-client's exporter offers: a certificate and key, and
    optionally a CA whose client certificates are required (mutual TLS)."""

    certfile: str
    keyfile: str
    client_cafile: str | None = None

    def context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(self.certfile, self.keyfile)
        if self.client_cafile:
            context.load_verify_locations(cafile=self.client_cafile)
            context.verify_mode = ssl.CERT_REQUIRED
        return context


class HttpServer:
    """Serves an application on ``addr:port`` (port 0 picks a free one) until ``close``; HTTPS with ``tls``."""

    def __init__(self, app: HttpEndpoints, addr: str, port: int, tls: TlsSettings | None = None) -> None:
        self._server = make_server(addr, port, app, _ThreadingServer, handler_class=_QuietHandler)
        self._scheme = "http"
        if tls is not None:
            # The handshake happens in the request's own thread, not in accept() on the server loop:
            # a client that connects and stays silent must not hold up everyone else's scrapes.
            self._server.socket = tls.context().wrap_socket(self._server.socket, server_side=True, do_handshake_on_connect=False)
            self._scheme = "https"
        self._thread = threading.Thread(target=self._server.serve_forever, name="decaywatch-http", daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_port)

    def url(self, host: str | None = None) -> str:
        bound = self._server.server_address[0]
        addr = host or (bound.decode() if isinstance(bound, bytes) else bound)
        if addr in ("0.0.0.0", ""):
            addr = "127.0.0.1"
        return f"{self._scheme}://{addr}:{self.port}/metrics"

    def start(self) -> HttpServer:
        self._thread.start()
        return self

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
