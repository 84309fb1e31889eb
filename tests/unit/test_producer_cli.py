"""``decaywatch produce`` end to end, without a broker: dry run, JSON Lines, and a fake Kafka producer."""

from __future__ import annotations

import argparse
import io
from pathlib import Path
from typing import Any

import orjson
import pytest
from kafka.errors import KafkaTimeoutError

from decaywatch.producer import cli


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="decaywatch")
    subparsers = parser.add_subparsers(dest="command", required=True)
    cli.add_parser(subparsers)
    return parser.parse_args(["produce", *argv])


class FakeFuture:
    def __init__(self, exc: BaseException | None) -> None:
        self.exc = exc

    def add_errback(self, f: Any, *args: Any) -> FakeFuture:
        if self.exc is not None:
            f(*args, self.exc)
        return self


class FakeProducer:
    def __init__(self, fail_every: int = 0) -> None:
        self.fail_every = fail_every
        self.sent: list[tuple[str, bytes | None, bytes | None]] = []
        self.flushes = 0
        self.closed = False

    def send(self, topic: str, value: bytes | None = None, key: bytes | None = None) -> FakeFuture:
        self.sent.append((topic, key, value))
        failing = self.fail_every and len(self.sent) % self.fail_every == 0
        return FakeFuture(RuntimeError("NotLeaderForPartitionError") if failing else None)

    def flush(self, timeout: float | None = None) -> None:
        self.flushes += 1

    def close(self, timeout: float | None = None) -> None:
        self.closed = True


class Run:
    """One invocation of ``run`` with captured output and a recording producer factory."""

    def __init__(self, *argv: str, environ: dict[str, str] | None = None, producer: FakeProducer | None = None):
        self.stdout = io.TextIOWrapper(io.BytesIO(), encoding="utf-8", write_through=True)
        self.stderr = io.StringIO()
        self.producer = producer or FakeProducer()
        self.bootstraps: list[str] = []

        def factory(bootstrap: str) -> FakeProducer:
            self.bootstraps.append(bootstrap)
            return self.producer

        self.code = cli.run(
            parse(*argv),
            environ=environ or {},
            stdout=self.stdout,
            stderr=self.stderr,
            producer_factory=factory,
        )
        self.stdout.flush()

    @property
    def out(self) -> str:
        return self.stdout.buffer.getvalue().decode("utf-8")

    @property
    def err(self) -> str:
        return self.stderr.getvalue()


def test_parser_defaults_and_run_hook() -> None:
    args = parse()
    assert args.run is cli.run
    assert (args.topic, args.models, args.seed, args.count, args.rate) == (
        "predictions",
        "churn-model=lesson,fraud-model=stable",
        42,
        None,
        None,
    )
    assert (args.bootstrap_servers, args.manifest, args.dry_run, args.jsonl) == (None, None, False, None)


def test_dry_run_writes_the_manifest_and_sends_nothing(tmp_path: Path) -> None:
    manifest = tmp_path / "m.json"
    run = Run("--dry-run", "--manifest", str(manifest))
    assert run.code == 0, run.err
    assert run.bootstraps == [] and run.producer.sent == []
    assert "dry run: would send 208571 events to topic 'predictions' at 127.0.0.1:9092" in run.out
    assert "below 0.75 from event 40000 (week 8, 2024-02-26T00:00:00.000Z)" in run.out
    assert '"event_id":"churn-model-0"' in run.out
    assert f"manifest: {manifest}" in run.out
    data = orjson.loads(manifest.read_bytes())
    assert data["models"]["churn-model"]["events"] == 108_571
    assert data["models"]["fraud-model"]["events"] == 100_000


def test_sends_to_kafka_interleaved_and_reports(tmp_path: Path) -> None:
    run = Run("--models", "a=lesson,b=sudden", "--count", "1000", "--topic", "preds", "--manifest", str(tmp_path / "m.json"))
    assert run.code == 0, run.err
    assert run.bootstraps == ["127.0.0.1:9092"]
    assert len(run.producer.sent) == 2000 and run.producer.flushes == 1 and run.producer.closed
    assert {topic for topic, _, _ in run.producer.sent} == {"preds"}
    assert [key for _, key, _ in run.producer.sent[:4]] == [b"a", b"b", b"a", b"b"]
    assert "sent 2000 events to topic 'preds' at 127.0.0.1:9092" in run.out
    assert "a  lesson: 1000 events" in run.out and "b  sudden(at=500): 1000 events" in run.out
    assert run.err == ""


