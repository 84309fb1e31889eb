"""``decaywatch demo``: the lesson, live, through a real Kafka broker.

Two models stream through Kafka from 2024-01-01 to 2024-06-01 in simulated
event time: ``churn-model`` follows the lesson's drifting inputs and decays
from 0.85 to about 0.65; ``fraud-model`` stays healthy.  The monitor consumes
them, shows a live table, serves Prometheus metrics, prints each alert as it
fires, and ends with the lesson's verdict per model.

Unless ``--bootstrap-servers`` names a broker, the demo starts a throwaway
local one (fresh data, free ports) and stops it at the end.

``--label-delay 3d`` (or ``lognormal(median=3d,sigma=1)``) plays the case the
lesson's owners actually had: each label comes as its own label event that
long after its prediction, on the same topic, and the monitor must join them.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the service and the core need numpy and kafka-python: imported when the demo runs
    from decaywatch.monitor.config import MonitorConfig
    from decaywatch.monitor.snapshot import ModelSnapshot
    from decaywatch.producer.scenario import ModelSpec

DEFAULT_MODELS = "churn-model=lesson,fraud-model=stable(accuracy=0.86)"
BAD_EVENTS = (
    b'{"model": "churn-model", "pred": 1, "label": 0}',  # an upstream rename: "prediction" became "pred"
    b'{"model": "fraud-model", "prediction": 1, "label": "1"}',  # label type changed upstream
    b"not json at all",
)


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "demo",
        help="the lesson's scenario end to end: producer -> Kafka -> monitor -> metrics and alerts",
        description=__doc__.split("\n\n")[1] if __doc__ else None,
    )
    parser.add_argument("--bootstrap-servers", help="use this Kafka broker instead of starting a local one")
    parser.add_argument("--models", default=DEFAULT_MODELS, help=f"models and scenarios (default {DEFAULT_MODELS})")
    parser.add_argument("--seed", type=int, default=42, help="random seed of the synthetic streams")
    parser.add_argument("--rate", type=float, default=20000.0, help="events per second over all models (default 20000)")
    parser.add_argument("--metrics-port", type=int, default=0, help="port for /metrics (default 0: a free one, printed)")
    parser.add_argument("--no-bad-events", action="store_true", help="do not slip malformed events into the stream")
    parser.add_argument(
        "--label-delay",
        metavar="DELAY",
        help=(
            "send each label as a separate label event this long after its prediction (a duration such as 3d, "
            "or lognormal(median=3d,sigma=1)), for every model whose spec sets no label_delay of its own; "
            "default: labels inside their predictions"
        ),
    )
    parser.set_defaults(run=run)
    return parser


def lesson_config() -> MonitorConfig:
    """The lesson's policy: baseline 0.85 measured on 2024-01-01, threshold 0.1, windows of 1,000 and 10,000."""
    from decaywatch.monitor.config import ModelPolicy, MonitorConfig

    return MonitorConfig(ModelPolicy(baseline=0.85, baseline_date="2024-01-01", threshold=0.1, windows=(1000, 10000)))


def demo_specs(models: str, label_delay: str | None) -> list[ModelSpec]:
    """The demo's models, each given ``label_delay`` unless its own spec sets one.

    Raises :class:`~decaywatch.producer.scenario.SpecError` for a bad spec or delay,
    before anything is started.
    """
    from decaywatch.producer.delay import DelayError, parse_delay
    from decaywatch.producer.scenario import ModelSpec, SpecError, parse_models

    specs = parse_models(models)
    if label_delay is None:
        return specs
    try:
        delay = parse_delay(label_delay)
    except DelayError as exc:
        raise SpecError(f"--label-delay: {exc}") from None
    return [
        spec if spec.scenario.label_delay is not None else ModelSpec(spec.model, spec.scenario.with_label_delay(delay))
        for spec in specs
    ]


