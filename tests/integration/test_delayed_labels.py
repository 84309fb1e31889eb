"""Labels that arrive later, on their own topic, through the real broker: the join against the producer's truth.

The producer's lesson, with every label sent as a separate label event a
lognormal delay (median 3 days, sigma 1) after its prediction, predictions
and labels on two co-partitioned topics.  The truth of every counter follows
from the streams alone (``Truth``): a label joins when it came within
``label_ttl`` (7 days) of its prediction; a prediction not joined leaves by
TTL once the labels have moved 7 days past it, else it still waits; a label
that came later waits as an orphan until the predictions are an hour past it.
"""

from __future__ import annotations

import signal
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
import orjson
import pytest
from prometheus_client.utils import floatToGoString

from decaywatch.consumer.runtime import MonitorRuntime
from decaywatch.monitor.alert import DEGRADED_MESSAGE
from decaywatch.monitor.config import MonitorConfig
from decaywatch.monitor.join import DELAY_BUCKETS
from decaywatch.producer.encode import routed_records
from decaywatch.producer.manifest import build_manifest
from decaywatch.producer.scenario import parse_models
from decaywatch.producer.stream import SyntheticStream, generate_all, interleave
from tests.helpers import SampleKey, TopicFactory, produce, scrape, unique_name, wait_until
from tests.integration.test_monitor_loop import LESSON, local_settings, read_topic, run_until_consumed
from tests.integration.test_scale_out import MonitorProcess

DELAY = "lognormal(median=3d,sigma=1)"
MODELS = f"churn-model=lesson(label_delay={DELAY}),fraud-model=stable(label_delay={DELAY})"
SEED = 11
DAY = 86400.0
LABEL_TTL = 7 * DAY
ORPHAN_TTL = 3600.0


@dataclass(frozen=True)
class Truth:
    """What the monitor must count for one model, from the producer's stream alone."""

    events: int
    joined: int
    correct: int
    pending: int
    unlabeled_ttl: int
    orphan_expired: int
    delay_buckets: list[int]
    """Joined outcomes per label-delay bucket (cumulative, as Prometheus' ``le`` buckets, +Inf last)."""

    @classmethod
    def of(cls, stream: SyntheticStream) -> Truth:
        assert stream.label_ts is not None
        sent, delay = stream.labeled, stream.label_delay
        joined = sent & (delay <= LABEL_TTL)
        labels_clock = float(stream.label_ts[sent].max())
        predictions_clock = float(stream.ts.max())
        late = sent & (delay > LABEL_TTL)
        per_bucket = np.bincount(np.searchsorted(DELAY_BUCKETS, delay[joined], "left"), minlength=len(DELAY_BUCKETS) + 1)
        return cls(
            events=len(stream),
            joined=int(joined.sum()),
            correct=int((stream.correct & joined).sum()),
            pending=int((~joined & (labels_clock - stream.ts <= LABEL_TTL)).sum()),
            unlabeled_ttl=int((~joined & (labels_clock - stream.ts > LABEL_TTL)).sum()),
            orphan_expired=int((late & (predictions_clock - stream.label_ts > ORPHAN_TTL)).sum()),
            delay_buckets=np.cumsum(per_bucket).tolist(),
        )

    def differences(self, metrics: dict[SampleKey, float], model: str) -> dict[str, tuple[float | None, float]]:
        """Each exported counter that differs from the truth: name -> (exported, true)."""
        m = (("model", model),)
        expected: dict[SampleKey, float] = {
            ("decaywatch_events_total", m): self.events,
            ("decaywatch_labeled_events_total", m): self.joined,
            ("decaywatch_correct_predictions_total", m): self.correct,
            ("decaywatch_labels_joined_total", m): self.joined,
            ("decaywatch_pending_predictions", m): self.pending,
            ("decaywatch_predictions_unlabeled_total", (("model", model), ("reason", "ttl"))): self.unlabeled_ttl,
            ("decaywatch_predictions_unlabeled_total", (("model", model), ("reason", "capacity"))): 0,
            ("decaywatch_labels_unmatched_total", (("model", model), ("reason", "orphan_expired"))): self.orphan_expired,
            ("decaywatch_labels_unmatched_total", (("model", model), ("reason", "duplicate"))): 0,
            ("decaywatch_labels_unmatched_total", (("model", model), ("reason", "type_mismatch"))): 0,
        }
        bounds = [*(floatToGoString(b) for b in DELAY_BUCKETS), "+Inf"]  # type: ignore[no-untyped-call]
        for le, count in zip(bounds, self.delay_buckets, strict=True):
            expected[("decaywatch_label_delay_seconds_bucket", (("le", le), ("model", model)))] = count
        return {
            f"{name}{dict(labels)}": (metrics.get((name, labels)), v)
            for (name, labels), v in expected.items()
            if metrics.get((name, labels)) != v
        }


