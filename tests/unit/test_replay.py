"""``decaywatch replay``: the core over recorded events, offline; same alerts as the live service."""

from __future__ import annotations

import argparse
import csv
import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest

from decaywatch import replay
from decaywatch.consumer.metrics import ServiceMetrics
from decaywatch.consumer.service import MonitorService
from decaywatch.monitor.codec import MAX_MESSAGE_BYTES
from decaywatch.monitor.engine import Monitor
from decaywatch.producer.encode import encode_records
from decaywatch.producer.manifest import build_manifest
from decaywatch.producer.scenario import SECONDS_PER_WEEK, START_TS, parse_models
from decaywatch.producer.stream import generate_all, interleave
from decaywatch.recording import read_batches
from decaywatch.shared.policy_flags import load_config
from tests.unit.fakes import MemoryAlertSink, MemoryDeadLetters, MemorySource

T0 = 1_704_067_200.0  # 2024-01-01T00:00:00Z
SMALL = ["--baseline", "0.85", "--windows", "4", "--min-samples", "4"]
"""A 4-event window judged as soon as it is full: baseline 0.85, threshold 0.1 -> fires below 0.75, resolves at 0.8."""


def parse(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    replay.add_parser(parser.add_subparsers())
    return parser.parse_args(["replay", *argv])


def run_replay(argv: Sequence[str], stdin: bytes | None = None) -> tuple[int, bytes, str]:
    out, err = io.BytesIO(), io.StringIO()
    code = replay.run(parse(argv), stdin=None if stdin is None else io.BytesIO(stdin), stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def alerts_of(stdout: bytes) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in stdout.splitlines()]


@pytest.fixture
def window_config(tmp_path: Path) -> Path:
    """The plain window rule (easy to reason about by hand)."""
    path = tmp_path / "window.toml"
    path.write_text('[defaults]\ndecision = "window"\n')
    return path


def ev(model: str, prediction: Any, label: Any, ts: float | None = None, **extra: Any) -> dict[str, Any]:
    event = {"model": model, "prediction": prediction, "label": label, **extra}
    if ts is not None:
        event["ts"] = ts
    return event


def jsonl(lines: Sequence[dict[str, Any] | bytes]) -> bytes:
    return b"".join((line if isinstance(line, bytes) else orjson.dumps(line)) + b"\n" for line in lines)


def drifting_events(seed: int, n: int = 600) -> list[dict[str, Any]]:
    """Two models; ``a`` is right 90% of the time, then 45%, then 95% again; ``b`` stays at 90%."""
    rng = np.random.default_rng(seed)
    events = []
    for i in range(n):
        model = "a" if i % 3 else "b"
        p = 0.9 if model == "b" or i < n / 3 else (0.45 if i < 2 * n / 3 else 0.95)
        prediction = int(rng.random() < 0.5)
        label = prediction if rng.random() < p else 1 - prediction
        labeled = rng.random() < 0.9
        events.append(ev(model, prediction, label if labeled else None, T0 + 60.0 * i, score=0.5, features={"x": float(i)}))
    return events


# --- alerts and their line numbers -------------------------------------------------------------

HAND_MADE: list[dict[str, Any] | bytes] = [
    ev("a", 1, 1, T0 + 0),  # 0
    ev("a", 1, 1, T0 + 1),  # 1
    ev("b", 0, 0, T0 + 2),  # 2
    ev("a", 1, 0, T0 + 3),  # 3
    b"not json",  # 4
    ev("a", 1, 0, T0 + 5),  # 5: a's window [1, 1, 0, 0] = 0.5 < 0.75 -> firing
    ev("a", 1, None, T0 + 6),  # 6: unlabeled, not judged
    ev("a", 1, 1, T0 + 7),  # 7: [1, 0, 0, 1]
    ev("a", 1, 1, T0 + 8),  # 8: [0, 0, 1, 1]
    ev("a", 1, 1, T0 + 9),  # 9: [0, 1, 1, 1] = 0.75: not below the line, not yet 0.8
    b"",  # 10: a blank line is a line, and malformed
    ev("a", 1, 1, T0 + 11),  # 11: [1, 1, 1, 1] -> resolved
    ev("b", 0, 0, T0 + 12),  # 12
]


def test_hand_made_file_gives_the_expected_alerts_at_their_lines(tmp_path: Path, window_config: Path) -> None:
    path = tmp_path / "events.jsonl"
    path.write_bytes(jsonl(HAND_MADE))
    code, out, err = run_replay([str(path), "--config", str(window_config), *SMALL])
    assert code == 0
    alerts = alerts_of(out)
    assert [(a["model"], a["status"], a["index"], a["accuracy"], a["samples"]) for a in alerts] == [
        ("a", "firing", 5, 0.5, 4),
        ("a", "resolved", 11, 1.0, 4),
    ]
    assert alerts[0]["alert_id"] == alerts[1]["alert_id"]
    assert [a["event_time"] for a in alerts] == ["2024-01-01T00:00:05.000Z", "2024-01-01T00:00:11.000Z"]
    assert all(a["emitted_at"] == a["event_time"] for a in alerts)  # deterministic: no wall clock
    assert "malformed_json" in err and "(first at line 4:" in err
    assert "replayed 13 lines" in err and "11 valid events, 2 invalid, 2 alert events" in err


def test_output_is_the_same_bytes_on_every_run(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    path.write_bytes(jsonl(drifting_events(1)))
    first = run_replay([str(path), *SMALL])
    assert first[0] == 0 and first[1]
    assert run_replay([str(path), *SMALL])[1] == first[1]


def test_the_summary_table_goes_to_stderr(tmp_path: Path, window_config: Path) -> None:
    path = tmp_path / "events.jsonl"
    path.write_bytes(jsonl(HAND_MADE))
    _, _, err = run_replay([str(path), "--config", str(window_config), *SMALL])
    table = err.splitlines()
    assert table[0].split()[:3] == ["model", "events", "labeled"]
    assert table[1].split()[:3] == ["a", "9", "8"] and table[2].split()[:3] == ["b", "2", "2"]


# --- formats and inputs ------------------------------------------------------------------------


def to_csv(events: Sequence[dict[str, Any]]) -> bytes:
    """The same events as CSV: every value as text, ``features.x`` for the feature, empty cells for absent fields."""
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    columns = ["model", "prediction", "label", "ts", "score", "features.x"]
    writer.writerow(columns)
    for e in events:
        cells = {**e, "features.x": e.get("features", {}).get("x")}
        writer.writerow(["" if cells.get(c) is None else cells[c] for c in columns])
    return text.getvalue().encode()


@pytest.mark.parametrize("decision", ["window", "sequential"])
def test_csv_and_jsonl_of_the_same_events_give_identical_alert_lines(tmp_path: Path, decision: str) -> None:
    events = drifting_events(7)
    (tmp_path / "e.jsonl").write_bytes(jsonl(events))
    (tmp_path / "e.csv").write_bytes(to_csv(events))
    (tmp_path / "policy.toml").write_text(f'[defaults]\ndecision = "{decision}"\n')
    flags = ["--config", str(tmp_path / "policy.toml"), "--baseline", "0.9", "--windows", "40", "--min-samples", "40"]
    code_j, out_j, _ = run_replay([str(tmp_path / "e.jsonl"), *flags])
    code_c, out_c, err_c = run_replay([str(tmp_path / "e.csv"), *flags])
    assert code_j == code_c == 0
    assert "firing" in {a["status"] for a in alerts_of(out_j)}
    assert out_c == out_j
    assert "(csv)" in err_c


def test_format_flag_overrides_the_extension(tmp_path: Path) -> None:
    events = drifting_events(3)
    path = tmp_path / "events.txt"
    path.write_bytes(to_csv(events))
    (tmp_path / "events.jsonl").write_bytes(jsonl(events))
    assert run_replay([str(path), "--format", "csv", *SMALL])[1] == run_replay([str(tmp_path / "events.jsonl"), *SMALL])[1]
    code, out, err = run_replay([str(path), *SMALL])  # read as JSON Lines: every line is malformed
    assert (code, out) == (0, b"") and f"{len(events) + 1} invalid" in err


def test_stdin_is_read_for_a_dash(tmp_path: Path) -> None:
    data = jsonl(drifting_events(5))
    path = tmp_path / "events.jsonl"
    path.write_bytes(data)
    from_file = run_replay([str(path), *SMALL])
    from_stdin = run_replay(["-", *SMALL], stdin=data)
    assert from_stdin[0] == 0 and from_stdin[1] == from_file[1] and from_file[1]
    assert run_replay(["-", "--format", "csv", *SMALL], stdin=to_csv(drifting_events(5)))[1] == from_file[1]


def test_csv_rules(tmp_path: Path) -> None:
    path = tmp_path / "events.csv"
    path.write_text(
        "model, prediction ,label,ts,score,features.x,event_id\n"
        "m,1,1,2024-01-01T00:00:00Z,0.5,0.25,e1\n"  # 0: RFC 3339 time, strings equal: correct
        "m,1,1.0,1704067260,,,\n"  # 1: "1" != "1.0": wrong; empty cells absent
        "m,yes,yes,,,,\n"  # 2: any text; no ts: previous event's time
        "m,1,,1704067320,,,\n"  # 3: no label: unlabeled
        "\n"  # 4: blank line
        "m,1,1,1704067380,,,,extra\n"  # 5: more cells than columns
        "m,1,1,1704067440,2.5,,\n"  # 6: score out of range
        "m,1,1,1704067500,,big,\n"  # 7: a feature that is not a number
        "m,1,1,not a time,,,\n"  # 8: bad timestamp
    )
    (batch,) = read_batches(path.open("rb"), "csv")
    events = batch.events
    assert batch.lines == 9
    assert events.source_index.tolist() == [0, 1, 2, 3]
    assert events.labeled.tolist() == [True, True, True, False]
    assert events.correct.tolist() == [True, False, True, False]
    assert events.event_time.tolist() == [T0, T0 + 60, T0 + 60, T0 + 120]
    assert [(r.index, r.reason) for r in batch.rejections] == [
        (4, "malformed_json"),
        (5, "invalid_field"),
        (6, "invalid_score"),
        (7, "invalid_features"),
        (8, "invalid_timestamp"),
    ]


def test_a_csv_row_that_is_not_utf8_is_rejected_and_the_rest_read() -> None:
    data = b'\xef\xbb\xbfmodel,prediction,label\nm,1,1\nm\xff,1,1\n"m","1","1"\n'
    (batch,) = read_batches(io.BytesIO(data), "csv")
    assert batch.events.source_index.tolist() == [0, 2] and batch.events.models == ("m",)
    assert [(r.index, r.reason, r.detail) for r in batch.rejections] == [(1, "malformed_json", "row is not valid UTF-8")]


def test_a_header_only_or_empty_file_replays_nothing(tmp_path: Path) -> None:
    for name, content in [("h.csv", b"model,prediction,label\n"), ("e.csv", b""), ("e.jsonl", b"")]:
        path = tmp_path / name
        path.write_bytes(content)
        code, out, err = run_replay([str(path), *SMALL])
        assert (code, out) == (0, b"") and "replayed 0 lines" in err


# --- malformed input ---------------------------------------------------------------------------


def test_malformed_lines_are_counted_by_reason_and_do_not_stop_the_run(tmp_path: Path) -> None:
    good = [ev("m", 1, 1, T0 + i) for i in range(3)]
    lines: list[dict[str, Any] | bytes] = [
        good[0],
        b"",
        b"{oops",
        b"[1, 2]",
        b'{"model": "m", "prediction": 1, "label": 1, "ts": NaN}',
        b'{"prediction": 1}',
        b'{"model": "m", "prediction": 1, "label": "1"}',
        good[1],
        b"\xff\xfe not utf-8",
        b'{"model": "m", "prediction": 1, "label": 1, "ts": "yesterday"}',
        good[2],
    ]
    path = tmp_path / "bad.jsonl"
    path.write_bytes(jsonl(lines))
    code, _, err = run_replay([str(path), *SMALL])
    assert code == 0
    assert "replayed 11 lines" in err and "3 valid events, 8 invalid" in err
    batches = list(read_batches(path.open("rb"), "jsonl"))
    rejections = [(r.index, r.reason) for b in batches for r in b.rejections]
    assert rejections == [
        (1, "malformed_json"),
        (2, "malformed_json"),
        (3, "not_an_object"),
        (4, "non_finite_number"),
        (5, "missing_model"),
        (6, "invalid_label"),
        (8, "malformed_json"),
        (9, "invalid_timestamp"),
    ]
    assert [i for b in batches for i in b.events.source_index.tolist()] == [0, 7, 10]
    assert "  3  malformed_json  (first at line 1:" in " ".join(err.split("\n"))  # tallied, most frequent first


def test_an_overlong_line_is_rejected_without_losing_its_neighbours(tmp_path: Path) -> None:
    huge = b'{"model": "m", "prediction": 1, "pad": "' + b"x" * (3 * MAX_MESSAGE_BYTES) + b'"}'
    path = tmp_path / "long.jsonl"
    path.write_bytes(jsonl([ev("m", 1, 1, T0), huge, ev("m", 1, 1, T0 + 2)]))
    for jobs, chunk_bytes, read_bytes in [(1, 1 << 20, 1000), (1, 1 << 20, 8 << 20), (2, 100, 1000), (2, 100, 8 << 20)]:
        batches = list(read_batches(path.open("rb"), "jsonl", jobs=jobs, chunk_bytes=chunk_bytes, read_bytes=read_bytes))
        assert [(r.index, r.reason) for b in batches for r in b.rejections] == [(1, "message_too_large")]
        assert [i for b in batches for i in b.events.source_index.tolist()] == [0, 2]


# --- reading in chunks, in parallel ------------------------------------------------------------


def flatten(batches: Sequence[Any]) -> dict[str, list[Any]]:
    return {
        "lines": [sum(b.lines for b in batches)],
        "first": [b.first_line for b in batches][:1],
        "model": [b.events.models[c] for b in batches for c in b.events.model_codes.tolist()],
        "index": [i for b in batches for i in b.events.source_index.tolist()],
        "time": [t for b in batches for t in b.events.event_time.tolist()],
        "labeled": [x for b in batches for x in b.events.labeled.tolist()],
        "correct": [x for b in batches for x in b.events.correct.tolist()],
        "rejections": [(r.index, r.reason) for b in batches for r in b.rejections],
    }


@pytest.mark.parametrize("pipe", [False, True], ids=["file", "pipe"])
@pytest.mark.parametrize("jobs", [1, 2])
@pytest.mark.parametrize(("chunk_bytes", "read_bytes"), [(1, 1), (64, 100), (500, 7), (1 << 20, 8 << 20)])
def test_batches_do_not_depend_on_chunking_or_jobs(
    tmp_path: Path, pipe: bool, jobs: int, chunk_bytes: int, read_bytes: int
) -> None:
    events: list[dict[str, Any] | bytes] = list(drifting_events(11, n=120))
    events[5] = b"garbage"
    events[40] = b""
    for i in (7, 8, 60):  # no ts: the previous valid event's time, across chunk boundaries
        event = events[i]
        assert isinstance(event, dict)
        del event["ts"]
    data = b"\xef\xbb\xbf" + jsonl(events)[:-1]  # a byte order mark, and no newline after the last line
    path = tmp_path / "events.jsonl"
    path.write_bytes(data)
    reference = flatten(list(read_batches(path.open("rb"), "jsonl")))
    source = io.BytesIO(data) if pipe else path.open("rb")  # a pipe is read here; a file by the workers
    got = flatten(list(read_batches(source, "jsonl", jobs=jobs, chunk_bytes=chunk_bytes, read_bytes=read_bytes)))
    assert got == reference
    assert reference["lines"] == [120] and reference["rejections"] == [(5, "malformed_json"), (40, "malformed_json")]
    times = dict(zip(reference["index"], reference["time"], strict=True))
    assert times[7] == times[8] == times[6] and times[60] == times[59]


def test_an_event_without_ts_before_any_valid_event_is_at_epoch_zero() -> None:
    data = jsonl([b"{", ev("m", 1, 1), ev("m", 1, 1, T0), ev("m", 1, 1)])
    (batch,) = read_batches(io.BytesIO(data), "jsonl")
    assert batch.events.event_time.tolist() == [0.0, T0, T0]


def test_parallel_replay_gives_the_same_output(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    path.write_bytes(jsonl(drifting_events(2, n=3000)))
    config = load_config(parse([str(path), *SMALL]))

    def replayed(jobs: int, chunk_bytes: int) -> bytes:
        out = io.BytesIO()
        batches = read_batches(path.open("rb"), "jsonl", jobs=jobs, chunk_bytes=chunk_bytes)
        replay.replay(batches, Monitor(config), out.write)
        return out.getvalue()

    reference = replayed(1, 4096)
    assert len(alerts_of(reference)) >= 2
    assert replayed(2, 4096) == reference and replayed(3, 4096) == reference

    # Other chunk sizes give byte-identical alerts too (every field, evidence_start included).
    assert replayed(1, 1 << 20) == reference
    assert replayed(2, 999) == reference


# --- exit codes --------------------------------------------------------------------------------


def test_exit_1_when_the_file_cannot_be_read(tmp_path: Path) -> None:
    code, out, err = run_replay([str(tmp_path / "missing.jsonl")])
    assert (code, out) == (1, b"") and "cannot read" in err and "No such file" in err
    assert run_replay([str(tmp_path)])[0] == 1  # a directory


@pytest.mark.parametrize(
    ("flags", "config", "message"),
    [
        (["--threshold", "2"], None, "threshold must be in [0, 1)"),
        (["--windows", "10,x"], None, "--windows must be comma-separated"),
        ([], "[defaults]\nthreshhold = 0.1\n", "unknown key"),
        ([], "not = [toml", "is not valid TOML"),
    ],
)
def test_exit_2_for_a_configuration_error(tmp_path: Path, flags: list[str], config: str | None, message: str) -> None:
    path = tmp_path / "events.jsonl"
    path.write_bytes(jsonl(HAND_MADE))
    if config is not None:
        (tmp_path / "c.toml").write_text(config)
        flags = [*flags, "--config", str(tmp_path / "c.toml")]
    code, out, err = run_replay([str(path), *flags])
    assert (code, out) == (2, b"") and message in err


def test_exit_2_for_a_missing_config_file(tmp_path: Path) -> None:
    assert run_replay(["-", "--config", str(tmp_path / "nope.toml")], stdin=b"")[0] == 2


@pytest.mark.parametrize("argv", [["f", "--format", "xml"], ["f", "--jobs", "0"], ["f", "--jobs", "two"], []])
def test_exit_2_for_a_usage_error(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        parse(argv)
    assert exit_info.value.code == 2


def test_exit_1_when_the_output_is_closed(tmp_path: Path) -> None:
    class ClosedPipe(io.BytesIO):
        def write(self, data: Any) -> int:
            raise BrokenPipeError(32, "Broken pipe")

    path = tmp_path / "events.jsonl"
    path.write_bytes(jsonl(drifting_events(1)))
    err = io.StringIO()
    assert replay.run(parse([str(path), *SMALL]), stdout=ClosedPipe(), stderr=err) == 1
    assert "output closed early" in err.getvalue()


# --- the same alerts as the live service -------------------------------------------------------

COMPARED = ("alert_id", "status", "model", "event_time", "accuracy")


def service_alerts(values: list[bytes], batch_size: int, config: Any) -> list[tuple[Any, ...]]:
    journal: list[str] = []
    batches: list[list[bytes | None]] = [list(values[i : i + batch_size]) for i in range(0, len(values), batch_size)]
    source, alerts, dead = MemorySource(list(batches), journal), MemoryAlertSink(journal), MemoryDeadLetters(journal)
    service = MonitorService(source, Monitor(config), alerts, dead, ServiceMetrics(), clock=lambda: 1717200000.0)
    while service.step() is not None:
        pass
    assert source.committed == len(values)
    return [tuple(event[k] for k in COMPARED) for event in alerts.events]


@pytest.mark.parametrize("decision", ["window", "sequential"])
def test_replay_gives_the_same_alerts_as_the_live_service(tmp_path: Path, decision: str) -> None:
    events: list[dict[str, Any] | bytes] = list(drifting_events(13, n=1500))
    events[10:10] = [b"{not json", b'{"model": "a"}', b""]  # dead-lettered by the service, counted by replay
    data = jsonl(events)
    path = tmp_path / "events.jsonl"
    path.write_bytes(data)
    (tmp_path / "policy.toml").write_text(f'[defaults]\ndecision = "{decision}"\nrule_window = 100\n')
    policy = ["--baseline", "0.9", "--windows", "20,100", "--min-samples", "50"]
    argv = [str(path), "--config", str(tmp_path / "policy.toml"), *policy]
    code, out, _ = run_replay(argv)
    assert code == 0
    replayed = [tuple(a[k] for k in COMPARED) for a in alerts_of(out)]
    assert {r[1] for r in replayed} == {"firing", "resolved"}
    config = load_config(parse(argv))
    for batch_size in (1, 7, 250, len(events)):
        assert service_alerts(data.splitlines(), batch_size, config) == replayed, f"batch size {batch_size}"


# --- the lesson --------------------------------------------------------------------------------


def test_the_lesson_fires_once_for_churn_in_the_week_accuracy_crosses_the_line(tmp_path: Path) -> None:
    specs = parse_models("churn-model=lesson,fraud-model=stable")
    streams = generate_all(specs, seed=42)
    manifest = build_manifest(streams, 42, specs)
    path = tmp_path / "lesson.jsonl"
    with path.open("wb") as file:
        file.write(b"\n".join(value for _key, value in encode_records(streams, interleave(streams))) + b"\n")
    (tmp_path / "lesson.toml").write_text('[defaults]\nrule_window = 10000\ndecision = "window"\n')
    argv = [str(path), "--baseline", "0.85", "--threshold", "0.1", "--windows", "1000,10000"]
    code, out, err = run_replay([*argv, "--config", str(tmp_path / "lesson.toml")])
    assert code == 0, err
    alerts = alerts_of(out)
    assert [(a["model"], a["status"]) for a in alerts] == [("churn-model", "firing")]
    first_below = manifest["models"]["churn-model"]["first_below"]["0.75"]["ts"]
    week_start = START_TS + (first_below - START_TS) // SECONDS_PER_WEEK * SECONDS_PER_WEEK
    fired_at = orjson.loads(path.read_bytes().splitlines()[alerts[0]["index"]])["ts"]
    assert week_start <= fired_at < week_start + 3 * SECONDS_PER_WEEK
    assert alerts[0]["event_time"] == manifest_time(fired_at)


def manifest_time(ts: float) -> str:
    from decaywatch.producer.manifest import iso8601

    return iso8601(ts)


def delayed(events: list[dict[str, Any]], lag: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The events as predictions with an ``event_id`` and label events ``lag`` lines later (half an hour later in
    event time), and the same outcomes inline at the line where each completes (the reference)."""
    joined: list[dict[str, Any]] = []
    reference: list[dict[str, Any]] = []
    waiting: list[tuple[int, dict[str, Any]]] = []
    for i, event in enumerate(events):
        prediction = {k: v for k, v in event.items() if k != "label"} | {"event_id": f"e{i}"}
        joined.append(prediction)
        if event["label"] is None:
            reference.append(event)
        else:
            waiting.append((i, event))
        while waiting and (waiting[0][0] <= i - lag or i == len(events) - 1):
            _, done = waiting.pop(0)
            joined.append({"model": done["model"], "label": done["label"], "event_id": f"e{events.index(done)}",
                           "ts": done["ts"] + 1800.0})  # fmt: skip
            reference.append(done)
    return joined, reference


@pytest.mark.parametrize("lag", [0, 25])
def test_replay_joins_label_events_as_the_live_service_does(tmp_path: Path, lag: int) -> None:
    """Predictions and their labels as separate lines: the same alerts as the live service, and as inline labels
    placed where each outcome completes."""
    joined, reference = delayed(drifting_events(13, n=900), lag)
    (tmp_path / "policy.toml").write_text('[defaults]\ndecision = "window"\nrule_window = 100\n')
    policy = ["--config", str(tmp_path / "policy.toml"), "--baseline", "0.9", "--windows", "20,100", "--min-samples", "50"]
    outputs = []
    for name, events in (("joined", joined), ("reference", reference)):
        path = tmp_path / f"{name}.jsonl"
        path.write_bytes(jsonl(list(events)))
        code, out, err = run_replay([str(path), *policy])
        assert code == 0, err
        outputs.append([tuple(a[k] for k in COMPARED) for a in alerts_of(out)])
    assert outputs[0] == outputs[1]
    assert {a[1] for a in outputs[0]} == {"firing", "resolved"}
    config = load_config(parse([str(tmp_path / "joined.jsonl"), *policy]))
    data = jsonl(list(joined)).splitlines()
    for batch_size in (1, 7, 250, len(data)):
        assert service_alerts(data, batch_size, config) == outputs[0], f"batch size {batch_size}"
