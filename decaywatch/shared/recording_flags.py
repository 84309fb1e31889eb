"""How the offline commands (``replay``, ``baseline``) name the recording they read: ``FILE``, ``--format``, ``--jobs``.

Kept apart from :mod:`decaywatch.recording` (which needs numpy and the core)
so that building the ``decaywatch`` parser stays instant.

>>> format_of("events.CSV"), format_of("-"), format_of("events.csv", "jsonl"), format_of("log.parquet")
('csv', 'jsonl', 'jsonl', 'parquet')
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Final

FORMATS: Final = ("jsonl", "csv", "parquet")
_EXTENSIONS: Final = {".csv": "csv", ".parquet": "parquet"}
MAX_JOBS: Final = 4
"""Default ceiling on worker processes: beyond this the consuming process is the limit."""


def format_of(path: str, explicit: str | None = None) -> str:
    """``explicit`` if given, else by the extension (``.csv``, ``.parquet``), else ``jsonl`` (also for ``-``)."""
    if explicit is not None:
        return explicit
    return "jsonl" if path == "-" else _EXTENSIONS.get(Path(path).suffix.lower(), "jsonl")


def default_jobs() -> int:
    """Worker processes to use by default: the CPUs this process may run on, at most :data:`MAX_JOBS`."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    return max(1, min(cpus, MAX_JOBS))


def add_input_arguments(parser: argparse.ArgumentParser) -> None:
    """``FILE``, ``--format`` and ``--jobs``: how a command reads its recording."""
    parser.add_argument(
        "file", metavar="FILE", help="recorded events: JSON Lines, CSV with a header row, or Parquet ('-' = stdin)"
    )
    parser.add_argument(
        "--format",
        choices=FORMATS,
        help="input format (default: csv for a .csv file, parquet for a .parquet file, else jsonl, also for stdin)",
    )
    parser.add_argument(
        "--jobs",
        type=_positive_int,
        default=default_jobs(),
        metavar="N",
        help=f"processes decoding JSON Lines (default: the CPUs available, at most {MAX_JOBS}); the results do not depend on it",
    )


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value
