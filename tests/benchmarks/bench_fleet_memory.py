"""Memory for a fleet: RSS of N models with full default windows, and where the bytes are.

    python -m tests.benchmarks.bench_fleet_memory [--models 1000,10000] [--events-per-model 10000] [--limit-gib 8]

What is measured
    Each N runs in a fresh interpreter (so one N's freed memory, kept by the
    allocator, cannot flatter the next).  The child builds the core exactly as
    ``decaywatch monitor`` does with default flags (``Monitor`` over the default
    ``ModelPolicy``: count windows of 1,000 and 10,000 labeled events, time
    windows 1h, 1d and 7d, the binary metrics' rings, a learned baseline and the
    sequential rule; ``max_models`` raised to N) and feeds every model
    ``--events-per-model`` labeled events (10,000 by default, so both count
    windows are full) through ``validate`` and ``Monitor.process``: batches of
    50,000 events, five models' events each, made with numpy and turned into
    decoded dicts only batch by batch (never 100 million dicts at once).  Event
    times spread each model's events over eight days, so the 7-day window has
    moved too.

    RSS (``VmRSS``, after ``gc.collect()``) is read at four points: after the
    imports and an empty ``Monitor`` (*base*), after feeding (*trackers*), after
    ``Monitor.snapshot()`` (the service keeps one snapshot per model for the
    exporter), and after the exporter rendered one ``/metrics`` page (it keeps
    each model's exposition text until the model changes).  The page itself is
    dropped before that reading.  *KiB per model* is the marginal cost between
    two N (``(RSS(N2) - RSS(N1)) / (N2 - N1)``), which takes the interpreter,
    numpy and the imports out; *per model at N* divides RSS minus base by N.

Where the bytes are
    After the RSS readings the child walks every tracker's object graph (and
    the snapshots, and the exporter's kept text) and sums, by owner (the
    attribute path from the tracker, e.g. ``windows[10000]._groups[0][1]._bits``):
    the ``nbytes`` of every numpy array (a view counts its base once), and
    ``sys.getsizeof`` of every other object (array headers included), each
    object once however many paths reach it, so what all models share (the
    policy, the metric registry) counts once, not per model.  What RSS holds
    beyond these sums is allocator overhead and free space (``unaccounted``).
    The walk reads ``__dict__``, which makes CPython build the dict of an object
    whose attributes were kept inline: the walk comes after the RSS readings.

Nothing here is in the default test run (``make bench`` runs it).
"""

from __future__ import annotations

import argparse
import gc
import itertools
import json
import os
import subprocess
import sys
import time
import types
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tests.benchmarks.bench_throughput import REPO, markdown_table

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB

BATCH_EVENTS = 50_000
EVENTS_PER_MODEL = 10_000
DEFAULT_MODELS = (1000, 10_000)
SPAN_S = 8 * 86_400.0
"""Each model's events cover eight days of event time (more than the 7-day window)."""
BASE_TS = 1_704_067_200.0
ACCURACY = 0.85
LIMIT_GIB = 8.0
SHOWN_BYTES = 400
"""Owners under this many bytes per model are summed into one line of the breakdown."""

_OPAQUE = (type, types.ModuleType, types.FunctionType, types.BuiltinFunctionType, types.MethodType, types.CodeType)
"""Objects the walk does not count or enter: code and types are shared by every model and not state."""


# ------------------------------------------------------------------ pure parts


def owner(path: str, depth: int = 2) -> str:
    """The first ``depth`` attributes of a path, each with its subscripts: what a Python object's bytes are grouped under.

    >>> owner("tracker.windows[10000]._groups[0][1]._bits")
    'tracker.windows[10000]'
    >>> owner("tracker.rules['degradation'].judge._statistic", depth=3)
    "tracker.rules['degradation'].judge"
    """
    steps: list[str] = []
    current, brackets = "", 0
    for char in path:
        brackets += (char == "[") - (char == "]")
        if char == "." and not brackets:
            steps.append(current)
            current = ""
        else:
            current += char
    steps.append(current)
    return ".".join(steps[:depth])


