"""Freed memory back to the operating system: glibc keeps it, the service hands it back now and then.

The core's per-model arrays (windows, the join's waiting predictions) are
replaced by larger ones batch after batch while a fleet's state grows.  glibc
returns freed memory to the system only from the top of its heap, so the
holes left between long-lived arrays stay in the process: with 1,000 models
each gaining waiting predictions, RSS grew by about 260 bytes per waiting
prediction whose rows hold 29, and fell to about 56 after ``malloc_trim``
(``python -m tests.benchmarks.bench_join``).  A trim after a batch of such a
heap took about 20 ms here, so the service trims at most every
``TRIM_INTERVAL_S``.  Other C libraries (musl, macOS) have no ``malloc_trim``:
there the service does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from collections.abc import Callable

TRIM_INTERVAL_S = 10.0
"""The service trims the heap at most this often."""


def heap_trimmer() -> Callable[[], object] | None:
    """glibc's ``malloc_trim(0)`` as a callable, or ``None`` where the C library has none."""
    name = ctypes.util.find_library("c") or "libc.so.6"
    try:
        trim = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return lambda: trim(0)
