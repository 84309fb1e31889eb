"""Labels that arrive later: joined-vs-inline throughput of the core, and memory per pending prediction.

    python -m tests.benchmarks.bench_join [--rounds 3] [--pending 10000000] [--models 1000]

Throughput
    The producer's lesson (two models, every prediction labeled), encoded
    twice: labels inline, and each label as a separate label event a
    lognormal(median=3d, sigma=1) delay later (so each outcome is two
    messages, interleaved in event-time order).  Both go through the path the
    service runs per batch (``codec.parse``: decode and validate, then
    ``Monitor.process``) in batches of 50,000 messages, from bytes already in
    memory (no Kafka: the client's own cost is the throughput benchmark's).
    Each round runs inline, then joined, each in a fresh interpreter (best of
    three there): one process's speed moves by up to a tenth from one start
    to the next.  Printed: the median seconds, *messages per second* (every
    prediction and label event is one), and *outcomes per second*
    (predictions whose outcome the monitor counted or will count, the same
    number in both runs).  The issue's target: joined at least 0.5x inline.

Memory
    ``--pending`` predictions with string ids like ``"m0042-e00012345"`` across
    ``--models`` models, none labeled, fed through the same path (limits
    raised so none leaves: ``max_pending`` above the per-model share,
    ``label_ttl`` beyond the span).  RSS (``VmRSS``, after ``gc.collect()``)
    is read in a fresh interpreter once every model exists with its first
    prediction (its windows and tables allocated), and again at the end;
    *bytes per pending* is the difference divided by the predictions added
    (so it includes what the allocator keeps), and again after the heap trim
    the service does every few seconds (``consumer/heap.py``).

Nothing here is in the default test run (``make bench`` runs it).
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import orjson

from decaywatch.consumer.heap import heap_trimmer
from tests.benchmarks.bench_fleet_memory import rss_bytes
from tests.benchmarks.bench_throughput import REPO, markdown_table

BATCH = 50_000
DELAY = "lognormal(median=3d,sigma=1)"


def lesson_messages(delayed: bool) -> tuple[list[bytes], int]:
    """The lesson's messages in event-time order, and its number of predictions."""
    from decaywatch.producer.encode import routed_records
    from decaywatch.producer.scenario import parse_models
    from decaywatch.producer.stream import generate_all, interleave

    spec = f"(label_delay={DELAY})" if delayed else ""
    specs = parse_models(f"churn-model=lesson{spec},fraud-model=stable{spec}")
    streams = generate_all(specs, seed=7)
    return [value for _key, value, _topic in routed_records(streams, interleave(streams), "t")], sum(len(s) for s in streams)


def core_seconds(messages: Sequence[bytes], policy: Any) -> float:
    """Seconds to run ``messages`` through decode, validate and a fresh monitor, in service-sized batches."""
    from decaywatch.monitor.codec import parse
    from decaywatch.monitor.config import MonitorConfig
    from decaywatch.monitor.engine import Monitor

    monitor = Monitor(MonitorConfig(policy))
    started = time.perf_counter()
    for lo in range(0, len(messages), BATCH):
        chunk = messages[lo : lo + BATCH]
        batch, rejections = parse(chunk, np.zeros(len(chunk)))
        assert not rejections
        monitor.process(batch)
    return time.perf_counter() - started


def throughput_child(path: str) -> float:
    """In a fresh interpreter: the best of three runs of the messages in ``path`` (one per line)."""
    from decaywatch.monitor.config import ModelPolicy

    with open(path, "rb") as f:
        messages = f.read().split(b"\n")
    policy = ModelPolicy(baseline=0.85, baseline_date="2024-01-01", threshold=0.1)
    return min(core_seconds(messages, policy) for _ in range(3))


def throughput(rounds: int) -> dict[str, Any]:
    """Both runs in turn, each in its own interpreter (see the module's docstring)."""
    inline, outcomes = lesson_messages(False)
    joined, same = lesson_messages(True)
    assert same == outcomes
    times: dict[str, list[float]] = {"inline": [], "joined": []}
    with tempfile.TemporaryDirectory() as tmp:
        paths = {}
        for name, lines in (("inline", inline), ("joined", joined)):
            paths[name] = f"{tmp}/{name}.jsonl"
            with open(paths[name], "wb") as f:
                f.write(b"\n".join(lines))  # compact JSON: no newline inside a message
        for _ in range(rounds):
            for name, seconds in times.items():
                code = f"from tests.benchmarks.bench_join import throughput_child; print(throughput_child({paths[name]!r}))"
                run = subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True, capture_output=True, text=True)
                seconds.append(float(run.stdout.strip().splitlines()[-1]))
    median = {name: statistics.median(values) for name, values in times.items()}
    messages = {"inline": len(inline), "joined": len(joined)}
    return {
        "outcomes": outcomes,
        "messages": messages,
        "seconds": median,
        "all_seconds": times,
        "outcomes_per_s": {name: outcomes / s for name, s in median.items()},
        "messages_per_s": {name: messages[name] / s for name, s in median.items()},
        "ratio": median["inline"] / median["joined"],
        "message_ratio": messages["joined"] / median["joined"] / (messages["inline"] / median["inline"]),
    }


