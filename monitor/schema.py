"""The event schema: validation of decoded JSON objects into columns.

One JSON object per event (see the README's *Event format*).  A prediction,
with its label inline or without one::

    {"model": "churn", "prediction": 1, "label": 0, "ts": 1704067200.0,
     "event_id": "e-1", "model_version": "v3", "score": 0.71, "features": {"x": 0.6}}

or a *label event*, the truth for an earlier prediction, joined to it by
``(model, event_id)`` (``monitor/join.py``; ``ts`` is when the label became known)::

    {"model": "churn", "event_id": "e-1", "label": 1, "ts": "2024-02-03T10:00:00Z"}

Each valid event gets a ``Role``: a prediction that counts as today (labeled
inline, or with no ``event_id`` to join on), a prediction waiting for its
label, or a label event.

Validation is column-wise: one list comprehension per field over the whole
batch, so the common case (every event valid) costs a few list passes, not a
Python function call per event.  Only events that fail a check are looked at
one by one, to name the reason.  Every rejected event keeps its position in
the batch so the caller can dead-letter the original bytes.

Reasons are a small fixed set (they become a Prometheus label value, so their
number must stay bounded).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from itertools import chain, repeat
from operator import is_not
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from decaywatch.monitor.eventkey import event_keys


class Reason:
    """Why an event was rejected: the values of ``decaywatch_invalid_events_total{reason}``."""

    MALFORMED_JSON: Final = "malformed_json"
    NON_FINITE_NUMBER: Final = "non_finite_number"
    NOT_AN_OBJECT: Final = "not_an_object"
    MISSING_MODEL: Final = "missing_model"
    INVALID_MODEL: Final = "invalid_model"
    MISSING_PREDICTION: Final = "missing_prediction"
    """Neither ``prediction`` nor ``label``: not an event of either kind."""
    INVALID_PREDICTION: Final = "invalid_prediction"
    INVALID_LABEL: Final = "invalid_label"
    """A label of a type the schema rejects, or (inline) of another type than its prediction."""
    MISSING_LABEL: Final = "missing_label"
    """A label event (no ``prediction``) whose ``label`` is ``null``."""
    MISSING_EVENT_ID: Final = "missing_event_id"
    """A label event (no ``prediction``) without ``event_id``: it could join nothing."""
    INVALID_TIMESTAMP: Final = "invalid_timestamp"
    INVALID_SCORE: Final = "invalid_score"
    INVALID_FEATURES: Final = "invalid_features"
    INVALID_FIELD: Final = "invalid_field"
    MESSAGE_TOO_LARGE: Final = "message_too_large"

    ALL: Final = (
        MALFORMED_JSON,
        NON_FINITE_NUMBER,
        NOT_AN_OBJECT,
        MISSING_MODEL,
        INVALID_MODEL,
        MISSING_PREDICTION,
        INVALID_PREDICTION,
        INVALID_LABEL,
        MISSING_LABEL,
        MISSING_EVENT_ID,
        INVALID_TIMESTAMP,
        INVALID_SCORE,
        INVALID_FEATURES,
        INVALID_FIELD,
        MESSAGE_TOO_LARGE,
    )


MAX_MODEL_ID_LENGTH: Final = 256
"""Longer ids are rejected: a model id becomes a metric label and a Kafka key."""

MAX_TIMESTAMP: Final = 253402300799.0
"""9999-12-31T23:59:59Z: the last instant an RFC 3339 timestamp can name."""

_LABEL_TYPES: Final = (int, str, bool)
_NUMBER_TYPES: Final = (int, float)
_NUMBER_SET: Final = frozenset(_NUMBER_TYPES)
_SCORE_TYPES: Final = frozenset((int, float, type(None)))
_EVENT_ID_TYPES: Final = frozenset((str, int, type(None)))
_STAMP_TYPES: Final = frozenset((int, float, type(None)))
"""``ts`` types the column check passes on (a string ``ts`` is parsed event by event, in the diagnosis)."""
Columns3 = tuple[npt.NDArray[np.object_], npt.NDArray[np.object_], npt.NDArray[np.object_]]
"""A batch's predictions, labels and event ids as object arrays."""
Absent = tuple[npt.NDArray[np.bool_], npt.NDArray[np.bool_], npt.NDArray[np.bool_]]
"""Which events lack a prediction, a label and an event id."""
_VERSION_TYPES: Final = frozenset((str, type(None)))
_FIELDS: Final = ("model", "prediction", "label", "ts", "event_id", "score", "features", "model_version")
_FEATURES_TYPES: Final = frozenset((dict, type(None)))
_FIELD_SLICE: Final = 1024
"""Objects whose fields are taken together: about a megabyte of dicts, within a core's L2 cache."""


