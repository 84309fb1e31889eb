"""One model's complete state as bytes: the checkpoint a new owner restores when a partition moves.

After each batch the monitor writes every touched model's state to a
compacted changelog (key = model id), before committing offsets; a process
that is assigned the partition restores it, so it carries on exactly where the
old owner stopped: the same gauges, and no episode fired or resolved twice.

Format, version 1 (integers big-endian)::

    b"dwst"  u8 version  u32 crc32(body)
    body = u32 header length, header, arrays

The header is one orjson object: the model id, the policy fingerprint and
every scalar of the state.  Arrays are referred to by their index in the
header's ``arrays`` table (``[encoding, dtype, length]``) and follow the
header back to back as raw little-endian bytes: 0/1 rings ``np.packbits``-ed
(``"bits"``), other integer rings in the narrowest unsigned type that holds
them, event times as float64.  Rings are stored as the tracker holds them (a
ring still filling holds fewer than ``size`` slots), so a restored tracker
dumps to the same bytes.

A checkpoint restores only under the policy it was written with.  The
fingerprint is every policy field that shapes the state or gives it its
meaning (windows, time windows, baseline, threshold, the sequential tests'
parameters, rules, positive label); fields that only steer decisions from now
on (``_DECISION_ONLY``) are taken from the current policy.  ``load`` raises
``StateMismatch`` naming what changed (or ``CorruptState``, a subclass, for
bytes that are not an intact checkpoint): the caller starts that model fresh.

>>> import numpy as np
>>> from monitor.config import ModelPolicy
>>> policy = ModelPolicy(baseline=0.85, windows=(4,), min_samples=4, time_windows=("1h",))
>>> tracker = ModelTracker("m", policy)
>>> _ = tracker.update(np.ones(6, bool), np.arange(6) % 2 == 0, np.arange(6.0), np.arange(6))
>>> restored = load(dump(tracker), policy, "m")
>>> restored.snapshot() == tracker.snapshot()
True
>>> load(dump(tracker), ModelPolicy(baseline=0.85, windows=(8,), min_samples=4, time_windows=("1h",)), "m")
Traceback (most recent call last):
...
decaywatch.monitor.state.StateMismatch: checkpoint of model 'm' was written under another policy: windows [4] (checkpoint) != [8] (now)
"""

from __future__ import annotations

import dataclasses
import math
import struct
import zlib
from fractions import Fraction
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import orjson

from decaywatch.monitor.baseline import Baseline
from decaywatch.monitor.binary import BinaryWindow, ValueWindowJudge
from decaywatch.monitor.config import ModelPolicy
from decaywatch.monitor.episode import EpisodeState
from decaywatch.monitor.rule import DEGRADATION, SequentialJudge, WindowJudge, degradation_judge
from decaywatch.monitor.sequential import SequentialTest
from decaywatch.monitor.timewindow import TimeWindow
from decaywatch.monitor.tracker import ModelTracker
from decaywatch.monitor.window import CountWindow

MAGIC: Final = b"dwst"
VERSION: Final = 1
_PREFIX: Final = struct.Struct(">4sBI")
_LENGTH: Final = struct.Struct(">I")

_DECISION_ONLY: Final = frozenset(
    {"min_samples", "recovery_margin", "confidence_z", "cooldown", "allowed_lateness", "baseline_date"}
)
"""Policy fields no stored value depends on: a checkpoint restores under a new value of these."""


class StateMismatch(ValueError):
    """The checkpoint cannot be restored here (other policy, model or format version): start the model fresh."""


class CorruptState(StateMismatch):
    """The bytes are not an intact checkpoint (truncated, altered, or something else entirely)."""


def dump(tracker: ModelTracker) -> bytes:
    """The tracker's complete state, as one changelog record's value."""
    arrays = _ArrayWriter()
    header = {
        "model": tracker.model,
        "policy": fingerprint(tracker.policy),
        "state": _capture(tracker, arrays),
        "arrays": arrays.table,
    }
    head = orjson.dumps(header)
    body = b"".join([_LENGTH.pack(len(head)), head, *arrays.blobs])
    return _PREFIX.pack(MAGIC, VERSION, zlib.crc32(body)) + body


