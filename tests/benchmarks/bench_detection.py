"""Detection benchmark: decaywatch's rules and river's drift detectors on the same seeded streams.

Run from the repository root::

    python -m tests.benchmarks.bench_detection [--seeds 30] [--quick] [--json FILE]

Every scenario (see :mod:`tests.benchmarks.scenario`) is generated once per
seed and fed to every detector (then the bursty streams whose accuracy,
threshold and run length vary by seed, :mod:`tests.benchmarks.varied`, and
the 2%-positive model whose recall falls, :mod:`tests.benchmarks.imbalance`); the table compares them and the verdicts
check decaywatch's default policy against its targets.  Exit code 0 when every
target passes, 1 otherwise.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import sys
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from decaywatch.monitor.config import ModelPolicy
from tests.benchmarks import imbalance, varied
from tests.benchmarks.detector import DecaywatchDetector, Detector, detectors
from tests.benchmarks.outcome import Run, Summary, judge, summarize
from tests.benchmarks.report import table, timing_lines, verdict_lines
from tests.benchmarks.scenario import scenarios
from tests.benchmarks.target import Verdict, verdicts

JUDGED = "decaywatch"
"""The detector whose targets are checked: the default policy."""


@dataclass(frozen=True)
class Result:
    summaries: dict[tuple[str, str], Summary]
    verdicts: list[Verdict]
    resolves: dict[str, bool]
    detector_seconds: dict[str, float]
    throughput: dict[str, float | None]
    wall_seconds: float
    environment: dict[str, Any]

    @property
    def passed(self) -> bool:
        return all(v.passed for v in self.verdicts)

    def to_json(self) -> dict[str, Any]:
        return {
            "environment": self.environment,
            "wall_seconds": self.wall_seconds,
            "detector_seconds": self.detector_seconds,
            "throughput_events_per_second": self.throughput,
            "results": [
                {"scenario": scenario, "detector": detector, **dataclasses.asdict(summary)}
                for (scenario, detector), summary in self.summaries.items()
            ],
            "targets": [dataclasses.asdict(v) | {"detector": JUDGED} for v in self.verdicts],
            "passed": self.passed,
        }


def _environment(found: Sequence[Detector], seeds: int, quick: bool) -> dict[str, Any]:
    try:
        river_version: str | None = metadata.version("river")
    except metadata.PackageNotFoundError:
        river_version = None
    return {
        "seeds": seeds,
        "quick": quick,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "river": river_version,
        "model_policy_fields": [f.name for f in dataclasses.fields(ModelPolicy)],
        "policies": {d.name: repr(d.policy) for d in found if isinstance(d, DecaywatchDetector)},
    }


def benchmark(seeds: int = 30, quick: bool = False, with_river: bool = True) -> Result:
    """Run every detector on every scenario for seeds ``0 .. seeds-1``."""
    began = time.perf_counter()
    found = detectors(with_river)
    summaries: dict[tuple[str, str], Summary] = {}
    seconds: dict[str, float] = defaultdict(float)
    events: dict[str, int] = defaultdict(int)
    for scenario in scenarios(stable_events=50_000 if quick else 200_000, episodes=2 if quick else 3):
        runs: dict[str, list[Run]] = {d.name: [] for d in found}
        for seed in range(seeds):
            stream = scenario.stream(seed)
            for detector in found:
                run = judge(stream, detector.run(stream.correct), detector.resolves)
                runs[detector.name].append(run)
                seconds[detector.name] += run.seconds
                events[detector.name] += run.events
        for detector in found:
            summaries[(scenario.name, detector.name)] = summarize(runs[detector.name], detector.resolves, scenario.weekly)
    judged = {scenario: summary for (scenario, detector), summary in summaries.items() if detector == JUDGED}
    return Result(
        summaries=summaries,
        verdicts=verdicts(judged),
        resolves={d.name: d.resolves for d in found},
        detector_seconds=dict(seconds),
        throughput={name: events[name] / s if s > 0 else None for name, s in seconds.items()},
        wall_seconds=time.perf_counter() - began,
        environment=_environment(found, seeds, quick),
    )


def render(result: Result) -> str:
    env = result.environment
    header = (
        f"detection benchmark: {env['seeds']} seeds{' (quick)' if env['quick'] else ''}, "
        f"baseline 0.85, threshold 0.1 (line 0.75); river {env['river'] or 'not installed'}"
    )
    policies = "\n".join(f"  {name}: {policy}" for name, policy in env["policies"].items())
    return "\n\n".join(
        [
            header,
            "policies:\n" + policies,
            table(result.summaries, result.resolves),
            verdict_lines(JUDGED, result.verdicts),
            timing_lines(result.detector_seconds, result.throughput, result.wall_seconds),
        ]
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m tests.benchmarks.bench_detection", description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=None, help="seeds per scenario (default 30; 10 with --quick)")
    parser.add_argument("--quick", action="store_true", help="fewer seeds, a 50,000-event stable stream, 2 recovery episodes")
    parser.add_argument("--no-river", action="store_true", help="leave river's detectors out")
    parser.add_argument("--json", type=Path, help="also write the results to this JSON file")
    return parser


def run(args: argparse.Namespace) -> int:
    seeds = args.seeds if args.seeds is not None else (10 if args.quick else 30)
    if seeds < 1:
        raise SystemExit("--seeds must be at least 1")
    result = benchmark(seeds, args.quick, with_river=not args.no_river)
    print(render(result))
    spread = varied.run(seeds)
    quiet = spread.steady_alerts[JUDGED] == 0
    caught = all(delay is not None for delay in spread.fall_delays[JUDGED])
    print(f"\n{varied.render(spread)}\n")
    print(f"{'PASS' if quiet else 'FAIL'}  {JUDGED} / bursty, varied: no alert in any seed on the steady streams")
    print(f"{'PASS' if caught else 'FAIL'}  {JUDGED} / bursty, varied: every fall by twice the threshold caught")
    skewed = imbalance.run(seeds, with_river=not args.no_river)
    skewed_quiet, skewed_caught = imbalance.passed(skewed)
    print(f"\n{imbalance.render(skewed)}\n")
    print(f"{'PASS' if skewed_quiet else 'FAIL'}  {JUDGED} / class imbalance: no alert in any seed on the steady streams")
    print(f"{'PASS' if skewed_caught else 'FAIL'}  {JUDGED} / class imbalance: every fall in recall caught by the recall rule")
    if args.json is not None:
        document = result.to_json() | {
            "bursty_varied": dataclasses.asdict(spread),
            "class_imbalance": dataclasses.asdict(skewed),
        }
        args.json.write_text(json.dumps(document, indent=2) + "\n")
        print(f"\nwrote {args.json}")
    return 0 if result.passed and quiet and caught and skewed_quiet and skewed_caught else 1


def main(argv: Sequence[str] | None = None) -> int:
    return run(build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
