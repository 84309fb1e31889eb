"""Recorded prediction events in a file, read back as validated batches in file order.

A recording is JSON Lines in the event format (one event per line) or CSV
with the same columns under a header row.  Both offline commands read it
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
    processes (threads would queue on the GIL).  Results are consumed in file
    order, and line numbers and missing times are assigned in the caller's
    process, so the batches are identical whatever ``jobs`` is; the workers
    start only once the file proves longer than one chunk.

>>> import io
>>> data = b'{"model": "m", "prediction": 1, "label": 1, "ts": 5}\\n\\n{"model": "m", "prediction": 0}\\n'
>>> [(b.events.source_index.tolist(), b.events.event_time.tolist(), [(r.index, r.reason) for r in b.rejections])
...  for b in read_batches(io.BytesIO(data), "jsonl")]
[([0, 2], [5.0, 5.0], [(1, 'malformed_json')])]
"""

from __future__ import annotations

import argparse
import codecs
import contextlib
import csv
import dataclasses
import gc
import io
import multiprocessing
import os
import sys
from collections import Counter, deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from multiprocessing.pool import AsyncResult, Pool
from pathlib import Path
from typing import IO, Any, Final

import numpy as np
import numpy.typing as npt

from monitor.codec import MAX_MESSAGE_BYTES, decode
from monitor.schema import EventBatch, Reason, Rejection, validate

FORMATS: Final = ("jsonl", "csv")
READ_BYTES: Final = 8 << 20
"""Bytes per read of a JSON Lines file."""
CHUNK_BYTES: Final = 2 << 20
"""Bytes of JSON Lines per decode-and-validate step (about 11,000 of the producer's events)."""
CSV_CHUNK_ROWS: Final = 16_384
"""CSV rows per validate step."""
MAX_JOBS: Final = 4
"""Default ceiling on worker processes: beyond this the consuming process is the limit."""

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
class _Chunk:
    """What one parsing step found in ``lines`` consecutive lines, numbered from 0 within the chunk."""

    lines: int
    events: EventBatch
    rejections: list[Rejection]
    missing_ts: npt.NDArray[np.bool_] | None
    """Which valid events had no ``ts`` (``None`` when all had one): their time is filled in in file order."""


def format_of(path: str, explicit: str | None = None) -> str:
    """``explicit`` if given, else ``csv`` for a ``.csv`` file and ``jsonl`` for anything else (and ``-``)."""
    if explicit is not None:
        return explicit
    return "csv" if path != "-" and Path(path).suffix.lower() == ".csv" else "jsonl"