def load(data: bytes, policy: ModelPolicy, model: str) -> ModelTracker:
    """A tracker for ``model`` under ``policy``, in the state ``dump`` saw.

    Raises ``StateMismatch`` if the checkpoint was written under another
    policy, for another model or in another format version, and
    ``CorruptState`` (a ``StateMismatch``) if the bytes are not an intact checkpoint.
    """
    header, section = _open(data)
    try:
        written_for = header["model"]
        if written_for != model:
            raise StateMismatch(f"checkpoint is of model {written_for!r}, not {model!r}")
        differences = _differences(header["policy"], fingerprint(policy))
        if differences:
            raise StateMismatch(f"checkpoint of model {model!r} was written under another policy: {differences}")
        tracker = ModelTracker(model, policy)
        _restore(tracker, header["state"], _ArrayReader(header["arrays"], section))
        return tracker
    except StateMismatch:
        raise
    except (KeyError, IndexError, TypeError, ValueError, ZeroDivisionError) as error:
        raise CorruptState(f"checkpoint of model {model!r} is inconsistent: {type(error).__name__}: {error}") from None


def fingerprint(policy: ModelPolicy) -> dict[str, Any]:
    """The policy fields a checkpoint depends on, as plain JSON values (windows sorted, as the tracker keeps them)."""
    fields = {f.name: getattr(policy, f.name) for f in dataclasses.fields(policy) if f.name not in _DECISION_ONLY}
    fields["windows"] = sorted(set(policy.windows))
    fields["rules"] = [
        {key: value for key, value in dataclasses.asdict(rule).items() if key not in _DECISION_ONLY} for rule in policy.rules
    ]
    plain: dict[str, Any] = orjson.loads(orjson.dumps(fields))
    return plain


def _differences(written: Any, now: dict[str, Any]) -> str:
    if not isinstance(written, dict):
        raise CorruptState("checkpoint has no policy fingerprint")
    keys = [k for k in now if written.get(k, _ABSENT) != now[k]] + [k for k in written if k not in now]
    return ", ".join(f"{k} {_show(written.get(k, _ABSENT))} (checkpoint) != {_show(now.get(k, _ABSENT))} (now)" for k in keys)


_ABSENT: Final = object()


def _show(value: Any) -> str:
    return "absent" if value is _ABSENT else orjson.dumps(value).decode()


def _open(data: bytes) -> tuple[dict[str, Any], memoryview]:
    """Check the envelope; returns the header and the array section."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise CorruptState(f"a checkpoint is bytes, not {type(data).__name__}")
    view = memoryview(data)
    if len(view) < _PREFIX.size + _LENGTH.size or bytes(view[:4]) != MAGIC:
        raise CorruptState("not a decaywatch checkpoint (no 'dwst' magic)")
    _magic, version, crc = _PREFIX.unpack_from(view)
    if version != VERSION:
        raise StateMismatch(f"checkpoint format version {version}; this monitor reads version {VERSION}")
    body = view[_PREFIX.size :]
    if zlib.crc32(body) != crc:
        raise CorruptState("checkpoint fails its checksum (truncated or altered)")
    (length,) = _LENGTH.unpack_from(body)
    end = _LENGTH.size + length
    if end > len(body):
        raise CorruptState("checkpoint header runs past the end")
    try:
        header = orjson.loads(body[_LENGTH.size : end])
    except orjson.JSONDecodeError as error:
        raise CorruptState(f"checkpoint header is not JSON: {error}") from None
    if not isinstance(header, dict):
        raise CorruptState("checkpoint header is not an object")
    return header, body[end:]


_NARROW: Final = ("|u1", "<u2", "<u4")


class _ArrayWriter:
    """Arrays to follow the header, each in its most compact exact form."""

    def __init__(self) -> None:
        self.table: list[list[Any]] = []
        self.blobs: list[bytes] = []

    def add(self, array: npt.NDArray[Any] | None) -> int | None:
        if array is None:
            return None
        encoding, blob = _encode(array)
        self.table.append([encoding, array.dtype.str, int(array.size)])
        self.blobs.append(blob)
        return len(self.table) - 1


def _encode(array: npt.NDArray[Any]) -> tuple[str, bytes]:
    if array.dtype.kind in "ui" and array.size:
        low, high = int(array.min()), int(array.max())
        if low >= 0 and high <= 1:
            return "bits", np.packbits(array.astype(bool, copy=False)).tobytes()
        for narrow in _NARROW:
            if low >= 0 and high <= np.iinfo(narrow).max:
                return narrow, array.astype(narrow).tobytes()
    stored = array.dtype.newbyteorder("<").str
    return stored, array.astype(stored, copy=False).tobytes()


class _ArrayReader:
    def __init__(self, table: list[list[Any]], section: memoryview) -> None:
        self._table = table
        self._section = section
        self._offsets = [0]
        for encoding, _dtype, length in table:
            width = (length + 7) // 8 if encoding == "bits" else length * np.dtype(encoding).itemsize
            if length < 0 or width < 0:
                raise CorruptState("negative array length in checkpoint")
            self._offsets.append(self._offsets[-1] + width)
        if self._offsets[-1] != len(section):
            raise CorruptState(f"checkpoint arrays take {self._offsets[-1]} bytes, {len(section)} are there")

    def get(self, index: Any, dtype: np.dtype[Any], what: str) -> npt.NDArray[Any]:
        """Array ``index``, a fresh writable copy; it must hold ``dtype``, the tracker's type for it."""
        if type(index) is not int or not 0 <= index < len(self._table):
            raise CorruptState(f"{what}: no array {index!r} in checkpoint")
        encoding, stored, length = self._table[index]
        if stored != dtype.str:
            raise StateMismatch(f"{what}: checkpoint holds {stored}, this tracker keeps {dtype.str}")
        if encoding != stored and not (encoding in (*_NARROW, "bits") and dtype.kind in "ui"):
            raise CorruptState(f"{what}: {stored} cannot be stored as {encoding}")
        raw = self._section[self._offsets[index] : self._offsets[index + 1]]
        if encoding == "bits":
            return np.unpackbits(np.frombuffer(raw, dtype=np.uint8), count=length).astype(dtype)
        return np.frombuffer(raw, dtype=encoding).astype(dtype)


