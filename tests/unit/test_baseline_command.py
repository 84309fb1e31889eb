"""``decaywatch baseline``: baseline accuracy per model from a reference file, as config TOML that loads back."""

from __future__ import annotations

import argparse
import io
import tomllib
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest

from decaywatch import baseline
from decaywatch.monitor.config import MonitorConfig
from decaywatch.recording import read_batches
from decaywatch.shared.policy_flags import add_policy_arguments, load_config

T0 = 1_704_067_200.0  # 2024-01-01T00:00:00Z
DAY = 86_400.0
NAMES = ["churn-model", "churn.v2", 'say "hi"', "back\\slash", "tab\there", "ünïcødé 模型", "a b", "x]y", "1234"]


def parse(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    baseline.add_parser(parser.add_subparsers())
    return parser.parse_args(["baseline", *argv])


def run_baseline(argv: Sequence[str], stdin: bytes | None = None) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = baseline.run(parse(argv), stdin=None if stdin is None else io.BytesIO(stdin), stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def reference_events(seed: int = 3, n: int = 4000) -> list[dict[str, Any]]:
    """Labeled and unlabeled predictions of every model in :data:`NAMES`, each right with its own probability."""
    rng = np.random.default_rng(seed)
    accuracy = {name: 0.6 + 0.04 * i for i, name in enumerate(NAMES)}
    events = []
    for i in range(n):
        model = NAMES[int(rng.integers(len(NAMES)))]
        prediction = int(rng.integers(2))
        label = prediction if rng.random() < accuracy[model] else 1 - prediction
        events.append(
            {
                "model": model,
                "prediction": prediction,
                "label": label if rng.random() < 0.8 else None,
                "ts": T0 + DAY * 40 * i / n,
            }
        )
    return events


def expected(events: Sequence[dict[str, Any]]) -> dict[str, tuple[float, str, int]]:
    """An independent computation: (baseline rounded to 4 places, date of the newest labeled event, labeled count)."""
    result = {}
    for name in {e["model"] for e in events}:
        labeled = [e for e in events if e["model"] == name and e["label"] is not None]
        correct = sum(e["prediction"] == e["label"] for e in labeled)
        newest = max(e["ts"] for e in labeled)
        day = datetime.fromtimestamp(newest, tz=UTC).date().isoformat()
        result[name] = (round(correct / len(labeled), 4), day, len(labeled))
    return result


def jsonl(events: Sequence[dict[str, Any] | bytes]) -> bytes:
    return b"".join((e if isinstance(e, bytes) else orjson.dumps(e)) + b"\n" for e in events)


def loaded(text: str) -> MonitorConfig:
    return MonitorConfig.from_mapping(tomllib.loads(text))


def test_output_round_trips_through_tomllib_into_the_config_and_matches_the_file(tmp_path: Path) -> None:
    events = reference_events()
    path = tmp_path / "reference.jsonl"
    path.write_bytes(jsonl(events))
    code, out, err = run_baseline([str(path)])
    assert code == 0, err
    config = loaded(out)
    want = expected(events)
    assert set(config.models) == set(NAMES)
    for name, (accuracy, day, count) in want.items():
        policy = config.policy_for(name)
        assert (policy.baseline, policy.baseline_date) == (accuracy, day), name
        assert f"# from {count:,} labeled events" in out
    assert '[models."churn.v2"]' in out and "[models.churn-model]" in out and '[models."say \\"hi\\""]' in out


def test_the_table_reads_like_the_config_format() -> None:
    events = [
        {"model": "churn-model", "prediction": 1, "label": 1, "ts": T0},
        {"model": "churn-model", "prediction": 1, "label": 0, "ts": T0 + 3 * DAY},
        {"model": "churn-model", "prediction": 0, "label": None, "ts": T0 + 9 * DAY},  # unlabeled: not counted
    ]
    code, out, _ = run_baseline(["-"], stdin=jsonl(events))
    assert code == 0
    assert out == "[models.churn-model]\nbaseline = 0.5000\nbaseline_date = 2024-01-04\n# from 2 labeled events (1 correct)\n"


def test_date_flag_and_output_file_load_as_monitor_config(tmp_path: Path) -> None:
    path = tmp_path / "reference.jsonl"
    path.write_bytes(jsonl(reference_events()))
    target = tmp_path / "baseline.toml"
    code, out, err = run_baseline([str(path), "--output", str(target), "--date", "2024-01-01"])
    assert (code, out) == (0, "") and f"wrote {target}" in err
    parser = argparse.ArgumentParser()
    add_policy_arguments(parser)
    config = load_config(parser.parse_args(["--config", str(target)]))
    assert {policy.baseline_date for policy in config.models.values()} == {"2024-01-01"}


def test_csv_and_jsonl_give_the_same_baselines(tmp_path: Path) -> None:
    events = reference_events(n=500)
    (tmp_path / "r.jsonl").write_bytes(jsonl(events))
    rows = ["model,prediction,label,ts"]
    for e in events:
        model = '"' + e["model"].replace('"', '""') + '"'
        rows.append(f"{model},{e['prediction']},{'' if e['label'] is None else e['label']},{e['ts']}")
    (tmp_path / "r.csv").write_text("\n".join(rows) + "\n")
    from_jsonl = run_baseline([str(tmp_path / "r.jsonl")])
    from_csv = run_baseline([str(tmp_path / "r.csv")])
    assert from_jsonl[0] == from_csv[0] == 0
    assert from_csv[1] == from_jsonl[1]


def test_parallel_reading_gives_the_same_output(tmp_path: Path) -> None:
    path = tmp_path / "reference.jsonl"
    path.write_bytes(jsonl(reference_events(n=5000)))
    one = baseline.measure(read_batches(path.open("rb"), "jsonl"))
    two = baseline.measure(read_batches(path.open("rb"), "jsonl", jobs=2, chunk_bytes=10_000))
    assert baseline.to_toml(one) == baseline.to_toml(two)


def test_invalid_lines_and_unlabeled_models_are_skipped_and_reported() -> None:
    events: list[dict[str, Any] | bytes] = [
        {"model": "m", "prediction": "cat", "label": "cat", "ts": T0},
        b"{broken",
        b"",
        {"model": "m", "prediction": "cat", "label": 1, "ts": T0},  # label type differs: invalid
        {"model": "quiet", "prediction": 1, "label": None, "ts": T0},
        {"model": "m", "prediction": "cat", "label": "dog"},  # no ts: the previous valid event's time
    ]
    code, out, err = run_baseline(["-"], stdin=jsonl(events))
    assert code == 0
    config = loaded(out)
    assert set(config.models) == {"m"}
    assert (config.policy_for("m").baseline, config.policy_for("m").baseline_date) == (0.5, "2024-01-01")
    assert "quiet: no labeled events, no baseline" in err
    assert "invalid lines skipped: 3" in err and "malformed_json" in err and "invalid_label" in err


def test_no_models_gives_an_empty_document() -> None:
    code, out, _ = run_baseline(["-"], stdin=b"")
    assert (code, out) == (0, "") and loaded(out).models == {}


def test_exit_1_when_the_file_cannot_be_read_or_the_output_written(tmp_path: Path) -> None:
    code, out, err = run_baseline([str(tmp_path / "missing.jsonl")])
    assert (code, out) == (1, "") and "cannot read" in err
    path = tmp_path / "reference.jsonl"
    path.write_bytes(jsonl(reference_events(n=50)))
    code, _, err = run_baseline([str(path), "--output", str(tmp_path / "no-such-dir" / "b.toml")])
    assert code == 1 and "cannot write" in err


@pytest.mark.parametrize("argv", [["f", "--date", "2024-13-01"], ["f", "--date", "01/02/2024"], ["f", "--date", "20240101"], []])
def test_exit_2_for_a_usage_error(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        parse(argv)
    assert exit_info.value.code == 2


@pytest.mark.parametrize("name", [*NAMES, "", "new\nline", "ctl\x01\x7f", "'single'", "[models]", "=", "#"])
def test_toml_key_round_trips_any_model_name(name: str) -> None:
    assert tomllib.loads(f"[models.{baseline.toml_key(name)}]\nbaseline = 0.5\n")["models"] == {name: {"baseline": 0.5}}
