"""Parquet recordings: the same events as JSON Lines give the same batches, rejections and replay bytes.

The truth every test compares with is the JSON Lines path (``monitor.codec``
and ``monitor.schema.validate`` over one object per line): a Parquet file is
written here with pyarrow from the same events, a null standing for an absent
field.
"""

from __future__ import annotations

import io
import math
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa  # type: ignore[import-untyped,unused-ignore]  # pyarrow ships no type information
import pyarrow.parquet as pq  # type: ignore[import-untyped,unused-ignore]
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from decaywatch.monitor.eventkey import event_keys
from decaywatch.recording import RecordedBatch, read_batches
from tests.unit.test_replay import T0, drifting_events, ev, jsonl, run_replay, to_csv


def to_parquet(events: Sequence[dict[str, Any]], schema: Any = None, row_group: int | None = None) -> bytes:
    """The events as one Parquet file, one column per field any event has (types inferred from all rows)."""
    names = sorted({name for event in events for name in event})
    table = (
        pa.Table.from_pylist(list(events), schema=schema)
        if schema is not None
        else pa.Table.from_pydict({name: [event.get(name) for event in events] for name in names})
    )
    out = io.BytesIO()
    pq.write_table(table, out, row_group_size=row_group)
    return out.getvalue()


def dense_jsonl(events: Sequence[dict[str, Any]]) -> bytes:
    """JSON Lines without the null fields (a Parquet null is an absent field)."""
    return jsonl([{k: v for k, v in event.items() if v is not None} for event in events])


def records(batches: Sequence[RecordedBatch]) -> list[tuple[Any, ...]]:
    """Every valid event's columns and every rejection, by line (NaN compared as text)."""
    out: list[tuple[Any, ...]] = []
    for batch in batches:
        e = batch.events
        assert e.predictions is not None and e.labels is not None and e.score is not None
        assert e.role is not None and e.key is not None
        for i in range(len(e)):
            out.append(
                (
                    int(e.source_index[i]),
                    e.models[e.model_codes[i]],
                    bool(e.labeled[i]),
                    bool(e.correct[i]),
                    repr(float(e.event_time[i])),
                    repr(e.predictions[i]),
                    repr(e.labels[i]),
                    repr(float(e.score[i])),
                    int(e.role[i]),
                    int(e.key[i]),
                )
            )
        out.extend((r.index, "rejected", r.reason, r.detail) for r in batch.rejections)
    return sorted(out, key=lambda record: record[0])


def read(data: bytes, fmt: str, **kwargs: Any) -> list[RecordedBatch]:
    return list(read_batches(io.BytesIO(data), fmt, **kwargs))


# --- the same replay from every format -----------------------------------------------------------


@pytest.mark.parametrize("decision", ["window", "sequential"])
def test_parquet_csv_and_jsonl_of_the_same_events_give_identical_alert_lines(tmp_path: Path, decision: str) -> None:
    events = drifting_events(7)
    (tmp_path / "e.jsonl").write_bytes(jsonl(events))
    (tmp_path / "e.csv").write_bytes(to_csv(events))
    (tmp_path / "e.parquet").write_bytes(to_parquet(events, row_group=97))  # record batches cut across row groups
    (tmp_path / "policy.toml").write_text(f'[defaults]\ndecision = "{decision}"\n')
    flags = ["--config", str(tmp_path / "policy.toml"), "--baseline", "0.9", "--windows", "40", "--min-samples", "40"]
    code_j, out_j, _ = run_replay([str(tmp_path / "e.jsonl"), *flags])
    code_c, out_c, _ = run_replay([str(tmp_path / "e.csv"), *flags])
    code_p, out_p, err_p = run_replay([str(tmp_path / "e.parquet"), *flags])
    assert code_j == code_c == code_p == 0
    assert "firing" in {orjson.loads(line)["status"] for line in out_j.splitlines()}
    assert out_p == out_j == out_c
    assert "(parquet): 600 valid events, 0 invalid" in err_p


