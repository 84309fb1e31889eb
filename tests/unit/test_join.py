"""Labels that arrive later: the join of predictions with label events, and its bounds, counts and checkpoints."""

from __future__ import annotations

import dataclasses
import itertools
from typing import Any

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from decaywatch.monitor import state
from decaywatch.monitor.config import MetricRule, ModelPolicy, MonitorConfig
from decaywatch.monitor.engine import Monitor
from decaywatch.monitor.eventkey import event_keys
from decaywatch.monitor.join import Join
from decaywatch.monitor.schema import validate
from decaywatch.monitor.snapshot import ModelSnapshot

POLICY = ModelPolicy(
    baseline=0.8,
    windows=(7, 40),
    min_samples=5,
    evidence=3.0,
    time_windows=("1m", "1h"),
    allowed_lateness="30s",
    label_ttl="1h",
    orphan_ttl="10m",
    rules=(MetricRule(metric="recall", baseline=0.8, threshold=0.2, min_samples=3),),
)
Event = dict[str, Any]


def run(events: list[Event], cuts: list[int] = (), policy: ModelPolicy = POLICY) -> tuple[list[Any], Monitor]:  # type: ignore[assignment]
    """Feed ``events`` in batches cut at ``cuts``; returns every alert (its event, without the position) and the monitor."""
    monitor = Monitor(MonitorConfig(policy))
    alerts: list[Any] = []
    bounds = sorted({0, len(events), *(c for c in cuts if 0 < c < len(events))})
    for lo, hi in itertools.pairwise(bounds):
        batch, rejected = validate(events[lo:hi], np.zeros(hi - lo), range(lo, hi))
        assert rejected == []
        alerts += [t.to_event(0.0) for t in monitor.process(batch)]
    return alerts, monitor


def join_of(monitor: Monitor, model: str = "m") -> Join:
    tracker = monitor.tracked(model)
    assert tracker is not None
    return tracker.join


def pred(i: int | str, value: Any = 1, ts: float = 0.0, model: str = "m") -> Event:
    return {"model": model, "prediction": value, "event_id": str(i), "ts": ts}


def label(i: int | str, value: Any = 1, ts: float = 0.0, model: str = "m") -> Event:
    return {"model": model, "label": value, "event_id": str(i), "ts": ts}


def test_a_label_after_its_prediction_joins_at_the_prediction_time() -> None:
    _alerts, monitor = run([pred("a", 1, 10.0), pred("b", 0, 11.0), label("a", 1, 50.0), label("b", 1, 60.0)])
    snap = monitor.snapshot()["m"]
    assert (snap.events, snap.labeled, snap.correct) == (2, 2, 1)
    assert snap.window("1h").time_span is not None and snap.window("1h").labeled == 2
    assert snap.labels is not None and (snap.labels.joined, snap.labels.pending) == (2, 0)
    assert snap.labels.delay_sum == (50.0 - 10.0) + (60.0 - 11.0)
    assert snap.labels.median_delay == 60.0


def test_a_label_before_its_prediction_waits_for_it_until_orphan_ttl() -> None:
    events = [label("a", 1, 100.0), pred("a", 1, 90.0), label("b", 0, 100.0), pred("late", 1, 800.0), pred("b", 0, 95.0)]
    for cuts in ([], [1], [1, 2, 3, 4]):
        _alerts, monitor = run(events, cuts)
        join = join_of(monitor)
        assert join.joined == 1, cuts  # "a" joined when it arrived; "b"'s label was older than orphan_ttl (600 s) by then
        assert join.unmatched["orphan_expired"] == 1
        assert join.pending == 2  # "late" and "b" wait for labels


def test_a_label_after_its_prediction_ttl_joins_nothing_and_both_are_counted() -> None:
    events = [pred("a", 1, 0.0), pred("x", 1, 3601.0), label("a", 1, 3602.0), pred("y", 1, 3602.0 + 601.0)]
    for cuts in ([], [1], [2], [3]):
        _alerts, monitor = run(events, cuts)
        join = join_of(monitor)
        assert join.unlabeled["ttl"] == 1, cuts
        assert join.joined == 0
        assert join.unmatched["orphan_expired"] == 1  # the late label waited as an orphan, then expired
        assert monitor.snapshot()["m"].labeled == 0


