"""Fuzzing the service with hostile input: nothing crashes it, nothing it is given disappears.

The contract (README, *Event format*): every message of a batch is either a
valid event, counted under its model, or a rejection with one reason from
``Reason.ALL``, one ``decaywatch_invalid_events_total{reason}`` increment and
one dead-letter record carrying the original bytes (or ``None``) and offset;
the batch's offsets are committed after it.  These tests generate batches that
mix valid events (whose counts the test keeps itself) with hostile messages and
run them through the whole service loop with the in-memory fakes:

* random bytes, JSON token soup, truncated events, invalid UTF-8, tombstones
  (``None``), empty and whitespace-only messages;
* nesting 10,000 deep (orjson stops at 1,024 levels: a rejection, not a
  crash), and values 1,000 deep in unknown fields, which are accepted;
* messages above 1 MiB, model ids of a million characters, and valid events
  of exactly 1 MiB or with half-megabyte prediction and label strings;
* ``NaN``, ``Infinity``, ``-Infinity``, ``1e400`` (and ``1e-400``, which is
  0.0 and therefore fine), integers beyond 64 bits;
* every field given every JSON type, labels of another type than the
  prediction (``true`` against ``1``), timestamps before 1970 or after 9999,
  year-10000, naive and malformed date strings;
* unknown fields (accepted), duplicate keys (the last one wins), empty
  objects, arrays and top-level scalars.

Which reasons a generated message may get comes from :func:`defects`, an
oracle written from the README's table, not from ``monitor/schema.py``; for
bytes of unknown shape (random bytes, token soup) the oracle judges what orjson
makes of them.

The monitor does not deduplicate: two messages with the same ``event_id`` are
two events, both counted (``test_duplicate_event_ids_are_all_counted``).
Delivery is at least once, so a batch read again after a crash is counted
again too; a producer that needs exact counts must not send an event twice.

A longer campaign with the same properties, for release checks::

    .venv/bin/python -m tests.benchmarks.fuzz_campaign --minutes 10
"""

from __future__ import annotations

import random
import re
from collections import Counter as Tally
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, Final

import numpy as np
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import generate_latest

from decaywatch.consumer.metrics import ServiceMetrics
from decaywatch.consumer.runtime import model_view
from decaywatch.consumer.service import MonitorService
from decaywatch.monitor.codec import MAX_MESSAGE_BYTES, decode, dumps
from decaywatch.monitor.config import Limits, MetricRule, ModelPolicy, MonitorConfig
from decaywatch.monitor.engine import Monitor
from decaywatch.monitor.schema import Reason, validate
from tests.unit.fakes import MemoryAlertSink, MemoryDeadLetters, MemorySource

MAX_DETAIL: Final = 1000
"""A rejection's detail is a sentence, not a copy of the input (the dead-letter header keeps 1,000 characters)."""

MAX_TS: Final = datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC).timestamp()
RFC_3339: Final = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})\Z")
"""The strict form of RFC 3339 the generators write (upper-case ``T`` and ``Z``)."""

MALFORMED: Final = frozenset({Reason.MALFORMED_JSON})
NON_FINITE: Final = frozenset({Reason.NON_FINITE_NUMBER})
TOO_LARGE: Final = frozenset({Reason.MESSAGE_TOO_LARGE})
UNPARSABLE: Final = frozenset({Reason.MALFORMED_JSON, Reason.NON_FINITE_NUMBER})
"""What bytes orjson cannot parse may get when the test does not know which literal broke them."""
DECODER_REASONS: Final = UNPARSABLE | TOO_LARGE

MODEL_IDS: Final = (
    "churn",
    "fraud",
    "NaN",
    "-Infinity",
    'q"uote\\back\nnewline',
    "\x00nul",
    "\u2028",
    "模型",
    " ",
    "m" * 256,
    "😀" * 256,  # 256 characters (1,024 bytes): the limit counts characters
)
"""Valid model ids that stress label escaping, Unicode and the length limit."""

FIELDS: Final = ("model", "prediction", "label", "ts", "score", "features", "event_id", "model_version")
SPLICE: Final = "@@splice@@"


# -- the oracle: the README's event format, written independently of monitor/schema.py ------------------


def defects(obj: Any) -> frozenset[str]:
    """Every rule of the event format ``obj`` breaks (empty: a valid event).

    The service names one of them (the first it checks); which one is its choice.
    """
    if type(obj) is not dict:
        return frozenset({Reason.NOT_AN_OBJECT})
    found: set[str] = set()
    model, prediction, label = obj.get("model"), obj.get("prediction"), obj.get("label")
    if model is None:
        found.add(Reason.MISSING_MODEL)
    elif type(model) is not str or not 1 <= len(model) <= 256:
        found.add(Reason.INVALID_MODEL)
    if prediction is None:  # a label event, or nothing
        if label is None:
            found.add(Reason.MISSING_LABEL if "label" in obj and obj.get("event_id") is not None else Reason.MISSING_PREDICTION)
        elif type(label) not in (int, str, bool):
            found.add(Reason.INVALID_LABEL)
        elif obj.get("event_id") is None:
            found.add(Reason.MISSING_EVENT_ID)
    elif type(prediction) not in (int, str, bool):
        found.add(Reason.INVALID_PREDICTION)
    elif label is not None and type(label) is not type(prediction):
        found.add(Reason.INVALID_LABEL)
    if not _timestamp_ok(obj.get("ts")):
        found.add(Reason.INVALID_TIMESTAMP)
    score = obj.get("score")
    if score is not None and not (type(score) in (int, float) and 0.0 <= score <= 1.0):
        found.add(Reason.INVALID_SCORE)
    features = obj.get("features")
    if features is not None and not (type(features) is dict and all(type(v) in (int, float) for v in features.values())):
        found.add(Reason.INVALID_FEATURES)
    if type(obj.get("event_id")) not in (type(None), str, int) or type(obj.get("model_version")) not in (type(None), str):
        found.add(Reason.INVALID_FIELD)
    return frozenset(found)