def pending_child(pending: int, models: int) -> dict[str, Any]:
    """In a fresh interpreter: RSS before and after ``pending`` predictions wait across ``models`` models."""
    from decaywatch.monitor.codec import parse
    from decaywatch.monitor.config import Limits, ModelPolicy, MonitorConfig
    from decaywatch.monitor.engine import Monitor

    per_model = pending // models
    policy = ModelPolicy(baseline=0.85, max_pending=per_model + 1, label_ttl="3650d")
    monitor = Monitor(MonitorConfig(policy, limits=Limits(max_models=models)))

    def feed(first: int, last: int) -> int:
        messages = [
            orjson.dumps({"model": f"m{m:04d}", "prediction": j % 2, "event_id": f"m{m:04d}-e{j:08d}", "ts": 1.7e9 + j})
            for j in range(first, last)
            for m in range(models)
        ]
        batch, rejections = parse(messages, np.zeros(len(messages)))
        assert not rejections
        monitor.process(batch)
        return len(messages)

    fed = feed(0, 1)  # every model exists, with its windows, before the first reading: only the waiting is measured
    gc.collect()
    before = rss_bytes()
    for j0 in range(1, per_model, 50):  # 50 predictions of every model per batch: 50,000 with 1,000 models
        fed += feed(j0, min(j0 + 50, per_model))
    gc.collect()
    after = rss_bytes()
    trim = heap_trimmer()
    if trim is not None:
        trim()  # as the service does every few seconds
    trimmed = rss_bytes()
    waiting = sum(t.join.pending for t in (monitor.tracked(f"m{m:04d}") for m in range(models)) if t is not None)
    assert waiting == fed, (waiting, fed)
    return {"pending": waiting, "models": models, "rss_before": before, "rss_after": after, "rss_trimmed": trimmed}


def memory(pending: int, models: int) -> dict[str, Any]:
    code = f"import json; from tests.benchmarks.bench_join import pending_child; print(json.dumps(pending_child({pending}, {models})))"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True, capture_output=True, text=True).stdout
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    added = result["pending"] - result["models"]
    result["bytes_per_pending"] = (result["rss_after"] - result["rss_before"]) / added
    result["bytes_per_pending_trimmed"] = (result["rss_trimmed"] - result["rss_before"]) / added
    return result


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.benchmarks.bench_join", description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--pending", type=int, default=10_000_000)
    parser.add_argument("--models", type=int, default=1000)
    args = parser.parse_args(argv)
    speed = throughput(args.rounds)
    rows = [
        (
            name,
            f"{speed['messages'][name]:,}",
            f"{speed['outcomes']:,}",
            f"{speed['seconds'][name]:.2f}",
            f"{speed['messages_per_s'][name]:,.0f}",
            f"{speed['outcomes_per_s'][name]:,.0f}",
        )
        for name in ("inline", "joined")
    ]
    header = ("labels", "messages", "outcomes", "seconds (median)", "messages/s", "outcomes/s")
    print(markdown_table(header, rows, right={1, 2, 3, 4, 5}))
    for name, values in speed["all_seconds"].items():
        print(f"{name} rounds: {', '.join(f'{v:.3f}' for v in values)} s")
    print(
        f"\njoined / inline: {speed['message_ratio']:.2f}x the messages (events) per second, "
        f"{speed['ratio']:.2f}x the outcomes per second (target >= 0.5x)\n"
    )
    mem = memory(args.pending, args.models)
    print(
        f"{mem['pending']:,} predictions pending across {mem['models']:,} models: RSS {mem['rss_before'] / 2**20:,.0f} MiB -> "
        f"{mem['rss_after'] / 2**20:,.0f} MiB, {mem['bytes_per_pending']:.1f} bytes per pending prediction; after the "
        f"service's heap trim {mem['rss_trimmed'] / 2**20:,.0f} MiB, {mem['bytes_per_pending_trimmed']:.1f} bytes (target <= 64)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
