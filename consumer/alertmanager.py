"""Push the monitor's own alert events straight to Alertmanager (API v2), Prometheus or not.

An alert event (see :mod:`monitor.alert`) becomes one Alertmanager alert::

    labels       alertname (DecaywatchModelDegraded for rule "degradation" and for
                 the metric rules' "<metric>_degradation", DecaywatchAccuracyBelowFloor
                 for "floor"), model, severity, rule, metric, alert_id
    annotations  summary (the event's message), description (the numbers)
    startsAt     when the episode was emitted; endsAt once it is resolved

The alert names and severities are those of the Prometheus rules in
deploy/prometheus/rules, so Alertmanager's routing, grouping (alertname, model)
and inhibition treat both sources alike.

Delivery never holds up the consumer: :meth:`AlertmanagerSink.publish` records
the alert and returns; a background thread POSTs to ``{url}/api/v2/alerts`` for
every URL given (an HA pair gets everything, each member at its own pace),
retries failures with exponential back-off and jitter, and re-sends firing
alerts every ``resend_interval_s`` until they resolve, because Alertmanager
resolves an alert it has not heard of for ``resolve_timeout`` (5 minutes by
default). Alerts are kept per ``alert_id``: a resolution replaces its firing,
so what is sent is always the latest state. Only the standard library and
orjson are used.

The transport, clock and random source are parameters. Tests can drive the
sink without its thread: ``publish`` and then ``run_pending`` send what is due.

>>> posts = []
>>> sink = AlertmanagerSink(["http://am:9093"], transport=lambda url, body: posts.append(url) or 200)
>>> sink.publish({"alert_id": "00ff00ff00ff00ff", "model": "churn", "status": "firing", "rule": "degradation",
...               "message": "Model performance degraded significantly", "metric": "accuracy", "baseline": 0.85,
...               "baseline_date": "2024-01-01", "value": 0.7, "drop": 0.15, "threshold": 0.1, "floor": None,
...               "window": 1000, "samples": 1000, "event_time": "2024-03-01T00:00:00.000Z",
...               "emitted_at": "2025-01-01T12:00:00.000Z"})
>>> sink.pending, sink.run_pending() is not None, posts, sink.pending, sink.delivered
(1, True, ['http://am:9093/api/v2/alerts'], 0, 1)
"""

from __future__ import annotations

import logging
import math
import random
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import orjson

log = logging.getLogger(__name__)

Transport = Callable[[str, bytes], int]
"""POST a JSON ``body`` to ``url`` and return the HTTP status; raise (``OSError``, ...) when no answer came."""
Clock = Callable[[], float]

API_PATH: Final = "/api/v2/alerts"
ALERT_NAMES: Final = {"degradation": "DecaywatchModelDegraded", "floor": "DecaywatchAccuracyBelowFloor"}
SEVERITIES: Final = {"degradation": "warning", "floor": "critical"}
FALLBACK_ALERT_NAME: Final = "DecaywatchModelAlert"
"""For a rule this module does not know yet: still delivered, as a warning."""


def _rule_kind(rule: str) -> str:
    """``recall_degradation`` (a metric rule) is judged like ``degradation``."""
    return "degradation" if rule.endswith("_degradation") else rule


def urllib_transport(timeout_s: float = 5.0) -> Transport:
    """The default transport: one ``urllib`` POST per call, HTTP errors returned as their status."""

    def post(url: str, body: bytes) -> int:
        request = urllib.request.Request(url, data=body, method="POST", headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=timeout_s) as response:
                return int(response.status)
        except urllib.error.HTTPError as error:
            return int(error.code)

    return post


def api_url(url: str) -> str:
    """``http://am:9093`` (or ``http://am:9093/api/v2/alerts``) -> ``http://am:9093/api/v2/alerts``."""
    base = url.rstrip("/")
    return base if base.endswith(API_PATH) else base + API_PATH