def test_first_label_wins_and_later_ones_are_duplicates() -> None:
    events = [pred("a", 1, 0.0), label("a", 0, 1.0), label("a", 1, 2.0), pred("b", 1, 3.0), label("b", 1, 4.0)]
    events += [label("b", 0, 5.0), label("b", 0, 6.0)]
    for cuts in ([], [2], [1, 2, 3, 4, 5, 6]):
        _alerts, monitor = run(events, cuts)
        join = join_of(monitor)
        assert (join.joined, join.unmatched["duplicate"]) == (2, 3), cuts
        snap = monitor.snapshot()["m"]
        assert (snap.labeled, snap.correct) == (2, 1)  # "a" joined with its first label (0): wrong; "b" right


def test_orphans_of_one_id_first_wins_the_rest_are_duplicates() -> None:
    _alerts, monitor = run([label("a", 0, 1.0), label("a", 1, 2.0), pred("a", 1, 3.0)])
    join = join_of(monitor)
    assert (join.joined, join.unmatched["duplicate"]) == (1, 1)
    assert monitor.snapshot()["m"].correct == 0


def test_capacity_evicts_the_oldest_predictions_first() -> None:
    policy = dataclasses.replace(POLICY, max_pending=3)
    events = [pred(i, int(t > 2), float(t)) for i, t in enumerate([5, 1, 4, 2, 3])]
    _alerts, monitor = run([*events, *(label(i, 1, 10.0) for i in range(5))], [5], policy)
    join = join_of(monitor)
    assert join.unlabeled["capacity"] == 2
    assert join.joined == 3  # ids 0, 2, 4 (times 5, 4, 3) stayed; ids 1 and 3 (times 1 and 2) left first
    assert monitor.snapshot()["m"].correct == 3  # the ones that stayed predicted 1
    assert monitor.snapshot()["m"].window("1h").labeled == 3
    assert join.orphans.columns["key"].shape[0] == 2


def test_a_label_of_another_type_is_counted_and_the_prediction_keeps_waiting() -> None:
    events = [pred("a", 1, 0.0), label("a", "1", 1.0), label("a", True, 2.0), label("a", 1, 3.0)]
    events += [label("b", "x", 4.0), pred("b", 1, 5.0)]
    for cuts in ([], [1], [1, 2, 3, 4, 5]):
        _alerts, monitor = run(events, cuts)
        join = join_of(monitor)
        assert (join.unmatched["type_mismatch"], join.joined, join.pending) == (3, 1, 1), cuts
        assert monitor.snapshot()["m"].correct == 1


def test_the_join_survives_a_checkpoint_mid_join() -> None:
    """Pending predictions and orphans are saved with the model: a restored monitor joins them as the first would have."""
    events = [pred(i, i % 2, float(i)) for i in range(30)] + [label(i, 1, 40.0 + i) for i in range(35, 40)]
    events += [label(i, 1, 80.0 + i) for i in range(30)] + [pred(i, 1, 120.0) for i in range(35, 40)]
    _alerts, whole = run(events)
    for cut in (10, 32, 50, 66):
        first = Monitor(MonitorConfig(POLICY))
        batch, _ = validate(events[:cut], np.zeros(cut), range(cut))
        first.process(batch)
        tracker = first.tracked("m")
        assert tracker is not None
        second = Monitor(MonitorConfig(POLICY))
        second.adopt(state.load(state.dump(tracker), POLICY, "m"))
        rest = events[cut:]
        batch, _ = validate(rest, np.zeros(len(rest)), range(cut, len(events)))
        second.process(batch)
        assert second.snapshot() == whole.snapshot(), cut
        assert join_of(second).state().keys() == join_of(whole).state().keys()
    snap = whole.snapshot()["m"]
    assert snap.labels is not None and (snap.labels.joined, snap.labels.pending, snap.labels.orphans) == (35, 0, 0)


# -- any interleaving within the TTLs: the same outcomes as inline labels ------------------------------------