def _timestamp_ok(ts: Any) -> bool:
    if ts is None:
        return True
    if type(ts) in (int, float):
        return bool(0.0 <= ts <= MAX_TS)
    if type(ts) is str and RFC_3339.match(ts):
        try:
            seconds = datetime.fromisoformat(ts).timestamp()  # calendar check: no February 30th
        except ValueError:
            return False
        return 0.0 <= seconds <= MAX_TS
    return False


# -- generated messages ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, repr=False)
class Case:
    """One generated message and what the contract says must become of it."""

    value: bytes | None
    kind: str
    """What the generator made (for failure messages and the campaign's statistics)."""
    reasons: frozenset[str]
    """Empty: a valid event that must be counted; else the reasons its rejection may name."""
    model: str = ""
    labeled: bool = False
    correct: bool = False
    prediction: bool = True
    """A prediction (``decaywatch_events_total`` counts it); a label event is not one."""

    def __repr__(self) -> str:  # hypothesis prints failing examples: keep megabyte messages out of them
        shown = None if self.value is None else (self.value[:120] + (b"..." if len(self.value) > 120 else b""))
        size = "None" if self.value is None else f"{len(self.value)} bytes"
        return f"Case({self.kind}, {size}, {shown!r}, reasons={sorted(self.reasons)})"

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(repr(self))


def judged(event: Any, kind: str, value: bytes | None = None) -> Case:
    """The case for a JSON value (sent as ``value``, default its compact JSON), judged by the oracle."""
    data = orjson.dumps(event) if value is None else value
    if len(data) > MAX_MESSAGE_BYTES:
        return Case(data, kind, TOO_LARGE)
    found = defects(event)
    if found:
        return Case(data, kind, found)
    label, prediction = event.get("label"), event.get("prediction")
    labeled = label is not None and prediction is not None  # a label event is not a labeled prediction
    return Case(data, kind, frozenset(), event["model"], labeled, labeled and label == prediction, prediction is not None)


def judged_bytes(value: bytes | None, kind: str) -> Case:
    """The case for bytes of unknown shape: whatever orjson makes of them, judged by the oracle."""
    if value is None:
        return Case(None, kind, MALFORMED)
    if len(value) > MAX_MESSAGE_BYTES:
        return Case(value, kind, TOO_LARGE)
    try:
        parsed = orjson.loads(value)
    except orjson.JSONDecodeError:
        return Case(value, kind, UNPARSABLE)
    return judged(parsed, kind, value)


def malformed(value: bytes, kind: str) -> Case:
    """Bytes built to be invalid JSON with no non-finite literal in them."""
    if len(value) > MAX_MESSAGE_BYTES:
        return Case(value, kind, TOO_LARGE)
    return Case(value, kind, MALFORMED)


def splice(event: dict[str, Any], name: str, raw: bytes) -> bytes:
    """The event's JSON with the value of ``name`` replaced by raw bytes (what orjson will not write: NaN, bad UTF-8)."""
    data = orjson.dumps({**event, name: SPLICE})
    return data.replace(orjson.dumps(SPLICE), raw, 1)


def nested(depth: int, shape: str) -> tuple[bytes, Any]:
    """JSON nested ``depth`` levels deep, and a shallow value of the same type at its top two levels (for the oracle)."""
    if shape == "array":
        return b"[" * depth + b"]" * depth, [[]]
    if shape == "object":
        return b'{"a":' * depth + b"1" + b"}" * depth, {"a": {"a": 1}}
    half = (depth + 1) // 2  # two levels a step: at least ``depth`` levels
    return b'[{"a":' * half + b"1" + b"}]" * half, [{"a": 1}]


json_leaves = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
)
json_values = st.recursive(
    json_leaves,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=3),
    max_leaves=8,
)
JSON_TYPES: Final = {
    "null": st.none(),
    "boolean": st.booleans(),
    "integer": st.integers(-3, 3) | st.integers(-(2**63), 2**64 - 1),
    "float": st.floats(allow_nan=False, allow_infinity=False) | st.sampled_from([0.0, -0.0, 0.5, 1.0, 2.0, 1e308, 1704067200.0]),
    "string": st.text(max_size=12) | st.sampled_from(["", "1", "true", "NaN", "2024-06-01T12:00:00Z"]),
    "array": st.lists(json_leaves, max_size=3),
    "object": st.dictionaries(st.text(max_size=5), json_leaves, max_size=3),
}
OFFSETS = st.integers(-(23 * 60 + 59), 23 * 60 + 59).map(lambda m: timezone(timedelta(minutes=m)))