def to_alertmanager(event: Mapping[str, Any], generator_url: str | None = None) -> dict[str, Any]:
    """One monitor alert event as an Alertmanager API v2 alert (``startsAt`` is when it was emitted)."""
    rule = str(event["rule"])
    kind = _rule_kind(rule)
    alert: dict[str, Any] = {
        "labels": {
            "alertname": ALERT_NAMES.get(kind, FALLBACK_ALERT_NAME),
            "model": str(event["model"]),
            "severity": SEVERITIES.get(kind, "warning"),
            "rule": rule,
            "metric": str(event.get("metric", "accuracy")),
            "alert_id": str(event["alert_id"]),
        },
        "annotations": {"summary": str(event["message"]), "description": describe(event)},
        "startsAt": event["emitted_at"],
    }
    if event["status"] == "resolved":
        alert["endsAt"] = event["emitted_at"]
    if generator_url:
        alert["generatorURL"] = generator_url
    return alert


def describe(event: Mapping[str, Any]) -> str:
    """The numbers behind an alert event, in one sentence (with the Wilson interval and window value when present).

    ``value``, ``baseline``, ``drop`` and the bounds measure the event's ``metric``: accuracy unless a metric rule fired.

    >>> text = describe({"model": "churn", "value": 0.7, "lower_bound": 0.66, "upper_bound": 0.74, "samples": 400,
    ...     "window": 1000, "window_accuracy": 0.71, "baseline": 0.85, "baseline_date": "2024-01-01",
    ...     "drop": 0.15, "threshold": 0.1, "floor": None, "event_time": "2024-03-01T00:00:00.000Z"})
    >>> for part in text.split("; "):
    ...     print(part)
    Model churn: accuracy 0.700 (95% interval 0.660-0.740) over 400 labeled events, 0.710 over the last 1000
    baseline 0.850 (2024-01-01), drop 0.150, threshold 0.100
    event time 2024-03-01T00:00:00.000Z.
    """
    metric = event.get("metric") or "accuracy"
    interval = ""
    if event.get("lower_bound") is not None and event.get("upper_bound") is not None:
        interval = f" (95% interval {event['lower_bound']:.3f}-{event['upper_bound']:.3f})"
    window = (
        f", {event['window_accuracy']:.3f} over the last {event['window']}" if event.get("window_accuracy") is not None else ""
    )
    since = f" ({event['baseline_date']})" if event.get("baseline_date") else ""
    floor = f", floor {event['floor']:.3f}" if event.get("floor") is not None else ""
    value = f"{metric} {event['value']:.3f}{interval} over {event['samples']} labeled events{window}"
    policy = f"baseline {event['baseline']:.3f}{since}, drop {event['drop']:.3f}"
    policy += f", threshold {event['threshold']:.3f}{floor}"
    return f"Model {event['model']}: {value}; {policy}; event time {event['event_time']}."


@dataclass(slots=True)
class _Alert:
    """The latest state of one episode, and where it still has to go."""

    payload: dict[str, Any]
    resolved: bool
    due: dict[str, float]
    """API URL -> monotonic time of the next send; a URL leaves once it has acknowledged the resolution."""
    unacked: set[str]
    """API URLs that have not acknowledged this state yet."""


@dataclass(slots=True)
class _Endpoint:
    url: str
    failures: int = 0
    retry_at: float = -math.inf


@dataclass(slots=True)
class _Counts:
    delivered: int = 0
    failed_attempts: int = 0
    rejected: int = 0
    dropped: int = 0