def default_jobs() -> int:
    """Worker processes to use by default: the CPUs this process may run on, at most :data:`MAX_JOBS`."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    return max(1, min(cpus, MAX_JOBS))


def add_input_arguments(parser: argparse.ArgumentParser) -> None:
    """``FILE``, ``--format`` and ``--jobs``: how a command reads its recording."""
    parser.add_argument("file", metavar="FILE", help="recorded events: JSON Lines, or CSV with a header row ('-' = stdin)")
    parser.add_argument(
        "--format",
        choices=FORMATS,
        help="input format (default: csv for a .csv file, else jsonl, also for stdin)",
    )
    parser.add_argument(
        "--jobs",
        type=_positive_int,
        default=default_jobs(),
        metavar="N",
        help=f"processes decoding JSON Lines (default: the CPUs available, at most {MAX_JOBS}); "
        "the results do not depend on it",
    )


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


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
) -> Iterator[RecordedBatch]:
    """Every line of the recording in ``source``, as validated batches in file order.

    Raises ``OSError`` if reading fails; bad lines are rejections, never errors.
    """
    chunks: Iterable[_Chunk]
    if fmt == "jsonl":
        blocks = _jsonl_blocks(source, chunk_bytes, read_bytes)
        chunks = _parse_in_parallel(blocks, jobs) if jobs > 1 else map(_parse_block, blocks)
    elif fmt == "csv":
        chunks = _csv_chunks(source, csv_chunk_rows)
    else:
        raise ValueError(f"unknown format {fmt!r}; expected one of {FORMATS}")
    first, carry = 0, 0.0
    for chunk in chunks:
        batch, carry = _place(chunk, first, carry)
        first += chunk.lines
        yield batch


def _place(chunk: _Chunk, first: int, carry: float) -> tuple[RecordedBatch, float]:
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


def _jsonl_blocks(source: IO[bytes], chunk_bytes: int, read_bytes: int) -> Iterator[bytes]:
    """The file as blocks of whole lines (each ending in ``\\n``, but maybe the very last), about ``chunk_bytes`` each."""
    tail = b""
    data = source.read(read_bytes).removeprefix(codecs.BOM_UTF8)  # a byte order mark is not part of line 0
    while data:
        end = data.rfind(b"\n")
        if end < 0:  # no line ends in this read: keep (at most) what the codec needs to reject the line
            tail = (tail + data)[:_LONG_LINE]
        else:
            data = tail + data if tail else data
            end += len(tail)
            start = 0
            while start <= end:
                cut = data.find(b"\n", start + chunk_bytes - 1, end + 1)
                cut = end if cut < 0 else cut
                yield data[start : cut + 1]
                start = cut + 1
            tail = data[end + 1 :][:_LONG_LINE]
        data = source.read(read_bytes)
    if tail:
        yield tail


def _parse_block(block: bytes) -> _Chunk:
    """Decode and validate one block of JSON lines (in a worker process when ``jobs > 1``)."""
    lines = block.split(b"\n")
    if block.endswith(b"\n"):
        lines.pop()
    with _gc_paused():
        objects, positions, undecodable = decode(lines)
        where: Sequence[int] = range(len(objects)) if not undecodable else positions
        return _validate(objects, where, len(lines), undecodable)


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """Hold the cyclic garbage collector while a chunk is parsed.

    Decoding allocates two dicts per event, which would trigger a collection
    every few hundred events, each rescanning the chunk's live objects: about
    a fifth of the parsing time.  JSON values cannot form cycles, so nothing
    is left for the collector; reference counting frees the chunk as usual.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _parse_in_parallel(blocks: Iterator[bytes], jobs: int) -> Iterator[_Chunk]:
    """``map(_parse_block, blocks)``, in order, on ``jobs`` processes once there is more than one block.

    At most ``2 * jobs`` blocks are in flight, so memory stays bounded however
    long the file (``Pool.imap`` would read the whole file ahead).
    """
    first = next(blocks, None)
    if first is None:
        return
    second = next(blocks, None)
    if second is None:
        yield _parse_block(first)
        return
    with _pool(jobs) as pool:
        pending: deque[AsyncResult[_Chunk]] = deque()
        for block in _chain((first, second), blocks):
            pending.append(pool.apply_async(_parse_block, (block,)))
            if len(pending) >= 2 * jobs:
                yield pending.popleft().get()
        while pending:
            yield pending.popleft().get()


def _chain(head: Sequence[bytes], rest: Iterator[bytes]) -> Iterator[bytes]:
    yield from head
    yield from rest


def _pool(jobs: int) -> Pool:
    """A process pool, forked where the platform can (workers start in milliseconds, numpy already loaded)."""
    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else None
    return multiprocessing.get_context(method).Pool(jobs)


# --- CSV ----------------------------------------------------------------------------------------

_NUMERIC: Final = frozenset({"ts", "score"})
_FEATURE_PREFIX: Final = "features."


def _csv_chunks(source: IO[bytes], chunk_rows: int) -> Iterator[_Chunk]:
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
                yield _validate(objects, positions, chunk_rows, rejections)
                objects, positions, rejections = [], [], []
        if positions or rejections:
            yield _validate(objects, positions, len(positions) + len(rejections), rejections)
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
    for name, cell in zip(columns, row):
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


def _validate(objects: list[Any], positions: Sequence[int], lines: int, rejected: list[Rejection]) -> _Chunk:
    """The core's validation of decoded objects at ``positions`` among ``lines`` lines; ``rejected`` failed earlier."""
    fallback = np.zeros(len(objects), dtype=np.float64)  # a placeholder: the real time is filled in in file order
    events, invalid = validate(objects, fallback, positions)
    rejections = sorted(rejected + invalid, key=lambda r: r.index) if rejected else invalid
    try:
        missing = [o.get("ts") is None for o in objects]
    except AttributeError:  # a JSON value that is not an object (rejected anyway)
        missing = [type(o) is not dict or o.get("ts") is None for o in objects]
    if not any(missing):
        return _Chunk(lines, events, rejections, None)
    by_line = np.zeros(lines, dtype=bool)
    by_line[np.asarray(positions, dtype=np.int64)] = missing
    return _Chunk(lines, events, rejections, by_line[events.source_index])


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
