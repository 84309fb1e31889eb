"""Parquet recordings, read with pyarrow one record batch at a time into the core's columns.

The optional extra ``decaywatch[parquet]`` installs pyarrow; nothing else in
the project imports it, so the core and the default install never need it.

Columns (by name; others are ignored, as unknown fields of a JSON event are):

``model`` (string), ``prediction`` and ``label`` (both integer, both string or
both boolean), ``ts`` (a timestamp type, float or integer epoch seconds, or
RFC 3339 strings), and optionally ``event_id`` (string or integer),
``model_version`` (string), ``score`` (number in [0, 1]) and features, either
as one struct column ``features`` of numeric fields (what pyarrow writes for
a column of dicts) or as flat numeric columns ``features.NAME`` (as in CSV).

Each row is the event the JSON object with the same fields would be, and a
**null is an absent field**.  Rows are numbered from 0 (``index`` in the
output, ``Rejection.index``), and a row is accepted or rejected for the same
reason, with the same words, as that JSON object: the answer comes from the
same ``monitor.schema.validate``.  A timestamp column is read at microsecond
precision (a finer one is truncated), and one without a time zone is taken as
UTC.

Why it is fast: a record batch becomes numpy columns without a Python object
per event.  Model ids are dictionary-encoded (a model's code is its order of
first appearance in the batch, as ``validate`` numbers them), ``correct`` is
one ``pyarrow.compute.equal`` over the two columns, and the object arrays of
predictions and labels share one Python object per distinct value.  Only rows
that fail a column check (or a file whose column types the fast path does not
know) are turned into dicts and validated one by one, a run of consecutive
rows at a time, so every answer about an odd row comes from the schema itself.
Unneeded columns (``model_version``, numeric features) are never decoded, nor
``event_id`` in a row group whose statistics show that every row has both a
prediction and a label (the id then changes nothing).  Memory holds one record
batch (``batch_rows`` rows) at a time; standard input, which Parquet cannot be
read from as a stream (its index is at the end), is read whole first.

>>> import io
>>> import pyarrow as pa
>>> import pyarrow.parquet as pq
>>> rows = [{"model": "m", "prediction": 1, "label": 1, "ts": 5.0}, {"model": "", "prediction": 1, "label": None, "ts": None}]
>>> pq.write_table(pa.Table.from_pylist(rows), out := io.BytesIO())
>>> from decaywatch.recording import read_batches
>>> [(b.events.source_index.tolist(), b.events.correct.tolist(), [(r.index, r.reason) for r in b.rejections])
...  for b in read_batches(io.BytesIO(out.getvalue()), "parquet")]
[([0], [True], []), ([], [], [(1, 'invalid_model')])]
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, Any, Final

import numpy as np
import numpy.typing as npt

from decaywatch.monitor.eventkey import event_keys
from decaywatch.monitor.schema import MAX_MODEL_ID_LENGTH, MAX_TIMESTAMP, EventBatch, Role, parse_timestamp
from decaywatch.recording import Chunk, validate_objects

BATCH_ROWS: Final = 1 << 18
"""Rows per record batch (262,144): large enough that per-batch costs vanish, small enough to bound memory."""

INSTALL_HINT: Final = "reading Parquet needs pyarrow: pip install 'decaywatch[parquet]'"

_FEATURE_PREFIX: Final = "features."
_FAST_COLUMNS: Final = ("model", "prediction", "label", "ts", "score", "event_id")
_TICKS_PER_SECOND: Final = {"s": 1.0, "ms": 1e3, "us": 1e6}


class MissingPyarrowError(OSError):
    """pyarrow is not installed; the message says which extra installs it.

    An ``OSError``, so the offline commands report it in one line as an input they cannot read (exit code 1).
    """


def _pyarrow() -> tuple[Any, Any, Any]:
    """``pyarrow``, ``pyarrow.compute`` and ``pyarrow.parquet``, or :class:`MissingPyarrowError`."""
    try:
        import pyarrow as pa  # type: ignore[import-untyped,unused-ignore]  # pyarrow ships no type information
        import pyarrow.compute as pc  # type: ignore[import-untyped,unused-ignore]
        import pyarrow.parquet as pq  # type: ignore[import-untyped,unused-ignore]
    except ImportError as error:
        raise MissingPyarrowError(INSTALL_HINT) from error
    return pa, pc, pq


def _kind(pa: Any, arrow_type: Any) -> str | None:
    """The JSON type a column's values have to the schema: ``int``, ``float``, ``str``, ``bool``, ``time``; else None."""
    types = pa.types
    if types.is_dictionary(arrow_type):
        return _kind(pa, arrow_type.value_type)
    if types.is_boolean(arrow_type):
        return "bool"
    if types.is_integer(arrow_type):
        return "int"
    if types.is_floating(arrow_type):
        return "float"
    if types.is_string(arrow_type) or types.is_large_string(arrow_type) or types.is_string_view(arrow_type):
        return "str"
    if types.is_timestamp(arrow_type):
        return "time"
    if types.is_null(arrow_type):
        return "null"
    return None


