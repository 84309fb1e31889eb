"""Validation of every field: each bad event is rejected with its own reason; valid ones pass untouched."""

from __future__ import annotations

import math

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from decaywatch.monitor.codec import MAX_MESSAGE_BYTES, decode, parse
from decaywatch.monitor.eventkey import event_keys
from decaywatch.monitor.schema import Reason, Role, parse_timestamp, validate

GOOD = {"model": "m", "prediction": 1, "label": 1, "ts": 1704067200.0}


def check(obj: object) -> tuple[int, list[str]]:
    batch, rejections = validate([obj], np.array([1.0]))
    return len(batch), [r.reason for r in rejections]


@pytest.mark.parametrize(
    ("event", "reason"),
    [
        ([1, 2], Reason.NOT_AN_OBJECT),
        ("text", Reason.NOT_AN_OBJECT),
        ({"prediction": 1}, Reason.MISSING_MODEL),
        ({"model": None, "prediction": 1}, Reason.MISSING_MODEL),
        ({"model": 7, "prediction": 1}, Reason.INVALID_MODEL),
        ({"model": "", "prediction": 1}, Reason.INVALID_MODEL),
        ({"model": "m" * 257, "prediction": 1}, Reason.INVALID_MODEL),
        ({"model": "m"}, Reason.MISSING_PREDICTION),
        ({"model": "m", "prediction": 0.5}, Reason.INVALID_PREDICTION),
        ({"model": "m", "prediction": [1]}, Reason.INVALID_PREDICTION),
        ({"model": "m", "prediction": 1, "label": "1"}, Reason.INVALID_LABEL),
        ({"model": "m", "prediction": True, "label": 1}, Reason.INVALID_LABEL),
        ({"model": "m", "prediction": 1, "label": 1.0}, Reason.INVALID_LABEL),
        ({"model": "m", "prediction": 1, "ts": "yesterday"}, Reason.INVALID_TIMESTAMP),
        ({"model": "m", "prediction": 1, "ts": "2024-01-01T00:00:00"}, Reason.INVALID_TIMESTAMP),
        ({"model": "m", "prediction": 1, "ts": -5}, Reason.INVALID_TIMESTAMP),
        ({"model": "m", "prediction": 1, "ts": 1e300}, Reason.INVALID_TIMESTAMP),
        ({"model": "m", "prediction": 1, "ts": True}, Reason.INVALID_TIMESTAMP),
        ({"model": "m", "prediction": 1, "ts": {}}, Reason.INVALID_TIMESTAMP),
        ({"model": "m", "prediction": 1, "score": 1.5}, Reason.INVALID_SCORE),
        ({"model": "m", "prediction": 1, "score": "high"}, Reason.INVALID_SCORE),
        ({"model": "m", "prediction": 1, "features": [1, 2]}, Reason.INVALID_FEATURES),
        ({"model": "m", "prediction": 1, "features": {"x": "a"}}, Reason.INVALID_FEATURES),
        ({"model": "m", "prediction": 1, "event_id": 1.5}, Reason.INVALID_FIELD),
        ({"model": "m", "prediction": 1, "model_version": 3}, Reason.INVALID_FIELD),
        ({"model": "m", "label": 1}, Reason.MISSING_EVENT_ID),
        ({"model": "m", "label": 1, "event_id": None}, Reason.MISSING_EVENT_ID),
        ({"model": "m", "label": None, "event_id": "e"}, Reason.MISSING_LABEL),
        ({"model": "m", "label": 1.5, "event_id": "e"}, Reason.INVALID_LABEL),
        ({"model": "m", "label": [1], "event_id": "e"}, Reason.INVALID_LABEL),
        ({"model": "m", "label": 1, "event_id": 1.5}, Reason.INVALID_FIELD),
        ({"model": "m", "label": 1, "event_id": "e", "ts": "soon"}, Reason.INVALID_TIMESTAMP),
    ],
)
def test_each_problem_has_its_reason(event: object, reason: str) -> None:
    assert check(event) == (0, [reason])


@pytest.mark.parametrize(
    "event",
    [
        GOOD,
        {"model": "m", "prediction": "cat", "label": "dog"},
        {"model": "m", "prediction": True, "label": False},
        {"model": "m", "prediction": 1},
        {"model": "m", "prediction": 1, "label": None},
        {"model": "m", "prediction": 1, "ts": "2024-06-01T12:00:00Z"},
        {"model": "m", "prediction": 1, "ts": "2024-06-01T12:00:00+02:00"},
        {"model": "m", "prediction": 1, "score": 0, "features": {"x": 1, "y": -2.5}, "event_id": 9, "model_version": "v2"},
        {"model": "m", "prediction": 1, "unknown_field": {"nested": [1, 2]}},
    ],
)
def test_valid_events_pass(event: object) -> None:
    assert check(event) == (1, [])


