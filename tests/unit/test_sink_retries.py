"""An alerts topic that is unavailable for a while: consumption goes on, nothing is committed, nothing is lost."""

from __future__ import annotations

from typing import Any

import orjson

from decaywatch.consumer.metrics import ServiceMetrics
from decaywatch.consumer.service import MonitorService
from decaywatch.consumer.sinks import KafkaAlertSink, KafkaDeadLetterSink
from decaywatch.monitor.config import ModelPolicy, MonitorConfig
from decaywatch.monitor.engine import Monitor
from tests.unit.fakes import MemorySource


class Future:
    def __init__(self, error: Exception | None) -> None:
        self.is_done = True
        self.exception = error


class FlakySender:
    """Fails every send while ``down``; remembers what was acknowledged."""

    def __init__(self) -> None:
        self.down = True
        self.acknowledged: list[tuple[str, Any]] = []

    def send(self, topic: str, value: Any = None, key: Any = None, headers: Any = None) -> Future:
        if self.down:
            return Future(RuntimeError("topic unavailable"))
        self.acknowledged.append((topic, value))
        return Future(None)

    def flush(self, timeout: float | None = None) -> None:
        if self.down:
            raise TimeoutError("flush timed out")


def test_alerts_are_retried_until_delivered_and_offsets_wait_for_them() -> None:
    sender = FlakySender()
    alerts, dead = KafkaAlertSink(sender, "alerts"), KafkaDeadLetterSink(sender, "dlq")
    bad = [orjson.dumps({"model": "m", "prediction": 1, "label": 0})] * 60
    good = [orjson.dumps({"model": "m", "prediction": 1, "label": 1})] * 10
    source = MemorySource([bad, good, good, good], [])
    config = MonitorConfig(ModelPolicy(baseline=0.85, windows=(50,), min_samples=20))
    service = MonitorService(source, Monitor(config), alerts, dead, ServiceMetrics(), clock=lambda: 0.0)

    service.step()
    service.step()
    assert source.committed == 0  # the firing alert is not acknowledged: no commit
    assert service.totals.messages == 70  # but consumption goes on
    assert alerts.pending == 1 and alerts.failed_sends >= 1
    assert service.metrics.registry.get_sample_value("decaywatch_undelivered_batches_total") == 2

    sender.down = False
    service.step()
    assert source.committed == 80 and alerts.pending == 0
    delivered = [orjson.loads(v) for topic, v in sender.acknowledged if topic == "alerts"]
    assert [a["status"] for a in delivered] == ["firing"]  # delivered once, after the outage