class AlertmanagerSink:
    """An ``AlertSink`` that delivers alert events to one or more Alertmanagers in the background.

    ``publish`` and ``flush`` never wait for the network. ``start()`` runs the
    sender thread; ``close(timeout)`` gives it up to ``timeout`` seconds to
    deliver what is still pending, then stops it.

    Counters for the service's metrics: ``pending`` (alert states not yet
    acknowledged, one per alert and Alertmanager), ``delivered`` (alerts
    acknowledged, counting each Alertmanager and each re-send), ``failed_attempts``
    (POSTs that failed and will be retried), ``rejected`` (alerts an
    Alertmanager refused with a 4xx: not retried) and ``dropped`` (alerts
    forgotten because more than ``max_alerts`` were outstanding).
    """

    def __init__(
        self,
        urls: Sequence[str],
        *,
        transport: Transport | None = None,
        clock: Clock = time.monotonic,
        rng: random.Random | None = None,
        resend_interval_s: float = 60.0,
        backoff_initial_s: float = 0.5,
        backoff_max_s: float = 30.0,
        max_alerts: int = 10_000,
        generator_url: str | None = None,
    ) -> None:
        if not urls:
            raise ValueError("at least one Alertmanager URL is needed")
        if resend_interval_s <= 0 or backoff_initial_s <= 0 or backoff_max_s < backoff_initial_s:
            raise ValueError("resend_interval_s and backoff_initial_s must be > 0, backoff_max_s >= backoff_initial_s")
        self._endpoints = [_Endpoint(api_url(url)) for url in dict.fromkeys(urls)]
        self._transport = transport if transport is not None else urllib_transport()
        self._clock = clock
        self._rng = rng if rng is not None else random.Random()
        self.resend_interval_s = resend_interval_s
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        self.max_alerts = max_alerts
        self.generator_url = generator_url
        self._alerts: dict[str, _Alert] = {}
        self._counts = _Counts()
        self._cond = threading.Condition()
        self._woken = False
        self._closing_until: float | None = None
        self._thread: threading.Thread | None = None

    # -- the AlertSink side (the consumer's thread) ---------------------------------

    def publish(self, event: Mapping[str, Any]) -> None:
        """Record the event's alert as the latest state of its episode and wake the sender; never blocks on I/O."""
        payload = to_alertmanager(event, self.generator_url)
        alert_id = payload["labels"]["alert_id"]
        resolved = "endsAt" in payload
        now = self._clock()
        urls = [endpoint.url for endpoint in self._endpoints]
        with self._cond:
            previous = self._alerts.pop(alert_id, None)
            if previous is not None and resolved:
                payload["startsAt"] = previous.payload["startsAt"]  # the episode began when it fired
            self._alerts[alert_id] = _Alert(payload, resolved, dict.fromkeys(urls, now), set(urls))
            while len(self._alerts) > self.max_alerts:
                oldest = next(iter(self._alerts))
                del self._alerts[oldest]
                self._counts.dropped += 1
                log.error("alertmanager: more than %d alerts outstanding; dropped alert %s", self.max_alerts, oldest)
            self._woken = True
            self._cond.notify()

    def flush(self) -> None:
        """Nothing to wait for: the sender thread delivers, and a down Alertmanager must not stall consumption."""

    # -- counters -------------------------------------------------------------------

    @property
    def pending(self) -> int:
        with self._cond:
            return sum(len(alert.unacked) for alert in self._alerts.values())

    @property
    def delivered(self) -> int:
        return self._counts.delivered

    @property
    def failed_attempts(self) -> int:
        return self._counts.failed_attempts

    @property
    def rejected(self) -> int:
        return self._counts.rejected

    @property
    def dropped(self) -> int:
        return self._counts.dropped

    # -- sending ----------------------------------------------------------------------

    def run_pending(self) -> float | None:
        """Send everything due now (one POST per Alertmanager); return seconds until the next send is due, if any."""
        for endpoint in self._endpoints:
            if endpoint.retry_at <= self._clock():
                self._send_due(endpoint)
        return self._next_due()

    def _send_due(self, endpoint: _Endpoint) -> None:
        now = self._clock()
        with self._cond:
            batch = [
                (alert_id, alert) for alert_id, alert in self._alerts.items() if alert.due.get(endpoint.url, math.inf) <= now
            ]
        if not batch:
            return
        body = orjson.dumps([alert.payload for _, alert in batch])
        try:
            status: int | None = self._transport(endpoint.url, body)
            problem = f"HTTP {status}"
        except Exception as error:  # noqa: BLE001 - any transport failure is a failed attempt, retried with backoff
            status, problem = None, f"{type(error).__name__}: {error}"
        now = self._clock()
        with self._cond:
            if status is not None and 200 <= status < 300:
                self._acknowledge(endpoint, batch, now)
                self._counts.delivered += len(batch)
            elif status is not None and 400 <= status < 500 and status != 429:
                self._acknowledge(endpoint, batch, now)
                self._counts.rejected += len(batch)
                log.error(
                    "alertmanager at %s rejected %d alert(s) with %s; not retrying them",
                    endpoint.url,
                    len(batch),
                    problem,
                )
            else:
                self._counts.failed_attempts += 1
                endpoint.failures += 1
                endpoint.retry_at = now + self._backoff(endpoint.failures)
                if endpoint.failures == 1:
                    log.warning(
                        "alertmanager at %s: %s; retrying with back-off (%d alert(s) waiting)",
                        endpoint.url,
                        problem,
                        len(batch),
                    )

    def _acknowledge(self, endpoint: _Endpoint, batch: list[tuple[str, _Alert]], now: float) -> None:
        if endpoint.failures:
            log.info("alertmanager at %s answers again after %d failed attempt(s)", endpoint.url, endpoint.failures)
        endpoint.failures = 0
        endpoint.retry_at = -math.inf
        for alert_id, alert in batch:
            alert.unacked.discard(endpoint.url)
            if self._alerts.get(alert_id) is not alert:
                continue  # superseded while in flight: the newer state has its own schedule
            if alert.resolved:
                del alert.due[endpoint.url]
                if not alert.due:
                    del self._alerts[alert_id]
            else:
                alert.due[endpoint.url] = now + self.resend_interval_s

    def _backoff(self, failures: int) -> float:
        """Exponential, capped, with "equal jitter": a random point in the upper half of the step."""
        step: float = min(self.backoff_max_s, self.backoff_initial_s * 2.0 ** min(failures - 1, 32))
        return step / 2 + self._rng.random() * step / 2

    def _next_due(self) -> float | None:
        now = self._clock()
        with self._cond:
            times = [
                max(due, endpoint.retry_at)
                for endpoint in self._endpoints
                for alert in self._alerts.values()
                if (due := alert.due.get(endpoint.url)) is not None
            ]
        return max(0.0, min(times) - now) if times else None

    # -- the thread -------------------------------------------------------------------

    def start(self) -> AlertmanagerSink:
        """Start the sender thread (a daemon: it never keeps the process alive)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="decaywatch-alertmanager", daemon=True)
            self._thread.start()
        return self

    def _run(self) -> None:
        while True:
            delay = self.run_pending()
            with self._cond:
                if self._closing_until is not None:
                    left = self._closing_until - self._clock()
                    if left <= 0 or not any(alert.unacked for alert in self._alerts.values()):
                        return
                    delay = left if delay is None else min(delay, left)
                if not self._woken:
                    self._cond.wait(delay)
                self._woken = False

    def close(self, timeout: float = 5.0) -> int:
        """Try for up to ``timeout`` seconds to deliver what is pending, stop the thread; return what is still pending.

        Firing alerts that were delivered are not pending: Alertmanager keeps
        them until its ``resolve_timeout`` runs out without a re-send.
        """
        with self._cond:
            self._closing_until = self._clock() + timeout
            self._woken = True
            self._cond.notify()
        if self._thread is not None:
            self._thread.join(timeout + 1.0)  # a POST under way at the deadline may take a little longer
            if self._thread.is_alive():
                log.warning("alertmanager sender still busy after %.1f s; leaving it (daemon thread)", timeout)
        left = self.pending
        if left:
            log.warning("alertmanager: %d alert delivery(ies) still pending at shutdown", left)
        return left

    def __enter__(self) -> AlertmanagerSink:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()