@st.composite
def streams(draw: st.DrawFn) -> tuple[list[Event], list[Event], list[int], str]:
    """Predictions of two models as label events merged in any order, and the same outcomes inline where each completes."""
    n = draw(st.integers(1, 120))
    models = draw(st.lists(st.sampled_from(["m", "n"]), min_size=n, max_size=n))
    values = draw(st.lists(st.tuples(st.integers(0, 1), st.integers(0, 1)), min_size=n, max_size=n))
    mixed = draw(st.booleans())  # some labels inline: outcomes complete out of prediction order
    steps = draw(st.lists(st.floats(-40.0, 60.0), min_size=n, max_size=n))  # times go back now and then
    scores = draw(st.lists(st.none() | st.floats(0.0, 1.0), min_size=n, max_size=n))
    times = np.maximum(np.cumsum(steps), 0.0).tolist()
    together = draw(st.lists(st.booleans(), min_size=n, max_size=n)) if mixed else [False] * n
    inline, predictions, labels = [], [], []
    for i in range(n):
        event: Event = {"model": models[i], "prediction": values[i][0], "event_id": f"e{i}", "ts": times[i]}
        if scores[i] is not None:
            event["score"] = scores[i]
        inline.append({**event, "label": values[i][1]})
        predictions.append(inline[-1] if together[i] else event)
        if not together[i]:
            labels.append({"model": models[i], "label": values[i][1], "event_id": f"e{i}", "ts": times[i] + 1.0})
    # labels keep their predictions' order; each may come before or after its prediction
    take_label = draw(st.permutations([True] * len(labels) + [False] * n))
    p = iter(predictions)
    q = iter(labels)
    merged = [next(q) if t else next(p) for t in take_label]
    # the reference: each outcome inline, where it completes (its label, or its prediction when the label came first)
    completed, seen = [], set()
    for event in merged:
        i = int(event["event_id"][1:])
        if together[i] or event["event_id"] in seen:
            completed.append(inline[i])
        seen.add(event["event_id"])
    cuts = draw(st.lists(st.integers(1, 2 * n), max_size=6))
    # a prediction is late by its arrival among predictions; the reference moves some, so then none may be late
    return completed, merged, cuts, "1d" if mixed else "30s"


def outcome_view(snapshot: ModelSnapshot) -> ModelSnapshot:
    """A snapshot without its label health (inline labels have none)."""
    return dataclasses.replace(snapshot, labels=None)


@settings(max_examples=150, deadline=None)
@given(streams())
def test_any_interleaving_within_the_ttls_gives_the_inline_outcomes(
    case: tuple[list[Event], list[Event], list[int], str],
) -> None:
    inline, merged, cuts, lateness = case
    policy = dataclasses.replace(POLICY, label_ttl="1d", orphan_ttl="1d", allowed_lateness=lateness)
    inline_alerts, inline_monitor = run(inline, [c // 2 for c in cuts], policy)
    joined_alerts, joined_monitor = run(merged, cuts, policy)
    joining = {m for m, snap in joined_monitor.snapshot().items() if snap.labels is not None}
    assert all(("label_coverage" in alert) == (alert["model"] in joining) for alert in joined_alerts)
    label_context = ("label_coverage", "median_label_delay_seconds")
    assert [{k: v for k, v in a.items() if k not in label_context} for a in joined_alerts] == inline_alerts
    expected = {m: outcome_view(s) for m, s in inline_monitor.snapshot().items()}
    assert {m: outcome_view(s) for m, s in joined_monitor.snapshot().items()} == expected
    for model in expected:
        join = join_of(joined_monitor, model)
        assert (join.pending, len(join.orphans), sum(join.unmatched.values()), sum(join.unlabeled.values())) == (0, 0, 0, 0)


def test_time_windows_measure_the_share_of_their_predictions_whose_label_is_in() -> None:
    """Coverage fills in as labels arrive, in the window of the prediction's time; predictions move the window."""
    events = [pred(i, 1, 60.0 * i) for i in range(10)] + [label(i, 1, 3600.0) for i in range(4)]
    _alerts, monitor = run(events, [10])
    hour = monitor.snapshot()["m"].window("1h")
    assert (hour.predicted, hour.labeled, hour.coverage) == (10, 4, 0.4)
    _alerts, monitor = run([*events, pred("x", 1, 7200.0)])  # an hour later: the first predictions have left the hour
    hour = monitor.snapshot()["m"].window("1h")
    assert hour.time_span is not None and hour.time_span[1] == 7260.0
    assert (hour.predicted, hour.labeled, hour.coverage) == (1, 0, 0.0)


def test_min_label_coverage_holds_a_time_windows_accuracy_back_until_enough_labels_are_in() -> None:
    events = [pred(i, 1, 60.0 * i) for i in range(10)] + [label(i, 1, 3600.0) for i in range(4)]
    policy = dataclasses.replace(POLICY, min_label_coverage=0.5)
    _alerts, monitor = run(events, policy=policy)
    hour = monitor.snapshot()["m"].window("1h")
    assert (hour.labeled, hour.coverage, hour.accuracy, hour.lower_bound) == (4, 0.4, None, None)
    _alerts, monitor = run([*events, label(4, 0, 3601.0)], policy=policy)
    hour = monitor.snapshot()["m"].window("1h")
    assert (hour.coverage, hour.accuracy) == (0.5, 0.8)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.text(max_size=90) | st.integers(-(2**70), 2**70), min_size=1, max_size=12))