def marginal_kib(points: Mapping[int, float]) -> dict[tuple[int, int], float]:
    """KiB per model between consecutive model counts, from RSS bytes by model count.

    >>> marginal_kib({1000: 300 * 2**20, 3000: 700 * 2**20})
    {(1000, 3000): 204.8}
    """
    counts = sorted(points)
    return {(a, b): (points[b] - points[a]) / (b - a) / KiB for a, b in itertools.pairwise(counts)}


@dataclass
class Tally:
    """Bytes found by the walk, per owner path: numpy data, and other objects (``getsizeof``)."""

    arrays: dict[str, int] = field(default_factory=dict)
    array_count: dict[str, int] = field(default_factory=dict)
    objects: dict[str, int] = field(default_factory=dict)

    def add_array(self, path: str, nbytes: int) -> None:
        self.arrays[path] = self.arrays.get(path, 0) + nbytes
        self.array_count[path] = self.array_count.get(path, 0) + 1

    def add_object(self, path: str, nbytes: int) -> None:
        self.objects[path] = self.objects.get(path, 0) + nbytes

    @property
    def total(self) -> int:
        return sum(self.arrays.values()) + sum(self.objects.values())


def _children(obj: Any) -> Iterator[tuple[str, Any, Any]]:
    """An object's parts: the step that names each (``.attr``, ``[key]``), its mapping key (else ``None``), and it."""
    if isinstance(obj, dict | types.MappingProxyType):
        for key, value in obj.items():
            yield f"[{key!r}]", key, value
    elif isinstance(obj, list | tuple | set | frozenset):
        for i, value in enumerate(obj):
            yield f"[{i}]", None, value
    else:
        if hasattr(obj, "__dict__"):
            yield ".__dict__", None, obj.__dict__
        for klass in type(obj).__mro__:
            for name in getattr(klass, "__slots__", ()):
                if name != "__dict__" and hasattr(obj, name):
                    yield f".{name}", None, getattr(obj, name)


def walk(root: Any, path: str, tally: Tally, seen: set[int], rename: Mapping[str, str] | None = None) -> None:
    """Add ``root``'s bytes to ``tally`` by owner path; ``seen`` (object ids) makes every object count once.

    ``rename`` replaces mapping keys in paths (e.g. every model id by ``[model]``), so paths that differ only by
    a model add up.

    >>> tally = Tally()
    >>> walk({"ring": np.zeros(10, np.uint8), "same": None}, "w", tally, set())
    >>> tally.arrays
    {"w['ring']": 10}
    """
    stack: list[tuple[str, Any]] = [(path, root)]
    while stack:
        where, obj = stack.pop()
        if id(obj) in seen or isinstance(obj, _OPAQUE) or obj is None or isinstance(obj, bool):
            continue
        seen.add(id(obj))
        if isinstance(obj, np.ndarray):
            base = obj
            while isinstance(base.base, np.ndarray):
                base = base.base
            if base is not obj and id(base) not in seen:
                seen.add(id(base))
                tally.add_array(where, base.nbytes)
            elif base is obj:
                tally.add_array(where, obj.nbytes)
            header = sys.getsizeof(obj) - (obj.nbytes if obj.flags.owndata else 0)
            tally.add_object(where, max(0, header))
            if obj.dtype == object:
                stack.extend((f"{where}[{i}]", value) for i, value in enumerate(obj.ravel().tolist()))
            continue
        tally.add_object(where, sys.getsizeof(obj))
        parts: list[tuple[str, Any]] = []
        for step, key, child in _children(obj):
            if step == ".__dict__":
                # the instance's dict is counted as its own object, under the instance's path
                seen.add(id(child))
                tally.add_object(where, sys.getsizeof(child))
                parts.extend((f"{where}.{name}", value) for name, value in child.items())
            elif rename and isinstance(key, str) and key in rename:
                parts.append((f"{where}[{rename[key]}]", child))
            else:
                parts.append((where + step, child))
        stack.extend(reversed(parts))  # the first attribute is walked first: an alias defined later names nothing


