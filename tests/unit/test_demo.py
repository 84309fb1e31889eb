"""``decaywatch demo``'s pure parts, without a broker: the flags, the models it plays, and the records it sends."""

from __future__ import annotations

import argparse

import orjson
import pytest

from decaywatch import demo
from decaywatch.producer.delay import Fixed, LogNormal
from decaywatch.producer.encode import encode_records
from decaywatch.producer.scenario import SpecError, parse_models
from decaywatch.producer.stream import generate_all, interleave

DAY = 86_400.0


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="decaywatch")
    demo.add_parser(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(["demo", *argv])


def test_label_delay_is_off_by_default_and_taken_as_text() -> None:
    assert parse().label_delay is None
    assert parse("--label-delay", "lognormal(median=3d,sigma=1)").label_delay == "lognormal(median=3d,sigma=1)"


def test_the_delay_goes_to_every_model_that_sets_none_of_its_own() -> None:
    specs = demo.demo_specs("a=lesson,b=stable(label_delay=30d),c", "3d")
    assert [spec.scenario.label_delay for spec in specs] == [Fixed(3 * DAY), Fixed(30 * DAY), Fixed(3 * DAY)]
    assert [spec.scenario.spec() for spec in specs] == [
        "lesson(label_delay=3d)",
        "stable(label_delay=30d)",
        "stable(label_delay=3d)",
    ]
    lognormal = demo.demo_specs(demo.DEFAULT_MODELS, "lognormal(median=3d,sigma=1)")
    assert {spec.scenario.label_delay for spec in lognormal} == {LogNormal(3 * DAY, 1.0)}
    assert demo.demo_specs(demo.DEFAULT_MODELS, None) == parse_models(demo.DEFAULT_MODELS)


@pytest.mark.parametrize(("delay", "message"), [("soon", "--label-delay: 'soon' is not a duration"), ("gamma(k=1)", "unknown")])
def test_a_bad_delay_stops_the_demo_before_anything_starts(delay: str, message: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SpecError, match=message):
        demo.demo_specs(demo.DEFAULT_MODELS, delay)
    assert demo.run(parse("--label-delay", delay, "--bootstrap-servers", "unreachable.invalid:1")) == 2
    assert capsys.readouterr().err.startswith("decaywatch demo: error: --label-delay: ")


def test_without_a_delay_the_demo_sends_what_it_always_sent() -> None:
    specs = parse_models("a=sudden,b")
    records, expected, models = demo._records(specs, 42, bad_events=False, count=5000)
    streams = generate_all(specs, 42, 5000)
    assert list(records) == list(encode_records(streams, interleave(streams)))
    assert (expected, models) == (10_000, ["a", "b"])


def test_with_a_delay_the_demo_sends_predictions_then_their_label_events_in_time_order() -> None:
    specs = demo.demo_specs("a=sudden(label_ratio=0.5),b", "lognormal(median=3d,sigma=1)")
    records, expected, _ = demo._records(specs, 42, bad_events=True, count=5000)
    sent = list(records)
    assert len(sent) == expected
    bad = [value for key, value in sent if key == b"upstream"]
    assert bad == list(demo.BAD_EVENTS)
    events = [orjson.loads(value) for key, value in sent if key != b"upstream"]
    predictions = {e["event_id"]: e for e in events if "prediction" in e}
    labels = {e["event_id"]: e for e in events if "prediction" not in e}
    assert len(predictions) == 10_000 and all("label" not in e for e in predictions.values())
    assert 7_000 < len(labels) < 8_000  # all of b's, about half of a's
    assert all(labels[i]["ts"] >= predictions[i]["ts"] for i in labels)
    times = [e["ts"] for e in events]
    assert times == sorted(times)
