"""Throughput of ``decaywatch replay`` on JSON Lines: the lesson for two models, and a 1M-event file.

Run it as a script (it prints events/s and exits 0 whatever the figure)::

    .venv/bin/python tests/benchmarks/bench_replay.py [--repeat 5] [--jobs 1,2] [--dir DIR]

or through pytest, naming the file (``tests/benchmarks`` is not in the default
test paths)::

    .venv/bin/python -m pytest tests/benchmarks/bench_replay.py -s

The files are generated with the producer's API (seeded, so every run times
the same bytes) into a temporary directory, unless ``--dir`` keeps them.  Each
figure is the best of ``--repeat`` runs of the whole command minus interpreter
start-up: reading, parsing (in ``--jobs`` processes), the core, alert output
and the summary.  The target is 500,000 events/s.
"""

from __future__ import annotations

import argparse
import io
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the project importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from decaywatch import replay
from decaywatch.producer.encode import encode_records
from decaywatch.producer.scenario import parse_models
from decaywatch.producer.stream import generate_all, interleave
from decaywatch.shared.recording_flags import default_jobs

MODELS = "churn-model=lesson,fraud-model=stable"
TARGET = 500_000
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
    args = parser.parse_args(argv)
    jobs_list = sorted({int(j) for j in args.jobs.split(",")})
    if args.dir is not None:
        args.dir.mkdir(parents=True, exist_ok=True)
        bench(args.dir, jobs_list, args.repeat)
    else:
        with tempfile.TemporaryDirectory(prefix="decaywatch-bench-") as tmp:
            bench(Path(tmp), jobs_list, args.repeat)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
