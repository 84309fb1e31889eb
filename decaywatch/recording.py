"""Recorded prediction events in a file, read back as validated batches in file order.

A recording is JSON Lines in the event format (one event per line), CSV
with the same columns under a header row, or Parquet with those columns
(:mod:`decaywatch.parquet`, for which the numbers below are row numbers).  Both offline commands read it
through :func:`read_batches`, which hands the core's codec and schema
(``monitor.codec.decode``, ``monitor.schema.validate``) one chunk of lines at
a time and numbers everything by its **0-based line in the input**: for CSV
the header is not counted (a row is one line unless a quoted cell spans
lines).  ``EventBatch.source_index`` and ``Rejection.index`` are those numbers.

JSON Lines
    The file is read in large blocks (8 MiB), cut at line ends into chunks
    of about 2 MiB, and each chunk split at ``\\n``; a line is never joined
    with its neighbours, so each one is accepted or rejected on its own.  A
    blank line is a line, rejected as ``malformed_json``; a final line without
    ``\\n`` still counts.  A line above the codec's 1 MiB limit is rejected as
    ``message_too_large`` without ever being held whole in memory.

CSV
    Cells are text; an empty cell is an absent field.  ``ts`` and ``score``
    become numbers when they parse as numbers (otherwise ``ts`` may be an
    RFC 3339 string).  ``prediction`` and ``label`` stay **text**, and a
    prediction is correct when the two strings are equal: a ``1``/``0``
    column compares as it reads (but ``1`` and ``1.0`` differ).  A column
    ``features.NAME`` becomes ``features: {NAME: number}``.  A blank row is
    rejected as ``malformed_json``, a row with more cells than the header as
    ``invalid_field``.

Event time
    An event without ``ts`` takes the time of the previous valid event in the
    file (0.0, i.e. 1970-01-01, before the first), so a replay is
    deterministic; there is no Kafka message time to fall back on.

Parallelism
    JSON Lines chunks can be decoded and validated by ``jobs`` worker
    processes (threads would queue on the GIL).  Workers read a regular file
    themselves, each its own byte range; a pipe is read here and its blocks
    are sent to them.  Results are consumed in file order, and line numbers
    and missing times are assigned in this process, so the batches are the
    same whatever ``jobs`` is.  Workers start only once the input proves
    longer than one chunk; a regular file is read up to the size it had then.

>>> import io
>>> data = b'{"model": "m", "prediction": 1, "label": 1, "ts": 5}\\n\\n{"model": "m", "prediction": 0}\\n'
>>> [(b.events.source_index.tolist(), b.events.event_time.tolist(), [(r.index, r.reason) for r in b.rejections])
...  for b in read_batches(io.BytesIO(data), "jsonl")]
[([0, 2], [5.0, 5.0], [(1, 'malformed_json')])]
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import dataclasses
import io
import itertools
import multiprocessing
import os
import stat
import sys
from collections import Counter, deque
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from dataclasses import dataclass
from multiprocessing.pool import AsyncResult
from typing import IO, Any, Final, Protocol, TypeVar

import numpy as np
import numpy.typing as npt

from decaywatch.monitor.codec import MAX_MESSAGE_BYTES, collector_paused, decode
from decaywatch.monitor.schema import EventBatch, Reason, Rejection, validate
from decaywatch.shared.recording_flags import FORMATS

READ_BYTES: Final = 8 << 20
"""Bytes per read of a JSON Lines file."""
CHUNK_BYTES: Final = 2 << 20
"""Bytes of JSON Lines per decode-and-validate step (about 11,000 of the producer's events)."""
CSV_CHUNK_ROWS: Final = 16_384
"""CSV rows per validate step."""

_LONG_LINE: Final = MAX_MESSAGE_BYTES + 1
"""Bytes of an over-long line worth keeping: enough for the codec to reject it as too large."""


@dataclass(frozen=True, slots=True)
class RecordedBatch:
    """Consecutive lines of a recording: their valid events (the core's columns) and their rejections."""

    first_line: int
    lines: int
    events: EventBatch
    rejections: list[Rejection]


@dataclass(frozen=True, slots=True)
class Chunk:
    """What one parsing step found in ``lines`` consecutive lines, numbered from 0 within the chunk."""

    lines: int
    events: EventBatch
    rejections: list[Rejection]
    missing_ts: npt.NDArray[np.bool_] | None
    """Which valid events had no ``ts`` (``None`` when all had one): their time is filled in in file order."""


@contextlib.contextmanager
def open_recording(path: str, stdin: IO[bytes] | None = None) -> Iterator[IO[bytes]]:
    """The file at ``path`` opened for binary reading, or ``stdin`` (default: the process's) for ``-``.

    Raises ``OSError`` when the file cannot be opened; standard input is never closed.
    """
    if path == "-":
        yield sys.stdin.buffer if stdin is None else stdin
        return
    with open(path, "rb") as handle:
        yield handle


def read_batches(
    source: IO[bytes],
    fmt: str,
    *,
    jobs: int = 1,
    chunk_bytes: int = CHUNK_BYTES,
    read_bytes: int = READ_BYTES,
    csv_chunk_rows: int = CSV_CHUNK_ROWS,
    parquet_rows: int | None = None,
) -> Generator[RecordedBatch, None, None]:
    """Every line of the recording in ``source``, as validated batches in file order.

    ``parquet_rows``: rows per Parquet record batch (default ``decaywatch.parquet.BATCH_ROWS``).

    Raises ``OSError`` if reading fails; bad lines are rejections, never errors.
    """
    chunks: Iterable[Chunk]
    if fmt == "jsonl":
        chunks = _jsonl_chunks(source, jobs, chunk_bytes, read_bytes)
    elif fmt == "csv":
        chunks = _csv_chunks(source, csv_chunk_rows)
    elif fmt == "parquet":
        from decaywatch.parquet import BATCH_ROWS, parquet_chunks  # pyarrow is an optional extra: only for Parquet

        chunks = parquet_chunks(source, parquet_rows or BATCH_ROWS)
    else:
        raise ValueError(f"unknown format {fmt!r}; expected one of {FORMATS}")
    first, carry = 0, 0.0
    for chunk in chunks:
        batch, carry = _place(chunk, first, carry)
        first += chunk.lines
        yield batch


def _place(chunk: Chunk, first: int, carry: float) -> tuple[RecordedBatch, float]:
    """Number the chunk's lines from ``first``, and give each event without ``ts`` the previous valid event's time.

    ``carry`` is the time of the last valid event before the chunk; returns the batch and the new carry.
    """
    events = chunk.events
    times = events.event_time
    if chunk.missing_ts is not None:
        n = times.shape[0]
        source = np.where(chunk.missing_ts, -1, np.arange(n))
        np.maximum.accumulate(source, out=source)
        times = np.where(source >= 0, times[np.maximum(source, 0)], carry)
    events = dataclasses.replace(events, event_time=times, source_index=events.source_index + first)
    rejections = [Rejection(r.index + first, r.reason, r.detail) for r in chunk.rejections]
    last = float(times[-1]) if times.shape[0] else carry
    return RecordedBatch(first, chunk.lines, events, rejections), last


# --- JSON Lines ---------------------------------------------------------------------------------


def _jsonl_chunks(source: IO[bytes], jobs: int, chunk_bytes: int, read_bytes: int) -> Iterator[Chunk]:
    """Parsed chunks of a JSON Lines recording, in file order.

    With workers, a regular file is not even read here: each worker reads its
    own byte range (``os.pread`` on the inherited descriptor), so this process
    only finds line ends near the range boundaries.  A pipe is read here and
    its blocks are sent to the workers.
    """
    fd = _regular_file(source) if jobs > 1 and _FORK else None
    if fd is not None:
        ranges = ((fd, start, end, read_bytes) for start, end in _ranges(fd, source.tell(), chunk_bytes))
        for chunks in _in_parallel(_parse_range, ranges, jobs):
            yield from chunks
        return
    blocks = _jsonl_blocks(source, chunk_bytes, read_bytes)
    if jobs > 1:
        yield from _in_parallel(_parse_block, ((block,) for block in blocks), jobs)
    else:
        yield from map(_parse_block, blocks)


class _Readable(Protocol):
    def read(self, size: int, /) -> bytes: ...


def _jsonl_blocks(source: _Readable, chunk_bytes: int, read_bytes: int, at_start: bool = True) -> Iterator[bytes]:
    """The stream as blocks of whole lines (each ending in ``\\n``, but maybe the very last), about ``chunk_bytes`` each.

    ``at_start``: the stream starts at the beginning of the file, where a UTF-8
    byte order mark is dropped (it is not part of line 0).
    """
    tail = b""
    for read in _reads(source, read_bytes, at_start):
        end = read.rfind(b"\n")
        if end < 0:  # no line ends in this read: keep (at most) what the codec needs to reject the line
            tail = (tail + read)[:_LONG_LINE]
            continue
        data = tail + read if tail else read
        end += len(tail)
        start = 0
        while start <= end:
            cut = data.find(b"\n", start + chunk_bytes - 1, end + 1)
            cut = end if cut < 0 else cut
            yield data[start : cut + 1]
            start = cut + 1
        tail = data[end + 1 :][:_LONG_LINE]
    if tail:
        yield tail


def _reads(source: _Readable, read_bytes: int, at_start: bool) -> Iterator[bytes]:
    data = source.read(max(read_bytes, len(codecs.BOM_UTF8)))
    if at_start:
        data = data.removeprefix(codecs.BOM_UTF8)
    if data:
        yield data
    while data := source.read(read_bytes):
        yield data


def _parse_block(block: bytes) -> Chunk:
    """Decode and validate one block of JSON lines (in a worker process when ``jobs > 1``)."""
    lines = block.split(b"\n")
    if block.endswith(b"\n"):
        lines.pop()
    with collector_paused():  # until the objects are freed (see ``codec.parse``)
        objects, positions, undecodable = decode(lines)
        chunk = validate_objects(objects, range(len(objects)) if not undecodable else positions, len(lines), undecodable)
        del objects
    return chunk


# Reading a regular file in byte ranges, one per worker task.

_FORK: Final = "fork" in multiprocessing.get_all_start_methods()
_SCAN_BYTES: Final = 64 << 10


def _regular_file(source: IO[bytes]) -> int | None:
    """The descriptor of ``source`` if it is a regular file (which workers can read at any offset)."""
    try:
        fd = source.fileno()
        return fd if stat.S_ISREG(os.fstat(fd).st_mode) else None
    except (AttributeError, OSError, ValueError):  # io.UnsupportedOperation is an OSError and a ValueError
        return None


def _ranges(fd: int, start: int, chunk_bytes: int) -> Iterator[tuple[int, int]]:
    """Byte ranges ``[start, end)`` of whole lines, about ``chunk_bytes`` each, up to the file's size now."""
    size = os.fstat(fd).st_size
    while start < size:
        end = _line_end(fd, start + chunk_bytes, size)
        yield start, end
        start = end


def _line_end(fd: int, position: int, size: int) -> int:
    """The offset just past the first line end at or after ``position - 1``, or ``size``."""
    offset = position - 1
    while offset < size:
        data = os.pread(fd, _SCAN_BYTES, offset)
        if not data:
            break
        found = data.find(b"\n")
        if found >= 0:
            return offset + found + 1
        offset += len(data)
    return size


class _FileRange:
    """Bytes ``[start, end)`` of the file open as ``fd``, read like a stream (without moving the file's position)."""

    def __init__(self, fd: int, start: int, end: int) -> None:
        self._fd, self._position, self._end = fd, start, end

    def read(self, size: int) -> bytes:
        data = os.pread(self._fd, min(size, self._end - self._position), self._position)
        self._position += len(data)
        return data


def _parse_range(fd: int, start: int, end: int, read_bytes: int) -> list[Chunk]:
    """Read and parse the whole lines in bytes ``[start, end)`` (one block, unless a line is huge)."""
    blocks = _jsonl_blocks(_FileRange(fd, start, end), max(end - start, 1), read_bytes, at_start=start == 0)
    return [_parse_block(block) for block in blocks]


# Worker processes.

_Result = TypeVar("_Result")


def _in_parallel(function: Callable[..., _Result], tasks: Iterator[tuple[Any, ...]], jobs: int) -> Iterator[_Result]:
    """``function(*task)`` for every task, in order, on ``jobs`` processes once there is more than one task.

    At most ``2 * jobs`` tasks are in flight, so memory stays bounded however
    long the file (``Pool.imap`` would read the whole file ahead).
    """
    first = next(tasks, None)
    if first is None:
        return
    second = next(tasks, None)
    if second is None:
        yield function(*first)
        return
    method = "fork" if _FORK else None  # forked workers start in milliseconds, with numpy already loaded
    with multiprocessing.get_context(method).Pool(jobs) as pool:
        pending: deque[AsyncResult[_Result]] = deque()
        for task in itertools.chain((first, second), tasks):
            pending.append(pool.apply_async(function, task))
            if len(pending) >= 2 * jobs:
                yield pending.popleft().get()
        while pending:
            yield pending.popleft().get()


# --- CSV ----------------------------------------------------------------------------------------

_NUMERIC: Final = frozenset({"ts", "score"})
_FEATURE_PREFIX: Final = "features."


def _csv_chunks(source: IO[bytes], chunk_rows: int) -> Iterator[Chunk]:
    """CSV rows (after the header row) converted to event objects and validated, ``chunk_rows`` at a time."""
    text = io.TextIOWrapper(source, encoding="utf-8-sig", errors="surrogateescape", newline="")
    try:
        rows = csv.reader(text)
        header = _next_row(rows)
        if not isinstance(header, list):
            return
        columns = [name.strip() for name in header]
        objects: list[Any] = []
        positions: list[int] = []
        rejections: list[Rejection] = []
        while True:
            row = _next_row(rows)
            if row is None:
                break
            line = len(positions) + len(rejections)
            converted = row if isinstance(row, Rejection) else _csv_event(columns, row)
            if isinstance(converted, Rejection):
                rejections.append(Rejection(line, converted.reason, converted.detail))
            else:
                objects.append(converted)
                positions.append(line)
            if line + 1 == chunk_rows:
                yield validate_objects(objects, positions, chunk_rows, rejections)
                objects, positions, rejections = [], [], []
        if positions or rejections:
            yield validate_objects(objects, positions, len(positions) + len(rejections), rejections)
    finally:
        text.detach()  # the caller owns the binary stream (it may be stdin)


def _next_row(rows: Iterator[list[str]]) -> list[str] | Rejection | None:
    try:
        return next(rows)
    except StopIteration:
        return None
    except csv.Error as error:
        reason = Reason.MESSAGE_TOO_LARGE if "field limit" in str(error) else Reason.MALFORMED_JSON
        return Rejection(-1, reason, f"not a valid CSV row: {error}")


def _csv_event(columns: list[str], row: list[str]) -> dict[str, Any] | Rejection:
    """One CSV row as an event object, by the rules in the module docstring."""
    if not row:
        return Rejection(-1, Reason.MALFORMED_JSON, "blank line")
    if len(row) > len(columns):
        return Rejection(-1, Reason.INVALID_FIELD, f"row has {len(row)} cells but the header names {len(columns)} columns")
    joined = "".join(row)
    if not joined.isascii():
        try:
            joined.encode("utf-8")
        except UnicodeEncodeError:
            return Rejection(-1, Reason.MALFORMED_JSON, "row is not valid UTF-8")
    event: dict[str, Any] = {}
    features: dict[str, Any] = {}
    for name, cell in zip(columns, row, strict=False):  # a short row: its missing cells are absent fields
        if cell == "":
            continue
        if name in _NUMERIC:
            event[name] = _number_or_text(cell)
        elif name.startswith(_FEATURE_PREFIX):
            features[name[len(_FEATURE_PREFIX) :]] = _number_or_text(cell)
        else:
            event[name] = cell
    if features:
        event["features"] = features
    return event


def _number_or_text(cell: str) -> float | str:
    try:
        return float(cell)
    except ValueError:
        return cell


# --- validation ---------------------------------------------------------------------------------


def validate_objects(objects: list[Any], positions: Sequence[int], lines: int, rejected: list[Rejection]) -> Chunk:
    """The core's validation of decoded objects at ``positions`` among ``lines`` lines; ``rejected`` failed earlier."""
    fallback = np.zeros(len(objects), dtype=np.float64)  # a placeholder: the real time is filled in in file order
    events, invalid = validate(objects, fallback, positions)
    rejections = sorted(rejected + invalid, key=lambda r: r.index) if rejected else invalid
    try:
        missing = [o.get("ts") is None for o in objects]
    except AttributeError:  # a JSON value that is not an object (rejected anyway)
        missing = [type(o) is not dict or o.get("ts") is None for o in objects]
    if not any(missing):
        return Chunk(lines, events, rejections, None)
    by_line = np.zeros(lines, dtype=bool)
    by_line[np.asarray(positions, dtype=np.int64)] = missing
    return Chunk(lines, events, rejections, by_line[events.source_index])


# --- reporting ----------------------------------------------------------------------------------


@dataclass(slots=True)
class RejectionTally:
    """Invalid lines by reason, with the first example of each (for a command's summary)."""

    counts: Counter[str] = dataclasses.field(default_factory=Counter)
    first: dict[str, Rejection] = dataclasses.field(default_factory=dict)

    def add(self, rejections: Sequence[Rejection]) -> None:
        for rejection in rejections:
            self.counts[rejection.reason] += 1
            self.first.setdefault(rejection.reason, rejection)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def lines(self) -> list[str]:
        """One line per reason, most frequent first: count, reason, and where it first happened."""
        out = []
        for reason, count in sorted(self.counts.items(), key=lambda item: (-item[1], item[0])):
            example = self.first[reason]
            out.append(f"  {count:>10,}  {reason}  (first at line {example.index}: {example.detail[:160]})")
        return out
