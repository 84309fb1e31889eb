"""The pure parts of the fleet memory benchmark (tests/benchmarks/bench_fleet_memory.py): the walk that says
where the bytes are, the grouping by owner, the marginal cost per model, and the event batches."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

from tests.benchmarks.bench_fleet_memory import Tally, batches, marginal_kib, owner, per_model_rows, walk


@dataclass
class Ring:
    bits: Any
    times: Any
    shared: Any = None


def test_walk_counts_each_array_once_and_a_views_base_once() -> None:
    shared = np.zeros(1000, np.uint8)
    base = np.zeros((100, 5), np.uint8)
    a = Ring(base, np.zeros(100), shared)
    b = Ring(base[:10], np.zeros(100), shared)  # a view of the same base
    tally = Tally()
    seen: set[int] = set()

    walk(a, "a", tally, seen)
    walk(b, "b", tally, seen)

    assert tally.arrays == {"a.bits": 500, "a.times": 800, "a.shared": 1000, "b.times": 800}
    assert sum(tally.arrays.values()) == 500 + 800 + 1000 + 800


def test_walk_renames_model_keys_so_that_models_add_up() -> None:
    fleet = {"model-1": np.zeros(8), "model-2": np.zeros(8), "other": np.zeros(4)}
    tally = Tally()

    walk(fleet, "snapshots", tally, set(), {"model-1": "model", "model-2": "model"})

    assert tally.arrays == {"snapshots[model]": 128, "snapshots['other']": 32}
    assert tally.array_count["snapshots[model]"] == 2


def test_walk_counts_python_objects_and_skips_code() -> None:
    @dataclass
    class Holder:
        name: str
        parts: list[int]
        func: Any

    tally = Tally()
    walk(Holder("x" * 1000, [1, 2, 3], len), "h", tally, set())

    assert tally.objects["h.name"] >= 1000
    assert "h.func" not in tally.objects
    assert tally.arrays == {}


def test_owner_keeps_subscripts_with_their_attribute() -> None:
    assert owner("tracker.windows[10000]._groups[0][1]._bits", depth=2) == "tracker.windows[10000]"
    assert owner("exporter._rendered._blocks[model].lines[3]", depth=3) == "exporter._rendered._blocks[model]"
    assert owner("tracker.time_windows['1.5h']._count", depth=2) == "tracker.time_windows['1.5h']"


def test_per_model_rows_divide_by_the_models_largest_first() -> None:
    tally = Tally({"t.bits": 4000, "t.small": 20}, {"t.bits": 2, "t.small": 2}, {"t.bits": 224, "t.rules.x": 1000})

    rows = per_model_rows(tally, 2, depth=2)

    assert rows[0] == ("t.bits", 1, 2000.0, 112.0)
    assert ("t.rules", 0, 0.0, 500.0) in rows


def test_marginal_kib_between_consecutive_counts() -> None:
    assert marginal_kib({10_000: 2_000 * 2**20, 1000: 200 * 2**20}) == {(1000, 10_000): pytest.approx(204.8)}


def test_batches_hold_whole_runs_of_each_models_events() -> None:
    made = list(batches(7, 20_000))

    assert [len(events) for events, _ in made] == [40_000] * 3 + [20_000]
    first, fallback = made[0]
    assert [first[0]["model"], first[19_999]["model"], first[20_000]["model"]] == ["model-00000"] * 2 + ["model-00001"]
    assert fallback.shape == (40_000,)
    ts = [e["ts"] for e in first[:20_000]]
    assert ts == sorted(ts) and ts[-1] - ts[0] > 7 * 86_400