class Role:
    """What a valid event is to the monitor (``EventBatch.role``)."""

    PREDICTION: Final = 0
    """A prediction that counts as it arrives: labeled inline, or unlabeled with no ``event_id`` (volume only)."""
    PENDING: Final = 1
    """A prediction with an ``event_id`` and no label: it waits for its label event."""
    LABEL: Final = 2
    """A label event: no prediction, an ``event_id`` and a label."""


@dataclass(frozen=True, slots=True)
class Rejection:
    """One event that failed validation: where it was in the batch, and why."""

    index: int
    reason: str
    detail: str


@dataclass(frozen=True, slots=True)
class ModelRows:
    """One model's events of one batch, in stream order (labeled or not)."""

    labeled: npt.NDArray[np.bool_]
    correct: npt.NDArray[np.bool_]
    event_time: npt.NDArray[np.float64]
    source_index: npt.NDArray[np.int64]
    predictions: npt.NDArray[np.object_] | None = None
    labels: npt.NDArray[np.object_] | None = None
    score: npt.NDArray[np.float64] | None = None
    role: npt.NDArray[np.int8] | None = None
    """Each row's ``Role`` (``None``: all ``Role.PREDICTION``)."""
    key: npt.NDArray[np.uint64] | None = None
    """The ``event_id``'s 64-bit key where the role is ``PENDING`` or ``LABEL`` (``monitor/eventkey.py``), else 0."""


@dataclass(frozen=True, slots=True)
class EventBatch:
    """Valid events as columns (one numpy array per field, same length).

    ``model_codes`` index into ``models``, the batch's distinct model ids in
    order of first appearance.  ``source_index`` is each event's position in
    the batch the caller handed in (rejected events leave gaps).
    """

    models: tuple[str, ...]
    model_codes: npt.NDArray[np.int32]
    labeled: npt.NDArray[np.bool_]
    correct: npt.NDArray[np.bool_]
    event_time: npt.NDArray[np.float64]
    source_index: npt.NDArray[np.int64]
    predictions: npt.NDArray[np.object_] | None = None
    """The raw predictions, an object array (for precision and recall of a chosen positive class); optional."""
    labels: npt.NDArray[np.object_] | None = None
    score: npt.NDArray[np.float64] | None = None
    """The model's probability of the positive class, NaN where absent (for the Brier score); optional."""
    role: npt.NDArray[np.int8] | None = None
    """Each event's ``Role`` (``None``: every event is a ``Role.PREDICTION``)."""
    key: npt.NDArray[np.uint64] | None = None
    """The 64-bit key of the ``event_id`` of pending predictions and label events, 0 elsewhere."""

    def __len__(self) -> int:
        return int(self.model_codes.shape[0])

    def select(self, keep: npt.NDArray[np.bool_]) -> EventBatch:
        """The events where ``keep`` is true (model codes keep their meaning)."""
        return EventBatch(
            models=self.models,
            model_codes=self.model_codes[keep],
            labeled=self.labeled[keep],
            correct=self.correct[keep],
            event_time=self.event_time[keep],
            source_index=self.source_index[keep],
            predictions=None if self.predictions is None else self.predictions[keep],
            labels=None if self.labels is None else self.labels[keep],
            score=None if self.score is None else self.score[keep],
            role=None if self.role is None else self.role[keep],
            key=None if self.key is None else self.key[keep],
        )

    def rows(self, index: npt.NDArray[np.intp]) -> ModelRows:
        """The events at ``index`` (one model's, in stream order), as a tracker takes them."""
        return ModelRows(
            labeled=self.labeled[index],
            correct=self.correct[index],
            event_time=self.event_time[index],
            source_index=self.source_index[index],
            predictions=None if self.predictions is None else self.predictions[index],
            labels=None if self.labels is None else self.labels[index],
            score=None if self.score is None else self.score[index],
            role=None if self.role is None else self.role[index],
            key=None if self.key is None else self.key[index],
        )

    @classmethod
    def empty(cls) -> EventBatch:
        return cls(
            models=(),
            model_codes=np.zeros(0, np.int32),
            labeled=np.zeros(0, bool),
            correct=np.zeros(0, bool),
            event_time=np.zeros(0, np.float64),
            source_index=np.zeros(0, np.int64),
            predictions=np.empty(0, dtype=object),
            labels=np.empty(0, dtype=object),
            score=np.zeros(0, np.float64),
            role=np.zeros(0, np.int8),
            key=np.zeros(0, np.uint64),
        )