def test_string_timestamps_are_parsed_and_missing_ones_fall_back() -> None:
    events = [
        {"model": "m", "prediction": 1, "ts": "2024-01-01T00:00:00Z"},
        {"model": "m", "prediction": 1},
        {"model": "m", "prediction": 1, "ts": 1704067201},
    ]
    batch, rejections = validate(events, np.array([5.0, 6.0, 7.0]))
    assert not rejections
    assert batch.event_time.tolist() == [1704067200.0, 6.0, 1704067201.0]
    assert parse_timestamp("2024-01-01T01:00:00+01:00") == 1704067200.0


def test_positions_and_columns_line_up_around_rejections() -> None:
    events = [GOOD, {"model": "m"}, {"model": "n", "prediction": 0, "label": 1}, "x", {"model": "m", "prediction": 2}]
    batch, rejections = validate(events, np.zeros(5), positions=[10, 11, 12, 13, 14])
    assert [(r.index, r.reason) for r in rejections] == [(11, Reason.MISSING_PREDICTION), (13, Reason.NOT_AN_OBJECT)]
    assert batch.source_index.tolist() == [10, 12, 14]
    assert [batch.models[c] for c in batch.model_codes] == ["m", "n", "m"]
    assert batch.labeled.tolist() == [True, True, False]
    assert batch.correct.tolist() == [True, False, False]


def test_decode_names_malformed_and_non_finite_input() -> None:
    values = [
        orjson.dumps(GOOD),
        b"{not json",
        b'{"model":"m","prediction":1,"score":NaN}',
        b'{"ts":1e400}',
        None,
        b"x" * (MAX_MESSAGE_BYTES + 1),
    ]
    objects, positions, rejections = decode(values)
    assert positions == [0] and objects == [GOOD]
    assert [(r.index, r.reason) for r in rejections] == [
        (1, Reason.MALFORMED_JSON),
        (2, Reason.NON_FINITE_NUMBER),
        (3, Reason.NON_FINITE_NUMBER),
        (4, Reason.MALFORMED_JSON),
        (5, Reason.MESSAGE_TOO_LARGE),
    ]


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.binary(max_size=60),
            st.recursive(
                st.none()
                | st.booleans()
                | st.integers(-(2**63), 2**63 - 1)
                | st.floats(allow_nan=False, allow_infinity=False)
                | st.text(max_size=8),
                lambda children: (
                    st.lists(children, max_size=4)
                    | st.dictionaries(
                        st.sampled_from(["model", "prediction", "label", "ts", "score", "features", "event_id", "x"]),
                        children,
                        max_size=6,
                    )
                ),
                max_leaves=12,
            ).map(orjson.dumps),
        ),
        max_size=20,
    )
)
def test_any_input_is_either_accepted_or_rejected_with_a_known_reason(values: list[bytes]) -> None:
    objects, positions, undecodable = decode(values)
    batch, invalid = validate(objects, np.ones(len(objects)), positions)
    rejected = {r.index for r in undecodable + invalid}
    assert len(rejected) == len(undecodable) + len(invalid)
    assert rejected.isdisjoint(batch.source_index.tolist())
    assert rejected | set(batch.source_index.tolist()) == set(range(len(values)))
    assert all(r.reason in Reason.ALL and r.detail for r in undecodable + invalid)
    assert all(math.isfinite(t) for t in batch.event_time.tolist())
    parsed, rejections = parse(values, np.ones(len(values)))  # the service's one call: the same, rejections in order
    assert parsed.source_index.tolist() == batch.source_index.tolist()
    assert parsed.event_time.tolist() == batch.event_time.tolist()
    assert rejections == sorted(undecodable + invalid, key=lambda r: r.index)


def test_each_event_has_its_role_and_joining_events_their_key() -> None:
    """Inline and id-less predictions count as today; a prediction with an id and no label waits; a label event joins."""
    events = [
        {"model": "m", "prediction": 1, "label": 1, "event_id": "a"},
        {"model": "m", "prediction": 1},
        {"model": "m", "prediction": 1, "event_id": "a"},
        {"model": "m", "label": 0, "event_id": "a", "ts": "2024-02-03T10:00:00Z"},
        {"model": "m", "prediction": None, "label": "x", "event_id": 7},
    ]
    batch, rejections = validate(events, np.zeros(5))
    assert rejections == []
    assert batch.role is not None and batch.key is not None
    assert batch.role.tolist() == [Role.PREDICTION, Role.PREDICTION, Role.PENDING, Role.LABEL, Role.LABEL]
    assert batch.labeled.tolist() == [True, False, False, False, False]
    assert batch.key[:2].tolist() == [0, 0]
    assert batch.key[2] == batch.key[3] == event_keys(["a"])[0]
    assert batch.key[4] == event_keys(["7"])[0]
    assert batch.event_time[3] == parse_timestamp("2024-02-03T10:00:00Z")