def test_labels_topic_gets_the_label_events_keyed_like_the_predictions(tmp_path: Path) -> None:
    run = Run(
        "--models",
        "a=stable(label_delay=1h,label_ratio=0.5),b=lesson",
        "--count",
        "300",
        "--labels-topic",
        "labels",
        "--manifest",
        str(tmp_path / "m.json"),
    )
    assert run.code == 0, run.err
    by_topic: dict[str, list[dict[str, Any]]] = {"predictions": [], "labels": []}
    for topic, key, value in run.producer.sent:
        event = orjson.loads(value or b"")
        assert key == event["model"].encode()
        by_topic[topic].append(event)
    assert len(by_topic["predictions"]) == 600 and all("prediction" in e for e in by_topic["predictions"])
    assert all("label" not in e for e in by_topic["predictions"] if e["model"] == "a")
    labels = by_topic["labels"]
    assert labels and all(set(e) == {"model", "event_id", "label", "ts"} and e["model"] == "a" for e in labels)
    manifest = orjson.loads((tmp_path / "m.json").read_bytes())
    assert len(labels) == manifest["models"]["a"]["labels"]["label_events"] == manifest["label_events"]
    assert f"sent {600 + len(labels)} events to topic 'predictions' at 127.0.0.1:9092" in run.out
    assert f"of which {len(labels)} label events (to topic 'labels')" in run.out
    assert "a  stable(label_ratio=0.5,label_delay=1h): 300 events, " in run.out and "labeled (labels 1h later)" in run.out


def test_without_labels_topic_label_events_share_the_predictions_topic() -> None:
    run = Run("--models", "a=stable(label_delay=0s)", "--count", "3", "--dry-run")
    assert run.code == 0, run.err
    assert "would send 3 events to topic 'predictions'" in run.out and "and 3 label events to topic 'predictions'" in run.out
    sample = [orjson.loads(line.split(": ", 1)[1]) for line in run.out.splitlines() if line.startswith("  a: {")]
    assert ["prediction" in e for e in sample] == [True, False, True]
    sent = Run("--models", "a=stable(label_delay=0s)", "--count", "3").producer.sent
    assert [topic for topic, _, _ in sent] == ["predictions"] * 6


@pytest.mark.parametrize(
    ("argv", "environ", "expected"),
    [
        ((), {}, "127.0.0.1:9092"),
        ((), {"KAFKA_BOOTSTRAP_SERVERS": "k:1"}, "k:1"),
        ((), {"KAFKA_BOOTSTRAP_SERVERS": "k:1", "DECAYWATCH_BOOTSTRAP_SERVERS": "d:2"}, "d:2"),
        ((), {"DECAYWATCH_BOOTSTRAP_SERVERS": "  ", "KAFKA_BOOTSTRAP_SERVERS": "k:1"}, "k:1"),
        (("--bootstrap-servers", "flag:3"), {"DECAYWATCH_BOOTSTRAP_SERVERS": "d:2"}, "flag:3"),
    ],
)
def test_bootstrap_servers_come_from_flag_then_environment(argv: tuple[str, ...], environ: dict[str, str], expected: str) -> None:
    run = Run("--models", "m", "--count", "3", *argv, environ=environ)
    assert run.code == 0, run.err
    assert run.bootstraps == [expected]


def test_jsonl_file_replaces_kafka_and_is_deterministic(tmp_path: Path) -> None:
    first, second = tmp_path / "1.jsonl", tmp_path / "2.jsonl"
    for path in (first, second):
        run = Run("--models", "a=gradual(label_ratio=0.5),b", "--count", "500", "--jsonl", str(path))
        assert run.code == 0, run.err
        assert run.bootstraps == []
        assert f"sent 1000 events to {path}" in run.out
    assert first.read_bytes() == second.read_bytes()
    events = [orjson.loads(line) for line in first.read_bytes().splitlines()]
    assert len(events) == 1000 and {e["model"] for e in events} == {"a", "b"}
    assert any(e["label"] is None for e in events if e["model"] == "a")


def test_jsonl_to_stdout_keeps_stdout_pure() -> None:
    run = Run("--models", "m", "--count", "4", "--jsonl", "-")
    assert run.code == 0, run.err
    lines = run.out.splitlines()
    assert len(lines) == 4 and all(orjson.loads(line)["model"] == "m" for line in lines)
    assert "sent 4 events to stdout" in run.err


