"""The manifest: every number agrees with a recomputation from the stream, and it is plain JSON."""

from __future__ import annotations

import importlib.metadata
import itertools
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest

from decaywatch.producer.manifest import SCHEMA, build_manifest, iso8601, write_manifest
from decaywatch.producer.scenario import ModelSpec, Stable, parse_models
from decaywatch.producer.stream import SyntheticStream, generate_all

Run = tuple[list[ModelSpec], list[SyntheticStream], dict[str, Any]]
SPEC_TEXT = "churn=lesson(label_ratio=0.8),fraud=sudden(from=0.9,to=0.6,at=20000),ads=stable,slow=gradual"


@pytest.fixture(scope="module")
def run() -> Run:
    specs = parse_models(SPEC_TEXT)
    streams = generate_all(specs, 42)
    return specs, streams, build_manifest(streams, 42, specs)


def test_manifest_is_plain_json(run: Run) -> None:
    _, _, manifest = run
    assert json.loads(json.dumps(manifest)) == manifest  # no numpy types, no NaN
    assert orjson.loads(orjson.dumps(manifest)) == manifest
    assert manifest["schema"] == SCHEMA
    assert manifest["seed"] == 42
    assert manifest["decaywatch_version"] == importlib.metadata.version("decaywatch")
    assert list(manifest["models"]) == ["churn", "fraud", "ads", "slow"]


def test_totals_and_per_model_numbers_match_the_streams(run: Run) -> None:
    _, streams, manifest = run
    assert manifest["events"] == sum(len(s) for s in streams)
    assert manifest["labeled"] == sum(int(s.labeled.sum()) for s in streams)
    for stream in streams:
        entry = manifest["models"][stream.model]
        labeled = stream.labeled
        correct = int(np.count_nonzero((stream.prediction == stream.label) & labeled))
        assert entry["events"] == len(stream)
        assert entry["labeled"] == int(np.count_nonzero(labeled))
        assert entry["correct"] == correct
        assert entry["realized_accuracy"] == pytest.approx(correct / np.count_nonzero(labeled))
        assert entry["expected_accuracy"] == pytest.approx(float(np.mean(stream.expected_accuracy)))
        assert entry["ts_first"] == stream.ts[0] and entry["ts_last"] == stream.ts[-1]


def test_every_segment_agrees_with_a_recomputation(run: Run) -> None:
    _, streams, manifest = run
    for stream in streams:
        segments = manifest["models"][stream.model]["segments"]
        assert segments[0]["start"] == 0 and segments[-1]["stop"] == len(stream)
        assert all(a["stop"] == b["start"] for a, b in itertools.pairwise(segments))
        for seg in segments:
            rows = np.arange(seg["start"], seg["stop"])
            labeled = rows[stream.labeled[rows]]
            right = labeled[stream.prediction[labeled] == stream.label[labeled]]
            assert seg["events"] == len(rows)
            assert seg["labeled"] == len(labeled) and seg["correct"] == len(right)
            assert seg["realized_accuracy"] == pytest.approx(len(right) / len(labeled))
            assert seg["expected_accuracy"] == pytest.approx(stream.expected_accuracy[rows].mean())
            assert seg["x_mean"] == pytest.approx(stream.x[rows].mean())
            assert seg["ts_first"] == stream.ts[rows[0]] and seg["ts_last"] == stream.ts[rows[-1]]
            assert seg["time_first"] == iso8601(seg["ts_first"])


def test_lesson_entry(run: Run) -> None:
    _, _, manifest = run
    churn = manifest["models"]["churn"]
    assert churn["spec"] == "churn=lesson(label_ratio=0.8)"
    assert churn["scenario"] == "lesson"
    assert churn["params"] == {"from": 0.85, "to": 0.65, "label_ratio": 0.8}
    assert [s["name"] for s in churn["segments"]] == [f"week {w}" for w in range(22)]
    assert churn["segments"][0]["population_accuracy"] == pytest.approx(0.85)
    assert churn["segments"][-1]["population_accuracy"] == pytest.approx(0.65)
    assert churn["segments"][-1]["events"] == 108_571 - 21 * 5000
    assert churn["segments"][3]["input_mean_unclipped"] == pytest.approx(0.62)
    assert churn["calibration"]["a0"] == pytest.approx(0.87722, abs=1e-5)
    assert churn["calibration"]["slope"] == pytest.approx(0.45499, abs=1e-5)
    assert churn["change_points"] == []
    below = churn["first_below"]["0.75"]
    assert below["index"] == 40_000 and below["segment"] == "week 8"
    assert below["time"] == "2024-02-26T00:00:00.000Z"
    assert churn["time_first"] == "2024-01-01T00:00:00.000Z"
    assert churn["time_last"].startswith("2024-05-31T23:")