@dataclass(frozen=True, slots=True)
class _Layout:
    """What the file's schema says about its columns, decided once per file."""

    columns: tuple[str, ...] | None
    """The columns the fast path reads; ``None``: the schema is not one it knows, every row goes through dicts."""
    ts_kind: str | None
    """What the ``ts`` column holds (see :func:`_kind`); ``None``: no such column, or one of a type no event time has."""
    time_unit: str | None
    """The ``ts`` column's unit when it is a timestamp type."""


def _layout(pa: Any, schema: Any) -> _Layout:
    kinds = {field.name: _kind(pa, field.type) for field in schema}
    ts_field = schema.field("ts") if "ts" in kinds else None
    time_unit = ts_field.type.unit if ts_field is not None and kinds["ts"] == "time" else None
    prediction, label = kinds.get("prediction", "null"), kinds.get("label", "null")
    fast = (
        kinds.get("model") == "str"
        and prediction in {"int", "str", "bool", "null"}
        and label in {prediction, "null", "int", "str", "bool"}
        and (prediction == "null" or label in {prediction, "null"})
        and kinds.get("ts", "null") in {"int", "float", "str", "time", "null"}
        and kinds.get("score", "null") in {"int", "float", "null"}
        and kinds.get("event_id", "null") in {"int", "str", "null"}
        and kinds.get("model_version", "null") in {"str", "null"}
        and _numeric_features(pa, schema)
    )
    columns = tuple(name for name in _FAST_COLUMNS if name in kinds) if fast else None
    ts_kind = kinds.get("ts")
    return _Layout(columns, ts_kind if ts_kind in {"int", "float", "str", "time", "null"} else None, time_unit)


def _numeric_features(pa: Any, schema: Any) -> bool:
    """Whether every feature the schema can hold is a number (then no row needs them read)."""
    for field in schema:
        if field.name == "features":
            if pa.types.is_null(field.type):
                continue
            if not pa.types.is_struct(field.type):
                return False
            if any(_kind(pa, field.type.field(i).type) not in {"int", "float", "null"} for i in range(field.type.num_fields)):
                return False
        elif field.name.startswith(_FEATURE_PREFIX) and _kind(pa, field.type) not in {"int", "float", "null"}:
            return False
    return True


def parquet_chunks(source: IO[bytes], batch_rows: int = BATCH_ROWS) -> Iterator[Chunk]:
    """The rows of the Parquet file in ``source`` as validated chunks, in file order.

    Raises ``OSError`` when the file cannot be read or is not Parquet, and
    :class:`MissingPyarrowError` (one) when pyarrow is not installed.
    """
    pa, pc, pq = _pyarrow()
    if not source.seekable():
        source = pa.BufferReader(source.read())
    try:
        parquet = pq.ParquetFile(source, read_dictionary=["model"])  # model ids stay codes: no string per row
    except pa.ArrowInvalid as error:
        raise OSError(f"not a Parquet file: {error}") from error
    layout = _layout(pa, parquet.schema_arrow)
    try:
        for group in range(parquet.metadata.num_row_groups):
            columns = _columns_to_read(parquet.metadata.row_group(group), layout)
            for record_batch in parquet.iter_batches(batch_size=batch_rows, row_groups=[group], columns=columns):
                if record_batch.num_rows:
                    yield from _batch_chunks(pa, pc, record_batch, layout)
    except pa.ArrowInvalid as error:
        raise OSError(f"unreadable Parquet: {error}") from error