@st.composite
def rfc3339(draw: st.DrawFn) -> str:
    """A strict RFC 3339 timestamp with an offset, anywhere from year 1 to 9999 (the oracle checks the range)."""
    bounds = datetime(1, 1, 2), datetime(9999, 12, 30)  # noqa: DTZ001 - hypothesis takes naive bounds and adds the offsets itself
    moment = draw(st.datetimes(min_value=bounds[0], max_value=bounds[1], timezones=OFFSETS))
    text = moment.isoformat()
    return text.replace("+00:00", "Z") if draw(st.booleans()) else text


VALID_TS = (
    st.floats(0.0, MAX_TS)
    | st.integers(0, int(MAX_TS))
    | st.sampled_from([0, -0.0, 1e-300, MAX_TS, 1704067200, 1717200000.5])
    | rfc3339()
)
BAD_TS = (
    st.floats(max_value=-1e-9, allow_infinity=False)
    | st.floats(min_value=MAX_TS + 1, allow_infinity=False)
    | st.integers(-(2**63), -1)
    | st.integers(int(MAX_TS) + 1, 2**64 - 1)
    | st.sampled_from(
        [
            1e20,
            -1e20,
            "2024-01-01T00:00:00",  # naive: RFC 3339 requires an offset
            "2024-01-01 12:00",
            "2024-01-01",
            "10000-01-01T00:00:00Z",
            "+10000-01-01T00:00:00Z",
            "2024-13-01T00:00:00Z",
            "2024-02-30T00:00:00Z",
            "2024-01-01T25:00:00Z",
            "2024-01-01T00:60:00Z",
            "2024-01-01T00:00:00+24:00",
            "2024-01-01T00:00:00+5",
            "2024-01-01T00:00:00ZZ",
            "2024-01-01T00:00:00Z junk",
            "1969-12-31T23:59:59Z",
            "0001-01-01T00:00:00Z",
            "9999-12-31T23:59:59-00:01",
            "yesterday",
            "",
            "NaN",
        ]
    )
    | st.datetimes().map(datetime.isoformat)  # naive datetimes
    | st.text(max_size=30)
)
PREDICTIONS: Final = {
    "integer": st.integers(0, 2) | st.integers(-(2**63), 2**64 - 1),
    "string": st.sampled_from(["cat", "dog", ""]) | st.text(max_size=8),
    "boolean": st.booleans(),
}


@st.composite
def valid_events(draw: st.DrawFn) -> dict[str, Any]:
    """A valid event: every optional field sometimes, unknown fields sometimes, ``event_id`` from a small pool (duplicates)."""
    values = PREDICTIONS[draw(st.sampled_from(sorted(PREDICTIONS)))]
    prediction = draw(values)
    event: dict[str, Any] = {"model": draw(st.just("churn") | st.sampled_from(MODEL_IDS)), "prediction": prediction}
    label = draw(st.sampled_from(["absent", "null", "equal", "drawn"]))
    if label == "null":
        event["label"] = None
    elif label == "equal":
        event["label"] = prediction
    elif label == "drawn":
        event["label"] = draw(values)
    optional = {
        "ts": VALID_TS,
        "score": st.floats(0.0, 1.0) | st.sampled_from([0, 1, None]),
        "features": st.dictionaries(
            st.text(max_size=6), st.integers(-(2**63), 2**63 - 1) | st.floats(allow_nan=False, allow_infinity=False), max_size=4
        ),
        "event_id": st.sampled_from(["e-1", "e-2", 7, 0, ""]),
        "model_version": st.text(max_size=6),
    }
    for name in draw(st.sets(st.sampled_from(sorted(optional)))):
        event[name] = draw(optional[name])
    for name in draw(st.lists(st.text(max_size=8).filter(lambda k: k not in FIELDS), max_size=2)):
        event[name] = draw(json_values)
    return event


@st.composite
def valid_cases(draw: st.DrawFn) -> Case:
    return judged(draw(valid_events()), "valid")


@st.composite
def wrong_type_cases(draw: st.DrawFn) -> Case:
    """One field given a value of one JSON type (each field x each type), the rest valid."""
    event = draw(valid_events())
    name, kind = draw(st.sampled_from(FIELDS)), draw(st.sampled_from(sorted(JSON_TYPES)))
    event[name] = draw(JSON_TYPES[kind])
    return judged(event, f"{name}:{kind}")


PAIRS_OF_TYPES: Final = [
    (1, True),
    (True, 1),
    (0, False),
    (False, 0),
    (1, 1.0),
    (1, "1"),
    ("1", 1),
    (True, "true"),
    (1, [1]),
    (1, {"v": 1}),
]