# The core's private state, read and written here only: this module is the core's own serializer.
# Every attribute of every class below is listed in _COVERED (the tests check the list against the
# classes), either serialized or rebuilt from the policy, so an attribute added later is not forgotten.

_COVERED: Final[dict[type, frozenset[str]]] = {
    ModelTracker: frozenset(
        {
            "model",
            "policy",
            "windows",
            "baseline",
            "judges",
            "time_windows",
            "allowed_lateness",
            "watermark",
            "late_events",
            "alert_ids",
            "binary",
            "metric_rules",
            "_binary_seen",
            "events",
            "labeled",
            "correct",
            "last_event_time",
        }
    ),
    CountWindow: frozenset({"size", "_bits", "_times", "_next", "_count", "_correct"}),
    TimeWindow: frozenset({"span", "buckets", "width", "_correct", "_count", "_newest"}),
    Baseline: frozenset({"learn_from", "value", "measured_at", "_seen", "_correct"}),
    SequentialJudge: frozenset({"name", "_test"}),
    SequentialTest: frozenset(
        {
            "good",
            "bad",
            "evidence",
            "cooldown",
            "line",
            "z",
            "_right",
            "_wrong",
            "_limit",
            "firing",
            "_statistic",
            "_span_correct",
            "_span_count",
            "_quiet",
            "_span_start_time",
        }
    ),
    WindowJudge: frozenset({"name", "_rule", "_baseline", "_cooldown", "_episode", "_quiet"}),
    ValueWindowJudge: frozenset(
        {"metric", "baseline", "threshold", "min_samples", "recovery_margin", "cooldown", "_episode", "_quiet"}
    ),
    EpisodeState: frozenset({"firing", "alert_id"}),
    BinaryWindow: frozenset({"size", "tp", "predicted", "actual", "squared_error", "scored"}),
}
"""Attributes of each class of a tracker's state (``vars()``)."""

_BINARY_RINGS: Final = ("tp", "predicted", "actual", "squared_error", "scored")


def _capture(t: ModelTracker, arrays: _ArrayWriter) -> dict[str, Any]:
    b = t.baseline
    return {
        "events": t.events,
        "labeled": t.labeled,
        "correct": t.correct,
        "binary_seen": t._binary_seen,
        "late_events": t.late_events,
        "last_event_time": _number(t.last_event_time),
        "watermark": _number(t.watermark),
        "baseline": {
            "value": None if b.value is None else [b.value.numerator, b.value.denominator],
            "measured_at": _number(b.measured_at) if isinstance(b.measured_at, float) else None,
            "seen": b._seen,
            "correct": b._correct,
        },
        "windows": [[size, _count_window(w, arrays)] for size, w in t.windows.items()],
        "time_windows": [[label, _time_window(w, arrays)] for label, w in t.time_windows.items()],
        "judges": [[name, _judge(j)] for name, j in t.judges.items()],
        "alert_ids": [[name, alert] for name, alert in t.alert_ids.items()],
        "binary": None
        if t.binary is None
        else [[size, {ring: _count_window(getattr(w, ring), arrays) for ring in _BINARY_RINGS}] for size, w in t.binary.items()],
        "metric_rules": [[name, _judge(j)] for name, (_rule, j) in t.metric_rules.items()],
    }