def _columns_to_read(group: Any, layout: _Layout) -> list[str] | None:
    """The fast path's columns, less ``event_id`` where the row group's statistics show it cannot matter.

    ``event_id`` only makes a row a pending prediction (no label) or a label
    event (no prediction); its type was checked with the schema.  When every
    row of the group has both a prediction and a label, its 10M strings need
    not be decoded.
    """
    if layout.columns is None:
        return None
    nulls = {}
    for i in range(group.num_columns):
        chunk = group.column(i)
        statistics = chunk.statistics
        nulls[chunk.path_in_schema] = statistics.null_count if statistics is not None and statistics.has_null_count else None
    if nulls.get("prediction") == 0 and nulls.get("label") == 0:
        return [name for name in layout.columns if name != "event_id"]
    return list(layout.columns)


def _batch_chunks(pa: Any, pc: Any, batch: Any, layout: _Layout) -> Iterator[Chunk]:
    """One record batch as chunks of consecutive rows: fast runs of rows that pass every column check, dict runs between."""
    n = batch.num_rows
    for i, field in enumerate(batch.schema):  # a column written from a dictionary array reads back as one
        if pa.types.is_dictionary(field.type) and (field.name != "model" or layout.columns is None):
            batch = batch.set_column(i, field.name, batch.column(i).dictionary_decode())
    times = None if layout.ts_kind is None else _event_times(pa, pc, batch.column("ts"), layout.ts_kind, layout.time_unit)
    if layout.columns is None:
        yield _dict_chunk(pa, batch, times)
        return
    columns = _Columns.of(pa, pc, batch, times)
    suspect = columns.suspect
    if not suspect.any():
        yield columns.chunk(pa, pc, 0, n)
        return
    # Runs of equal suspicion: [starts[i], starts[i + 1]).
    starts = np.flatnonzero(np.diff(suspect, prepend=~suspect[0], append=~suspect[-1])).tolist()
    for start, end in itertools.pairwise(starts):
        if suspect[start]:
            yield _dict_chunk(pa, batch.slice(start, end - start), None if times is None else _slice_times(times, start, end))
        else:
            yield columns.chunk(pa, pc, start, end)


_Times = tuple[npt.NDArray[np.float64], npt.NDArray[np.bool_], npt.NDArray[np.bool_]]
"""Event times of a record batch: the seconds, which rows have no ``ts``, which rows' ``ts`` the fast path cannot take."""


def _slice_times(times: _Times, start: int, end: int) -> _Times:
    return times[0][start:end], times[1][start:end], times[2][start:end]