def run(args: argparse.Namespace) -> int:
    from decaywatch.consumer.runtime import MonitorRuntime, MonitorSettings
    from decaywatch.producer.scenario import SpecError
    from decaywatch.shared.logs import configure_logging
    from decaywatch.table import LiveTable

    try:
        specs = demo_specs(args.models, args.label_delay)
    except SpecError as exc:
        print(f"decaywatch demo: error: {exc}", file=sys.stderr)
        return 2
    configure_logging("text", logging.WARNING)
    logging.getLogger("decaywatch.consumer.sinks").setLevel(logging.ERROR)  # the demo prints alerts itself
    started = time.monotonic()
    out = sys.stdout
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with ExitStack() as stack:
        bootstrap = args.bootstrap_servers or _start_local_kafka(stack, out)
        topic = "predictions"
        _create_topics(bootstrap, [topic, "model-alerts", "predictions-dlq"])
        records, expected, models = _records(specs, args.seed, not args.no_bad_events)
        settings = MonitorSettings(
            kafka={"bootstrap_servers": bootstrap.split(",")},
            topic=topic,
            group=f"decaywatch-demo-{int(time.time())}",
            metrics_addr="127.0.0.1",
            metrics_port=args.metrics_port,
            config=lesson_config(),
        )
        runtime = stack.enter_context(MonitorRuntime(settings))
        table = LiveTable(out, time.monotonic, interactive=out.isatty())
        runtime.service.on_alert = lambda event: table.alert(_alert_line(event))
        out.write(f"metrics: {runtime.http.url()}   (also /models, /healthz, /readyz)\n")
        out.write(f"streaming {expected:,} events for {', '.join(models)} at {args.rate:,.0f} events/s ...\n\n")
        if args.label_delay is not None:
            out.write(f"(labels come as separate label events, {args.label_delay} after their predictions)\n\n")
        out.flush()
        producer = _Publisher(bootstrap, topic, records, args.rate)
        producer.start()
        last_draw = 0.0
        while not stop.is_set():
            runtime.service.step(timeout_s=0.2)
            now = time.monotonic()
            if now - last_draw >= 0.25:
                table.draw(runtime.service.snapshot(), runtime.service.totals.rejected)
                last_draw = now
            if producer.done.is_set() and runtime.service.totals.messages >= producer.sent:
                break
        producer.join()
        snapshot = runtime.service.snapshot()
        table.draw(snapshot, runtime.service.totals.rejected, force=True)
        if producer.error:
            out.write(f"\nproducer failed: {producer.error}\n")
            return 1
        out.write("\n")
        for name in sorted(snapshot):
            out.write(verdict(snapshot[name]) + "\n")
        interrupted = " (interrupted)" if stop.is_set() else ""
        out.write(f"\ndemo finished in {time.monotonic() - started:.1f} s{interrupted}\n")
    return 130 if stop.is_set() else 0


def verdict(m: ModelSnapshot) -> str:
    """The lesson's verdict for one model, with the numbers behind it."""
    w = m.judged
    if m.baseline is None or w.accuracy is None or w.drop is None:
        return f"{m.model}: not enough labeled events for a verdict"
    since = f" ({m.baseline_date})" if m.baseline_date else ""
    until = ""
    if w.time_span is not None:
        until = f", {time.strftime('%Y-%m-%d', time.gmtime(w.time_span[1]))}"
    from decaywatch.monitor.alert import DEGRADED_MESSAGE, STABLE_MESSAGE

    relation = ">" if m.degraded else "<="
    message = DEGRADED_MESSAGE if m.degraded else STABLE_MESSAGE
    return (
        f"{m.model}: baseline {m.baseline:.4f}{since}, accuracy {w.accuracy:.4f} "
        f"(last {w.labeled:,} labeled events{until}), drop {w.drop:.4f} {relation} threshold {m.threshold:g}\n"
        f"  {message}"
    )