def _restore(t: ModelTracker, s: dict[str, Any], arrays: _ArrayReader) -> None:
    """Overwrite a fresh tracker's learned state; its parameters come from the current policy."""
    t.events, t.labeled, t.correct = _int(s["events"]), _int(s["labeled"]), _int(s["correct"])
    t._binary_seen, t.late_events = _int(s["binary_seen"]), _int(s["late_events"])
    t.last_event_time, t.watermark = _optional_real(s["last_event_time"]), _optional_real(s["watermark"])
    _restore_baseline(t.baseline, s["baseline"])
    _same_keys("windows", list(t.windows), [size for size, _ in s["windows"]])
    for (size, w), (_, state) in zip(t.windows.items(), s["windows"]):
        _restore_count_window(w, state, arrays, f"window {size}")
    _same_keys("time_windows", list(t.time_windows), [label for label, _ in s["time_windows"]])
    for (label, tw), (_, state) in zip(t.time_windows.items(), s["time_windows"]):
        _restore_time_window(tw, state, arrays, f"time window {label}")
    t.judges = _restored_judges(t, s["judges"])
    t.alert_ids = {_str(name): _str(alert) for name, alert in s["alert_ids"]}
    if (t.binary is None) != (s["binary"] is None):
        raise StateMismatch(
            f"binary windows: {'none' if s['binary'] is None else 'some'} in the checkpoint, "
            f"{'none' if t.binary is None else 'some'} now"
        )
    if t.binary is not None:
        _same_keys("binary windows", list(t.binary), [size for size, _ in s["binary"]])
        for (size, bw), (_, rings) in zip(t.binary.items(), s["binary"]):
            _same_keys(f"binary window {size}", list(_BINARY_RINGS), list(rings))
            for ring in _BINARY_RINGS:
                _restore_count_window(getattr(bw, ring), rings[ring], arrays, f"binary window {size} {ring}")
    _same_keys("metric rules", list(t.metric_rules), [name for name, _ in s["metric_rules"]])
    for (name, (_rule, judge)), (_, state) in zip(t.metric_rules.items(), s["metric_rules"]):
        _restore_judge(judge, state, name)


def _restore_baseline(b: Baseline, s: dict[str, Any]) -> None:
    value = s["value"]
    b.value = None if value is None else Fraction(_int(value[0]), _int(value[1]))
    if b.is_learned:
        b.measured_at = _optional_real(s["measured_at"])
    b._seen, b._correct = _int(s["seen"]), _int(s["correct"])
    if b.is_learned and not 0 <= b._seen <= b.learn_from:
        raise CorruptState(f"baseline learned from {b._seen} of {b.learn_from} events")


def _restored_judges(t: ModelTracker, stored: list[list[Any]]) -> dict[str, Any]:
    """The tracker's judges in the stored order (a learned baseline adds its judge in front, at learning time)."""
    available = dict(t.judges)
    if DEGRADATION not in available and t.baseline.value is not None:
        available[DEGRADATION] = degradation_judge(t.policy, t.baseline.value)
    _same_keys("rules", sorted(available), sorted(name for name, _ in stored))
    judges = {}
    for name, state in stored:
        judges[name] = available[name]
        _restore_judge(judges[name], state, name)
    return judges


def _count_window(w: CountWindow, arrays: _ArrayWriter) -> dict[str, Any]:
    return {"bits": arrays.add(w._bits), "times": arrays.add(w._times), "next": w._next, "count": w._count, "correct": w._correct}