def test_rate_paces_with_the_injected_clock() -> None:
    now = [0.0]
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        now[0] += seconds

    code = cli.run(
        parse("--models", "m", "--count", "50", "--rate", "100", "--jsonl", "-"),
        environ={},
        stdout=io.TextIOWrapper(io.BytesIO()),
        stderr=io.StringIO(),
        clock=lambda: now[0],
        sleep=sleep,
    )
    assert code == 0
    assert sleeps == pytest.approx([0.1] * 5)  # 10 events per 0.1 s


def _one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (("--models", "a=sudden(at=x)"), "model 'a': sudden: at must be an integer, got 'x'"),
        (("--models", "a=sudden(at=5000)", "--count", "100"), "at=5000 is beyond the stream's 100 events"),
        (("--count", "0"), "--count must be at least 1"),
        (("--rate", "0"), "--rate must be a positive number"),
        (("--seed", "-1"), "--seed must be a non-negative integer"),
        (("--models", "m", "--count", "5", "--manifest", "/nonexistent-dir/m.json"), "No such file or directory"),
        (("--models", "m", "--count", "5", "--jsonl", "/nonexistent-dir/e.jsonl"), "No such file or directory"),
        (
            ("--models", "a=stable(label_delay=2d)", "--jsonl", "-", "--labels-topic", "l"),
            "--labels-topic has no effect with --jsonl",
        ),
        (("--models", "a=stable(label_delay=2d)", "--labels-topic", " "), "--labels-topic must name a topic"),
        (
            (
                "--models",
                "a=stable(label_delay=later)",
            ),
            "model 'a': stable: label_delay: 'later' is not a duration",
        ),
    ],
)
def test_errors_are_one_line_and_exit_1(argv: tuple[str, ...], message: str) -> None:
    run = Run(*argv)
    assert run.code == 1
    line = _one_line(run.err)
    assert line.startswith("decaywatch produce: error: ") and message in line
    assert run.producer.sent == []


def test_unreachable_broker_is_one_line() -> None:
    def factory(bootstrap: str) -> FakeProducer:
        raise KafkaTimeoutError("Unable to bootstrap from ['127.0.0.1:9092']")

    stderr = io.StringIO()
    code = cli.run(
        parse("--models", "m", "--count", "5"),
        environ={},
        stdout=io.StringIO(),
        stderr=stderr,
        producer_factory=factory,
    )
    assert code == 1
    assert _one_line(stderr.getvalue()) == (
        "decaywatch produce: error: Kafka at 127.0.0.1:9092: KafkaTimeoutError: Unable to bootstrap from ['127.0.0.1:9092']"
    )


def test_delivery_failures_exit_1_after_the_report() -> None:
    run = Run("--models", "m", "--count", "100", producer=FakeProducer(fail_every=10))
    assert run.code == 1
    assert "sent 100 events" in run.out
    assert _one_line(run.err) == (
        "decaywatch produce: error: 10 of 100 events failed delivery (first: RuntimeError: NotLeaderForPartitionError)"
    )
    assert run.producer.closed


def test_dry_run_and_jsonl_are_exclusive() -> None:
    with pytest.raises(SystemExit):
        parse("--dry-run", "--jsonl", "x")


def test_a_closed_stdout_is_one_line_not_a_traceback() -> None:
    class ClosedPipe(io.RawIOBase):
        def writable(self) -> bool:
            return True

        def write(self, data: Any) -> int:
            raise BrokenPipeError(32, "Broken pipe")

    stdout = io.TextIOWrapper(io.BufferedWriter(ClosedPipe(), buffer_size=64))
    stderr = io.StringIO()
    code = cli.run(parse("--models", "m", "--count", "100", "--jsonl", "-"), environ={}, stdout=stdout, stderr=stderr)
    assert code == 1
    assert _one_line(stderr.getvalue()).startswith("decaywatch produce: error: output closed after ")


def test_importing_the_cli_is_cheap() -> None:
    import subprocess
    import sys

    probe = "import sys, producer.cli; print(sorted({'numpy', 'kafka', 'orjson'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", probe], check=True, capture_output=True, text=True).stdout
    assert out.strip() == "[]"  # building the decaywatch parser must not pay for numpy or kafka-python