def parse_timestamp(value: object) -> float:
    """Event time in epoch seconds from a JSON number or an RFC 3339 string.

    Raises ``ValueError`` with a readable message for anything else.
    """
    if type(value) in _NUMBER_TYPES:
        seconds = float(value)  # type: ignore[arg-type]  # an int or a float: its exact type was just checked
    elif type(value) is str:
        try:
            parsed = datetime.fromisoformat(value.upper())  # RFC 3339 allows lower-case "t" and "z"
        except ValueError:
            raise ValueError(f"ts {value[:64]!r} is not an RFC 3339 timestamp") from None
        if parsed.tzinfo is None:
            raise ValueError(f"ts {value[:64]!r} has no UTC offset (RFC 3339 requires one, e.g. 'Z')")
        seconds = parsed.timestamp()
    else:
        raise ValueError(f"ts must be epoch seconds or an RFC 3339 string, not {_json_type(value)}")
    if not math.isfinite(seconds) or not 0.0 <= seconds <= MAX_TIMESTAMP:
        raise ValueError(f"ts {seconds!r} is outside 1970-01-01..9999-12-31")
    return seconds


def validate(
    objects: Sequence[Any],
    fallback_time: npt.NDArray[np.float64],
    positions: Sequence[int] | None = None,
) -> tuple[EventBatch, list[Rejection]]:
    """Check decoded objects against the event schema and return the valid ones as columns.

    ``fallback_time`` gives each object's event time when it has no ``ts``
    (the Kafka message timestamp, or the time of reading).  ``positions``
    maps each object to its index in the caller's batch (default: 0..n-1),
    so rejections and ``source_index`` refer to the caller's numbering.
    """
    n = len(objects)
    where = list(range(n)) if positions is None else list(positions)
    if n == 0:
        return EventBatch.empty(), []

    rejections: list[Rejection] = []
    try:
        fields = _fields(objects)
    except TypeError:  # ``dict.get`` met an object that is not a dict
        keep = [i for i, o in enumerate(objects) if type(o) is dict]
        rejections.extend(
            Rejection(where[i], Reason.NOT_AN_OBJECT, f"event is a JSON {_json_type(objects[i])}, not an object")
            for i in range(n)
            if type(objects[i]) is not dict
        )
        objects = [objects[i] for i in keep]
        where = [where[i] for i in keep]
        fallback_time = fallback_time[keep]
        fields = _fields(objects)

    models, scores = fields.values["model"], fields.values["score"]
    values: Columns3 = (
        _objects(fields.values["prediction"]),
        _objects(fields.values["label"]),
        _objects(fields.values["event_id"]),
    )
    absent = (_none(values[0]), _none(values[1]), _none(values[2]))  # which predictions, labels and ids are missing
    score = np.array(scores, dtype=np.float64) if fields.types["score"] <= _SCORE_TYPES else None  # None -> NaN
    good = _required_ok(fields, absent) & _optional_fields_ok(fields, score)
    event_time = _event_times(fields.values["ts"], fields.types["ts"], fallback_time)
    bad_time = ~((event_time >= 0.0) & (event_time <= MAX_TIMESTAMP))  # also catches NaN

    for i in np.flatnonzero(~good | bad_time).tolist():
        reason, detail, seconds = _diagnose(objects[i])
        if reason is None:
            event_time[i] = seconds if seconds is not None else event_time[i]
            good[i] = True
        else:
            good[i] = False
            rejections.append(Rejection(where[i], reason, detail))

    if good.all():
        keep_idx = None
    else:
        keep_idx = np.flatnonzero(good)
        kept = keep_idx.tolist()
        models = [models[i] for i in kept]
        score = score[keep_idx] if score is not None else None
        if score is None:  # some scores were of a wrong type: the kept ones are numbers or absent
            score = np.array([scores[i] for i in kept], dtype=np.float64)
        values = (values[0][keep_idx], values[1][keep_idx], values[2][keep_idx])
        absent = (absent[0][keep_idx], absent[1][keep_idx], absent[2][keep_idx])
        event_time = event_time[keep_idx]
    codes_of = {m: code for code, m in enumerate(dict.fromkeys(models))}  # in order of first appearance
    model_codes = np.fromiter(map(codes_of.__getitem__, models), dtype=np.int32, count=len(models))
    source_index = np.asarray(where, dtype=np.int64)
    prediction_values, label_values, id_values = values
    batch = EventBatch(
        models=tuple(codes_of),
        model_codes=model_codes,
        labeled=~absent[1] & ~absent[0],
        correct=np.asarray(prediction_values == label_values, dtype=bool),  # element by element; None == x is False
        event_time=event_time,
        source_index=source_index if keep_idx is None else source_index[keep_idx],
        predictions=prediction_values,
        labels=label_values,
        score=score,
        **_roles(absent, id_values),
    )
    rejections.sort(key=lambda r: r.index)
    return batch, rejections