def _restore_count_window(w: CountWindow, s: dict[str, Any], arrays: _ArrayReader, what: str) -> None:
    bits = arrays.get(s["bits"], w._bits.dtype, what)
    if (s["times"] is None) != (w._times is None):
        kept = "keeps" if w._times is not None else "keeps no"
        raise StateMismatch(f"{what}: this tracker {kept} event times, the checkpoint does not agree")
    times = None if s["times"] is None else arrays.get(s["times"], np.dtype(np.float64), what)
    w._next, w._count, w._correct = _int(s["next"]), _int(s["count"]), _int(s["correct"])
    if not (0 <= w._count <= bits.size <= w.size and 0 <= w._next < w.size and w._next <= bits.size) or (
        times is not None and times.size != bits.size
    ):
        raise CorruptState(f"{what}: a ring of {bits.size} at {w._next} holding {w._count} does not fit size {w.size}")
    w._bits, w._times = bits, times


def _time_window(w: TimeWindow, arrays: _ArrayWriter) -> dict[str, Any]:
    return {
        "span": w.span,
        "buckets": w.buckets,
        "correct": arrays.add(w._correct),
        "count": arrays.add(w._count),
        "newest": w._newest,
    }


def _restore_time_window(w: TimeWindow, s: dict[str, Any], arrays: _ArrayReader, what: str) -> None:
    if s["span"] != w.span or s["buckets"] != w.buckets:
        raise StateMismatch(
            f"{what}: {s['buckets']} buckets over {s['span']} s in the checkpoint, {w.buckets} over {w.span} s now"
        )
    correct, count = arrays.get(s["correct"], w._correct.dtype, what), arrays.get(s["count"], w._count.dtype, what)
    if correct.size != w.buckets or count.size != w.buckets:
        raise CorruptState(f"{what}: {correct.size} and {count.size} buckets, not {w.buckets}")
    w._correct, w._count = correct, count
    w._newest = None if s["newest"] is None else _int(s["newest"])


def _judge(j: Any) -> dict[str, Any]:
    if isinstance(j, SequentialJudge):
        test = j._test
        return {
            "kind": "sequential",
            "firing": test.firing,
            "statistic": test._statistic,
            "span_correct": test._span_correct,
            "span_count": test._span_count,
            "quiet": test._quiet,
            "span_start_time": _number(test._span_start_time),
        }
    if isinstance(j, WindowJudge):
        return {"kind": "window", **_episode(j._episode), "quiet": j._quiet}
    if isinstance(j, ValueWindowJudge):
        return {"kind": "value", **_episode(j._episode), "quiet": j._quiet}
    raise TypeError(f"cannot checkpoint a judge of type {type(j).__name__}")


def _restore_judge(j: Any, s: dict[str, Any], name: str) -> None:
    kind = _judge(j)["kind"]
    if s["kind"] != kind:
        raise StateMismatch(f"rule {name}: decided by a {s['kind']} judge in the checkpoint, a {kind} judge now")
    if isinstance(j, SequentialJudge):
        test = j._test
        test.firing = _bool(s["firing"])
        test._statistic, test._quiet = _int(s["statistic"]), _int(s["quiet"])
        test._span_correct, test._span_count = _int(s["span_correct"]), _int(s["span_count"])
        test._span_start_time = _optional_real(s["span_start_time"])
    else:
        _restore_episode(j._episode, s)
        j._quiet = _int(s["quiet"])


def _episode(e: EpisodeState) -> dict[str, Any]:
    return {"firing": e.firing, "alert_id": e.alert_id}


def _restore_episode(e: EpisodeState, s: dict[str, Any]) -> None:
    e.firing = _bool(s["firing"])
    e.alert_id = None if s["alert_id"] is None else _str(s["alert_id"])


def _same_keys(what: str, now: list[Any], stored: list[Any]) -> None:
    if now != stored:
        raise StateMismatch(f"{what}: {stored} in the checkpoint, {now} now")


def _number(value: float | None) -> float | str | None:
    """A float as JSON, exactly (orjson writes the shortest repr); non-finite ones, which JSON lacks, by name."""
    if value is None or math.isfinite(value):
        return value
    return repr(float(value))


def _optional_real(value: Any) -> float | None:
    if value is None:
        return None
    if value in ("inf", "-inf", "nan"):
        return float(value)
    if type(value) is not float and type(value) is not int:
        raise CorruptState(f"expected a number, not {value!r}")
    return float(value)


def _int(value: Any) -> int:
    if type(value) is not int:
        raise CorruptState(f"expected an integer, not {value!r}")
    return value


def _bool(value: Any) -> bool:
    if type(value) is not bool:
        raise CorruptState(f"expected true or false, not {value!r}")
    return value


def _str(value: Any) -> str:
    if type(value) is not str:
        raise CorruptState(f"expected a string, not {value!r}")
    return value