def test_format_flag_selects_parquet_whatever_the_name(tmp_path: Path) -> None:
    events = drifting_events(3, n=60)
    (tmp_path / "log.bin").write_bytes(to_parquet(events))
    (tmp_path / "log.jsonl").write_bytes(jsonl(events))
    small = ["--baseline", "0.85", "--windows", "4", "--min-samples", "4"]
    code, out, err = run_replay([str(tmp_path / "log.bin"), "--format", "parquet", *small])
    assert code == 0 and "(parquet)" in err
    assert out == run_replay([str(tmp_path / "log.jsonl"), *small])[1]
    assert run_replay(["-", "--format", "parquet", *small], stdin=to_parquet(events))[1] == out  # a pipe: read whole


def test_the_same_rows_give_the_same_batches_as_json_lines_across_record_batches() -> None:
    events: list[dict[str, Any]] = [ev("a" if i % 3 else "b", i % 2, (i // 2) % 2, T0 + i, score=0.25) for i in range(50)]
    events[4] = {**events[4], "model": ""}  # invalid_model
    events[5] = {**events[5], "score": 1.5}  # invalid_score, next to another bad row: one run of dict rows
    events[9] = {**events[9], "ts": None}  # no ts: the previous valid event's time
    events[10] = {**events[10], "ts": -3.0}  # invalid_timestamp
    events[20] = {"model": "a", "event_id": "e-20", "label": 1, "ts": T0 + 20}  # a label event
    events[21] = {**events[21], "label": None, "event_id": "e-20"}  # a pending prediction
    events[22] = {**events[22], "prediction": None, "label": None}  # missing_prediction
    events[30] = {**events[30], "ts": None}  # at a record batch boundary (rows 30..39 in one batch)
    truth = records(read(dense_jsonl(events), "jsonl"))
    assert [r[2] for r in truth if r[1] == "rejected"] == [
        "invalid_model",
        "invalid_score",
        "invalid_timestamp",
        "missing_prediction",
    ]
    data = to_parquet(events)
    for rows in (1, 3, 10, 64):
        assert records(read(data, "parquet", parquet_rows=rows)) == truth


def test_timestamp_columns_read_as_the_rfc3339_strings_with_the_same_instant() -> None:
    instants = [datetime(2024, 1, 1, 0, 0, 0, 123456, tzinfo=UTC), datetime(2024, 3, 5, 7, 8, 9, 1000, tzinfo=UTC)]
    strings = [{"model": "m", "prediction": 1, "label": 1, "ts": t.isoformat().replace("+00:00", "Z")} for t in instants]
    truth = records(read(jsonl(strings), "jsonl"))
    assert [float(r[4]) for r in truth] == [t.timestamp() for t in instants]
    for unit, zone in [("us", "UTC"), ("us", None), ("ns", "UTC"), ("ms", "+00:00")]:
        if unit == "ms":  # whole milliseconds only
            instants_here = [t.replace(microsecond=t.microsecond // 1000 * 1000) for t in instants]
            strings_here = [{**e, "ts": t.isoformat()} for e, t in zip(strings, instants_here, strict=True)]
            expected = records(read(jsonl(strings_here), "jsonl"))
        else:
            instants_here, expected = instants, truth
        values = [t if zone is not None else t.replace(tzinfo=None) for t in instants_here]
        schema = pa.schema(
            [("model", pa.string()), ("prediction", pa.int64()), ("label", pa.int64()), ("ts", pa.timestamp(unit, zone))]
        )
        rows = [{**e, "ts": v} for e, v in zip(strings, values, strict=True)]
        assert records(read(to_parquet(rows, schema), "parquet")) == expected, (unit, zone)
    # and the strings themselves, read from a string column
    assert records(read(to_parquet(strings), "parquet")) == truth


def test_a_timestamp_before_1970_is_rejected_like_its_json_number() -> None:
    schema = pa.schema([("model", pa.string()), ("prediction", pa.int64()), ("ts", pa.timestamp("s", "UTC"))])
    rows = [{"model": "m", "prediction": 1, "ts": datetime(1969, 12, 31, 23, 59, 59, tzinfo=UTC)}]
    truth = read(jsonl([{"model": "m", "prediction": 1, "ts": -1.0}]), "jsonl")
    assert records(read(to_parquet(rows, schema), "parquet")) == records(truth)
    assert truth[0].rejections[0].reason == "invalid_timestamp"


def test_features_as_a_struct_or_flat_columns_and_a_non_numeric_one_rejected() -> None:
    struct = [ev("m", 1, 1, T0, features={"x": 0.5, "y": 2}), ev("m", 1, 0, T0 + 1, features={"x": None, "y": 1})]
    dense = [{**e, "features": _dense(e["features"])} for e in struct]  # a null field of the struct: no such feature
    assert records(read(to_parquet(struct), "parquet")) == records(read(jsonl(dense), "jsonl"))
    flat = [{**ev("m", 1, 1, T0), "features.x": 0.5, "features.kind": "big"}, {**ev("m", 1, 1, T0 + 1), "features.x": 0.7}]
    (batch,) = read(to_parquet(flat), "parquet")
    assert [(r.index, r.reason) for r in batch.rejections] == [(0, "invalid_features")]
    assert "feature 'kind' must be a number, not string" in batch.rejections[0].detail
    assert batch.events.source_index.tolist() == [1]


def test_columns_of_other_types_are_rejected_row_by_row_as_their_json_values_would_be() -> None:
    cases: list[list[dict[str, Any]]] = [
        [ev("m", 1.5, 1.5, T0), ev("m", 2.0, None, T0)],  # float predictions: invalid_prediction
        [ev("m", 1, True, T0), ev("m", 0, None, T0 + 1)],  # int prediction, boolean label: invalid_label, then a valid row
        [ev("m", 1, 1, T0, score=True)],  # a boolean score: invalid_score
        [ev("m", 1, 1, T0, model_version=3)],  # invalid_field
        [ev("m", 1, 1, T0, event_id=2.5)],  # invalid_field
    ]
    for events in cases:
        truth = records(read(dense_jsonl(events), "jsonl"))
        assert any(r[1] == "rejected" for r in truth)
        assert records(read(to_parquet(events), "parquet")) == truth, events


def test_dictionary_columns_and_string_predictions() -> None:
    events = [ev("b" if i % 2 else "a", "cat" if i % 3 else "dog", "cat", T0 + i, event_id=f"e{i}") for i in range(12)]
    events[5]["label"] = None  # pending
    table = pa.Table.from_pylist(events)
    table = table.set_column(0, "model", table.column("model").dictionary_encode())
    table = table.set_column(1, "prediction", table.column("prediction").dictionary_encode())
    out = io.BytesIO()
    pq.write_table(table, out)
    assert records(read(out.getvalue(), "parquet", parquet_rows=5)) == records(read(dense_jsonl(events), "jsonl"))


def test_models_are_numbered_in_order_of_first_appearance_in_each_batch() -> None:
    events = [ev(m, 1, 1, T0) for m in ["z", "a", "z", "m", "a"]]
    (batch,) = read(to_parquet(events), "parquet")
    assert batch.events.models == ("z", "a", "m")
    assert batch.events.model_codes.tolist() == [0, 1, 0, 2, 1]
    later = read(to_parquet([ev(m, 1, 1, T0) for m in ["z", "a", "m", "a", "m"]]), "parquet", parquet_rows=3)
    assert [b.events.models for b in later] == [("z", "a", "m"), ("a", "m")]  # not the file's dictionary order
    assert [b.events.model_codes.tolist() for b in later] == [[0, 1, 2], [0, 1]]


def test_event_ids_are_keyed_whether_or_not_their_row_group_needs_them() -> None:
    events = [ev("m", 1, 1, T0 + i, event_id=f"e{i}") for i in range(6)] + [ev("m", 1, None, T0 + 6, event_id="e6")]
    truth = records(read(dense_jsonl(events), "jsonl"))
    assert truth[-1][8:] == (1, int(event_keys(["e6"])[0]))  # the last one is pending, under its id's key
    assert records(read(to_parquet(events, row_group=3), "parquet")) == truth  # groups 1-2 skip event_id, group 3 not


def test_nan_score_and_ts_are_rejected() -> None:
    events = [ev("m", 1, 1, T0, score=math.nan), ev("m", 1, 1, math.nan), ev("m", 1, 1, T0 + 1)]
    batches = read(to_parquet(events), "parquet")
    assert [(r.index, r.reason) for b in batches for r in b.rejections] == [(0, "invalid_score"), (1, "invalid_timestamp")]
    assert [i for b in batches for i in b.events.source_index.tolist()] == [2]


def test_an_empty_parquet_file_replays_nothing(tmp_path: Path) -> None:
    path = tmp_path / "empty.parquet"
    pq.write_table(pa.table({"model": pa.array([], pa.string()), "prediction": pa.array([], pa.int64())}), path)
    code, out, err = run_replay([str(path), "--baseline", "0.9"])
    assert (code, out) == (0, b"") and "replayed 0 lines" in err


def test_a_file_that_is_not_parquet_is_unreadable(tmp_path: Path) -> None:
    path = tmp_path / "events.parquet"
    path.write_bytes(jsonl(drifting_events(1, n=5)))
    code, out, err = run_replay([str(path), "--baseline", "0.9"])
    assert (code, out) == (1, b"")
    assert err.startswith(f"decaywatch replay: cannot read {path}: not a Parquet file")


def test_without_pyarrow_one_line_names_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "events.parquet"
    path.write_bytes(to_parquet(drifting_events(1, n=5)))
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # import pyarrow now raises ImportError
    code, out, err = run_replay([str(path), "--baseline", "0.9"])
    assert (code, out) == (1, b"")
    assert err.count("\n") == 1 and "pip install 'decaywatch[parquet]'" in err


# --- any events, any record batch size ------------------------------------------------------------

LABEL_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "int": st.integers(-2, 2),
    "str": st.sampled_from(["a", "b", ""]),
    "bool": st.booleans(),
}
TIMES: dict[str, st.SearchStrategy[Any]] = {
    "float": st.one_of(st.floats(-10.0, 3e11, allow_nan=False), st.just(T0 + 0.25)),
    "int": st.integers(-5, 2_000_000_000),
    "str": st.sampled_from(["2024-01-01T00:00:00Z", "2024-01-01t00:00:01.5+01:00", "2024-01-01 00:00:02", "soon"]),
}


@st.composite
def recordings(draw: st.DrawFn) -> list[dict[str, Any]]:
    kind = draw(st.sampled_from(sorted(LABEL_VALUES)))
    ts_kind = draw(st.sampled_from(sorted(TIMES)))
    value = LABEL_VALUES[kind]
    maybe = st.one_of(st.none(), value)
    event = st.fixed_dictionaries(
        {
            "model": st.one_of(st.none(), st.sampled_from(["a", "b", "", "é" * 256, "x" * 257])),
            "prediction": maybe,
            "label": maybe,
            "ts": st.one_of(st.none(), TIMES[ts_kind]),
            "event_id": st.one_of(st.none(), st.sampled_from(["e-1", "e-2"])),
            "score": st.one_of(st.none(), st.floats(-0.5, 1.5, allow_nan=False)),
            "features": st.one_of(st.none(), st.fixed_dictionaries({"x": st.one_of(st.none(), st.floats(-1, 1))})),
        }
    )
    return draw(st.lists(event, min_size=1, max_size=40))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(events=recordings(), rows=st.integers(1, 50))
def test_any_recording_reads_as_its_json_lines(events: list[dict[str, Any]], rows: int) -> None:
    truth = records(read(dense_jsonl([{**e, "features": e["features"] and _dense(e["features"])} for e in events]), "jsonl"))
    assert records(read(to_parquet(events), "parquet", parquet_rows=rows)) == truth


def _dense(features: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in features.items() if v is not None}


def test_nanoseconds_are_truncated_to_the_microsecond() -> None:
    nanos = 1_704_067_200_123_456_789  # 2024-01-01T00:00:00.123456789Z
    schema = pa.schema([("model", pa.string()), ("prediction", pa.int64()), ("ts", pa.timestamp("ns", "UTC"))])
    table = pa.table({"model": ["m"], "prediction": [1], "ts": pa.array([nanos], pa.timestamp("ns", "UTC"))}, schema=schema)
    out = io.BytesIO()
    pq.write_table(table, out)
    truth = read(jsonl([{"model": "m", "prediction": 1, "ts": "2024-01-01T00:00:00.123456Z"}]), "jsonl")
    assert records(read(out.getvalue(), "parquet")) == records(truth)


def test_the_benchmarks_parquet_file_holds_the_events_of_its_json_lines_file(tmp_path: Path) -> None:
    from tests.benchmarks.bench_replay import write_jsonl, write_parquet

    assert write_parquet(tmp_path / "e.parquet", 300, row_group=128) == write_jsonl(tmp_path / "e.jsonl", 300) == 600
    truth = records(read((tmp_path / "e.jsonl").read_bytes(), "jsonl"))
    assert records(read((tmp_path / "e.parquet").read_bytes(), "parquet")) == truth