def test_sudden_entry(run: Run) -> None:
    _, streams, manifest = run
    fraud = manifest["models"]["fraud"]
    assert fraud["params"] == {"from": 0.9, "to": 0.6, "at": 20_000, "label_ratio": 1.0}
    (change,) = fraud["change_points"]
    assert change["kind"] == "step" and change["index"] == 20_000
    assert change["ts"] == streams[1].ts[20_000] and change["time"] == "2024-01-29T00:00:00.000Z"
    assert (change["from"], change["to"]) == (0.9, 0.6)
    before, after = fraud["segments"]
    assert (before["name"], before["stop"], after["name"], after["start"]) == ("before", 20_000, "after", 20_000)
    assert before["expected_accuracy"] == pytest.approx(0.9) and after["expected_accuracy"] == pytest.approx(0.6)
    assert fraud["first_below"]["0.75"]["index"] == 20_000


def test_gradual_entry_has_a_ramp(run: Run) -> None:
    _, streams, manifest = run
    slow = manifest["models"]["slow"]
    (ramp,) = slow["change_points"]
    assert (ramp["kind"], ramp["index"], ramp["span"], ramp["end_index"]) == ("ramp", 25_000, 50_000, 75_000)
    assert ramp["end_ts"] == streams[3].ts[75_000]
    assert [s["name"] for s in slow["segments"]] == ["before", "ramp", "after"]
    assert slow["segments"][1]["expected_accuracy"] == pytest.approx(0.75, abs=1e-4)
    assert slow["first_below"]["0.75"]["index"] == 50_001  # exactly 0.75 at the ramp's midpoint is not below


def test_a_stable_model_never_falls_below(run: Run) -> None:
    _, _, manifest = run
    ads = manifest["models"]["ads"]
    assert ads["first_below"] == {"0.75": None}
    assert ads["change_points"] == [] and [s["name"] for s in ads["segments"]] == ["all"]


def test_thresholds_are_configurable_and_unlabeled_segments_have_no_realized_accuracy() -> None:
    specs = [ModelSpec("m", Stable(label_ratio=0.0))]
    streams = generate_all(specs, 1, 100)
    manifest = build_manifest(streams, 1, specs, thresholds=(0.9, 0.5))
    entry = manifest["models"]["m"]
    assert entry["first_below"]["0.9"]["index"] == 0 and entry["first_below"]["0.5"] is None
    assert entry["realized_accuracy"] is None and entry["segments"][0]["realized_accuracy"] is None
    assert manifest["thresholds"] == [0.9, 0.5]


def test_streams_must_match_specs() -> None:
    specs = parse_models("a,b")
    streams = generate_all(specs, 1, 10)
    with pytest.raises(ValueError, match="do not match specs"):
        build_manifest(streams[::-1], 1, specs)


def test_write_manifest_round_trips_and_leaves_no_temp_files(run: Run, tmp_path: Path) -> None:
    _, _, manifest = run
    path = write_manifest(tmp_path / "manifest.json", manifest)
    text = path.read_text(encoding="utf-8")
    assert text.startswith('{\n  "schema"') and text.endswith("}\n")  # indented, newline-terminated
    assert orjson.loads(text) == manifest
    assert [p.name for p in tmp_path.iterdir()] == ["manifest.json"]
    assert path.stat().st_mode & 0o777 == 0o644


def test_write_manifest_into_a_missing_directory_fails_cleanly(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        write_manifest(tmp_path / "missing" / "m.json", {"a": 1})


def test_iso8601() -> None:
    assert iso8601(1_704_067_320.96) == "2024-01-01T00:02:00.960Z"
    assert datetime.fromisoformat(iso8601(1_717_200_000)) == datetime(2024, 6, 1, tzinfo=UTC)
