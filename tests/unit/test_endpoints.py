"""The HTTP side: paths, readiness, and HTTPS with the certificate options prometheus-client offers."""

from __future__ import annotations

import ipaddress
import ssl
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, Counter

from decaywatch.consumer.endpoints import HttpEndpoints, HttpServer, TlsSettings


def endpoints(ready: bool = True) -> HttpEndpoints:
    registry = CollectorRegistry()
    Counter("decaywatch_test", "a sample", registry=registry).inc()
    return HttpEndpoints(
        registry, lambda: (ready, "ready" if ready else "not ready: no partitions"), lambda: {"m": {"state": "ok"}}
    )


def get(url: str, context: ssl.SSLContext | None = None) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5, context=context) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def test_paths_and_readiness() -> None:
    for ready, code in ((True, 200), (False, 503)):
        server = HttpServer(endpoints(ready), "127.0.0.1", 0).start()
        try:
            base = server.url().removesuffix("/metrics")
            assert get(f"{base}/readyz")[0] == code
            assert get(f"{base}/healthz") == (200, b"ok\n")
            assert b"decaywatch_test_total 1.0" in get(f"{base}/metrics")[1]
            assert get(f"{base}/models") == (200, b'{\n  "m": {\n    "state": "ok"\n  }\n}')
            assert get(f"{base}/nope")[0] == 404
        finally:
            server.close()


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """A self-signed certificate for 127.0.0.1 and its key (PEM files), minted in process; it also serves as its own CA."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()), critical=False)
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .sign(key, hashes.SHA256())
    )
    directory = tmp_path_factory.mktemp("tls")
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return str(cert_path), str(key_path)


def test_https_serves_metrics_to_clients_that_trust_the_certificate(certificate: tuple[str, str]) -> None:
    cert, key = certificate
    server = HttpServer(endpoints(), "127.0.0.1", 0, TlsSettings(cert, key)).start()
    try:
        url = server.url()
        assert url.startswith("https://")
        trusting = ssl.create_default_context(cafile=cert)
        status, body = get(url, trusting)
        assert status == 200 and b"decaywatch_test_total" in body
        with pytest.raises(urllib.error.URLError):
            get(url, ssl.create_default_context())  # an unknown certificate is refused
    finally:
        server.close()


def test_mutual_tls_requires_a_client_certificate(certificate: tuple[str, str], tmp_path: Path) -> None:
    cert, key = certificate
    server = HttpServer(endpoints(), "127.0.0.1", 0, TlsSettings(cert, key, client_cafile=cert)).start()
    try:
        without = ssl.create_default_context(cafile=cert)
        with pytest.raises((urllib.error.URLError, ssl.SSLError, ConnectionResetError)):
            get(server.url(), without)
        with_cert = ssl.create_default_context(cafile=cert)
        with_cert.load_cert_chain(cert, key)
        assert get(server.url(), with_cert)[0] == 200
    finally:
        server.close()


def test_a_silent_tls_client_does_not_block_other_scrapes(certificate: tuple[str, str]) -> None:
    import socket

    cert, key = certificate
    server = HttpServer(endpoints(), "127.0.0.1", 0, TlsSettings(cert, key)).start()
    silent = socket.create_connection(("127.0.0.1", server.port))  # connects, never says hello
    try:
        assert get(server.url(), ssl.create_default_context(cafile=cert))[0] == 200
    finally:
        silent.close()
        server.close()


def test_stuck_scrapes_do_not_slow_consumption() -> None:
    """Ten clients that send half a request and hang: the consumer's steps and a normal scrape go on."""
    import socket
    import time

    import orjson

    from decaywatch.consumer.metrics import ServiceMetrics
    from decaywatch.consumer.service import MonitorService
    from decaywatch.monitor.config import ModelPolicy, MonitorConfig
    from decaywatch.monitor.engine import Monitor
    from tests.unit.fakes import MemoryAlertSink, MemoryDeadLetters, MemorySource

    batches: list[list[bytes | None]] = [
        [orjson.dumps({"model": f"m{i % 3}", "prediction": 1, "label": i % 2}) for i in range(2000)] for _ in range(20)
    ]
    journal: list[str] = []
    metrics = ServiceMetrics()
    service = MonitorService(
        MemorySource(batches, journal), Monitor(MonitorConfig(ModelPolicy(baseline=0.85))),
        MemoryAlertSink(journal), MemoryDeadLetters(journal), metrics, clock=time.monotonic,
    )  # fmt: skip
    server = HttpServer(HttpEndpoints(metrics.registry, lambda: (True, "ready"), dict), "127.0.0.1", 0).start()
    stuck = []
    try:
        for _ in range(10):
            client = socket.create_connection(("127.0.0.1", server.port))
            client.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")  # no blank line: the request never ends
            stuck.append(client)
        started = time.monotonic()
        while service.step() is not None:
            pass
        assert service.totals.messages == 40_000
        assert time.monotonic() - started < 30  # generous: a blocked loop would hang here until the test's timeout
        status, body = get(server.url())
        assert status == 200 and b'decaywatch_events_total{model="m0"}' in body
    finally:
        for client in stuck:
            client.close()
        server.close()
