"""Delayed labels: predictions go out without their label, label events follow at prediction time + delay.

The truth here is recomputed from the wire: each test decodes the JSON the
producer would send and joins label events to predictions by ``event_id`` in
plain Python, so nothing is checked against the arrays that produced it.
"""

from __future__ import annotations

import hashlib
import math
from typing import Any

import numpy as np
import orjson
import pytest

from decaywatch.producer.delay import DelayError, Fixed, LogNormal, format_duration, parse_delay
from decaywatch.producer.encode import encode_records, routed_records
from decaywatch.producer.manifest import build_manifest
from decaywatch.producer.scenario import ModelSpec, SpecError, Stable, format_models, parse_models
from decaywatch.producer.stream import generate, generate_all, interleave, rng_for

DAY = 86_400.0
Z90, Z99 = 1.2815515655446004, 2.3263478740408408  # standard normal quantiles, from the tables


def decoded(spec_text: str, seed: int = 42, count: int | None = None) -> list[dict[str, Any]]:
    streams = generate_all(parse_models(spec_text), seed, count)
    return [orjson.loads(value) for _, value in encode_records(streams, interleave(streams))]


def split(events: list[dict[str, Any]]) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
    """Predictions and label events by event id (each id at most once of each kind)."""
    predictions = {e["event_id"]: e for e in events if "prediction" in e}
    labels = {e["event_id"]: e for e in events if "prediction" not in e}
    assert len(predictions) + len(labels) == len(events), "an event id was sent twice"
    return predictions, labels


# --- the delay spec -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "delay"),
    [
        ("2d", Fixed(2 * DAY)),
        ("90m", Fixed(5400.0)),
        ("0s", Fixed(0.0)),
        ("1.5h", Fixed(5400.0)),
        ("lognormal(median=3d,sigma=1)", LogNormal(3 * DAY, 1.0)),
        (" lognormal( sigma=0.5 , median=12h ) ", LogNormal(12 * 3600.0, 0.5)),
    ],
)
def test_delays_parse(text: str, delay: object) -> None:
    assert parse_delay(text) == delay
    assert parse_delay(str(delay)) == delay  # the spec text parses back


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("2", "not a duration"),
        ("-2d", "not a duration"),
        ("2y", "not a duration"),
        ("gamma(k=2)", "unknown label delay 'gamma'"),
        ("lognormal(median=3d)", "needs both median and sigma"),
        ("lognormal(median=3d,sigma=1,mu=2)", "expected median=DURATION and sigma=NUMBER"),
        ("lognormal(median=3d,sigma=x)", "sigma must be a number"),
        ("lognormal(median=0s,sigma=1)", "median must be a positive duration"),
        ("lognormal(median=3d,sigma=-1)", "sigma must be a non-negative number"),
        ("lognormal(median=3d,median=2d,sigma=1)", "median given twice"),
    ],
)
def test_bad_delays_say_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(DelayError, match=message):
        parse_delay(text)


def test_durations_print_in_the_largest_unit_that_divides_them() -> None:
    assert [format_duration(s) for s in (604_800.0, 172_800.0, 7200.0, 90.0, 0.0, 0.25)] == [
        "1w",
        "2d",
        "2h",
        "90s",
        "0s",
        "0.25s",
    ]


def test_every_scenario_takes_a_label_delay_in_the_models_spec() -> None:
    text = (
        "a=lesson(label_delay=lognormal(median=3d,sigma=1)),b=stable(label_delay=2d,label_ratio=0.5),"
        "c=sudden(label_delay=1h),d=gradual(label_delay=lognormal(median=12h,sigma=0.5),from=0.9)"
    )
    specs = parse_models(text)
    assert [spec.scenario.label_delay for spec in specs] == [
        LogNormal(3 * DAY, 1.0),
        Fixed(2 * DAY),
        Fixed(3600.0),
        LogNormal(12 * 3600.0, 0.5),
    ]
    assert parse_models(format_models(specs)) == specs
    assert specs[1].scenario.params() == {"accuracy": 0.85, "label_ratio": 0.5, "label_delay": "2d"}
    with pytest.raises(SpecError, match="model 'a': stable: label_delay: 'soon' is not a duration"):
        parse_models("a=stable(label_delay=soon)")
    with pytest.raises(SpecError, match="label_delay must be a LabelDelay"):
        Stable(label_delay="2d")  # type: ignore[arg-type]


# --- without a delay, nothing changes ----------------------------------------------------------

GOLDEN_NUMPY = "2.4.6"
GOLDEN_SPEC = "churn-model=lesson(label_ratio=0.7),fraud-model=sudden(at=500),g=gradual"
GOLDEN_SHA256 = "cad6ca4363dffe0f4d5dd33725618d89950b888a58eef65ee27aa6947a0b12d1"
"""``decaywatch produce --models GOLDEN_SPEC --count 20000 --jsonl FILE`` (seed 42) before label delays existed."""


def test_without_a_delay_the_bytes_are_those_of_before_delays_existed() -> None:
    if np.__version__ != GOLDEN_NUMPY:
        pytest.skip(f"the digest was taken with numpy {GOLDEN_NUMPY}, whose generators may differ from {np.__version__}'s")
    streams = generate_all(parse_models(GOLDEN_SPEC), 42, 20_000)
    jsonl = b"".join(value + b"\n" for _, value in encode_records(streams, interleave(streams)))
    assert hashlib.sha256(jsonl).hexdigest() == GOLDEN_SHA256


def test_a_delay_changes_no_prediction_and_no_label() -> None:
    inline = generate(ModelSpec("m", Stable(label_ratio=0.7)), rng_for(5, "m"), 5000)
    delayed = generate(ModelSpec("m", Stable(label_ratio=0.7, label_delay=LogNormal(DAY, 1.0))), rng_for(5, "m"), 5000)
    for name, column in inline._columns().items():
        np.testing.assert_array_equal(column, delayed._columns()[name], err_msg=name)
    assert inline.label_ts is None and delayed.label_ts is not None
    for stream in (inline, delayed):  # the timeline is as read-only as the columns it orders
        with pytest.raises(ValueError, match="read-only"):
            stream.timeline.event[0] = 1


# --- with a delay ---------------------------------------------------------------------------------


def test_a_fixed_delay_sends_each_label_once_exactly_that_long_after_its_prediction() -> None:
    inline = decoded("a=stable(label_ratio=0.6),b=lesson", count=3000)
    events = decoded("a=stable(label_ratio=0.6,label_delay=2d),b=lesson(label_delay=2d)", count=3000)
    predictions, labels = split(events)
    truth = {e["event_id"]: e for e in inline}
    assert predictions.keys() == truth.keys()
    assert labels.keys() == {i for i, e in truth.items() if e["label"] is not None}  # label_ratio still applies
    for event_id, prediction in predictions.items():
        assert "label" not in prediction
        assert prediction == {k: v for k, v in truth[event_id].items() if k != "label"}
    for event_id, label in labels.items():
        assert set(label) == {"model", "event_id", "label", "ts"}
        assert label["model"] == truth[event_id]["model"]
        assert label["label"] == truth[event_id]["label"] and type(label["label"]) is int
        assert label["ts"] == pytest.approx(truth[event_id]["ts"] + 2 * DAY, abs=5e-4)  # to the millisecond
    assert sum(1 for e in events if "prediction" not in e and e["model"] == "a") < 3000 < len(events) - 3000


def test_the_stream_is_in_event_time_order_and_each_label_follows_its_prediction() -> None:
    events = decoded("a=stable(label_delay=lognormal(median=2h,sigma=1.5)),b=sudden(label_delay=10m),c=lesson", count=4000)
    times = [e["ts"] for e in events]
    assert times == sorted(times)
    position = {}
    for i, event in enumerate(events):
        kind = "label" if "prediction" not in event else "prediction"
        position[kind, event["event_id"]] = i
    for (kind, event_id), i in position.items():
        if kind == "label":
            assert position["prediction", event_id] < i
    for model in "abc":
        ids = [e["event_id"] for e in events if e["model"] == model and "prediction" in e]
        assert ids == [f"{model}-{i}" for i in range(4000)]


def test_a_label_known_at_once_comes_right_after_its_prediction() -> None:
    events = decoded("a=stable(label_delay=0s)", count=5)
    assert [("prediction" in e, e["event_id"]) for e in events] == [(kind, f"a-{i}") for i in range(5) for kind in (True, False)]
    assert all(events[2 * i]["ts"] == events[2 * i + 1]["ts"] for i in range(5))


def test_lognormal_delays_follow_their_distribution_and_are_seeded() -> None:
    spec = ModelSpec("m", Stable(label_delay=LogNormal(3 * DAY, 1.0)))
    stream = generate(spec, rng_for(42, "m"), 100_000)
    delays = stream.label_delay
    assert (delays >= 0).all()
    # log-delays are Normal(log 3d, 1): their mean and spread, within 5 standard errors
    logs = np.log(delays)
    assert abs(logs.mean() - math.log(3 * DAY)) < 5 / math.sqrt(len(logs))
    assert abs(logs.std() - 1.0) < 5 / math.sqrt(2 * len(logs))
    for q, z in ((0.9, Z90), (0.99, Z99)):
        assert np.quantile(delays, q) == pytest.approx(3 * DAY * math.exp(z), rel=0.05)
    again = generate(spec, rng_for(42, "m"), 100_000)
    assert stream.label_ts is not None
    np.testing.assert_array_equal(again.label_ts, stream.label_ts)
    shorter = generate(spec, rng_for(42, "m"), 1000)
    np.testing.assert_array_equal(shorter.label_ts, stream.label_ts[:1000])  # a shorter run is a prefix
    other = generate(spec, rng_for(43, "m"), 1000)
    assert not np.array_equal(other.label_delay, shorter.label_delay)


def test_label_events_can_go_to_their_own_topic_keyed_by_model() -> None:
    streams = generate_all(parse_models("a=stable(label_delay=1h,label_ratio=0.5),b=lesson"), 7, 500)
    routed = list(routed_records(streams, interleave(streams), "predictions", "labels"))
    plain = list(encode_records(streams, interleave(streams)))
    assert [(key, value) for key, value, _ in routed] == plain
    for key, value, topic in routed:
        event = orjson.loads(value)
        assert key == event["model"].encode()
        assert topic == ("predictions" if "prediction" in event else "labels")
    assert {topic for _, _, topic in routed} == {"predictions", "labels"}
    assert {topic for _, _, topic in routed_records(streams, interleave(streams), "predictions")} == {"predictions"}


# --- the manifest's truth ---------------------------------------------------------------------------


def test_the_manifest_records_the_delay_the_coverage_and_the_realized_quantiles() -> None:
    text = "a=lesson(label_ratio=0.8,label_delay=lognormal(median=3d,sigma=1)),b=stable(label_delay=2d),c=sudden"
    specs = parse_models(text)
    streams = generate_all(specs, 42, 20_000)
    manifest = build_manifest(streams, 42, specs)
    events = [orjson.loads(value) for _, value in encode_records(streams, interleave(streams))]
    assert "labels" not in manifest["models"]["c"]
    total_labels = 0
    for model in ("a", "b"):
        mine = [e for e in events if e["model"] == model]
        predictions, labels = split(mine)
        delays = np.array([labels[i]["ts"] - predictions[i]["ts"] for i in labels])
        last_prediction = max(p["ts"] for p in predictions.values())
        entry = manifest["models"][model]["labels"]
        total_labels += len(labels)
        assert entry["label_events"] == len(labels) == manifest["models"][model]["labeled"]
        assert entry["coverage"] == len(labels) / len(predictions)
        assert entry["coverage_at_last_prediction"] == sum(e["ts"] <= last_prediction for e in labels.values()) / 20_000
        assert entry["coverage_within"]["7d"] == sum(d <= 7 * DAY for d in delays) / 20_000
        for name, q in (("p50", 0.5), ("p90", 0.9), ("p99", 0.99)):
            assert entry["delay_quantiles_seconds"][name] == pytest.approx(float(np.quantile(delays, q)), abs=1e-3)
        assert entry["ts_last_label"] == max(e["ts"] for e in labels.values())
    a, b = manifest["models"]["a"]["labels"], manifest["models"]["b"]["labels"]
    assert a["delay"] == {"kind": "lognormal", "spec": "lognormal(median=3d,sigma=1)", "median_seconds": 3 * DAY, "sigma": 1.0}
    assert a["distribution_quantiles_seconds"]["p90"] == pytest.approx(3 * DAY * math.exp(Z90))
    assert 0.75 < a["coverage"] < 0.85
    assert b["delay"] == {"kind": "fixed", "spec": "2d", "seconds": 2 * DAY}
    assert b["delay_quantiles_seconds"] == pytest.approx({"p50": 2 * DAY, "p90": 2 * DAY, "p99": 2 * DAY}, abs=1e-3)
    assert manifest["models"]["b"]["params"]["label_delay"] == "2d"
    assert manifest["label_events"] == total_labels


def test_a_run_without_delays_has_no_label_section() -> None:
    specs = parse_models("a=lesson,b=stable(label_ratio=0.5)")
    manifest = build_manifest(generate_all(specs, 1, 100), 1, specs)
    assert "label_events" not in manifest
    assert all("labels" not in m and "label_delay" not in m["params"] for m in manifest["models"].values())