@st.composite
def defect_cases(draw: st.DrawFn) -> Case:
    """Events with one named defect: missing or enormous fields, mixed label types, impossible times."""
    event = draw(valid_events())
    defect = draw(st.sampled_from(["missing_model", "missing_prediction", "model_size", "label_type", "bad_ts", "empty_object"]))
    if defect == "missing_model":
        event.pop("model")
    elif defect == "missing_prediction":
        event.pop("prediction")
        event.pop("label", None)  # with its label and id left, it would be a valid label event
    elif defect == "model_size":
        size = draw(st.sampled_from([0, 257, 1000, 65_536, 1_000_000, MAX_MESSAGE_BYTES]))
        event["model"] = draw(st.sampled_from(["m", "é", "😀"])) * size
    elif defect == "label_type":
        event["prediction"], event["label"] = draw(st.sampled_from(PAIRS_OF_TYPES))
    elif defect == "bad_ts":
        event["ts"] = draw(BAD_TS)
    else:
        event = {}
    return judged(event, defect)


@st.composite
def large_cases(draw: st.DrawFn) -> Case:
    """Valid events of half a megabyte to exactly 1 MiB (accepted), and a byte more (too large)."""
    text = draw(st.sampled_from(["x", "é", "😀"]))
    if draw(st.booleans()):
        n = 500_000 // len(text.encode())
        last = draw(st.sampled_from([text, "y"]))
        return judged({"model": "big", "prediction": text * n, "label": text * (n - 1) + last}, "huge strings")
    extra = draw(st.sampled_from([0, 1, 2, 4096]))
    event = {"model": draw(st.sampled_from(MODEL_IDS)), "prediction": 1, "label": 1, "pad": ""}
    room = MAX_MESSAGE_BYTES - len(orjson.dumps(event))
    event["pad"] = "p" * (room + extra)
    return judged(event, f"1 MiB + {extra}")


LITERALS: Final = [b"NaN", b"Infinity", b"-Infinity", b"1e400", b"-1e400", b"1E999", b"-0.1e99999"]