def ring_groups(shapes: Mapping[int, Sequence[Sequence[str]]]) -> dict[str, str]:
    """Path steps of each count window's ring groups, with the rings each holds (from ``RingSet.shape``).

    >>> ring_groups({1000: [["correct", "scored"], ["squared_error"]]})
    {'windows[1000]._groups[0]': 'correct+scored', 'windows[1000]._groups[1]': 'squared_error'}
    """
    return {f"windows[{size}]._groups[{g}]": "+".join(rings) for size, shape in shapes.items() for g, rings in enumerate(shape)}


def labeled(path: str, groups: Mapping[str, str]) -> str:
    """A path with the rings of the count-window group it passes through.

    >>> labeled("tracker.windows[1000]._groups[1][1]._bits", {"windows[1000]._groups[1]": "squared_error"})
    'tracker.windows[1000]._groups[1][1]._bits (squared_error)'
    """
    for step, rings in groups.items():
        if f".{step}[" in path:
            return f"{path} ({rings})"
    return path


def per_model_rows(tally: Tally, models: int, depth: int = 3) -> list[tuple[str, int, float, float]]:
    """(owner, arrays per model, numpy bytes per model, other bytes per model), largest first.

    Numpy data keeps its full path (the arrays are what a packing change would target); other objects are
    grouped by ``owner(path, depth)``.
    """
    rows: dict[str, list[float]] = {}  # arrays, numpy bytes, other bytes
    for path, nbytes in tally.arrays.items():
        row = rows.setdefault(path, [0.0, 0.0, 0.0])
        row[0] += tally.array_count[path]
        row[1] += nbytes
    grouped: dict[str, float] = {}
    for path, size in tally.objects.items():
        key = path if path in rows else owner(path, depth)
        grouped[key] = grouped.get(key, 0.0) + size
    for key, grouped_size in grouped.items():
        rows.setdefault(key, [0.0, 0.0, 0.0])[2] += grouped_size
    out = [(key, round(r[0] / models), r[1] / models, r[2] / models) for key, r in rows.items()]
    return sorted(out, key=lambda r: -(r[2] + r[3]))


# ------------------------------------------------------------------ the child: one fleet in one process


def rss_bytes() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * KiB
    raise RuntimeError("no VmRSS in /proc/self/status")


def peak_rss_bytes() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * KiB
    raise RuntimeError("no VmHWM in /proc/self/status")


def settled_rss() -> int:
    gc.collect()
    return rss_bytes()


def model_name(i: int) -> str:
    return f"model-{i:05d}"


