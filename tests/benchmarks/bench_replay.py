"""Throughput of ``decaywatch replay``: JSON Lines (the lesson for two models, a 1M-event file) and Parquet.

Run it as a script (it prints events/s and exits 0 whatever the figure)::

    .venv/bin/python -m tests.benchmarks.bench_replay [--repeat 5] [--jobs 1,2] [--dir DIR] [--parquet-events 10000000]

or through pytest, naming the file (``tests/benchmarks`` is not in the default
test paths)::

    .venv/bin/python -m pytest tests/benchmarks/bench_replay.py -s

The files are generated with the producer's API (seeded, so every run times
the same bytes) into a temporary directory, unless ``--dir`` keeps them.  The
first rows are the best of ``--repeat`` runs in this process (interpreter
start-up excluded): reading, parsing (in ``--jobs`` processes), the core, alert
output and the summary.  The *whole command* rows time ``decaywatch replay FILE``
as a fresh process, start-up included (the median of ``--repeat`` runs): the
1M-event JSON Lines file (target 1,000,000 events/s) and the same events as
Parquet (written column by column from the same generator, and checked to give
the same alert bytes), then a ``--parquet-events`` Parquet file (target
3,000,000 events/s).
"""

from __future__ import annotations

import argparse
import io
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

if __package__ in (None, ""):  # run as a script: make the project importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from decaywatch import replay
from decaywatch.producer.encode import MODEL_VERSION, encode_records
from decaywatch.producer.scenario import parse_models
from decaywatch.producer.stream import generate_all, interleave
from decaywatch.shared.recording_flags import default_jobs

MODELS = "churn-model=lesson,fraud-model=stable"
TARGET = 500_000
WHOLE_COMMAND_TARGETS = {"jsonl": 1_000_000, "parquet": 3_000_000}
PARQUET_EVENTS = 10_000_000
POLICY = ["--baseline", "0.85", "--threshold", "0.1", "--windows", "1000,10000"]


def write_jsonl(path: Path, count: int | None, seed: int = 42) -> int:
    """The producer's events for :data:`MODELS` (``count`` per model, default each scenario's length) as JSON Lines."""
    specs = parse_models(MODELS)
    streams = generate_all(specs, seed, count)
    with path.open("wb") as out:
        batch: list[bytes] = []
        for _key, value in encode_records(streams, interleave(streams)):
            batch.append(value)
            if len(batch) == 65_536:
                out.write(b"\n".join(batch) + b"\n")
                batch.clear()
        if batch:
            out.write(b"\n".join(batch) + b"\n")
    return sum(len(s) for s in streams)


def write_parquet(path: Path, count: int | None, seed: int = 42, row_group: int = 1 << 20) -> int:
    """:func:`write_jsonl`'s events as Parquet, built column by column (``count`` per model); returns the events.

    The fields are the producer's (``producer/encode.py``): ``label`` null where
    the scenario left the event unlabeled, ``features`` a struct.  Written one
    row group at a time, so only the streams' numpy columns are held whole.
    """
    import pyarrow as pa  # type: ignore[import-untyped,unused-ignore]  # pyarrow ships no type information
    import pyarrow.compute as pc  # type: ignore[import-untyped,unused-ignore]
    import pyarrow.parquet as pq  # type: ignore[import-untyped,unused-ignore]

    streams = generate_all(parse_models(MODELS), seed, count)
    stream_index, record_index = interleave(streams)
    offsets = np.cumsum([0] + [len(s) for s in streams])[:-1]
    where: npt.NDArray[np.int64] = offsets[stream_index] + record_index

    def column(name: str) -> npt.NDArray[Any]:
        return np.concatenate([getattr(s, name) for s in streams])[where]

    ts, prediction, score, label, labeled, x = (column(n) for n in ("ts", "prediction", "score", "label", "labeled", "x"))
    models = pa.array([s.model for s in streams])
    schema = pa.schema(
        [
            ("model", pa.string()),
            ("event_id", pa.string()),
            ("model_version", pa.string()),
            ("ts", pa.float64()),
            ("prediction", pa.int64()),
            ("score", pa.float64()),
            ("label", pa.int64()),
            ("features", pa.struct([("x", pa.float64())])),
        ]
    )
    with pq.ParquetWriter(path, schema) as writer:
        for start in range(0, len(where), row_group):
            rows = slice(start, start + row_group)
            model = models.take(pa.array(stream_index[rows]))
            arrays = [
                model,
                pc.binary_join_element_wise(model, pc.cast(pa.array(record_index[rows]), pa.string()), "-"),
                pa.repeat(MODEL_VERSION, len(model)),
                pa.array(ts[rows]),
                pa.array(prediction[rows].astype(np.int64)),
                pa.array(score[rows]),
                pa.array(label[rows].astype(np.int64), mask=~labeled[rows]),
                pa.StructArray.from_arrays([pa.array(x[rows])], names=["x"]),
            ]
            writer.write_batch(pa.RecordBatch.from_arrays(arrays, schema=schema))
    return len(where)