@st.composite
def raw_cases(draw: st.DrawFn) -> Case:
    """Bytes no JSON encoder writes: non-finite literals, bad UTF-8, deep nesting, truncations, noise."""
    kind = draw(
        st.sampled_from(
            [
                "tombstone",
                "empty",
                "noise",
                "soup",
                "truncated",
                "non_finite",
                "tiny",
                "huge_integer",
                "bad_utf8",
                "lone_surrogate",
                "deep",
                "deep_inside",
                "nested_ok",
                "too_large_garbage",
                "top_level",
                "duplicate_keys",
            ]
        )
    )
    event = draw(valid_events())
    name = draw(st.sampled_from([*FIELDS, "extra"]))
    if kind == "tombstone":
        return judged_bytes(None, kind)
    if kind == "empty":
        return malformed(draw(st.sampled_from([b"", b" ", b"\n\t\r ", b"\xef\xbb\xbf"])), kind)
    if kind == "noise":
        return judged_bytes(draw(st.binary(max_size=80)), kind)
    if kind == "soup":
        tokens = [
            b"{",
            b"}",
            b"[",
            b"]",
            b":",
            b",",
            b'"model"',
            b'"prediction"',
            b'"label"',
            b'"ts"',
            b'"m"',
            b"1",
            b"0",
            b"-",
            b"true",
            b"null",
            b"1e400",
            b"NaN",
            b'"',
            b"\\",
            b" ",
            b'"2024-01-01T00:00:00Z"',
        ]
        return judged_bytes(b"".join(draw(st.lists(st.sampled_from(tokens), max_size=24))), kind)
    if kind == "truncated":
        data = orjson.dumps(event)
        return malformed(data[: draw(st.integers(0, len(data) - 1))], kind)
    if kind == "non_finite":
        data = splice(event, name, draw(st.sampled_from(LITERALS)))
        return Case(data, kind, NON_FINITE) if len(data) <= MAX_MESSAGE_BYTES else Case(data, kind, TOO_LARGE)
    if kind == "tiny":  # underflows to 0.0: an ordinary number
        return judged(
            {**event, name: 0.0}, kind, splice(event, name, draw(st.sampled_from([b"1e-400", b"-1e-400", b"4.9e-325"])))
        )
    if kind == "huge_integer":  # beyond 64 bits orjson reads a float; beyond a double, infinity
        digits = draw(st.sampled_from([21, 30, 400]))
        data = splice(event, name, b"1" * digits)
        if digits == 400:
            return Case(data, kind, NON_FINITE | MALFORMED)
        return judged({**event, name: float("1" * digits)}, kind, data)
    if kind == "bad_utf8":
        bad = draw(st.sampled_from([b"\xff", b"\xc0\xaf", b"\xe2\x82", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\x80"]))
        return malformed(splice(event, name, b'"a' + bad + b'z"'), kind)
    if kind == "lone_surrogate":
        return malformed(splice(event, name, draw(st.sampled_from([b'"\\ud800"', b'"\\udfff x"', b'"\\ud83d"']))), kind)
    if kind == "deep":
        data, _ = nested(draw(st.sampled_from([1025, 10_000, 100_000])), draw(st.sampled_from(["array", "object", "mixed"])))
        return malformed(data if draw(st.booleans()) else data[: len(data) // 2], kind)
    if kind == "deep_inside":
        data, _ = nested(draw(st.sampled_from([1024, 10_000])), draw(st.sampled_from(["array", "object", "mixed"])))
        return malformed(splice(event, name, data), kind)
    if kind == "nested_ok":  # the event is level 1: 1,000 more levels stay under orjson's limit of 1,024
        data, shallow = nested(draw(st.sampled_from([2, 100, 1000])), draw(st.sampled_from(["array", "object", "mixed"])))
        return judged({**event, name: shallow}, kind, splice(event, name, data))
    if kind == "too_large_garbage":
        return Case(b"{" * (MAX_MESSAGE_BYTES + draw(st.sampled_from([1, 100]))), kind, TOO_LARGE)
    if kind == "top_level":
        value = draw(st.sampled_from([[], [event], 1, -2.5, "text", True, False, None]))
        return judged(value, kind)
    duplicate = draw(JSON_TYPES[draw(st.sampled_from(sorted(JSON_TYPES)))])  # duplicate_keys: the last one wins
    data = orjson.dumps(event)[:-1] + b"," + orjson.dumps(name) + b":" + orjson.dumps(duplicate) + b"}"
    if data.startswith(b"{,"):
        data = b"{" + data[2:]
    return judged({**event, name: duplicate}, kind, data)


cases = st.one_of(
    valid_cases(), valid_cases(), valid_cases(), wrong_type_cases(), defect_cases(), raw_cases(), raw_cases(), large_cases()
)


@st.composite
def hostile_batch(draw: st.DrawFn) -> list[Case]:
    """Generated cases, among up to 60 plain labeled events of two models (enough to fill windows and fire alerts)."""
    batch = draw(st.lists(cases, max_size=24))
    fill = draw(st.integers(0, 60))
    rng = random.Random(draw(st.integers(0, 2**32 - 1)))
    for _ in range(fill):
        event = {"model": rng.choice(["churn", "NaN"]), "prediction": 1, "label": int(rng.random() < 0.6)}
        batch.insert(rng.randint(0, len(batch)), judged(event, "filler"))
    return batch


hostile_batches = st.lists(hostile_batch(), min_size=1, max_size=4)


# -- the service and what the test expects of it ---------------------------------------------------------

CONFIGS: Final = {
    "window": MonitorConfig(
        ModelPolicy(
            baseline=0.85,
            windows=(5, 50),
            min_samples=5,
            decision="window",
            rules=(MetricRule("brier", 0.2, 0.1), MetricRule("recall", 0.9, 0.1)),
        )
    ),
    "learned": MonitorConfig(ModelPolicy(learn_baseline_from=10, windows=(10, 100), min_samples=10, floor=0.6, evidence=3.0)),
    "capped": MonitorConfig(
        ModelPolicy(baseline=0.9, windows=(3,), min_samples=3, positive_label="cat"), limits=Limits(max_models=3)
    ),
}


@dataclass
class Ledger:
    """What the service must have counted so far, kept by the test from the cases it generated."""

    max_models: int
    messages: int = 0
    dead_letters: int = 0
    alerts: int = 0
    events: Tally[str] = field(default_factory=Tally)
    labeled: Tally[str] = field(default_factory=Tally)
    correct: Tally[str] = field(default_factory=Tally)
    untracked: int = 0
    rejections: Tally[str] = field(default_factory=Tally)

    def count_valid(self, case: Case) -> None:
        if case.model not in self.events and len(self.events) >= self.max_models:
            self.untracked += 1  # beyond the cap: counted, not tracked
            return
        self.events[case.model] += case.prediction  # a label event makes its model tracked, and counts no event
        self.labeled[case.model] += case.labeled
        self.correct[case.model] += case.correct


@dataclass
class Harness:
    """A service on in-memory fakes, and the ledger the test keeps beside it."""

    service: MonitorService
    source: MemorySource
    alerts: MemoryAlertSink
    dead: MemoryDeadLetters
    ledger: Ledger

    @classmethod
    def build(cls, config: MonitorConfig, batches: list[list[bytes | None]]) -> Harness:
        journal: list[str] = []
        source = MemorySource(batches, journal)
        alerts, dead = MemoryAlertSink(journal), MemoryDeadLetters(journal)
        service = MonitorService(source, Monitor(config), alerts, dead, ServiceMetrics(), clock=lambda: 1717200000.0)
        return cls(service, source, alerts, dead, Ledger(config.limits.max_models))


def exported(registry: Any) -> dict[str, dict[str, float]]:
    """Every per-model sample of the three event counters, by metric name then model."""
    wanted = ("decaywatch_events_total", "decaywatch_labeled_events_total", "decaywatch_correct_predictions_total")
    found: dict[str, dict[str, float]] = {name: {} for name in wanted}
    for family in registry.collect():
        for sample in family.samples:
            if sample.name in found:
                found[sample.name][sample.labels["model"]] = sample.value
    return found


def step_and_check(harness: Harness, batch: list[Case]) -> None:
    """One ``service.step()`` on ``batch``, then every property of the contract."""
    service, ledger = harness.service, harness.ledger
    result = service.step()  # property 1: it never raises
    if not batch:
        assert result is None
    else:
        assert result is not None and result.messages == len(batch)
        rejected = [r.index for r in result.rejections]
        expected = [i for i, case in enumerate(batch) if case.reasons]
        assert rejected == expected, (
            f"rejected {[batch[i] for i in set(rejected) - set(expected)]}, "
            f"accepted {[batch[i] for i in set(expected) - set(rejected)]}"
        )
        for r in result.rejections:
            case = batch[r.index]
            assert r.reason in Reason.ALL and r.reason in case.reasons, f"{case!r}: named {r.reason} ({r.detail})"
            assert type(r.detail) is str and 0 < len(r.detail) <= MAX_DETAIL, f"{case!r}: detail {r.detail[:200]!r}"
        assert result.valid == len(batch) - len(rejected)
        records = harness.dead.records[ledger.dead_letters :]
        assert records == [(batch[r.index].value, r.reason, ledger.messages + r.index) for r in result.rejections]
        ledger.dead_letters += len(records)
        ledger.rejections.update(reason for _value, reason, _offset in records)
        for case in batch:
            if not case.reasons:
                ledger.count_valid(case)
        ledger.messages += len(batch)

    registry = service.metrics.registry
    for reason in Reason.ALL:
        assert registry.get_sample_value("decaywatch_invalid_events_total", {"reason": reason}) == ledger.rejections[reason]
    counters = exported(registry)
    assert counters["decaywatch_events_total"] == dict(ledger.events)
    assert counters["decaywatch_labeled_events_total"] == {m: float(n) for m, n in ledger.labeled.items()}
    assert counters["decaywatch_correct_predictions_total"] == {m: float(n) for m, n in ledger.correct.items()}
    assert (registry.get_sample_value("decaywatch_untracked_events_total") or 0) == ledger.untracked
    assert harness.source.committed == ledger.messages == service.totals.messages
    assert service.totals.rejected == ledger.dead_letters

    # what a scrape, /models and the alerts topic would serve must serialise too
    generate_latest(registry)
    orjson.dumps(
        {m: model_view(s) for m, s in service.snapshot().items()}, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY
    )
    for event in harness.alerts.events[ledger.alerts :]:
        dumps(event)
    ledger.alerts = len(harness.alerts.events)


def run_through_service(
    config: MonitorConfig, batches: Sequence[Sequence[Case]], observe: Callable[[Case], None] | None = None
) -> Harness:
    """Feed the batches to a fresh service one step at a time, checking the contract after each."""
    harness = Harness.build(config, [[case.value for case in batch] for batch in batches])
    for batch in batches:
        if observe is not None:
            for case in batch:
                observe(case)
        step_and_check(harness, list(batch))
    assert harness.service.step() is None  # the source is drained: nothing left behind
    return harness


# -- the decoder alone, at scale -------------------------------------------------------------------------


def adversarial_bytes(rng: random.Random, count: int) -> list[bytes | None]:
    """``count`` messages of hostile shapes: mutated events, random bytes, token soup, deep nesting, now and then huge."""
    base = [
        orjson.dumps(
            {
                "model": rng.choice(MODEL_IDS),
                "prediction": rng.choice([0, 1, "cat", True]),
                "label": 1,
                "ts": 1704067200.5,
                "score": 0.25,
                "features": {"x": 1, "y": -2.5e-3},
                "event_id": "e-1",
            }
        )
        for _ in range(8)
    ]
    tokens = [
        b"{",
        b"}",
        b"[",
        b"]",
        b":",
        b",",
        b'"',
        b"\\",
        b"\\u",
        b"d800",
        b"NaN",
        b"Infinity",
        b"-",
        b"1e400",
        b"0",
        b"1.5e-7",
        b"true",
        b"null",
        b'"model"',
        b"\xff",
        b"\xed\xa0\x80",
        b"\xe2\x82",
        b" ",
        b"\x00",
    ]
    values: list[bytes | None] = []
    for _ in range(count):
        shape = rng.random()
        if shape < 0.35:
            data = bytearray(rng.choice(base))
            for _ in range(rng.randint(1, 4)):
                at = rng.randrange(len(data) + 1)
                move = rng.randrange(5)
                if move == 0 and data:
                    data[min(at, len(data) - 1)] ^= 1 << rng.randrange(8)
                elif move == 1:
                    data[at:at] = rng.choice(tokens)
                elif move == 2:
                    del data[at : at + rng.randint(1, 8)]
                elif move == 3:
                    data[at:at] = data[rng.randrange(len(data) + 1) :][: rng.randint(1, 16)]
                else:
                    del data[at:]
            values.append(bytes(data))
        elif shape < 0.6:
            values.append(rng.randbytes(rng.randint(0, 64)))
        elif shape < 0.85:
            values.append(b"".join(rng.choice(tokens) for _ in range(rng.randint(0, 30))))
        elif shape < 0.97:
            doc, _ = nested(rng.choice([10, 1023, 1024, 1025, 5000]), rng.choice(["array", "object", "mixed"]))
            values.append(doc[: rng.randint(0, len(doc))] if rng.random() < 0.3 else doc)
        elif shape < 0.995:
            values.append(None)
        else:
            values.append(b"[" + b"1," * (MAX_MESSAGE_BYTES // 2) + b"1]")  # valid JSON, but above 1 MiB
    return values


def same_json(a: Any, b: Any) -> bool:
    """Deep equality without recursion (decoded values can be 1,024 levels deep, past Python's recursion limit)."""
    stack = [(a, b)]
    while stack:
        x, y = stack.pop()
        if type(x) is not type(y):
            return False
        if type(x) is list:
            if len(x) != len(y):
                return False
            stack.extend(zip(x, y, strict=True))
        elif type(x) is dict:
            if list(x) != list(y):
                return False
            stack.extend((x[k], y[k]) for k in x)
        elif x != y:
            return False
    return True


def check_decoder(values: list[bytes | None]) -> Tally[str]:
    """decode() and validate() on one batch: every message accounted for once, each message's fate its own."""
    objects, positions, rejections = decode(values)
    rejected = [r.index for r in rejections]
    assert positions == sorted(positions) and rejected == sorted(rejected)
    assert sorted(positions + rejected) == list(range(len(values)))
    for obj, i in zip(objects, positions, strict=True):
        value = values[i]
        assert value is not None and len(value) <= MAX_MESSAGE_BYTES
        assert same_json(obj, orjson.loads(value))
    for r in rejections:
        value = values[r.index]
        assert r.reason in DECODER_REASONS and type(r.detail) is str and 0 < len(r.detail) <= MAX_DETAIL
        assert (r.reason == Reason.MESSAGE_TOO_LARGE) == (value is not None and len(value) > MAX_MESSAGE_BYTES)
        if value is not None and len(value) <= MAX_MESSAGE_BYTES:
            with pytest.raises(orjson.JSONDecodeError):
                orjson.loads(value)
    alone = {}
    for i, value in enumerate(values):  # the fate of each message does not depend on its neighbours
        _objects, _positions, one = decode([value])
        alone[i] = one[0].reason if one else None
    assert alone == dict.fromkeys(positions) | {r.index: r.reason for r in rejections}

    batch, invalid = validate(objects, np.zeros(len(objects)), positions)
    later = [r.index for r in invalid]
    assert set(later).isdisjoint(batch.source_index.tolist()) and len(set(later)) == len(later)
    assert sorted(later + batch.source_index.tolist()) == positions
    assert all(r.reason in Reason.ALL and 0 < len(r.detail) <= MAX_DETAIL for r in invalid)
    return Tally(r.reason for r in rejections + invalid)


# -- the tests -------------------------------------------------------------------------------------------

FUZZ_SETTINGS = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
)


@FUZZ_SETTINGS
@given(config=st.sampled_from(sorted(CONFIGS)), batches=hostile_batches)
def test_hostile_batches_never_crash_the_service_and_nothing_disappears(config: str, batches: list[list[Case]]) -> None:
    run_through_service(CONFIGS[config], batches)


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**64 - 1))
def test_the_decoder_survives_adversarial_bytes_at_scale(seed: int) -> None:
    check_decoder(adversarial_bytes(random.Random(seed), 2000))


def padded(size: int) -> bytes:
    """A valid event of exactly ``size`` bytes (an unknown field takes up the room)."""
    head, tail = b'{"model":"m","prediction":1,"x":"', b'"}'
    return head + b"p" * (size - len(head) - len(tail)) + tail


HOSTILE: Final = [
    ("tombstone", None, Reason.MALFORMED_JSON),
    ("empty", b"", Reason.MALFORMED_JSON),
    ("random bytes", b"\x93\x00\xffJ\x01", Reason.MALFORMED_JSON),
    ("truncated", b'{"model":"m","prediction":1,"lab', Reason.MALFORMED_JSON),
    ("10,000 nested arrays", b"[" * 10_000 + b"]" * 10_000, Reason.MALFORMED_JSON),
    ("10,000 nested objects", b'{"a":' * 10_000 + b"1" + b"}" * 10_000, Reason.MALFORMED_JSON),
    ("1,000 nested arrays in an unknown field", b'{"model":"m","prediction":1,"x":' + b"[" * 1000 + b"]" * 1000 + b"}", None),
    ("NaN", b'{"model":"m","prediction":1,"score":NaN}', Reason.NON_FINITE_NUMBER),
    ("Infinity", b'{"model":"m","prediction":1,"ts":Infinity}', Reason.NON_FINITE_NUMBER),
    ("-Infinity", b'{"model":"m","prediction":1,"x":-Infinity}', Reason.NON_FINITE_NUMBER),
    ("1e400", b'{"model":"m","prediction":1,"features":{"x":1e400}}', Reason.NON_FINITE_NUMBER),
    ("1e-400 is 0.0", b'{"model":"m","prediction":1,"score":1e-400}', None),
    ("invalid UTF-8", b'{"model":"m\xff","prediction":1}', Reason.MALFORMED_JSON),
    ("lone surrogate", b'{"model":"\\ud800","prediction":1}', Reason.MALFORMED_JSON),
    ("integer beyond 64 bits", b'{"model":"m","prediction":18446744073709551616}', Reason.INVALID_PREDICTION),
    ("largest unsigned 64-bit integer", b'{"model":"m","prediction":18446744073709551615,"label":18446744073709551615}', None),
    ("1 MiB + 1", padded(MAX_MESSAGE_BYTES + 1), Reason.MESSAGE_TOO_LARGE),
    ("exactly 1 MiB", padded(MAX_MESSAGE_BYTES), None),
    ("million-character model id", orjson.dumps({"model": "m" * 1_000_000, "prediction": 1}), Reason.INVALID_MODEL),
    ("empty model id", b'{"model":"","prediction":1}', Reason.INVALID_MODEL),
    ("bool label, int prediction", b'{"model":"m","prediction":1,"label":true}', Reason.INVALID_LABEL),
    ("int label, bool prediction", b'{"model":"m","prediction":false,"label":0}', Reason.INVALID_LABEL),
    ("negative ts", b'{"model":"m","prediction":1,"ts":-1}', Reason.INVALID_TIMESTAMP),
    ("ts 1e20", b'{"model":"m","prediction":1,"ts":1e20}', Reason.INVALID_TIMESTAMP),
    ("year 10000", b'{"model":"m","prediction":1,"ts":"10000-01-01T00:00:00Z"}', Reason.INVALID_TIMESTAMP),
    ("naive datetime", b'{"model":"m","prediction":1,"ts":"2024-06-01T12:00:00"}', Reason.INVALID_TIMESTAMP),
    ("February 30th", b'{"model":"m","prediction":1,"ts":"2024-02-30T00:00:00Z"}', Reason.INVALID_TIMESTAMP),
    ("unknown fields", b'{"model":"m","prediction":1,"new_field":{"a":[1,null]},"":0}', None),
    ("duplicate key, last wins", b'{"model":"m","prediction":1,"model":7}', Reason.INVALID_MODEL),
    ("empty object", b"{}", Reason.MISSING_MODEL),
    ("array", b'[{"model":"m","prediction":1}]', Reason.NOT_AN_OBJECT),
    ("top-level string", b'"model"', Reason.NOT_AN_OBJECT),
    ("top-level null", b"null", Reason.NOT_AN_OBJECT),
]


@pytest.mark.parametrize(("value", "reason"), [(v, r) for _, v, r in HOSTILE], ids=[name for name, _, _ in HOSTILE])
def test_each_hostile_message_gets_its_reason(value: bytes | None, reason: str | None) -> None:
    """The named cases of the brief, each between two valid events, through the service loop."""
    good = orjson.dumps({"model": "m", "prediction": 1, "label": 1})
    harness = Harness.build(CONFIGS["window"], [[good, value, good]])
    result = harness.service.step()
    assert result is not None
    assert [(r.index, r.reason) for r in result.rejections] == ([] if reason is None else [(1, reason)])
    assert harness.dead.records == ([] if reason is None else [(value, reason, 1)])
    get = harness.service.metrics.registry.get_sample_value
    assert get("decaywatch_events_total", {"model": "m"}) == (2 if reason is not None else 3)
    assert harness.source.committed == 3


ONE_OF_EACH_TYPE: Final[dict[str, list[Any]]] = {
    "null": [None],
    "boolean": [True, False],
    "integer": [2, 0, -1, 2**64 - 1],
    "float": [0.5, 1e300, -0.0],
    "string": ["text", "", "2024-06-01T12:00:00Z"],
    "array": [[1], []],
    "object": [{"a": 1}, {}],
}


def test_every_field_with_every_json_type() -> None:
    """Each field of a valid event given values of each JSON type: accepted or rejected exactly as the format says."""
    base = {"model": "m", "prediction": 1, "label": 1}
    batch = [
        judged({**base, name: value}, f"{name}:{kind}")
        for name in (*FIELDS, "unknown")
        for kind, values in ONE_OF_EACH_TYPE.items()
        for value in values
    ]
    assert all(len(case.reasons) <= 1 for case in batch)  # one defect each: the reason is exact
    assert {case.kind for case in batch if not case.reasons} >= {"unknown:" + kind for kind in ONE_OF_EACH_TYPE}
    run_through_service(CONFIGS["window"], [batch])


def test_duplicate_event_ids_are_all_counted() -> None:
    """The monitor does not deduplicate: every message with the same event_id is an event of its own."""
    same = orjson.dumps({"model": "m", "prediction": 1, "label": 1, "event_id": "e-1"})
    other = orjson.dumps({"model": "m", "prediction": 1, "label": 0, "event_id": "e-1"})
    harness = run_through_service(
        CONFIGS["window"], [[judged_bytes(same, "dup")] * 3, [judged_bytes(other, "dup"), judged_bytes(same, "dup")]]
    )
    get = harness.service.metrics.registry.get_sample_value
    assert get("decaywatch_events_total", {"model": "m"}) == 5
    assert get("decaywatch_correct_predictions_total", {"model": "m"}) == 4


def test_malformed_json_that_mentions_nan_is_malformed() -> None:
    truncated = b'{"model":"NaN-detector","prediction":1'
    _objects, _positions, rejections = decode([truncated])
    assert [r.reason for r in rejections] == [Reason.MALFORMED_JSON]


def test_rfc3339_with_lower_case_separators_is_a_timestamp() -> None:
    batch, rejections = validate([{"model": "m", "prediction": 1, "ts": "2024-06-01t12:00:00z"}], np.zeros(1))
    assert not rejections and batch.event_time.tolist() == [1717243200.0]