def batches(
    models: int, per_model: int, seed: int = 1
) -> Iterator[tuple[list[dict[str, Any]], np.ndarray[Any, np.dtype[np.float64]]]]:
    """Decoded events, ``BATCH_EVENTS`` at a time: each batch holds whole runs of consecutive models' events.

    Columns are drawn with numpy and only then turned into dicts, one batch at a time.
    """
    rng = np.random.default_rng(seed)
    per_batch = max(1, BATCH_EVENTS // per_model)
    step = SPAN_S / per_model
    for first in range(0, models, per_batch):
        names = [model_name(i) for i in range(first, min(models, first + per_batch))]
        n = len(names) * per_model
        prediction = rng.integers(0, 2, n)
        right = rng.random(n) < ACCURACY
        label = np.where(right, prediction, 1 - prediction)
        score = np.round(rng.random(n), 3)
        ts = BASE_TS + np.tile(np.arange(per_model) * step, len(names))
        model = [name for name in names for _ in range(per_model)]
        events = [
            {"model": m, "prediction": p, "label": y, "ts": t, "score": s}
            for m, p, y, t, s in zip(model, prediction.tolist(), label.tolist(), ts.tolist(), score.tolist(), strict=True)
        ]
        yield events, np.full(n, BASE_TS)


def child(models: int, per_model: int, limit_bytes: int) -> dict[str, Any]:
    """Build one fleet and measure it; returns the figures as plain values (printed as one JSON line)."""
    from decaywatch.consumer.metrics import ServiceMetrics, exposition
    from decaywatch.monitor.config import Limits, ModelPolicy, MonitorConfig
    from decaywatch.monitor.engine import Monitor
    from decaywatch.monitor.schema import validate

    monitor = Monitor(MonitorConfig(ModelPolicy(), limits=Limits(max_models=max(models, 1))))
    base = settled_rss()
    started = time.perf_counter()
    fed = 0
    for events, fallback in batches(models, per_model):
        batch, rejected = validate(events, fallback)
        if rejected:
            raise RuntimeError(f"{len(rejected)} events rejected: {rejected[0]}")
        monitor.process(batch)
        fed += len(batch)
        del events, batch
        if rss_bytes() > limit_bytes:
            return {"models": models, "stopped": f"RSS passed {limit_bytes / GiB:.1f} GiB after {fed:,} events"}
    feed_seconds = time.perf_counter() - started
    trackers = settled_rss()
    snapshot = monitor.snapshot()
    snapshots = settled_rss()
    metrics = ServiceMetrics()
    now = time.time()
    metrics.models.publish(snapshot, {}, dict.fromkeys(snapshot, now))
    page, _content_type = exposition(metrics.registry, None)
    page_bytes = len(page)
    del page
    text = settled_rss()
    peak = peak_rss_bytes()

    names = {model_name(i): "model" for i in range(models)}
    first = monitor.tracked(model_name(0))
    groups = {} if first is None else ring_groups({size: rings.shape for size, rings in first.windows.items()})
    tracker_tally, snapshot_tally, text_tally = Tally(), Tally(), Tally()
    seen: set[int] = set()
    for name in monitor.models():
        walk(monitor.tracked(name), "tracker", tracker_tally, seen, names)
    walk(snapshot, "snapshots", snapshot_tally, seen, names)
    walk(metrics.models, "exporter", text_tally, seen, names)
    return {
        "models": models,
        "events": fed,
        "feed_seconds": feed_seconds,
        "rss": {"base": base, "trackers": trackers, "snapshots": snapshots, "text": text, "peak": peak},
        "page_bytes": page_bytes,
        "groups": groups,
        "tallies": {
            "tracker": [tracker_tally.arrays, tracker_tally.array_count, tracker_tally.objects],
            "snapshot": [snapshot_tally.arrays, snapshot_tally.array_count, snapshot_tally.objects],
            "exporter": [text_tally.arrays, text_tally.array_count, text_tally.objects],
        },
    }


# ------------------------------------------------------------------ the parent: one child per N, then the tables


def run_child(models: int, per_model: int, limit_gib: float) -> dict[str, Any]:
    command = [sys.executable, "-m", "tests.benchmarks.bench_fleet_memory", "--child", str(models)]
    command += ["--events-per-model", str(per_model), "--limit-gib", str(limit_gib)]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        return {"models": models, "stopped": f"exited {done.returncode}: {' | '.join(done.stderr.strip().splitlines()[-3:])}"}
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def _tally(raw: Sequence[Any]) -> Tally:
    return Tally(dict(raw[0]), dict(raw[1]), dict(raw[2]))


def report(results: Sequence[dict[str, Any]], per_model: int) -> str:
    measured = [r for r in results if "rss" in r]
    lines = [f"Fleet memory: every model fed {per_model:,} labeled events (default policy), one process per N."]
    rows = []
    for r in results:
        if "rss" not in r:
            rows.append([f"{r['models']:,}", "—", "—", "—", "—", "—", "—", r["stopped"]])
            continue
        rss, n = r["rss"], r["models"]
        rows.append(
            [
                f"{n:,}",
                f"{rss['base'] / MiB:,.0f} MiB",
                f"{rss['trackers'] / MiB:,.0f} MiB",
                f"{rss['snapshots'] / MiB:,.0f} MiB",
                f"{rss['text'] / MiB:,.0f} MiB",
                f"{rss['peak'] / MiB:,.0f} MiB",
                f"{(rss['text'] - rss['base']) / n / KiB:,.1f}",
                f"{r['events'] / r['feed_seconds']:,.0f} events/s fed; /metrics page {r['page_bytes'] / MiB:.1f} MiB",
            ]
        )
    header = ["models", "base", "+ trackers", "+ snapshots", "+ kept text", "peak", "KiB/model at N", "note"]
    lines += ["", markdown_table(header, rows, {1, 2, 3, 4, 5, 6})]
    if len(measured) >= 2:
        lines.append("")
        for stage in ("trackers", "snapshots", "text"):
            marg = marginal_kib({r["models"]: r["rss"][stage] for r in measured})
            lines.append(
                f"marginal KiB per model through {stage:<9}: "
                + ", ".join(f"{a:,}→{b:,} models: {kib:,.1f}" for (a, b), kib in marg.items())
            )
    if measured:
        big = max(measured, key=lambda r: r["models"])
        n = big["models"]
        tallies = {name: _tally(raw) for name, raw in big["tallies"].items()}
        accounted = sum(t.total for t in tallies.values())
        lines += ["", f"Where the bytes are ({n:,} models; per model: numpy data and other Python objects):", ""]
        body = []
        for name, tally in tallies.items():
            small = [0.0, 0.0]
            for key, count, numpy_bytes, other in per_model_rows(tally, n):
                if numpy_bytes + other >= SHOWN_BYTES:
                    body.append(
                        [
                            name,
                            labeled(key, big.get("groups", {})),
                            str(count) if count else "",
                            f"{numpy_bytes:,.0f}",
                            f"{other:,.0f}",
                        ]
                    )
                else:
                    small[0] += numpy_bytes
                    small[1] += other
            body.append([name, f"(the rest, each under {SHOWN_BYTES} B)", "", f"{small[0]:,.0f}", f"{small[1]:,.0f}"])
        lines.append(markdown_table(["part", "owner", "arrays", "numpy B/model", "other B/model"], body, {2, 3, 4}))
        grown = big["rss"]["text"] - big["rss"]["base"]
        lines.append("")
        lines.append(
            f"accounted {accounted / n / KiB:,.1f} KiB/model "
            f"(numpy {sum(sum(t.arrays.values()) for t in tallies.values()) / n / KiB:,.1f}, "
            f"other objects {sum(sum(t.objects.values()) for t in tallies.values()) / n / KiB:,.1f}); "
            f"RSS grew {grown / n / KiB:,.1f} KiB/model, unaccounted {(grown - accounted) / n / KiB:,.1f}"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--models", default=",".join(map(str, DEFAULT_MODELS)), help="model counts (default 1000,10000)")
    parser.add_argument("--events-per-model", type=int, default=EVENTS_PER_MODEL, help="labeled events per model")
    parser.add_argument("--limit-gib", type=float, default=LIMIT_GIB, help="stop a fleet whose RSS passes this (GiB)")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child is not None:
        print(json.dumps(child(args.child, args.events_per_model, int(args.limit_gib * GiB))))
        return 0
    counts = sorted({int(m) for m in args.models.split(",") if m.strip()})
    results = []
    began = time.monotonic()
    for models in counts:
        started = time.monotonic()
        result = run_child(models, args.events_per_model, args.limit_gib)
        results.append(result)
        figure = result["stopped"] if "stopped" in result else f"RSS {result['rss']['text'] / MiB:,.0f} MiB"
        print(f"{models:,} models: {figure} ({time.monotonic() - started:.0f} s)", flush=True)
        if "stopped" in result:
            break
    print()
    print(report(results, args.events_per_model))
    print(f"\n(whole benchmark: {time.monotonic() - began:.0f} s; {os.cpu_count()} cores; load average "
          f"{', '.join(f'{x:.2f}' for x in os.getloadavg())})")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
