"""JSON codec: raw message bytes to decoded objects, and alert events to bytes.

orjson parses each message on its own.  Joining a batch into one JSON array
would parse faster but lets a hostile message swallow its neighbours (an
unterminated string in one message, closed by the next), so invalid input
could pass as valid; one ``loads`` per message keeps every event's fate its own.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import orjson

from decaywatch.monitor.schema import EventBatch, Reason, Rejection, validate

MAX_MESSAGE_BYTES: Final = 1 << 20
"""Messages above 1 MiB are rejected before parsing (Kafka's default max.message.bytes is about this)."""


@contextmanager
def collector_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector around a bulk parse.

    Decoded JSON holds no reference cycles, yet building thousands of dicts
    triggers collections that scan every live object: about a third of the
    decoding time.  Reference counting still frees everything as usual.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def parse(values: Sequence[bytes | None], fallback_time: npt.NDArray[np.float64]) -> tuple[EventBatch, list[Rejection]]:
    """Decode and validate one batch of messages: the valid events as columns, and every rejection in message order.

    ``fallback_time`` gives each message's event time when its event has no
    ``ts``.  The collector stays paused until the decoded objects are freed:
    resumed while they live, it runs a collection over tens of thousands of
    young dicts that reference counting is about to free anyway (a tenth of
    the batch's time on the producer's events).
    """
    with collector_paused():
        objects, positions, undecodable = decode(values)
        batch, invalid = validate(objects, fallback_time[positions], positions)
        del objects
    return batch, sorted(undecodable + invalid, key=lambda r: r.index) if undecodable else invalid


def decode(values: Sequence[bytes | None]) -> tuple[list[Any], list[int], list[Rejection]]:
    """Parse each message's JSON.

    Returns the decoded objects, their positions in ``values``, and a
    rejection for each message that is not JSON (or too large, or empty).
    """
    loads = orjson.loads
    try:
        with collector_paused():
            objects = list(map(loads, values))  # type: ignore[arg-type]  # a None raises TypeError: handled below
    except (orjson.JSONDecodeError, TypeError):
        pass
    else:
        if max(map(len, values), default=0) <= MAX_MESSAGE_BYTES:  # type: ignore[arg-type]  # all parsed: no None
            return objects, list(range(len(values))), []

    decoded: list[Any] = []
    positions: list[int] = []
    rejections: list[Rejection] = []
    for i, value in enumerate(values):
        result = _decode_one(value)
        if isinstance(result, Rejection):
            rejections.append(Rejection(i, result.reason, result.detail))
        else:
            decoded.append(result)
            positions.append(i)
    return decoded, positions, rejections


def _decode_one(value: bytes | None) -> Any:
    if value is None:
        return Rejection(-1, Reason.MALFORMED_JSON, "message has no value (a tombstone)")
    if len(value) > MAX_MESSAGE_BYTES:
        return Rejection(-1, Reason.MESSAGE_TOO_LARGE, f"message is {len(value)} bytes, above {MAX_MESSAGE_BYTES}")
    try:
        return orjson.loads(value)
    except orjson.JSONDecodeError as error:
        text = str(error)
        if "infinity" in text or _non_finite_literal_at(error):
            return Rejection(-1, Reason.NON_FINITE_NUMBER, f"JSON has a non-finite number: {text}")
        return Rejection(-1, Reason.MALFORMED_JSON, f"not valid JSON: {text}")


def _non_finite_literal_at(error: orjson.JSONDecodeError) -> bool:
    """Did parsing stop at a ``NaN``/``Infinity`` literal (not merely at text that contains those letters)?"""
    doc: object = error.doc  # typed str, checked all the same: this runs on the error path of untrusted input
    return isinstance(doc, str) and doc.startswith(("NaN", "Infinity", "-Infinity"), error.pos)


def dumps(obj: Any) -> bytes:
    """Serialise an outgoing event (alerts, dead-letter envelopes) compactly."""
    return orjson.dumps(obj, option=orjson.OPT_SERIALIZE_NUMPY)
