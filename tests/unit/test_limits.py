"""Bounded cardinality: a stream that invents a model id per event cannot exhaust memory or the metrics."""

from __future__ import annotations

from collections.abc import Sequence

import orjson
import pytest

from decaywatch.consumer.metrics import ServiceMetrics
from decaywatch.consumer.service import MonitorService
from decaywatch.monitor.config import ConfigError, Limits, ModelPolicy, MonitorConfig
from decaywatch.monitor.engine import Monitor
from tests.unit.fakes import MemoryAlertSink, MemoryDeadLetters, MemorySource


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def service_for(batches: Sequence[Sequence[bytes | None]], limits: Limits) -> tuple[MonitorService, Clock]:
    journal: list[str] = []
    clock = Clock()
    config = MonitorConfig(ModelPolicy(baseline=0.85, windows=(10,), min_samples=5, time_windows=()), limits=limits)
    service = MonitorService(
        MemorySource([list(batch) for batch in batches], journal),
        Monitor(config),
        MemoryAlertSink(journal),
        MemoryDeadLetters(journal),
        ServiceMetrics(),
        clock,
    )
    return service, clock


def event(model: str, ok: bool = True) -> bytes:
    return orjson.dumps({"model": model, "prediction": 1, "label": int(ok)})


def test_models_beyond_the_cap_are_counted_not_tracked() -> None:
    invented = [event(f"m-{i}") for i in range(5000)]
    service, _ = service_for([invented[:2500], invented[2500:]], Limits(max_models=100))
    service.step()
    service.step()
    get = service.metrics.registry.get_sample_value
    assert get("decaywatch_tracked_models") == 100
    assert get("decaywatch_untracked_events_total") == 4900
    assert get("decaywatch_events_total", {"model": "m-99"}) == 1
    assert get("decaywatch_events_total", {"model": "m-100"}) is None
    series = [s for f in service.metrics.registry.collect() for s in f.samples if s.labels.get("model")]
    assert len({s.labels["model"] for s in series}) == 100
    assert service.totals.valid == 5000  # valid events are not lost: counted as untracked


def test_idle_models_are_forgotten_but_not_while_their_alert_is_open() -> None:
    quiet = [event("quiet")] * 20
    broken = [event("broken", ok=False)] * 40
    service, clock = service_for([quiet + broken, [event("busy")]], Limits(idle_expiry="1h"))
    service.step()
    assert service.snapshot()["broken"].degraded
    clock.now += 3601
    service.step()
    models = set(service.snapshot())
    assert models == {"busy", "broken"}  # quiet forgotten; broken kept while its episode is open
    get = service.metrics.registry.get_sample_value
    assert get("decaywatch_events_total", {"model": "quiet"}) is None


def test_limits_from_toml_and_bad_values() -> None:
    config = MonitorConfig.from_mapping({"limits": {"max_models": 5, "idle_expiry": "2d"}})
    assert config.limits == Limits(5, "2d") and config.limits.idle_expiry_seconds == 172800
    with pytest.raises(ConfigError, match="max_models"):
        Limits(max_models=0)
    with pytest.raises(ConfigError, match="idle_expiry"):
        Limits(idle_expiry="soon")
    with pytest.raises(ConfigError, match=r"\[limits\]"):
        MonitorConfig.from_mapping({"limits": {"max_model": 5}})