def lesson() -> tuple[list[SyntheticStream], dict[str, Truth], dict[str, object]]:
    specs = parse_models(MODELS)
    streams = generate_all(specs, seed=SEED, count=None)
    return streams, {s.model: Truth.of(s) for s in streams}, build_manifest(streams, SEED, specs)


def produce_lesson(bootstrap: str, topic: str, labels_topic: str, streams: list[SyntheticStream]) -> int:
    return produce(bootstrap, topic, routed_records(streams, interleave(streams), topic, labels_topic)).total


def test_the_lesson_with_lognormal_label_delays_on_two_topics(
    kafka_bootstrap: str, topic_factory: TopicFactory, kafka_client: str
) -> None:
    topic, labels_topic = topic_factory(partitions=2), topic_factory(partitions=2)
    alerts_topic, dlq = topic_factory(), topic_factory()
    streams, truth, manifest = lesson()
    total = produce_lesson(kafka_bootstrap, topic, labels_topic, streams)
    settings = local_settings(
        kafka_bootstrap, topic, alerts_topic, dlq, "labels", config=MonitorConfig(LESSON), kafka_client=kafka_client,
        labels_topic=labels_topic,
    )  # fmt: skip
    with MonitorRuntime(settings) as runtime:
        run_until_consumed(runtime, total)
        metrics = scrape(runtime.http.url())
    for model, expected in truth.items():
        assert expected.differences(metrics, model) == {}, model
        assert expected.unlabeled_ttl > 0 and expected.orphan_expired > 0  # the TTL really was exercised
    # the label-delay quantiles: the histogram's median bucket holds the true median of the joined delays
    for stream in streams:
        delays = np.sort(stream.label_delay[stream.labeled & (stream.label_delay <= LABEL_TTL)])
        cumulative = truth[stream.model].delay_buckets
        median_bucket = int(np.searchsorted(cumulative, cumulative[-1] / 2))
        lower = DELAY_BUCKETS[median_bucket - 1] if median_bucket else 0.0
        assert lower < float(np.median(delays)) <= DELAY_BUCKETS[median_bucket]
    p50 = manifest["models"]["churn-model"]["labels"]["delay_quantiles_seconds"]["p50"]  # type: ignore[index]
    assert 2 * DAY < p50 <= 7 * DAY  # the manifest's median of all sent delays: about 3 days
    alerts = [orjson.loads(r.value) for r in read_topic(kafka_bootstrap, alerts_topic, expected=1)]
    assert [(a["model"], a["status"], a["message"]) for a in alerts] == [("churn-model", "firing", DEGRADED_MESSAGE)]
    assert set(alerts[0]["label_coverage"]) and alerts[0]["median_label_delay_seconds"] is not None
    fired = datetime.fromisoformat(alerts[0]["event_time"]).timestamp()
    crossing = manifest["models"]["churn-model"]["first_below"]["0.75"]["ts"]  # type: ignore[index]
    assert crossing - 2 * 7 * DAY <= fired <= crossing + 4 * 7 * DAY  # labels come ~3 days later; the alert may wait for them


@pytest.mark.timeout(300)
def test_a_monitor_killed_mid_join_and_restarted_counts_as_an_uninterrupted_one(
    kafka_bootstrap: str, topic_factory: TopicFactory, tmp_path: Path, kafka_client: str
) -> None:
    topic, labels_topic = topic_factory(partitions=2), topic_factory(partitions=2)
    streams, truth, _manifest = lesson()
    produce_lesson(kafka_bootstrap, topic, labels_topic, streams)
    group = unique_name("labels-kill")
    extra = ["--labels-topic", labels_topic, "--checkpoint-interval", "1", "--windows", "1000,10000"]
    first = MonitorProcess(kafka_bootstrap, topic, group, tmp_path / "first.log", kafka_client, extra)
    try:
        events = ("decaywatch_events_total", (("model", "churn-model"),))
        wait_until(
            lambda: first.scrape().get(events, 0) > 15_000, timeout=120, interval=0.1, message="the first monitor under way"
        )
        seen = first.scrape()
    finally:
        first.stop(signal.SIGKILL)  # no final checkpoint, no final commit: pending predictions live only in the changelog
    assert seen[events] < truth["churn-model"].events
    waiting = [
        seen.get((name, (("model", "churn-model"),)), 0)
        for name in ("decaywatch_pending_predictions", "decaywatch_orphan_labels")
    ]
    assert sum(waiting) > 0, waiting  # killed mid-join: predictions or labels waiting for their partner
    second = MonitorProcess(kafka_bootstrap, topic, group, tmp_path / "second.log", kafka_client, extra)
    try:

        def counted_as_truth() -> bool:
            metrics = second.scrape()
            return all(expected.differences(metrics, model) == {} for model, expected in truth.items())

        try:
            wait_until(counted_as_truth, timeout=180, interval=1.0, message="the restarted monitor's counters equal the truth")
        except AssertionError as error:
            metrics = second.scrape()
            raise AssertionError(f"{error}: {[e.differences(metrics, m) for m, e in truth.items()]}") from None
    finally:
        second.stop()
