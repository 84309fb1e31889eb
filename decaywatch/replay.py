"""``decaywatch replay FILE``: the monitor's core, offline, over recorded events in file order.

The same policy as ``decaywatch monitor`` (``--config`` and the policy
flags), the same validation and the same alert rules; only the transport
differs.  Each alert event is written to standard output as one JSON line,
with one field more than the published event: ``index``, the 0-based line of
the input whose event triggered it.  ``emitted_at`` is that event's event
time, not the wall clock, so replaying a file gives the same bytes every time.
A per-model summary and the invalid lines by reason go to standard error.

Exit codes: 0 when the file was replayed (whatever it contained), 1 when it
could not be read (or the output was closed early), 2 for a usage or
configuration error.

>>> import io
>>> import orjson
>>> from decaywatch.monitor.config import ModelPolicy, MonitorConfig
>>> from decaywatch.monitor.engine import Monitor
>>> from decaywatch.recording import read_batches
>>> policy = ModelPolicy(baseline=0.85, windows=(4,), min_samples=4, decision="window")
>>> events = b"".join(b'{"model": "m", "prediction": 1, "label": %d, "ts": %d}\\n' % (i < 2, i) for i in range(6))
>>> out = io.BytesIO()
>>> totals = replay(read_batches(io.BytesIO(events), "jsonl"), Monitor(MonitorConfig(policy)), out.write)
>>> alert = orjson.loads(out.getvalue())
>>> alert["status"], alert["accuracy"], alert["index"], alert["emitted_at"]
('firing', 0.5, 3, '1970-01-01T00:00:03.000Z')
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING, Any

from decaywatch.shared.policy_flags import add_policy_arguments, load_config
from decaywatch.shared.recording_flags import add_input_arguments, format_of

if TYPE_CHECKING:  # the core and the reader need numpy: imported when a replay runs, not when the parser is built
    from decaywatch.monitor.engine import Monitor
    from decaywatch.recording import RecordedBatch, RejectionTally

_DESCRIPTION = """\
Replay recorded prediction events (JSON Lines, CSV with a header row, or Parquet) through the monitor's
core, in file order, with the same policy options as 'decaywatch monitor'.  Alert events go to
stdout as JSON lines with one extra field, 'index': the 0-based input line of the triggering
event (CSV: the header not counted).  emitted_at is the triggering event's event time, not the
wall clock, so the output is the same on every run.  A per-model summary and the invalid lines
by reason go to stderr.
"""
_EPILOG = """\
events without ts take the time of the previous valid event in the file (1970-01-01 before the first).
CSV: empty cells are absent fields; ts and score are numbers when they parse as numbers; prediction and
label are compared as text ("1" equals "1", not "1.0"); columns features.NAME form the features object.
Parquet (pip install 'decaywatch[parquet]'): the same columns, a null is an absent field, rows numbered from 0.
exit codes: 0 replayed, 1 input unreadable or output closed, 2 usage or configuration error.
"""


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "replay",
        help="run the monitor offline over a file of recorded events; alerts as JSON lines on stdout",
        description=_DESCRIPTION,
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_input_arguments(parser)
    add_policy_arguments(parser)
    parser.set_defaults(run=run)
    return parser


def _tally() -> RejectionTally:
    from decaywatch.recording import RejectionTally

    return RejectionTally()


@dataclass(slots=True)
class ReplayTotals:
    """What a replay went through."""

    lines: int = 0
    valid: int = 0
    alerts: int = 0
    invalid: RejectionTally = field(default_factory=_tally)


def replay(batches: Iterable[RecordedBatch], monitor: Monitor, write: Callable[[bytes], Any]) -> ReplayTotals:
    """Feed ``batches`` to ``monitor`` in order; ``write`` each alert event as a JSON line (bytes)."""
    import orjson

    totals = ReplayTotals()
    dumps = orjson.dumps
    for batch in batches:
        totals.lines += batch.lines
        totals.valid += len(batch.events)
        totals.invalid.add(batch.rejections)
        transitions = monitor.process(batch.events)
        if transitions:
            out = []
            for transition in transitions:
                event = transition.to_event(emitted_at=transition.event_time)
                event["index"] = transition.source_index
                out.append(dumps(event, option=orjson.OPT_APPEND_NEWLINE))
            write(b"".join(out))
            totals.alerts += len(transitions)
    return totals


def run(
    args: argparse.Namespace,
    *,
    stdin: IO[bytes] | None = None,
    stdout: IO[bytes] | None = None,
    stderr: IO[str] | None = None,
    clock: Callable[[], float] = time.perf_counter,
) -> int:
    """Carry out ``decaywatch replay``; the keyword arguments default to the process's streams and clock."""
    from decaywatch.monitor.config import ConfigError
    from decaywatch.monitor.engine import Monitor
    from decaywatch.recording import open_recording, read_batches
    from decaywatch.table import render

    out = sys.stdout.buffer if stdout is None else stdout
    err = sys.stderr if stderr is None else stderr
    try:
        config = load_config(args)
    except ConfigError as error:
        print(f"decaywatch replay: {error}", file=err)
        return 2
    fmt = format_of(args.file, args.format)
    monitor = Monitor(config)
    output = _Output(out)
    started = clock()
    try:
        with open_recording(args.file, stdin) as source, contextlib.closing(read_batches(source, fmt, jobs=args.jobs)) as batches:
            totals = replay(batches, monitor, output.write)  # closing: worker processes stop even on an error
        output.flush()
    except _OutputClosedError:
        print("decaywatch replay: output closed early", file=err)
        if stdout is None:
            _silence_stdout()
        return 1
    except OSError as error:
        print(f"decaywatch replay: cannot read {args.file}: {error.strerror or error}", file=err)
        return 1
    elapsed = clock() - started
    for line in render(monitor.snapshot(), totals.invalid.total, "invalid lines"):
        print(line, file=err)
    if totals.invalid.total:
        print("invalid lines by reason:", file=err)
        for line in totals.invalid.lines():
            print(line, file=err)
    rate = f" ({totals.lines / elapsed:,.0f} lines/s)" if elapsed > 0 else ""
    print(
        f"replayed {totals.lines:,} lines of {args.file} ({fmt}): {totals.valid:,} valid events, "
        f"{totals.invalid.total:,} invalid, {totals.alerts:,} alert events, in {elapsed:.2f} s{rate}",
        file=err,
    )
    return 0


class _OutputClosedError(Exception):
    """Writing the alerts failed (e.g. ``decaywatch replay FILE | head``): not a read error."""


class _Output:
    def __init__(self, stream: IO[bytes]) -> None:
        self._stream = stream

    def write(self, data: bytes) -> None:
        try:
            self._stream.write(data)
        except OSError as error:
            raise _OutputClosedError(str(error)) from error

    def flush(self) -> None:
        try:
            self._stream.flush()
        except OSError as error:
            raise _OutputClosedError(str(error)) from error


def _silence_stdout() -> None:
    """After a broken pipe, point stdout at /dev/null so the interpreter's exit flush does not complain."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass
