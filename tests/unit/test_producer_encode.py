"""Wire encoding: every event round-trips through JSON, unlabeled events say null, records interleave by time."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import orjson
import pytest

from decaywatch.producer.encode import MODEL_VERSION, encode_records, encode_stream, event_dicts, iter_values
from decaywatch.producer.scenario import ModelSpec, Stable, Sudden, parse_models
from decaywatch.producer.stream import SyntheticStream, generate, generate_all, interleave


@pytest.fixture(scope="module")
def stream() -> SyntheticStream:
    return generate(ModelSpec("fraud-model", Sudden(label_ratio=0.6)), np.random.default_rng(11), 3000)


def test_values_round_trip_through_json(stream: SyntheticStream) -> None:
    values = encode_stream(stream)
    assert len(values) == len(stream)
    events = [orjson.loads(v) for v in values]
    assert [json.loads(v.decode("utf-8")) for v in values[:50]] == events[:50]  # plain JSON too
    for i, event in enumerate(events):
        assert set(event) == {"model", "event_id", "model_version", "ts", "prediction", "score", "label", "features"}
        assert event["model"] == "fraud-model"
        assert event["event_id"] == f"fraud-model-{i}"
        assert event["model_version"] == MODEL_VERSION == "v1"
        assert event["ts"] == stream.ts[i] and isinstance(event["ts"], float)
        assert event["prediction"] == stream.prediction[i] and type(event["prediction"]) is int
        assert event["score"] == stream.score[i]
        assert event["features"] == {"x": stream.x[i]}
        if stream.labeled[i]:
            assert event["label"] == stream.label[i] and type(event["label"]) is int
        else:
            assert event["label"] is None
    assert any(e["label"] is None for e in events) and any(e["label"] is not None for e in events)


def test_event_dicts_are_what_gets_serialised(stream: SyntheticStream) -> None:
    assert [orjson.dumps(d) for d in event_dicts(stream)] == list(iter_values(stream))


def test_records_interleave_models_by_event_time_keyed_by_model() -> None:
    streams = generate_all(parse_models("a=lesson,b=stable"), 42, 100)
    records = list(encode_records(streams, interleave(streams)))
    assert len(records) == 200
    assert [key for key, _ in records[:4]] == [b"a", b"b", b"a", b"b"]
    events = [orjson.loads(value) for _, value in records]
    assert all(event["model"].encode() == key for (key, _), event in zip(records, events, strict=True))
    assert [e["ts"] for e in events] == sorted(e["ts"] for e in events)
    assert [e["event_id"] for e in events if e["model"] == "a"] == [f"a-{i}" for i in range(100)]


def test_records_without_an_order_are_concatenated() -> None:
    streams = generate_all(parse_models("a,b"), 1, 5)
    assert [key for key, _ in encode_records(streams)] == [b"a"] * 5 + [b"b"] * 5


def test_an_order_that_skips_or_repeats_events_is_refused() -> None:
    streams = generate_all(parse_models("a,b"), 1, 3)
    stream_index, event_index = interleave(streams)
    with pytest.raises(ValueError, match="once, in its own order"):
        list(encode_records(streams, (stream_index[::-1].copy(), event_index[::-1].copy())))
    with pytest.raises(ValueError, match="once, in its own order"):
        list(encode_records(streams, (stream_index[:-1], event_index[:-1])))


def test_same_seed_same_bytes_different_seed_different_bytes() -> None:
    specs = parse_models("churn=lesson,fraud=sudden(label_ratio=0.5),ads=gradual")

    def digest(seed: int) -> str:
        streams = generate_all(specs, seed, 20_000)
        h = hashlib.sha256()
        for key, value in encode_records(streams, interleave(streams)):
            h.update(key)
            h.update(value)
        return h.hexdigest()

    assert digest(42) == digest(42)
    assert digest(42) != digest(43)


def test_non_ascii_model_ids_are_utf8() -> None:
    stream = generate(ModelSpec("modèle-ü", Stable()), np.random.default_rng(0), 2)
    (key, value), _ = encode_records([stream])
    assert key == "modèle-ü".encode()
    assert orjson.loads(value)["event_id"] == "modèle-ü-0"
