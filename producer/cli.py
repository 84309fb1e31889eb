"""``decaywatch produce``: generate seeded synthetic prediction streams, write their ground truth, send them.

This is the only layer of the producer that reads the environment, prints, or
talks to a real broker; everything it calls is pure or injected, so the same
run can go to Kafka, to a JSON Lines file for offline replay, or nowhere
(``--dry-run``) with identical events and manifest.  Heavy imports (numpy,
kafka-python) happen inside :func:`run`, so building the ``decaywatch`` parser
stays instant.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable, Mapping
from typing import IO, Any, TextIO

from decaywatch.shared.kafka_settings import (
    KafkaAuthenticationError,
    add_kafka_arguments,
    kafka_client_config,
    redact,
    reporting_login_failures,
)

__all__ = ["DEFAULT_MODELS", "DEFAULT_TOPIC", "add_parser", "run"]

DEFAULT_TOPIC = "predictions"
DEFAULT_MODELS = "churn-model=lesson,fraud-model=stable"
SAMPLE_EVENTS = 3
"""How many encoded events ``--dry-run`` shows."""

_EPILOG = """\
models spec: NAME[=SCENARIO[(k=v,...)]], comma separated; a bare NAME plays 'stable'.
  lesson   inputs drift 0.04/week past the boundary, accuracy 0.85 -> 0.65 from 2024-01-01
           to 2024-06-01 (108,571 events)              params: from, to, label_ratio
  stable   accuracy holds                              params: accuracy=0.85, label_ratio
  sudden   accuracy steps down at event index 'at'     params: from=0.85, to=0.65, at=count/2, label_ratio
  gradual  accuracy ramps down over 'span' events      params: from=0.85, to=0.65, start=count/4,
                                                               span=count/2, label_ratio
  label_ratio (default 1.0) is the fraction of events that carry a label.
  label_delay (every scenario; default: labels inside their predictions) sends each label as a
           separate label event {model, event_id, label, ts} this long after its prediction:
           a duration (2d, 12h, 90m) or lognormal(median=3d,sigma=1); --labels-topic routes them.
example: --models 'churn=lesson,fraud=sudden(from=0.9,to=0.6,at=20000),ads=stable'
         --models 'churn=lesson(label_delay=lognormal(median=3d,sigma=1)),fraud=stable(label_delay=30d)'
"""


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``produce`` on the ``decaywatch`` subparsers and point ``args.run`` at :func:`run`."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "produce",
        help="send seeded synthetic prediction streams (with known decay) to Kafka",
        description=(
            "Generate seeded synthetic prediction events whose accuracy decays in a known way, "
            "write the ground truth (--manifest), and send them to Kafka, a JSON Lines file, or nowhere."
        ),
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_kafka_arguments(parser)  # no environment here: run() resolves the flags against the one it is given
    parser.add_argument("--topic", default=DEFAULT_TOPIC, help=f"topic to send to (default: {DEFAULT_TOPIC})")
    parser.add_argument(
        "--labels-topic",
        metavar="TOPIC",
        help=(
            "send the label events of models with a label_delay to this topic, keyed by model id like the "
            "predictions (create it with the predictions topic's partition count); default: the --topic"
        ),
    )
    parser.add_argument(
        "--models",
        default=DEFAULT_MODELS,
        metavar="SPEC",
        help=f"models and their scenarios (default: {DEFAULT_MODELS})",
    )
    parser.add_argument("--seed", type=int, default=42, help="random seed; same seed, same bytes (default: 42)")
    parser.add_argument("--count", type=int, metavar="N", help="events per model (default: each scenario's natural length)")
    parser.add_argument(
        "--rate",
        type=float,
        metavar="EVENTS_PER_S",
        help="events per second over all models (default: as fast as possible)",
    )
    parser.add_argument("--manifest", metavar="FILE", help="write the ground truth (JSON) here before sending")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--dry-run", action="store_true", help="send nothing: write the manifest and show what would be sent")
    where.add_argument(
        "--jsonl",
        metavar="FILE",
        help="write the events as JSON Lines to FILE ('-' for stdout) instead of sending them to Kafka",
    )
    parser.set_defaults(run=run)
    return parser


def run(
    args: argparse.Namespace,
    *,
    environ: Mapping[str, str] | None = None,
    stdout: TextIO | None = None,
    stderr: IO[str] | None = None,
    producer_factory: Callable[[str], Any] | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """Carry out ``decaywatch produce``; returns the exit code (0 ok, 1 on any error, reported in one line).

    The keyword arguments exist for tests: the environment, the output
    streams, the Kafka producer factory, and the clock all default to the real ones.
    """
    environ = os.environ if environ is None else environ
    stdout = sys.stdout if stdout is None else stdout
    stderr = sys.stderr if stderr is None else stderr

    def fail(message: str) -> int:
        print(f"decaywatch produce: error: {message}", file=stderr)
        return 1

    from kafka.errors import KafkaError

    from decaywatch.producer.publisher import PublishError, describe_error
    from decaywatch.producer.scenario import SpecError

    try:
        return _produce(args, environ, stdout, stderr, producer_factory, clock, sleep)
    except BrokenPipeError:
        _silence_stdout(stdout)
        return fail("output closed early (broken pipe)")
    except PublishError as exc:
        if isinstance(exc.__cause__, BrokenPipeError):  # e.g. `--jsonl - | head`
            _silence_stdout(stdout)
            return fail(f"output closed after {exc.sent} events (broken pipe)")
        return fail(str(exc))
    except SpecError as exc:
        return fail(str(exc))
    except OSError as exc:
        return fail(f"{exc.strerror or exc}: {exc.filename}" if exc.filename else str(exc))
    except KafkaAuthenticationError as exc:  # names user and mechanism, never the password
        return fail(str(exc))
    except KafkaError as exc:
        kafka = kafka_client_config(args, environ=environ)
        return fail(redact(f"Kafka at {','.join(kafka['bootstrap_servers'])}: {describe_error(exc)}", kafka))


def _silence_stdout(stdout: IO[str]) -> None:
    """After a broken pipe, point stdout at /dev/null so the interpreter's exit flush does not complain."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass


def _produce(
    args: argparse.Namespace,
    environ: Mapping[str, str],
    stdout: TextIO,
    stderr: IO[str],
    producer_factory: Callable[[str], Any] | None,
    clock: Callable[[], float],
    sleep: Callable[[float], None],
) -> int:
    from decaywatch.producer.encode import routed_records
    from decaywatch.producer.manifest import build_manifest, write_manifest
    from decaywatch.producer.publisher import JsonLinesSender, make_kafka_producer, publish
    from decaywatch.producer.scenario import SpecError, parse_models
    from decaywatch.producer.stream import generate_all, interleave

    if args.count is not None and args.count < 1:
        raise SpecError(f"--count must be at least 1, got {args.count}")
    if args.rate is not None and not args.rate > 0:
        raise SpecError(f"--rate must be a positive number of events per second, got {args.rate}")
    if args.seed < 0:
        raise SpecError(f"--seed must be a non-negative integer, got {args.seed}")
    if args.labels_topic is not None and args.jsonl:
        raise SpecError("--labels-topic has no effect with --jsonl: the file holds predictions and label events in time order")
    if args.labels_topic is not None and not args.labels_topic.strip():
        raise SpecError("--labels-topic must name a topic")
    specs = parse_models(args.models)
    started = clock()
    streams = generate_all(specs, args.seed, args.count)
    manifest = build_manifest(streams, args.seed, specs)
    generated = clock() - started
    if args.manifest:
        write_manifest(args.manifest, manifest)
    records = routed_records(streams, interleave(streams), args.topic, args.labels_topic)
    report_to = stderr if args.jsonl == "-" else stdout
    kafka = kafka_client_config(args, environ=environ)
    bootstrap = ",".join(kafka["bootstrap_servers"])

    label_events = int(manifest.get("label_events", 0))
    labels_to = f"topic {args.labels_topic or args.topic!r}"
    if args.dry_run:
        total = manifest["events"]
        print(f"dry run: would send {total} events to topic {args.topic!r} at {bootstrap}", file=report_to)
        if label_events:
            print(f"  and {label_events} label events to {labels_to}", file=report_to)
        _print_models(manifest, report_to)
        print(f"first {min(SAMPLE_EVENTS, total + label_events)} records:", file=report_to)
        for _, (key, value, _topic) in zip(range(SAMPLE_EVENTS), records, strict=False):
            print(f"  {key.decode()}: {value.decode()}", file=report_to)
        _print_manifest_path(args.manifest, report_to)
        return 0

    if args.jsonl:
        destination = "stdout" if args.jsonl == "-" else args.jsonl
        if args.jsonl == "-":
            report = publish(records, JsonLinesSender(stdout.buffer), args.topic, args.rate, clock, sleep)
        else:
            with open(args.jsonl, "wb") as out:
                report = publish(records, JsonLinesSender(out), args.topic, args.rate, clock, sleep)
    else:
        destination = f"topic {args.topic!r} at {bootstrap}"
        with reporting_login_failures(kafka):
            producer = make_kafka_producer(**kafka) if producer_factory is None else producer_factory(bootstrap)
        try:
            report = publish(records, producer, args.topic, args.rate, clock, sleep)
        finally:
            producer.close(timeout=10)

    print(
        f"sent {report.total} events to {destination} in {report.seconds:.2f} s "
        f"({report.events_per_second:,.0f} events/s; generated in {generated:.2f} s)",
        file=report_to,
    )
    if label_events:
        where = "in the same output, in time order" if args.jsonl else f"to {labels_to}"
        print(f"  of which {label_events} label events ({where})", file=report_to)
    _print_models(manifest, report_to, sent=report.per_model)
    _print_manifest_path(args.manifest, report_to)
    if report.failed:
        first = f" (first: {report.errors[0]})" if report.errors else ""
        print(f"decaywatch produce: error: {report.failed} of {report.total} events failed delivery{first}", file=stderr)
        return 1
    if report.flush_error:
        print(f"decaywatch produce: error: final flush failed: {report.flush_error}", file=stderr)
        return 1
    return 0


def _print_models(manifest: Mapping[str, Any], out: IO[str], sent: Mapping[str, int] | None = None) -> None:
    """One line per model: scenario, events (as sent, when sending), labels, and where accuracy goes."""
    width = max(len(name) for name in manifest["models"])
    for name, model in manifest["models"].items():
        first, last = model["segments"][0], model["segments"][-1]
        label_events = model["labels"]["label_events"] if "labels" in model else 0
        events = model["events"] if sent is None else sent.get(name, 0) - label_events  # publish counts every record
        delay = f" (labels {model['labels']['delay']['spec']} later)" if "labels" in model else ""
        line = (
            f"  {name:<{width}}  {model['spec'].partition('=')[2]}: {events} events, "
            f"{model['labeled']} labeled{delay}, expected accuracy "
            f"{first['population_accuracy']:.3f} -> {last['population_accuracy']:.3f}"
        )
        for threshold, hit in model["first_below"].items():
            if hit is not None:
                line += f", below {threshold} from event {hit['index']} ({hit['segment']}, {hit['time']})"
        print(line, file=out)


def _print_manifest_path(path: str | None, out: IO[str]) -> None:
    if path:
        print(f"manifest: {path}", file=out)
