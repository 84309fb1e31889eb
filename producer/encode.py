"""Turn synthetic streams into the wire format: one UTF-8 JSON object per Kafka message, keyed by model id.

Each event is::

    {"model": "churn-model", "event_id": "churn-model-0", "model_version": "v1",
     "ts": 1704067200.0, "prediction": 1, "score": 0.73, "label": 1,
     "features": {"x": 0.6}}

``label`` is ``null`` for events the scenario left unlabeled.

With a label delay the label leaves the prediction (which then has no
``label`` field at all: its label is coming) and follows as a *label event* at
the time it becomes known, joined by ``model`` and ``event_id``::

    {"model": "churn-model", "event_id": "churn-model-0", "label": 1, "ts": 1704326400.0}

Events the scenario left unlabeled get no label event: their label never comes.

Encoding is lazy and allocation-light on purpose.  Columns are converted to
Python lists once (``tolist``; reading numpy scalars event by event is several
times slower), and each event's dict is serialised the moment it is built and
then dropped.  Holding every encoded message at once would cost ~38 MB per
200k events and, measured on our VMs, made encoding 4-8x slower (fresh memory
is expensive there, and the garbage collector rescans the growing list of
records) than streaming the bytes straight into the publisher, which keeps
memory flat however long the stream.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import orjson

from decaywatch.producer.stream import SyntheticStream

__all__ = ["MODEL_VERSION", "encode_records", "encode_stream", "event_dicts", "iter_values", "routed_records", "tagged_records"]

MODEL_VERSION = "v1"
"""The ``model_version`` every synthetic event carries."""


def _iter_dicts(stream: SyntheticStream) -> Iterator[dict[str, object]]:
    model = stream.model
    labels = stream.label.astype(object)
    labels[~stream.labeled] = None
    return (
        {
            "model": model,
            "event_id": f"{model}-{i}",
            "model_version": MODEL_VERSION,
            "ts": ts,
            "prediction": prediction,
            "score": score,
            "label": label,
            "features": {"x": x},
        }
        for i, ts, prediction, score, label, x in zip(
            range(len(stream)),
            stream.ts.tolist(),
            stream.prediction.tolist(),
            stream.score.tolist(),
            labels.tolist(),
            stream.x.tolist(),
            strict=True,
        )
    )


def _iter_delayed_dicts(stream: SyntheticStream) -> Iterator[dict[str, object]]:
    """Predictions without ``label`` and label events, in the stream's timeline order."""
    if stream.label_ts is None:
        raise ValueError(f"stream {stream.model!r} has no label delay")
    model = stream.model
    timeline = stream.timeline
    ts, prediction, score = stream.ts.tolist(), stream.prediction.tolist(), stream.score.tolist()
    label, label_ts, x = stream.label.tolist(), stream.label_ts.tolist(), stream.x.tolist()
    for i, is_label in zip(timeline.event.tolist(), timeline.is_label.tolist(), strict=True):
        if is_label:
            yield {"model": model, "event_id": f"{model}-{i}", "label": label[i], "ts": label_ts[i]}
        else:
            yield {
                "model": model,
                "event_id": f"{model}-{i}",
                "model_version": MODEL_VERSION,
                "ts": ts[i],
                "prediction": prediction[i],
                "score": score[i],
                "features": {"x": x[i]},
            }


def _records(stream: SyntheticStream) -> Iterator[dict[str, object]]:
    return _iter_delayed_dicts(stream) if stream.delayed else _iter_dicts(stream)


def event_dicts(stream: SyntheticStream) -> list[dict[str, object]]:
    """Every record of ``stream`` as the dict that is serialised, in timeline order (for inspection and tests)."""
    return list(_records(stream))


def iter_values(stream: SyntheticStream) -> Iterator[bytes]:
    """Each record of ``stream`` as JSON bytes (the Kafka message value), lazily, in timeline order."""
    dumps = orjson.dumps
    return (dumps(event) for event in _records(stream))


def encode_stream(stream: SyntheticStream) -> list[bytes]:
    """Every record of ``stream`` as JSON bytes, materialised (prefer :func:`iter_values` for whole streams)."""
    return list(iter_values(stream))


def encode_records(
    streams: Sequence[SyntheticStream], order: tuple[np.ndarray, np.ndarray] | None = None
) -> Iterator[tuple[bytes, bytes]]:
    """Lazily yield ``(key, value)`` Kafka records for all streams, merged in ``order``.

    ``order`` comes from :func:`producer.stream.interleave`; without it the
    streams are concatenated.  It must list each stream's records in their own
    order (``interleave`` does), because each stream is encoded front to back.
    The key is the model id as UTF-8, so one model's events share a partition
    and keep their order.
    """
    for key, value, _ in tagged_records(streams, order):
        yield key, value


def tagged_records(
    streams: Sequence[SyntheticStream], order: tuple[np.ndarray, np.ndarray] | None = None
) -> Iterator[tuple[bytes, bytes, bool]]:
    """:func:`encode_records` with a third item per record: whether it is a label event."""
    keys = [stream.model.encode("utf-8") for stream in streams]
    if order is None:
        for key, stream in zip(keys, streams, strict=True):
            for value, is_label in zip(iter_values(stream), stream.timeline.is_label.tolist(), strict=True):
                yield key, value, is_label
        return
    stream_index, event_index = order
    for s, stream in enumerate(streams):
        if not np.array_equal(event_index[stream_index == s], np.arange(len(stream.timeline))):
            raise ValueError(f"order must visit every record of stream {s} ({stream.model!r}) once, in its own order")
    if len(stream_index) != sum(len(stream.timeline) for stream in streams):
        raise ValueError("order refers to streams that were not given")
    sources = [zip(iter_values(stream), stream.timeline.is_label.tolist(), strict=True) for stream in streams]
    for s in stream_index.tolist():
        value, is_label = next(sources[s])
        yield keys[s], value, is_label


def routed_records(
    streams: Sequence[SyntheticStream],
    order: tuple[np.ndarray, np.ndarray] | None,
    topic: str,
    labels_topic: str | None = None,
) -> Iterator[tuple[bytes, bytes, str]]:
    """``(key, value, topic)`` records: label events to ``labels_topic`` (when given), everything else to ``topic``.

    Label events keep their model id as the key, so with the same partitioner
    and partition count a model's labels land in the same partition number as
    its predictions (the co-partitioning a join by model needs).
    """
    label_topic = topic if labels_topic is None else labels_topic
    for key, value, is_label in tagged_records(streams, order):
        yield key, value, label_topic if is_label else topic