def _alert_line(event: dict[str, Any]) -> str:
    evidence = (
        f"accuracy {event['accuracy']:.4f} [{event['lower_bound']:.3f}, {event['upper_bound']:.3f}] "
        f"over the last {event['samples']:,} labeled events"
    )
    if event["status"] == "firing":
        return (
            f"ALERT {event['status']:<8} {event['model']}: {event['message']} ({evidence}, baseline "
            f"{event['baseline_accuracy']:.4f}, drop {event['drop']:.4f} > {event['threshold']:g}; event time {event['event_time'][:10]})"
        )
    return f"ALERT {event['status']:<8} {event['model']}: {event['message']} ({evidence}; event time {event['event_time'][:10]})"


def _start_local_kafka(stack: ExitStack, out: Any) -> str:
    from decaywatch.deploy.kafka.runner import BrokerSettings, LocalKafka, free_ports

    port, controller_port = free_ports(2)
    data_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="decaywatch-demo-")))
    settings = BrokerSettings(
        data_dir=data_dir,
        cache_dir=BrokerSettings.from_environment().cache_dir,
        port=port,
        controller_port=controller_port,
    )
    kafka = LocalKafka(settings)
    out.write("starting a local Apache Kafka broker (KRaft) ...\n")
    out.flush()
    info = kafka.start()
    stack.callback(kafka.stop)
    out.write(f"Kafka ready at {info.bootstrap_servers} in {info.started_in_seconds:.1f} s (log: {info.log_path})\n")
    return info.bootstrap_servers


def _create_topics(bootstrap: str, topics: list[str]) -> None:
    from kafka.admin import KafkaAdminClient
    from kafka.errors import TopicAlreadyExistsError

    admin = KafkaAdminClient(bootstrap_servers=bootstrap.split(","), client_id="decaywatch-demo")
    try:
        for name in topics:
            with contextlib.suppress(TopicAlreadyExistsError):
                admin.create_topics({name: {"num_partitions": 2, "replication_factor": 1}}, wait_for_metadata=True)
    finally:
        admin.close()


def _records(
    specs: list[ModelSpec], seed: int, bad_events: bool, count: int | None = None
) -> tuple[Iterator[tuple[bytes, bytes]], int, list[str]]:
    """The demo's stream, label events included, with a few bad events slipped in.

    ``count`` events per model; by default the longest scenario's natural length (the lesson's time span).
    """
    from decaywatch.producer.encode import encode_records
    from decaywatch.producer.stream import generate_all, interleave

    count = max(spec.scenario.default_count for spec in specs) if count is None else count
    streams = generate_all(specs, seed, count)
    total = sum(len(s.timeline) for s in streams)
    bad = BAD_EVENTS if bad_events else ()
    spacing = max(1, total // (len(bad) + 1))

    def records() -> Iterator[tuple[bytes, bytes]]:
        pending = list(bad)
        for i, record in enumerate(encode_records(streams, interleave(streams)), start=1):
            yield record
            if pending and i % spacing == 0:
                yield b"upstream", pending.pop(0)

    return records(), total + len(bad), [s.model for s in streams]


class _Publisher(threading.Thread):
    """Publishes the demo's records in the background so the table can update meanwhile."""

    def __init__(self, bootstrap: str, topic: str, records: Iterator[tuple[bytes, bytes]], rate: float) -> None:
        super().__init__(name="decaywatch-demo-producer", daemon=True)
        self._servers, self._topic, self._records, self._rate = bootstrap, topic, records, rate
        self.done = threading.Event()
        self.sent = 0
        self.error: str | None = None

    def _counted(self) -> Iterator[tuple[bytes, bytes]]:
        for record in self._records:
            self.sent += 1
            yield record

    def run(self) -> None:
        from decaywatch.producer.publisher import make_kafka_producer, publish

        producer = make_kafka_producer(self._servers)
        try:
            report = publish(self._counted(), producer, self._topic, rate=self._rate)
            if not report.ok:
                self.error = f"{report.failed} events failed to deliver"
        except Exception as error:  # noqa: BLE001 - whatever stops the producer thread is reported by the main thread
            self.error = f"{type(error).__name__}: {error}"
        finally:
            producer.close(timeout=10)
            self.done.set()
