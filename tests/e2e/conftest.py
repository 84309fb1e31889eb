"""Fixtures for the end-to-end tests: real Prometheus and Alertmanager processes, a webhook receiver.

The Prometheus tools come from Debian's packages (deploy/prometheus/install.sh);
without them these tests are skipped locally and fail under CI. Every process a
test starts is stopped when it ends, whatever happened.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol, TypeVar

import pytest

from tests.e2e.processes import require_tool
from tests.e2e.webhook import WebhookReceiver


class Stoppable(Protocol):
    def stop(self) -> None: ...


P = TypeVar("P", bound=Stoppable)


@pytest.fixture(scope="session")
def prometheus_binary() -> str:
    return require_tool("prometheus")


@pytest.fixture(scope="session")
def alertmanager_binary() -> str:
    return require_tool("alertmanager")


@pytest.fixture
def webhook() -> Iterator[WebhookReceiver]:
    receiver = WebhookReceiver().start()
    try:
        yield receiver
    finally:
        receiver.close()


class Processes:
    """Registers processes as a test starts them; stops them all, newest first, at the end."""

    def __init__(self) -> None:
        self._started: list[Stoppable] = []

    def add(self, process: P) -> P:
        self._started.append(process)
        return process

    def stop_all(self) -> None:
        while self._started:
            self._started.pop().stop()


@pytest.fixture
def processes() -> Iterator[Processes]:
    registry = Processes()
    try:
        yield registry
    finally:
        registry.stop_all()
