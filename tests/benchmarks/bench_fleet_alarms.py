"""False alarms across a fleet: 1,000 stable models on one monitor, counted against what ``decaywatch policy`` predicts.

    python -m tests.benchmarks.bench_fleet_alarms [--models 1000] [--events 20000] [--evidence 12,5]

Every model sits at its baseline (0.85, threshold 0.1) with independent
errors; their labeled events arrive interleaved, 50,000 to a batch, as on a
shared topic, through ``Monitor.process``.  For each ``--evidence`` the
benchmark counts the firings (each one a false page) and sets them beside the
number ``monitor/rates.py`` expects for the same events (which leaves out the
confidence gate and ``min_samples``, so it should be the larger).  At the
default evidence the expected number is far below one for any volume a test
can run: the low evidence shows the prediction and the count side by side
where both are large enough to compare.  Also printed: the false alarms per
model per day implied at 100,000 labeled events per model per day.

Nothing here is in the default test run (``make bench`` runs it).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence

import numpy as np

from decaywatch.monitor.config import Limits, ModelPolicy, MonitorConfig
from decaywatch.monitor.engine import Monitor
from decaywatch.monitor.rates import expected_events
from decaywatch.monitor.rule import reference_margin
from decaywatch.monitor.schema import EventBatch

BASELINE, THRESHOLD = 0.85, 0.1
BATCH = 50_000
PER_DAY = 100_000


def false_alarms(models: int, events: int, evidence: float, seed: int = 0) -> tuple[int, float]:
    """Firings over ``events`` labeled events of each of ``models`` stable models, and the seconds it took."""
    policy = ModelPolicy(baseline=BASELINE, threshold=THRESHOLD, evidence=evidence)
    monitor = Monitor(MonitorConfig(policy, limits=Limits(max_models=models)))
    names = tuple(f"m{i:04d}" for i in range(models))
    rng = np.random.default_rng(seed)
    total, fired, began = models * events, 0, time.perf_counter()
    for lo in range(0, total, BATCH):
        n = min(BATCH, total - lo)
        source = np.arange(lo, lo + n, dtype=np.int64)
        batch = EventBatch(
            models=names,
            model_codes=rng.integers(0, models, n).astype(np.int32),
            labeled=np.ones(n, dtype=bool),
            correct=rng.random(n) < BASELINE,
            event_time=source.astype(np.float64),
            source_index=source,
        )
        fired += sum(t.status == "firing" for t in monitor.process(batch))
    return fired, time.perf_counter() - began


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.benchmarks.bench_fleet_alarms", description=__doc__.split("\n")[0])
    parser.add_argument("--models", type=int, default=1000)
    parser.add_argument("--events", type=int, default=20_000, help="labeled events per model")
    parser.add_argument("--evidence", default="12,5", help="comma-separated evidence values to run")
    args = parser.parse_args(argv)
    line = BASELINE - THRESHOLD
    print(
        f"{args.models:,} stable models at {BASELINE}, {args.events:,} labeled events each, interleaved in batches of {BATCH:,}"
    )
    for evidence in (float(e) for e in args.evidence.split(",")):
        fired, seconds = false_alarms(args.models, args.events, evidence)
        margin = reference_margin(ModelPolicy(baseline=BASELINE, threshold=THRESHOLD, evidence=evidence), THRESHOLD)
        interval = expected_events(BASELINE, line, margin, evidence)
        expected = args.models * args.events / interval
        model_days = args.models * args.events / PER_DAY
        print(
            f"evidence {evidence:g}: {fired} false alarms measured, {expected:.3g} expected without the confidence gate; "
            f"{fired / model_days:.3g} per model-day measured, {PER_DAY / interval:.3g} expected at {PER_DAY:,} "
            f"labels a day ({model_days:,.0f} model-days, {args.models * args.events / seconds:,.0f} events/s)"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