def _event_times(pa: Any, pc: Any, column: Any, kind: str, unit: str | None) -> _Times:
    """The ``ts`` column in epoch seconds (float64), where it is null, and where it is not a valid time as it stands."""
    missing = _array(column.is_null())
    if kind == "null":
        seconds = np.zeros(len(column), np.float64)
    elif kind == "time":  # integers of the unit: exact division, so "...T00:00:00.123Z" and 123 ms give the same float
        ticks = pc.fill_null(column.cast(pa.int64()), 0).to_numpy()
        seconds = (ticks // 1000) / 1e6 if unit == "ns" else ticks / _TICKS_PER_SECOND[unit or "us"]
    elif kind == "str":
        seconds = np.array([_seconds(text) for text in column.to_pylist()], dtype=np.float64)
    else:
        seconds = pc.fill_null(column.cast(pa.float64()), 0.0).to_numpy()
    seconds = np.asarray(seconds, dtype=np.float64)
    bad = ~missing & ~((seconds >= 0.0) & (seconds <= MAX_TIMESTAMP))  # NaN fails both
    return seconds, missing, bad


def _seconds(text: str | None) -> float:
    """An RFC 3339 string as the schema parses it; NaN (checked later) when it does not parse."""
    if text is None:
        return 0.0
    try:
        return parse_timestamp(text)
    except ValueError:
        return math.nan


@dataclass(frozen=True, slots=True)
class _Columns:
    """One record batch's fast-path columns, as arrays over all its rows."""

    batch: Any
    seconds: npt.NDArray[np.float64]
    missing_ts: npt.NDArray[np.bool_]
    labeled: npt.NDArray[np.bool_]
    correct: npt.NDArray[np.bool_]
    role: npt.NDArray[np.int8]
    score: npt.NDArray[np.float64]
    suspect: npt.NDArray[np.bool_]
    """Rows some column check failed: they go through dicts and the schema."""

    @classmethod
    def of(cls, pa: Any, pc: Any, batch: Any, times: _Times | None) -> _Columns:
        n = batch.num_rows
        names = batch.schema.names
        model = batch.column("model")
        if pa.types.is_dictionary(model.type):  # the length of each distinct id, then each row's
            lengths = np.append(pc.utf8_length(model.dictionary).to_numpy(zero_copy_only=False), 0)
            lengths = lengths[pc.fill_null(model.indices, len(model.dictionary)).to_numpy()]
        else:
            lengths = pc.fill_null(pc.utf8_length(model), 0).to_numpy()
        suspect = ~((lengths >= 1) & (lengths <= MAX_MODEL_ID_LENGTH))
        has_prediction = _valid(batch, "prediction", n)
        has_label = _valid(batch, "label", n)
        has_event_id = _valid(batch, "event_id", n)
        labeled = has_prediction & has_label
        if labeled.any():
            correct = _array(pc.fill_null(pc.equal(batch.column("prediction"), batch.column("label")), False))
        else:
            correct = np.zeros(n, dtype=bool)
        label_event = ~has_prediction & has_label & has_event_id
        suspect |= ~has_prediction & ~label_event
        role = np.where(
            label_event, Role.LABEL, np.where(has_prediction & ~has_label & has_event_id, Role.PENDING, Role.PREDICTION)
        )
        if "score" in names:
            score_column = batch.column("score").cast(pa.float64())
            score = pc.fill_null(score_column, math.nan).to_numpy()
            suspect |= _valid(batch, "score", n) & ~((score >= 0.0) & (score <= 1.0))
        else:
            score = np.full(n, math.nan)
        if times is None:
            seconds, missing_ts = np.zeros(n, np.float64), np.ones(n, dtype=bool)
        else:
            seconds, missing_ts, bad = times
            suspect |= bad
        return cls(batch, seconds, missing_ts, labeled, correct, role.astype(np.int8), score, suspect)

    def chunk(self, pa: Any, pc: Any, start: int, end: int) -> Chunk:
        """Rows ``[start, end)``, all passing the checks, as the chunk ``validate`` would make of their dicts."""
        rows = self.batch.slice(start, end - start)
        models, codes = _models(pa, pc, rows.column("model"))
        role = self.role[start:end]
        joining = np.flatnonzero(role != Role.PREDICTION)
        key = np.zeros(end - start, dtype=np.uint64)
        if joining.size:
            key[joining] = event_keys(rows.column("event_id").take(pa.array(joining)).to_pylist())
        names = rows.schema.names
        events = EventBatch(
            models=models,
            model_codes=codes,
            labeled=self.labeled[start:end],
            correct=self.correct[start:end],
            event_time=self.seconds[start:end],
            source_index=np.arange(end - start, dtype=np.int64),
            predictions=_objects(pa, pc, rows.column("prediction")) if "prediction" in names else _nones(end - start),
            labels=_objects(pa, pc, rows.column("label")) if "label" in names else _nones(end - start),
            score=self.score[start:end],
            role=role,
            key=key,
        )
        missing = self.missing_ts[start:end]
        return Chunk(end - start, events, [], missing if missing.any() else None)


def _valid(batch: Any, name: str, n: int) -> npt.NDArray[np.bool_]:
    """Where the column ``name`` is not null (nowhere when the file has no such column)."""
    if name not in batch.schema.names:
        return np.zeros(n, dtype=bool)
    column = batch.column(name)
    if column.null_count == 0:
        return np.ones(n, dtype=bool)
    if column.null_count == n:
        return np.zeros(n, dtype=bool)
    return _array(column.is_valid())


def _array(column: Any) -> npt.NDArray[Any]:
    return np.asarray(column.to_numpy(zero_copy_only=False))


def _models(pa: Any, pc: Any, column: Any) -> tuple[tuple[str, ...], npt.NDArray[np.int32]]:
    """The distinct model ids in order of first appearance (as ``validate`` numbers them) and each row's code."""
    if pa.types.is_dictionary(column.type):  # the file's dictionary: renumber the codes used, by first appearance
        indices = column.indices.to_numpy()
        used = pc.unique(column.indices).to_numpy()  # in order of first appearance
        models = tuple(column.dictionary.take(pa.array(used)).to_pylist())
        if len(set(models)) == len(models):
            renumber = np.zeros(len(column.dictionary), dtype=np.int32)
            renumber[used] = np.arange(len(used), dtype=np.int32)
            return models, renumber[indices]
        column = column.dictionary_decode()  # one id under two codes: encode the ids themselves
    encoded = pc.dictionary_encode(column)  # the dictionary is in order of first appearance
    codes = np.asarray(encoded.indices.to_numpy(), dtype=np.int32)
    return tuple(encoded.dictionary.to_pylist()), codes


def _objects(pa: Any, pc: Any, column: Any) -> npt.NDArray[np.object_]:
    """The column's values as Python objects (None for null), one object per distinct value, without a loop per row."""
    encoded = pc.dictionary_encode(column)
    distinct = encoded.dictionary.to_pylist()
    values = np.empty(len(distinct) + 1, dtype=object)
    values[:-1] = distinct  # and None last, for the nulls
    indices = encoded.indices
    index: npt.NDArray[np.int32] = pc.fill_null(indices, len(distinct)).to_numpy() if indices.null_count else indices.to_numpy()
    return values[index]


def _nones(n: int) -> npt.NDArray[np.object_]:
    return np.full(n, None, dtype=object)


def _dict_chunk(pa: Any, rows: Any, times: _Times | None) -> Chunk:
    """Rows as the JSON objects they stand for (nulls dropped, ``features.NAME`` gathered), validated by the schema.

    A timestamp ``ts`` becomes its epoch seconds; any other ``ts`` stays as read, so the schema words its problem.
    """
    stamps = None
    if times is not None and pa.types.is_timestamp(rows.schema.field("ts").type):
        seconds, missing, _bad = times
        stamps = [None if gone else value for value, gone in zip(seconds.tolist(), missing.tolist(), strict=True)]
        rows = rows.drop_columns(["ts"])
    objects: list[Any] = []
    for i, row in enumerate(rows.to_pylist()):
        event: dict[str, Any] = {}
        features: dict[str, Any] | None = None
        for name, value in row.items():
            if value is None:
                continue
            if name.startswith(_FEATURE_PREFIX):
                features = {} if features is None else features
                features[name[len(_FEATURE_PREFIX) :]] = value
            elif name == "features" and type(value) is dict:  # a struct: its null fields are absent features
                features = {} if features is None else features
                features.update({key: number for key, number in value.items() if number is not None})
            else:
                event[name] = value
        if features is not None and "features" not in event:
            event["features"] = features
        if stamps is not None and stamps[i] is not None:
            event["ts"] = stamps[i]
        objects.append(event)
    return validate_objects(objects, range(len(objects)), len(objects), [])
