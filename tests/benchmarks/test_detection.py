"""The detection benchmark as a test (``make bench``): decaywatch's default policy must meet every target.

Not in the default test paths: the full benchmark takes a minute or more.  Run
with ``-s`` to see the table.
"""

from __future__ import annotations

import numpy as np
import pytest

from decaywatch.producer.manifest import build_manifest
from decaywatch.producer.scenario import parse_models
from decaywatch.producer.stream import generate_all
from tests.benchmarks import imbalance, varied
from tests.benchmarks.bench_detection import benchmark, render
from tests.benchmarks.scenario import EVENTS_PER_WEEK, LINE, scenarios


def test_lesson_crossing_matches_the_producer_manifest() -> None:
    specs = parse_models("m=lesson")
    manifest = build_manifest(generate_all(specs, 0), 0, specs)
    crossing = manifest["models"]["m"]["first_below"][repr(LINE)]
    lesson = next(s for s in scenarios() if s.name == "lesson").stream(0)

    assert int(np.argmax(lesson.accuracy < LINE)) == crossing["index"]
    assert crossing["index"] // EVENTS_PER_WEEK == 8
    assert crossing["time"].startswith("2024-02-26")


@pytest.mark.timeout(1800)
def test_detection_targets() -> None:
    result = benchmark(seeds=30)
    print("\n" + render(result))

    failed = [f"{v.scenario}: {v.target} [{v.measured}]" for v in result.verdicts if not v.passed]
    assert len(result.verdicts) == 12
    assert not failed, "targets missed:\n" + "\n".join(failed)


@pytest.mark.timeout(600)
def test_bursty_streams_of_every_kind_page_no_one_and_their_falls_are_caught() -> None:
    spread = varied.run(30)
    print("\n" + varied.render(spread))
    assert spread.steady_alerts["decaywatch"] == 0
    assert all(delay is not None for delay in spread.fall_delays["decaywatch"])


@pytest.mark.timeout(600)
def test_a_two_percent_positive_model_losing_recall_is_caught_by_its_recall_rule_and_nothing_pages_when_steady() -> None:
    skewed = imbalance.run(30, with_river=False)
    print("\n" + imbalance.render(skewed))
    assert imbalance.passed(skewed) == (True, True)
    assert all(delay is None for delay in skewed.fall_delays["decaywatch / degradation"]), "accuracy hides this fall"