def time_command(path: Path, repeat: int) -> tuple[float, bytes]:
    """Median wall time of ``repeat`` runs of ``decaywatch replay PATH`` as a fresh process, and its alert output."""
    command = [sys.executable, "-m", "decaywatch", "replay", str(path), *POLICY]
    times = []
    out = b""
    for _ in range(repeat):
        started = time.perf_counter()
        done = subprocess.run(command, capture_output=True, check=False)
        times.append(time.perf_counter() - started)
        if done.returncode != 0:
            raise RuntimeError(f"replay exited {done.returncode}: {done.stderr.decode()}")
        out = done.stdout
    return statistics.median(times), out


def bench_commands(directory: Path, repeat: int, parquet_events: int) -> list[str]:
    """The whole command, start-up included: 1M events as JSON Lines and as Parquet, then ``parquet_events`` as Parquet."""
    million_jsonl, million_parquet = directory / "million.jsonl", directory / "million.parquet"
    big = directory / f"events-{parquet_events}.parquet"
    if not million_jsonl.exists():
        write_jsonl(million_jsonl, 500_000)
    if not million_parquet.exists():
        write_parquet(million_parquet, 500_000)
    if not big.exists():
        write_parquet(big, parquet_events // 2)
    report = []
    outputs = {}
    for label, path, fmt, events in [
        ("1M events", million_jsonl, "jsonl", 1_000_000),
        ("1M events", million_parquet, "parquet", 1_000_000),
        (f"{parquet_events / 1e6:g}M events", big, "parquet", parquet_events // 2 * 2),
    ]:
        seconds, outputs[path] = time_command(path, repeat)
        rate = events / seconds
        target = WHOLE_COMMAND_TARGETS[fmt]
        verdict = "ok" if rate >= target else f"below the {target:,}/s target"
        report.append(
            f"{label:17} {events:>10,} events {fmt:7} {path.stat().st_size / 2**20:7.1f} MiB  whole command: "
            f"{seconds:6.3f} s  {rate:>10,.0f} events/s  ({verdict})"
        )
        print(report[-1], flush=True)
    if outputs[million_parquet] != outputs[million_jsonl]:
        raise RuntimeError("the Parquet and JSON Lines replays of the same 1M events wrote different alerts")
    print(f"same alerts from both formats ({len(outputs[million_jsonl].splitlines())} lines)", flush=True)
    return report


def time_replay(path: Path, jobs: int, repeat: int) -> tuple[float, str]:
    """Best wall time of ``repeat`` replays of ``path``, and the last summary line."""
    parser = argparse.ArgumentParser()
    replay.add_parser(parser.add_subparsers())
    args = parser.parse_args(["replay", str(path), "--jobs", str(jobs), *POLICY])
    best = float("inf")
    summary = ""
    for _ in range(repeat):
        out, err = io.BytesIO(), io.StringIO()
        started = time.perf_counter()
        code = replay.run(args, stdout=out, stderr=err)
        best = min(best, time.perf_counter() - started)
        if code != 0:
            raise RuntimeError(f"replay exited {code}: {err.getvalue()}")
        summary = err.getvalue().strip().splitlines()[-1]
    return best, summary


def bench(directory: Path, jobs_list: Sequence[int], repeat: int) -> list[str]:
    files = [("lesson, 2 models", directory / "lesson.jsonl", None), ("1M events", directory / "million.jsonl", 500_000)]
    report = []
    for label, path, count in files:
        if not path.exists():
            write_jsonl(path, count)
        events = sum(1 for _ in path.open("rb"))
        size = path.stat().st_size
        for jobs in jobs_list:
            seconds, _summary = time_replay(path, jobs, repeat)
            rate = events / seconds
            verdict = "ok" if rate >= TARGET else f"below the {TARGET:,}/s target"
            report.append(
                f"{label:17} {events:>9,} events {size / 2**20:7.1f} MiB  --jobs {jobs}: "
                f"{seconds:6.3f} s  {rate:>10,.0f} events/s  ({verdict})"
            )
            print(report[-1], flush=True)
    return report


def test_replay_throughput(tmp_path: Path) -> None:
    """Prints the figures; asserts only that the replays ran (a shared CI box is no place for a speed limit)."""
    report = bench(tmp_path, sorted({1, default_jobs()}), repeat=3)
    assert len(report) == 2 * len({1, default_jobs()})


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=5, help="runs per figure; the best is reported (default 5)")
    parser.add_argument("--jobs", default=f"1,{default_jobs()}", help="comma-separated --jobs values to time")
    parser.add_argument("--dir", type=Path, help="keep the generated files here (default: a temporary directory)")
    parser.add_argument(
        "--parquet-events",
        type=int,
        default=PARQUET_EVENTS,
        help=f"events in the large Parquet file (default {PARQUET_EVENTS:,})",
    )
    parser.add_argument("--commands-only", action="store_true", help="only the whole-command rows")
    args = parser.parse_args(argv)
    jobs_list = sorted({int(j) for j in args.jobs.split(",")})
    with tempfile.TemporaryDirectory(prefix="decaywatch-bench-") as tmp:
        directory = Path(tmp) if args.dir is None else args.dir
        directory.mkdir(parents=True, exist_ok=True)
        if not args.commands_only:
            bench(directory, jobs_list, args.repeat)
        bench_commands(directory, args.repeat, args.parquet_events)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
