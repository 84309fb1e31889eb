"""One model's complete state as bytes: the checkpoint a new owner restores when a partition moves.

After each batch the monitor writes every touched model's state to a
compacted changelog (key = model id), before committing offsets; a process
that is assigned the partition restores it, so it carries on exactly where the
old owner stopped: the same gauges, and no episode fired or resolved twice.

Each class of the state says what its state is (``state()``, and
``restore(state)`` which checks what it is given); this module only wraps the
tracker's state in the envelope.  Format, version 3 (integers big-endian; version 3 added the join of
labels that arrive later and the time windows' prediction counts)::

    b"dwst"  u8 version  u32 crc32(body)
    body = u32 header length, header, arrays

The header is one orjson object: the model id, the policy fingerprint and
the tracker's state tree.  Arrays in the tree are replaced by ``{"$array": i}``,
an index into the header's ``arrays`` table (``[encoding, dtype, length]``),
and follow the header back to back as raw little-endian bytes (non-finite
floats, which JSON lacks, become ``{"$float": "inf"}``): 0/1 rings ``np.packbits``-ed
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
>>> from decaywatch.monitor.config import ModelPolicy
>>> from decaywatch.monitor.schema import ModelRows
>>> policy = ModelPolicy(baseline=0.85, windows=(4,), min_samples=4, time_windows=("1h",))
>>> tracker = ModelTracker("m", policy)
>>> _ = tracker.update(ModelRows(np.ones(6, bool), np.arange(6) % 2 == 0, np.arange(6.0), np.arange(6)))
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
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import orjson

from decaywatch.monitor.config import ModelPolicy
from decaywatch.monitor.tracker import ModelTracker

MAGIC: Final = b"dwst"
VERSION: Final = 3
_PREFIX: Final = struct.Struct(">4sBI")
_LENGTH: Final = struct.Struct(">I")

_DECISION_ONLY: Final = frozenset(
    {
        "min_samples",
        "recovery_margin",
        "confidence_z",
        "cooldown",
        "allowed_lateness",
        "baseline_date",
        "label_ttl",
        "orphan_ttl",
        "max_pending",
        "min_label_coverage",
    }
)
"""Policy fields no stored value depends on: a checkpoint restores under a new value of these."""


class StateMismatch(ValueError):  # noqa: N818  # names what happened; callers catch it by this name since version 1
    """The checkpoint cannot be restored here (other policy, model or format version): start the model fresh."""


class CorruptState(StateMismatch):
    """The bytes are not an intact checkpoint (truncated, altered, or something else entirely)."""


def dump(tracker: ModelTracker) -> bytes:
    """The tracker's complete state, as one changelog record's value."""
    arrays = _ArrayWriter()
    header = {
        "model": tracker.model,
        "policy": fingerprint(tracker.policy),
        "state": arrays.encode(tracker.state()),
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
        state = _ArrayReader(header["arrays"], section).decode(header["state"])
        if not isinstance(state, dict):
            raise CorruptState(f"checkpoint of model {model!r} holds no state")
        tracker.restore(state)
        return tracker
    except StateMismatch:
        raise
    except (KeyError, IndexError, TypeError, ValueError, ZeroDivisionError, AttributeError) as error:
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
ARRAY: Final = "$array"
FLOAT: Final = "$float"


class _ArrayWriter:
    """Arrays to follow the header, each in its most compact exact form."""

    def __init__(self) -> None:
        self.table: list[list[Any]] = []
        self.blobs: list[bytes] = []

    def add(self, array: npt.NDArray[Any]) -> int:
        encoding, blob = _encode(array)
        self.table.append([encoding, array.dtype.str, int(array.size)])
        self.blobs.append(blob)
        return len(self.table) - 1

    def encode(self, value: Any) -> Any:
        """The state tree as JSON values: arrays moved to the array section, non-finite floats by name."""
        if isinstance(value, np.ndarray):
            return {ARRAY: self.add(value)}
        if isinstance(value, dict):
            return {key: self.encode(item) for key, item in value.items()}
        if isinstance(value, (list, tuple)):
            return [self.encode(item) for item in value]
        if isinstance(value, float) and not math.isfinite(value):
            return {FLOAT: repr(value)}
        return value


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

    def decode(self, value: Any) -> Any:
        """The state tree back: ``{"$array": i}`` as a fresh writable array, ``{"$float": ...}`` as a float."""
        if isinstance(value, dict):
            if set(value) == {ARRAY}:
                return self.get(value[ARRAY])
            if set(value) == {FLOAT}:
                if value[FLOAT] not in ("inf", "-inf", "nan"):
                    raise CorruptState(f"not a float: {value[FLOAT]!r}")
                return float(value[FLOAT])
            return {key: self.decode(item) for key, item in value.items()}
        if isinstance(value, list):
            return [self.decode(item) for item in value]
        return value

    def get(self, index: Any) -> npt.NDArray[Any]:
        """Array ``index``, a fresh writable copy in the type it was written from."""
        if type(index) is not int or not 0 <= index < len(self._table):
            raise CorruptState(f"no array {index!r} in checkpoint")
        encoding, stored, length = self._table[index]
        try:
            dtype = np.dtype(stored)
        except TypeError:
            raise CorruptState(f"array {index}: {stored!r} is not a type") from None
        if encoding != stored and not (encoding in (*_NARROW, "bits") and dtype.kind in "ui"):
            raise CorruptState(f"array {index}: {stored} cannot be stored as {encoding}")
        raw = self._section[self._offsets[index] : self._offsets[index + 1]]
        if encoding == "bits":
            return np.unpackbits(np.frombuffer(raw, dtype=np.uint8), count=length).astype(dtype)
        return np.frombuffer(raw, dtype=encoding).astype(dtype)