def test_an_ids_key_does_not_depend_on_its_batch(ids: list[str | int]) -> None:
    """The same id hashes the same alone or beside others of any length (a prediction and its label meet)."""
    together = event_keys(ids).tolist()
    assert together == [int(event_keys([i])[0]) for i in ids]
    assert [k == together[0] for k in together] == [str(i) == str(ids[0]) for i in ids]  # no collision in a few


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(st.booleans(), st.integers(0, 6), st.sampled_from([0, 1, "1"]), st.floats(-30.0, 90.0)),
        min_size=1,
        max_size=60,
    ),
    st.lists(st.integers(1, 60), max_size=5),
)
def test_the_join_is_the_same_whatever_the_batches(script: list[tuple[bool, int, Any, float]], cuts: list[int]) -> None:
    """Repeated ids, labels before and after, type mismatches, TTLs running out: batch cuts change nothing."""
    policy = dataclasses.replace(POLICY, label_ttl="2m", orphan_ttl="1m")
    events, now = [], 0.0
    for is_label, i, value, step in script:
        now = max(0.0, now + step)
        events.append(label(i, value, now) if is_label else pred(i, value, now))
    _alerts, whole = run(events, [], policy)
    _alerts, cut = run(events, cuts, policy)
    assert cut.snapshot() == whole.snapshot()
    first, second = join_of(whole).state(), join_of(cut).state()
    assert first.keys() == second.keys()
    for name in ("joined", "unlabeled", "unmatched", "clock", "delay_sum_us"):
        assert first[name] == second[name], name


# -- two topics read at different paces: the same counts as one stream in event-time order ------------------


@st.composite
def two_topics(draw: st.DrawFn) -> tuple[list[Event], list[Event], float, list[int]]:
    """Predictions in time order and their labels (some missing, late or twice) in label-time order, one topic each."""
    n = draw(st.integers(1, 80))
    steps = draw(st.lists(st.floats(0.0, 400.0), min_size=n, max_size=n))
    times = np.cumsum(steps).tolist()
    predictions: list[Event] = []
    labels: list[Event] = []
    for i, t in enumerate(times):
        value = draw(st.integers(0, 1))
        predictions.append(pred(i, value, t, model=draw(st.sampled_from(["m", "n"]))))
        model = predictions[-1]["model"]
        for delay in draw(st.lists(st.floats(0.0, 9000.0), max_size=2)):  # none, one, or a second one (a duplicate)
            labels.append(label(i, draw(st.integers(0, 1)), t + delay, model=model))
    labels.sort(key=lambda e: e["ts"])
    shift = draw(st.floats(-1e5, 1e5))  # one topic read ahead of the other, by up to a day of event time
    cuts = draw(st.lists(st.integers(1, len(predictions) + len(labels)), max_size=6))
    return predictions, labels, shift, cuts


def arrival(predictions: list[Event], labels: list[Event], shift: float) -> list[Event]:
    """Both topics merged as a consumer might read them: labels ``shift`` seconds of event time behind (or ahead)."""
    keyed = [(e["ts"], 0, n, e) for n, e in enumerate(predictions)] + [(e["ts"] + shift, 1, n, e) for n, e in enumerate(labels)]
    return [e for *_key, e in sorted(keyed, key=lambda k: k[:3])]


@settings(max_examples=200, deadline=None)
@given(two_topics())
def test_two_topics_read_at_different_paces_join_as_one_stream_in_event_time_order(
    case: tuple[list[Event], list[Event], float, list[int]],
) -> None:
    """Every count, the label-delay histogram and the event-time windows: as if the topics were one stream in time order.

    (The count windows take outcomes in the order they are joined, which follows the reading pace.)
    """
    predictions, labels, shift, cuts = case
    policy = dataclasses.replace(POLICY, allowed_lateness="1d")
    _alerts, reference = run(arrival(predictions, labels, 0.0), [], policy)
    _alerts, paced = run(arrival(predictions, labels, shift), cuts, policy)
    for model, expected in reference.snapshot().items():
        got = paced.snapshot()[model]
        assert (got.events, got.labeled, got.correct) == (expected.events, expected.labeled, expected.correct)
        assert got.labels is not None and expected.labels is not None
        assert got.labels == expected.labels
        for window in ("1m", "1h"):
            assert got.window(window) == expected.window(window), window
        first, second = join_of(reference, model), join_of(paced, model)
        assert (first.pending, len(first.orphans), first.clock, first.label_clock) == (
            second.pending,
            len(second.orphans),
            second.clock,
            second.label_clock,
        )
