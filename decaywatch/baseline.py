"""``decaywatch baseline FILE``: each model's baseline accuracy, measured on a reference file, as config TOML.

The reference file is a recording of labeled predictions (JSON Lines or CSV,
read exactly as ``decaywatch replay`` reads it).  For every model with
labeled events the command writes one table of the config format::

    [models.churn-model]
    baseline = 0.8512
    baseline_date = 2024-01-01
    # from 10,000 labeled events (8,512 correct)

``baseline`` is the fraction of labeled events whose prediction equals the
label, rounded to four decimals; ``baseline_date`` is ``--date``, else the UTC
date of the model's newest labeled event.  Model names that are not bare TOML
keys (``A-Z a-z 0-9 _ -``) are quoted: ``[models."churn.v2"]``.  The output
loads back with ``tomllib`` into ``MonitorConfig.from_mapping``, so it can be
pasted into (or passed as) ``--config``.  Unlabeled events and invalid lines
are skipped; the counts go to standard error.

Exit codes: 0 when the file was read, 1 when it (or ``--output``) could not be
read or written, 2 for a usage error.

>>> stats = {"churn.v2": ModelStats(labeled=4, correct=3, newest=1704067200.0)}
>>> print(to_toml(stats), end="")
[models."churn.v2"]
baseline = 0.7500
baseline_date = 2024-01-01
# from 4 labeled events (3 correct)
"""

from __future__ import annotations

import argparse
import contextlib
import re
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Final

from decaywatch.shared.recording_flags import add_input_arguments, format_of

if TYPE_CHECKING:  # the reader needs numpy: imported when a measurement runs, not when the parser is built
    from decaywatch.recording import RecordedBatch, RejectionTally

DIGITS: Final = 4
"""Decimals of the written baseline."""

_BARE_KEY: Final = re.compile(r"[A-Za-z0-9_-]+")
_ESCAPES: Final = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r"}


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "baseline",
        help="measure each model's baseline accuracy on a reference file; print it as config TOML",
        description="Measure each model's baseline accuracy (correct / labeled, to 4 decimals) on a file of labeled "
        "predictions (JSON Lines or CSV, read as by 'decaywatch replay') and print it as [models.NAME] tables of "
        "the --config format.",
        epilog="exit codes: 0 measured, 1 input unreadable or output unwritable, 2 usage error.",
    )
    add_input_arguments(parser)
    parser.add_argument("--output", "-o", type=Path, metavar="FILE.toml", help="write the TOML here instead of stdout")
    parser.add_argument(
        "--date",
        type=_iso_date,
        metavar="YYYY-MM-DD",
        help="baseline_date for every model (default: the date of each model's newest labeled event, UTC)",
    )
    parser.set_defaults(run=run)
    return parser


def _iso_date(text: str) -> str:
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
        try:
            return date.fromisoformat(text).isoformat()
        except ValueError:
            pass
    raise argparse.ArgumentTypeError(f"not a YYYY-MM-DD date: {text!r}")


@dataclass(slots=True)
class ModelStats:
    """One model's labeled events in the reference file."""

    labeled: int = 0
    correct: int = 0
    newest: float = float("-inf")
    """Event time of the newest labeled event (epoch seconds)."""

    @property
    def accuracy(self) -> float:
        return self.correct / self.labeled


def measure(batches: Iterable[RecordedBatch], tally: RejectionTally | None = None) -> dict[str, ModelStats]:
    """Labeled and correct counts and the newest labeled event time, per model, in order of first appearance."""
    import numpy as np

    stats: dict[str, ModelStats] = {}
    for batch in batches:
        if tally is not None:
            tally.add(batch.rejections)
        events = batch.events
        for model in events.models:
            stats.setdefault(model, ModelStats())
        labeled = events.labeled
        codes = events.model_codes[labeled]
        if not codes.size:
            continue
        k = len(events.models)
        counts = np.bincount(codes, minlength=k)
        correct = np.bincount(codes, weights=events.correct[labeled], minlength=k)
        newest = np.full(k, -np.inf)
        np.maximum.at(newest, codes, events.event_time[labeled])
        for code, model in enumerate(events.models):
            entry = stats[model]
            entry.labeled += int(counts[code])
            entry.correct += int(correct[code])
            entry.newest = max(entry.newest, float(newest[code]))
    return stats


def toml_key(name: str) -> str:
    """``name`` as a TOML key: bare when TOML allows it, else a quoted basic string.

    >>> toml_key("churn-model"), toml_key("churn.v2"), toml_key('say "hi"')
    ('churn-model', '"churn.v2"', '"say \\\\"hi\\\\""')
    """
    if _BARE_KEY.fullmatch(name):
        return name
    escaped = "".join(_ESCAPES.get(ch) or (f"\\u{ord(ch):04X}" if ord(ch) < 0x20 or ord(ch) == 0x7F else ch) for ch in name)
    return f'"{escaped}"'


def to_toml(stats: Mapping[str, ModelStats], baseline_date: str | None = None) -> str:
    """``[models.NAME]`` tables for every model with labeled events, in name order."""
    tables = []
    for name in sorted(stats):
        entry = stats[name]
        if not entry.labeled:
            continue
        measured = baseline_date or datetime.fromtimestamp(entry.newest, tz=UTC).date().isoformat()
        tables.append(
            f"[models.{toml_key(name)}]\n"
            f"baseline = {entry.accuracy:.{DIGITS}f}\n"
            f"baseline_date = {measured}\n"
            f"# from {entry.labeled:,} labeled events ({entry.correct:,} correct)\n"
        )
    return "\n".join(tables)


def run(
    args: argparse.Namespace,
    *,
    stdin: IO[bytes] | None = None,
    stdout: IO[str] | None = None,
    stderr: IO[str] | None = None,
) -> int:
    """Carry out ``decaywatch baseline``; the keyword arguments default to the process's streams."""
    from decaywatch.recording import RejectionTally, open_recording, read_batches

    out = sys.stdout if stdout is None else stdout
    err = sys.stderr if stderr is None else stderr
    fmt = format_of(args.file, args.format)
    tally = RejectionTally()
    try:
        with open_recording(args.file, stdin) as source, contextlib.closing(read_batches(source, fmt, jobs=args.jobs)) as batches:
            stats = measure(batches, tally)
    except OSError as error:
        print(f"decaywatch baseline: cannot read {args.file}: {error.strerror or error}", file=err)
        return 1
    document = to_toml(stats, args.date)
    if args.output is None:
        out.write(document)
        out.flush()
    else:
        try:
            args.output.write_text(document, encoding="utf-8")
        except OSError as error:
            print(f"decaywatch baseline: cannot write {args.output}: {error.strerror or error}", file=err)
            return 1
    for name in sorted(stats):
        entry = stats[name]
        if entry.labeled:
            print(f"{name}: baseline {entry.accuracy:.{DIGITS}f} from {entry.labeled:,} labeled events", file=err)
        else:
            print(f"{name}: no labeled events, no baseline", file=err)
    if tally.total:
        print(f"invalid lines skipped: {tally.total:,}", file=err)
        for line in tally.lines():
            print(line, file=err)
    if args.output is not None:
        print(f"wrote {args.output}", file=err)
    return 0