def _roles(absent: Absent, event_ids: npt.NDArray[np.object_]) -> dict[str, Any]:
    """Each valid event's ``Role`` and, for those that join, the key of its ``event_id``."""
    pending = absent[1] & ~absent[2]
    role = np.where(absent[0], Role.LABEL, np.where(pending, Role.PENDING, Role.PREDICTION)).astype(np.int8)
    key = np.zeros(role.shape[0], dtype=np.uint64)
    joining = np.flatnonzero(role != Role.PREDICTION)
    if joining.size:
        key[joining] = event_keys(event_ids[joining].tolist())
    return {"role": role, "key": key}


def _none(values: npt.NDArray[np.object_]) -> npt.NDArray[np.bool_]:
    """Which values are ``None``, in one C loop over the object array."""
    return np.asarray(values == None, dtype=bool)  # noqa: E711 - element by element, not a test of the array


def _objects(values: list[Any]) -> npt.NDArray[np.object_]:
    """A list as a numpy object array (element-wise ``==`` and fancy indexing run in C)."""
    array = np.empty(len(values), dtype=object)
    array[:] = values
    return array


def _required_ok(fields: _Fields, absent: Absent) -> npt.NDArray[np.bool_]:
    """Whether each event's model, prediction, label, id and ``ts`` have valid types (the value checks come later).

    The common batch (string model ids; one type of prediction and label,
    ``None`` where absent; numeric or absent ``ts``) is checked a column at a
    time, from the fields' type sets; any other batch event by event.
    ``absent``: which predictions, labels and ids are missing.
    """
    types = fields.types
    models = fields.values["model"]
    value_types = (types["prediction"] | types["label"]) - {type(None)}
    if (
        types["model"] == {str}
        and len(value_types) == 1
        and value_types <= set(_LABEL_TYPES)
        and types["ts"] <= _STAMP_TYPES
        and types["event_id"] <= _EVENT_ID_TYPES
    ):
        lengths = np.fromiter(map(len, models), dtype=np.int64, count=len(models))
        prediction = ~absent[0]
        label_event = ~absent[1] & ~absent[2]
        return np.asarray((lengths > 0) & (lengths <= MAX_MODEL_ID_LENGTH) & (prediction | label_event), dtype=bool)
    columns = (fields.values[name] for name in ("prediction", "label", "ts", "event_id"))
    return np.array(
        [
            type(m) is str
            and 0 < len(m) <= MAX_MODEL_ID_LENGTH
            and (
                (type(p) in _LABEL_TYPES and (lab is None or type(lab) is type(p)))
                or (p is None and type(lab) in _LABEL_TYPES and (type(e) is str or type(e) is int))  # a label event
            )
            and (t is None or type(t) in _NUMBER_TYPES)
            for m, p, lab, t, e in zip(models, *columns, strict=True)
        ],
        dtype=bool,
    )


def _event_times(stamps: list[Any], types: set[type], fallback_time: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Each event's ``ts`` as a number (NaN when it is not one: diagnosed later), or its fallback time when absent.

    ``types``: the set of the stamps' types."""
    if types <= {float, int}:
        return np.array(stamps, dtype=np.float64)
    return np.array(
        [
            fb if t is None else (t if type(t) in _NUMBER_TYPES else math.nan)
            for t, fb in zip(stamps, fallback_time.tolist(), strict=True)
        ],
        dtype=np.float64,
    )


@dataclass(frozen=True, slots=True)
class _Fields:
    """A batch's fields, one list per field (``None`` where absent), and the set of types met in each."""

    values: dict[str, list[Any]]
    types: dict[str, set[type]]
    feature_value_types: set[type] | None
    """The types of the values inside ``features`` (``None``: some ``features`` is not an object)."""


def _fields(objects: Sequence[dict[str, Any]]) -> _Fields:
    """Each object's value of each field, and each field's set of types.

    ``map`` of ``dict.get`` runs faster than a comprehension.  Every field,
    and the type of every value, is taken from a slice of objects before the
    next slice, while those objects are in the CPU cache: reading each
    object's type is a memory access, and a pass over a whole batch of 50,000
    events per field and per type check read them from memory once each
    (1.6x slower for the fields alone on the producer's events; the type sets
    taken here instead of in later passes save a tenth of the decode and
    validate time).
    """
    values: dict[str, list[Any]] = {name: [] for name in _FIELDS}
    types: dict[str, set[type]] = {name: set() for name in _FIELDS}
    nested: set[type] | None = set()
    for lo in range(0, len(objects), _FIELD_SLICE):
        part = objects[lo : lo + _FIELD_SLICE]
        for name in _FIELDS:
            got = list(map(dict.get, part, repeat(name, len(part))))
            values[name].extend(got)
            types[name].update(map(type, got))
        if nested is not None:
            if types["features"] <= _FEATURES_TYPES:
                present = filter(partial(is_not, None), values["features"][lo:])
                nested.update(map(type, chain.from_iterable(map(dict.values, present))))
            else:
                nested = None
    return _Fields(values, types, nested)


def _optional_fields_ok(fields: _Fields, score: npt.NDArray[np.float64] | None) -> npt.NDArray[np.bool_]:
    """The optional fields, checked for the whole batch at once (from the type sets); per event only when that fails.

    ``score``: the scores as floats, if all are numbers or absent.  Events
    that fail are diagnosed one by one later, so this only has to be right
    about *whether* each is valid.
    """
    scores, features = fields.values["score"], fields.values["features"]
    ok = np.ones(len(scores), dtype=bool)
    if score is not None and int(np.count_nonzero(np.isnan(score))) == scores.count(None):  # NaN only where absent
        ok &= ~((score < 0.0) | (score > 1.0))
    else:
        ok &= np.array([x is None or (type(x) in _NUMBER_TYPES and 0.0 <= x <= 1.0) for x in scores], dtype=bool)
    nested = fields.feature_value_types
    if nested is None or not nested <= _NUMBER_SET:
        ok &= np.array(
            [f is None or (type(f) is dict and all([type(v) in _NUMBER_TYPES for v in f.values()])) for f in features],  # noqa: C419 - as above
            dtype=bool,
        )
    for name, allowed in (("event_id", _EVENT_ID_TYPES), ("model_version", _VERSION_TYPES)):
        if not fields.types[name] <= allowed:
            ok &= np.array([type(v) in allowed for v in fields.values[name]], dtype=bool)
    return ok


def _optional_problem(o: dict[str, Any]) -> tuple[str, str] | None:
    score = o.get("score")
    if score is not None and (type(score) not in _NUMBER_TYPES or not 0.0 <= score <= 1.0):
        return Reason.INVALID_SCORE, f"score must be a number in [0, 1], not {_describe(score)}"
    features = o.get("features")
    if features is not None:
        if type(features) is not dict:
            return Reason.INVALID_FEATURES, f"features must be an object of name to number, not {_json_type(features)}"
        for name, value in features.items():
            if type(value) not in _NUMBER_TYPES:
                return Reason.INVALID_FEATURES, f"feature {name[:64]!r} must be a number, not {_json_type(value)}"
    for field in ("event_id", "model_version"):
        value = o.get(field)
        if value is not None and type(value) is not str and not (field == "event_id" and type(value) is int):
            return Reason.INVALID_FIELD, f"{field} must be a string, not {_json_type(value)}"
    return None


def _diagnose(o: dict[str, Any]) -> tuple[str | None, str, float | None]:
    """Name the first problem with one event (the slow path, for events that failed a column check).

    Returns ``(None, "", seconds)`` when the event is valid after all (a string
    timestamp, which the column pass does not parse), with its parsed time.
    """
    model = o.get("model")
    if model is None:
        return Reason.MISSING_MODEL, "field 'model' is required", None
    if type(model) is not str:
        return Reason.INVALID_MODEL, f"model must be a string, not {_json_type(model)}", None
    if not 0 < len(model) <= MAX_MODEL_ID_LENGTH:
        return Reason.INVALID_MODEL, f"model id must be 1 to {MAX_MODEL_ID_LENGTH} characters, not {len(model)}", None
    prediction = o.get("prediction")
    if prediction is None:
        return _diagnose_label_event(o)
    if type(prediction) not in _LABEL_TYPES:
        return Reason.INVALID_PREDICTION, f"prediction must be an integer, string or boolean, not {_json_type(prediction)}", None
    label = o.get("label")
    if label is not None and type(label) is not type(prediction):
        return (
            Reason.INVALID_LABEL,
            f"label is {_json_type(label)} but prediction is {_json_type(prediction)}: they must have the same type",
            None,
        )
    return _diagnose_rest(o)


def _diagnose_label_event(o: dict[str, Any]) -> tuple[str | None, str, float | None]:
    """An event without a prediction: valid only as a label event."""
    label = o.get("label")
    if label is None:
        if "label" in o and o.get("event_id") is not None:
            return Reason.MISSING_LABEL, "a label event (no 'prediction') needs a 'label', not null", None
        return Reason.MISSING_PREDICTION, "field 'prediction' is required (or 'label' and 'event_id' for a label event)", None
    if type(label) not in _LABEL_TYPES:
        return Reason.INVALID_LABEL, f"label must be an integer, string or boolean, not {_json_type(label)}", None
    if o.get("event_id") is None:
        return Reason.MISSING_EVENT_ID, "a label event (no 'prediction') needs the 'event_id' of its prediction", None
    return _diagnose_rest(o)


def _diagnose_rest(o: dict[str, Any]) -> tuple[str | None, str, float | None]:
    """The optional fields and the timestamp, once model, prediction and label are right."""
    problem = _optional_problem(o)
    if problem is not None:
        return problem[0], problem[1], None
    seconds = None
    if o.get("ts") is not None:
        try:
            seconds = parse_timestamp(o["ts"])
        except ValueError as error:
            return Reason.INVALID_TIMESTAMP, str(error), None
    return None, "", seconds


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if type(value) is bool:
        return "boolean"
    if type(value) in _NUMBER_TYPES:
        return "number"
    if type(value) is str:
        return "string"
    if type(value) is list:
        return "array"
    if type(value) is dict:
        return "object"
    return type(value).__name__


def _describe(value: object) -> str:
    return repr(value) if type(value) in _NUMBER_TYPES else _json_type(value)
