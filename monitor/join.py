"""The join of predictions with labels that arrive later, one model at a time, in numpy columns.

A prediction with an ``event_id`` and no label (``Role.PENDING``) waits here
for its label event (``Role.LABEL``, same model and ``event_id``); a label
that arrives before its prediction (an *orphan*) waits for the prediction.
When the two meet, the outcome is *joined*: the tracker counts it at the
position of the event that completed it, with the prediction's event time.

Nothing here is a Python object per waiting event: each of the three tables
(pending predictions, orphan labels, recently joined ids) is a few numpy
columns sorted by the 64-bit key of the id (``monitor/eventkey.py``), looked
up for a whole batch with ``np.searchsorted``.  A pending prediction costs
29 bytes (key 8, prediction time 8, score 8, value code 4, late flag 1); the
prediction's value is a code into a small per-model table of the distinct
values seen (a classifier's few classes).

Semantics, in stream order (the same whatever the batch sizes, except for the
capacity bound, which is applied at the end of each batch):

- Two *clocks*: the newest event time of the model's predictions (``clock``)
  and of its label events (``label_clock``).  A prediction waits for its
  label until the labels have moved past its time by ``label_ttl``; an
  orphan waits for its prediction until the predictions have moved past its
  time (the label event's ``ts``) by ``orphan_ttl``.  When they stop waiting
  they are counted: ``unlabeled["ttl"]``, ``unmatched["orphan_expired"]``.
  Each side is judged by the clock of the stream its partner comes on, so
  predictions and labels on two topics, read at different paces (a consumer
  fetches by bytes, not by event time), join the same as one stream in
  event-time order would, however far one topic runs ahead of the other.
  A side whose partner's stream stops waits until ``max_pending`` pushes it
  out.
- A label joins the oldest-arrived waiting prediction with its id, if it
  came within ``label_ttl`` of the prediction (by their ``ts``); a prediction
  joins the first waiting orphan with its id that came within that time of
  it.  First label wins: a later label for a joined id (within the
  prediction's TTL) counts as ``unmatched["duplicate"]``, and so do the
  other such orphans of an id when one joins.  A label after the TTL waits
  as an orphan and expires.
- A label of another type than its prediction (``1`` for ``"1"``) is
  ``unmatched["type_mismatch"]``: counted, not joined; the prediction keeps waiting.
- At most ``max_pending`` predictions wait (and as many orphans and joined
  ids); past that, at the end of the batch, the oldest by event time leave:
  ``unlabeled["capacity"]`` (orphans: ``unmatched["orphan_expired"]``).

>>> import numpy as np
>>> from decaywatch.monitor.schema import validate
>>> join = Join(label_ttl=3600.0, orphan_ttl=60.0, max_pending=10)
>>> events = [{"model": "m", "prediction": 1, "event_id": "a", "ts": 0},
...           {"model": "m", "label": 1, "event_id": "b", "ts": 5},
...           {"model": "m", "prediction": 0, "event_id": "b", "ts": 6},
...           {"model": "m", "label": 1, "event_id": "a", "ts": 30},
...           {"model": "m", "label": 0, "event_id": "a", "ts": 31}]
>>> batch, _ = validate(events, np.zeros(5))
>>> joined = join.step(batch.rows(np.arange(5)), np.zeros(5, bool))
>>> joined.position.tolist(), joined.time.tolist(), joined.correct.tolist()
([2, 3], [6.0, 0.0], [False, True])
>>> join.joined, join.unmatched["duplicate"], join.pending
(2, 1, 0)
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from decaywatch.monitor.keyedtable import Columns, SortedTable
from decaywatch.monitor.schema import ModelRows, Role
from decaywatch.monitor.snapshot import LabelSnapshot

UNLABELED_REASONS: Final = ("ttl", "capacity")
"""Why a prediction left without its label: ``decaywatch_predictions_unlabeled_total{reason}``."""
UNMATCHED_REASONS: Final = ("orphan_expired", "duplicate", "type_mismatch")
"""Why a label joined nothing: ``decaywatch_labels_unmatched_total{reason}``."""

DELAY_BUCKETS: Final = (
    60.0,
    300.0,
    900.0,
    3600.0,
    3 * 3600.0,
    6 * 3600.0,
    12 * 3600.0,
    86400.0,
    2 * 86400.0,
    3 * 86400.0,
    7 * 86400.0,
    14 * 86400.0,
    30 * 86400.0,
    60 * 86400.0,
    90 * 86400.0,
)
"""Upper bounds (seconds) of the label-delay histogram, from a minute to 90 days (one more bucket: beyond)."""

_TYPE_CODES: Final = {int: 0, str: 1, bool: 2}


@dataclass(frozen=True, slots=True)
class Joined:
    """Outcomes joined in one batch, in join order: where (row of the batch) and what."""

    position: npt.NDArray[np.intp]
    time: npt.NDArray[np.float64]
    """The prediction's event time (the outcome belongs to it in event-time windows)."""
    prediction: npt.NDArray[np.object_]
    label: npt.NDArray[np.object_]
    score: npt.NDArray[np.float64]
    late: npt.NDArray[np.bool_]
    """The prediction was late when it arrived (left out of event-time windows)."""

    @property
    def correct(self) -> npt.NDArray[np.bool_]:
        return np.asarray(self.prediction == self.label, dtype=bool)

    def __len__(self) -> int:
        return int(self.position.shape[0])


def _objects(values: list[Any]) -> npt.NDArray[np.object_]:
    array = np.empty(len(values), dtype=object)
    array[:] = values
    return array


class Join:
    """One model's waiting predictions and labels, and the counts of how each left."""

    def __init__(self, label_ttl: float, orphan_ttl: float, max_pending: int) -> None:
        self.label_ttl = label_ttl
        self.orphan_ttl = orphan_ttl
        self.max_pending = max_pending
        self.waiting = SortedTable({"key": np.uint64, "time": np.float64, "score": np.float64, "code": np.int32, "late": bool})
        self.orphans = SortedTable({"key": np.uint64, "time": np.float64, "code": np.int32})
        self.done = SortedTable({"key": np.uint64, "time": np.float64})
        """Recently joined ids with their prediction time: a further label for one is a duplicate."""
        self.values: list[Any] = []
        """The distinct prediction and label values waiting; codes index this."""
        self._codes: dict[tuple[type, Any], int] = {}
        self.clock: float | None = None
        """The newest prediction time of the model (once it has joined or waited)."""
        self.label_clock: float | None = None
        """The newest label-event time of the model."""
        self.joined = 0
        self.unlabeled = dict.fromkeys(UNLABELED_REASONS, 0)
        self.unmatched = dict.fromkeys(UNMATCHED_REASONS, 0)
        self.delays = np.zeros(len(DELAY_BUCKETS) + 1, np.int64)
        """Joined outcomes per label-delay bucket (label time minus prediction time, event time)."""
        self._delay_sum_us = 0
        """The sum of joined label delays in whole microseconds: integers add up the same whatever the batches."""

    @property
    def delay_sum(self) -> float:
        """The sum of joined label delays, in seconds (the histogram's ``_sum``)."""
        return self._delay_sum_us / 1e6

    @property
    def pending(self) -> int:
        """Predictions waiting for their label."""
        return len(self.waiting)

    def step(self, rows: ModelRows, late: npt.NDArray[np.bool_], before: float | None = None) -> Joined:
        """Join one batch's pending predictions and label events.

        ``late`` says per row which predictions were late; ``before`` is the
        model's newest event time before this batch (the clock starts there
        even if the model has never joined anything yet).
        """
        if not rows.event_time.shape[0]:
            return _empty()
        start = max(_time(self.clock), _time(before))
        if rows.role is None or rows.key is None or not bool((rows.role != Role.PREDICTION).any()):
            if self.clock is not None or self.label_clock is not None:  # a model that never joined keeps no clocks
                self.clock = max(start, float(rows.event_time.max()))
                self._expire()
            return _empty()
        is_label = rows.role == Role.LABEL
        batch = _Batch(
            rows, late, _clock(rows.event_time, ~is_label, start), _clock(rows.event_time, is_label, _time(self.label_clock))
        )
        self.clock = _clock_value(batch.clock[-1])
        self.label_clock = _clock_value(batch.label_clock[-1])
        joined = self._fast(batch) + self._slow(batch)
        self._expire()
        self._compact_values()
        return self._finish(joined)

    def _waits(self, b: _Batch, rows: Any, prediction_time: Any) -> Any:
        """Whether a prediction of this time still waits for its label at these rows (by the labels' clock)."""
        return np.asarray(b.label_clock[rows] - prediction_time <= self.label_ttl)

    def _orphan_waits(self, b: _Batch, rows: Any, label_time: Any) -> Any:
        """Whether an orphan label of this time still waits for its prediction at these rows (by the predictions' clock)."""
        return np.asarray(b.clock[rows] - label_time <= self.orphan_ttl)

    # -- the common cases, a column at a time -----------------------------------------------------------

    def _fast(self, b: _Batch) -> list[_Join]:
        """Events whose id occurs once in the batch and at most once here: joined, queued or counted in bulk."""
        idx = b.index
        w_lo, w_hi = b.span(self.waiting)
        o_lo, o_hi = b.span(self.orphans)
        once = b.multiplicity == 1
        is_label = b.role[idx] == Role.LABEL
        no_orphan = o_hi == o_lo
        fresh = once & no_orphan & (w_hi == w_lo)
        new_pred = fresh & ~is_label
        times = self.waiting.columns["time"]
        meets = once & no_orphan & is_label & (w_hi - w_lo == 1)
        meets[meets] = self._waits(b, idx[meets], times[w_lo[meets]])
        # a label whose prediction the labels' clock has passed: it waits as an orphan (or is a duplicate), and the
        # prediction leaves by TTL at the end of the batch, as the slow path would have it leave at this row
        stale = once & no_orphan & is_label & (w_hi - w_lo == 1) & ~meets
        label_times = self.orphans.columns["time"]
        found = once & ~is_label & (w_hi == w_lo) & (o_hi - o_lo == 1)
        at = idx[found]
        found[found] = self._orphan_waits(b, at, label_times[o_lo[found]]) & (
            label_times[o_lo[found]] - b.rows.event_time[at] <= self.label_ttl
        )
        new_label = (fresh & is_label) | stale
        b.slow = ~(new_pred | meets | new_label | found)

        joins = [self._meet_waiting(b, idx[meets], w_lo[meets]), self._meet_orphan(b, idx[found], o_lo[found])]
        self.waiting.insert(self._pending_rows(b, idx[new_pred]))
        labels = idx[new_label]
        d_lo, d_hi = self.done.span(b.rows.key[labels])  # type: ignore[index]
        done_time = self.done.columns["time"]
        duplicate = d_hi > d_lo
        duplicate[duplicate] = self._waits(b, labels[duplicate], done_time[d_hi[duplicate] - 1])
        self.unmatched["duplicate"] += int(np.count_nonzero(duplicate))
        orphans = labels[~duplicate]
        self.orphans.insert(self._orphan_rows(b, orphans))
        joins.append(self._pairs(b, (w_hi == w_lo) & no_orphan))
        return joins

    def _meet_waiting(self, b: _Batch, at: npt.NDArray[np.intp], where: npt.NDArray[np.intp]) -> _Join:
        """Labels at rows ``at`` meet the one waiting prediction of their id each (table rows ``where``)."""
        label_values = b.labels_at(at)
        pending = self.waiting.columns
        same = self._table_kinds(pending["code"][where]) == _value_kinds(label_values)
        self.unmatched["type_mismatch"] += int(np.count_nonzero(~same))
        at, where, label_values = at[same], where[same], label_values[same]
        join = _Join(
            at,
            pending["time"][where],
            _objects(self.values)[pending["code"][where]],
            label_values,
            pending["score"][where],
            pending["late"][where],
            b.rows.event_time[at],
        )
        gone = np.zeros(len(self.waiting), dtype=bool)
        gone[where] = True
        self.waiting.take(gone)
        self.done.insert({"key": b.rows.key[at], "time": join.time})  # type: ignore[index]
        return join

    def _meet_orphan(self, b: _Batch, at: npt.NDArray[np.intp], where: npt.NDArray[np.intp]) -> _Join:
        """Predictions at rows ``at`` meet the one waiting orphan label of their id each (table rows ``where``)."""
        rows = b.rows
        assert rows.predictions is not None
        predictions = rows.predictions[at]
        orphans = self.orphans.columns
        same = self._table_kinds(orphans["code"][where]) == _value_kinds(predictions)
        self.unmatched["type_mismatch"] += int(np.count_nonzero(~same))
        gone = np.zeros(len(self.orphans), dtype=bool)
        gone[where] = True  # a label of another type is counted and leaves; the prediction waits
        self.waiting.insert(self._pending_rows(b, at[~same]))
        at, where = at[same], where[same]
        time = rows.event_time[at]
        join = _Join(
            at,
            time,
            predictions[same],
            _objects(self.values)[orphans["code"][where]],
            rows.score[at] if rows.score is not None else np.full(at.shape[0], np.nan),
            b.late[at],
            orphans["time"][where],
        )
        self.orphans.take(gone)
        self.done.insert({"key": rows.key[at], "time": time})  # type: ignore[index]
        return join

    def _table_kinds(self, codes: npt.NDArray[np.int32]) -> npt.NDArray[np.int8]:
        """The type code of each table value code."""
        kinds = np.array([_TYPE_CODES[type(v)] for v in self.values] or [0], dtype=np.int8)
        return kinds[codes]

    def _pairs(self, b: _Batch, unknown: npt.NDArray[np.bool_]) -> _Join:
        """Ids new here that occur twice in the batch, a prediction and its label in either order: joined in bulk."""
        idx, rows = b.index, b.rows
        chosen = (b.multiplicity == 2) & unknown
        order = b.order[chosen[b.order]]  # by key, then position
        first, second = order[0::2], order[1::2]
        p, q = idx[first], idx[second]
        label_first = b.role[p] == Role.LABEL
        pred = np.where(label_first, q, p)
        lab = np.where(label_first, p, q)
        t, s = rows.event_time[pred], rows.event_time[lab]
        in_order = (b.role[p] == Role.PENDING) & (b.role[q] == Role.LABEL)
        waits = self._waits(b, q, t)
        ok = np.where(
            label_first,
            (b.role[q] == Role.PENDING) & self._orphan_waits(b, q, s) & (s - t <= self.label_ttl),
            in_order & waits,
        )
        assert rows.predictions is not None
        assert rows.key is not None
        predictions, labels = rows.predictions[pred], b.labels_at(lab)
        self._apart(b, first, second, ~label_first & in_order & ~waits)
        ok &= _same_types(predictions.tolist(), labels.tolist())
        b.slow[first[ok]] = False
        b.slow[second[ok]] = False
        pred, q = pred[ok], q[ok]
        score = rows.score[pred] if rows.score is not None else np.full(pred.shape[0], np.nan)
        time = t[ok]
        self.done.insert({"key": rows.key[q], "time": time})
        return _Join(q, time, predictions[ok], labels[ok], score, b.late[pred], s[ok])

    def _apart(self, b: _Batch, first: npt.NDArray[np.intp], second: npt.NDArray[np.intp], late: npt.NDArray[np.bool_]) -> None:
        """Pairs whose label came after the prediction's TTL: the prediction waits (and leaves by TTL at the end
        of the batch), the label waits as an orphan, as the slow path would have them; ids joined before stay slow."""
        key = b.rows.key
        assert key is not None
        d_lo, d_hi = self.done.span(key[b.index[second]])
        late &= d_hi == d_lo
        if not late.any():
            return
        self.waiting.insert(self._pending_rows(b, b.index[first[late]]))
        labels = b.index[second[late]]
        self.orphans.insert(self._orphan_rows(b, labels))
        b.slow[first[late]] = False
        b.slow[second[late]] = False

    # -- everything else, one event at a time in stream order ---------------------------------------------

    def _slow(self, b: _Batch) -> list[_Join]:
        """Events whose id occurs more than once (in the batch or here): the rules played event by event."""
        rows = b.index[b.slow]
        if not rows.size:
            return []
        key = b.rows.key
        assert key is not None
        keys = np.unique(key[rows])
        waiting = self.waiting.take(np.isin(self.waiting.columns["key"], keys))
        orphans = self.orphans.take(np.isin(self.orphans.columns["key"], keys))
        done = self.done.take(np.isin(self.done.columns["key"], keys))
        w: dict[int, list[list[Any]]] = {}
        for k, t, s, c, late in zip(*(waiting[n].tolist() for n in ("key", "time", "score", "code", "late")), strict=True):
            w.setdefault(k, []).append([t, s, self.values[c], late])
        o: dict[int, list[list[Any]]] = {}
        for k, t, c in zip(*(orphans[n].tolist() for n in ("key", "time", "code")), strict=True):
            o.setdefault(k, []).append([t, self.values[c]])
        d: dict[int, float] = dict(zip(done["key"].tolist(), done["time"].tolist(), strict=True))
        out: list[list[Any]] = []
        preds = b.rows.predictions
        labels = b.rows.labels
        assert labels is not None
        score = b.rows.score
        ttl = self.label_ttl
        for i, k, t, c, lc, role in zip(
            rows.tolist(),
            key[rows].tolist(),
            b.rows.event_time[rows].tolist(),
            b.clock[rows].tolist(),
            b.label_clock[rows].tolist(),
            b.role[rows].tolist(),
            strict=True,
        ):
            if role == Role.PENDING:
                p = preds[i] if preds is not None else None
                s = float(score[i]) if score is not None else float("nan")
                if self._meet_orphans(o.get(k, []), i, t, c, p, s, bool(b.late[i]), out):
                    d[k] = t
                else:
                    w.setdefault(k, []).append([t, s, p, bool(b.late[i])])
            else:
                label = labels[i]
                queue = w.get(k, [])
                kept = [entry for entry in queue if lc - entry[0] <= ttl]
                self.unlabeled["ttl"] += len(queue) - len(kept)
                w[k] = kept
                if kept:
                    first = kept[0]
                    if type(first[2]) is not type(label):
                        self.unmatched["type_mismatch"] += 1
                    else:
                        kept.pop(0)
                        out.append([i, first[0], first[2], label, first[1], first[3], t])
                        d[k] = first[0]
                elif k in d and lc - d[k] <= ttl:
                    self.unmatched["duplicate"] += 1
                else:
                    o.setdefault(k, []).append([t, label])
        self._put_back(w, o, d)
        if not out:
            return []
        columns = list(zip(*out, strict=True))
        return [
            _Join(
                np.array(columns[0], dtype=np.intp),
                np.array(columns[1], dtype=np.float64),
                _objects(list(columns[2])),
                _objects(list(columns[3])),
                np.array(columns[4], dtype=np.float64),
                np.array(columns[5], dtype=bool),
                np.array(columns[6], dtype=np.float64),
            )
        ]

    def _meet_orphans(
        self,
        queue: list[list[Any]],
        i: int,
        t: float,
        c: float,
        p: Any,
        s: float,
        late: bool,
        out: list[list[Any]],
    ) -> bool:
        """A prediction meets the orphans of its id (in arrival order); returns whether one joined it.

        Orphans the predictions' clock ``c`` has passed are counted and leave; one that came
        more than ``label_ttl`` after the prediction does not join it (it waits
        on, and expires).  When one joins, the others within the TTL are
        duplicates.
        """
        kept = [e for e in queue if c - e[0] <= self.orphan_ttl]
        self.unmatched["orphan_expired"] += len(queue) - len(kept)
        queue[:] = kept
        for n, (label_time, label) in enumerate(queue):
            if label_time - t > self.label_ttl:
                continue
            if type(label) is not type(p):
                self.unmatched["type_mismatch"] += 1
                queue[n] = []
                continue
            out.append([i, t, p, label, s, late, label_time])
            after = [e for e in queue[n + 1 :] if e and e[0] - t > self.label_ttl]
            self.unmatched["duplicate"] += sum(1 for e in queue[n + 1 :] if e) - len(after)
            queue[:] = [e for e in queue[:n] if e] + after
            return True
        queue[:] = [e for e in queue if e]
        return False

    def _put_back(self, w: dict[int, list[list[Any]]], o: dict[int, list[list[Any]]], d: dict[int, float]) -> None:
        """The slow path's leftovers back into the tables."""
        waiting = [(k, *entry) for k, queue in w.items() for entry in queue]
        if waiting:
            keys, times, scores, values, late = zip(*waiting, strict=True)
            self.waiting.insert(
                {
                    "key": np.array(keys, np.uint64),
                    "time": np.array(times, np.float64),
                    "score": np.array(scores, np.float64),
                    "code": self._encode(_objects(list(values))),
                    "late": np.array(late, bool),
                }
            )
        orphans = [(k, *entry) for k, queue in o.items() for entry in queue]
        if orphans:
            keys, times, values = zip(*orphans, strict=True)
            self.orphans.insert(
                {
                    "key": np.array(keys, np.uint64),
                    "time": np.array(times, np.float64),
                    "code": self._encode(_objects(list(values))),
                }
            )
        if d:
            self.done.insert({"key": np.array(list(d), np.uint64), "time": np.array(list(d.values()), np.float64)})

    # -- bookkeeping ------------------------------------------------------------------------------------------

    def _pending_rows(self, b: _Batch, rows: npt.NDArray[np.intp]) -> Columns:
        key, score = b.rows.key, b.rows.score
        assert key is not None
        assert b.rows.predictions is not None
        return {
            "key": key[rows],
            "time": b.rows.event_time[rows],
            "score": score[rows] if score is not None else np.full(rows.shape[0], np.nan),
            "code": self._encode(b.rows.predictions[rows]),
            "late": b.late[rows],
        }

    def _orphan_rows(self, b: _Batch, rows: npt.NDArray[np.intp]) -> Columns:
        key = b.rows.key
        assert key is not None
        return {"key": key[rows], "time": b.rows.event_time[rows], "code": self._encode(b.labels_at(rows))}

    def _encode(self, values: npt.NDArray[np.object_]) -> npt.NDArray[np.int32]:
        """Codes of values in the table (new values are added); ``1`` and ``True`` stay apart.

        A column of one type (a model's classes; ``1`` and ``True`` cannot
        meet in it) is coded through a dict of its distinct values, in C.
        """
        listed = values.tolist()
        if len(set(map(type, listed))) == 1:
            distinct = list(dict.fromkeys(listed))
            code_of = dict(zip(distinct, self._encode_each(distinct).tolist(), strict=True))
            return np.fromiter(map(code_of.__getitem__, listed), dtype=np.int32, count=len(listed))
        return self._encode_each(listed)

    def _encode_each(self, listed: list[Any]) -> npt.NDArray[np.int32]:
        codes = self._codes
        table = self.values
        out = []
        for v in listed:
            entry = (type(v), v)
            code = codes.get(entry)
            if code is None:
                code = codes[entry] = len(table)
                table.append(v)
            out.append(code)
        return np.array(out, dtype=np.int32)

    def _compact_values(self) -> None:
        """Drop table values no waiting event refers to, once the table has grown (free-form predictions)."""
        if len(self.values) <= 1024:
            return
        used = np.union1d(self.waiting.columns["code"], self.orphans.columns["code"])
        if used.shape[0] * 2 > len(self.values):
            return
        remap = np.zeros(len(self.values), np.int32)
        remap[used] = np.arange(used.shape[0], dtype=np.int32)
        for table in (self.waiting, self.orphans):
            table.columns["code"] = remap[table.columns["code"]]
        self.values = [self.values[c] for c in used.tolist()]
        self._codes = {(type(v), v): c for c, v in enumerate(self.values)}

    def _expire(self) -> None:
        """End of batch: what the clock has passed leaves, and each table is held to ``max_pending``."""
        if self.clock is None and self.label_clock is None:
            return
        label_clock = _time(self.label_clock)  # predictions and joined ids leave by the labels' clock
        old = label_clock - self.waiting.columns["time"] > self.label_ttl
        self.unlabeled["ttl"] += int(np.count_nonzero(old))
        self.waiting.take(old)
        self.done.take(label_clock - self.done.columns["time"] > self.label_ttl)
        old = _time(self.clock) - self.orphans.columns["time"] > self.orphan_ttl  # orphans by the predictions'
        self.unmatched["orphan_expired"] += int(np.count_nonzero(old))
        self.orphans.take(old)
        self.unlabeled["capacity"] += _hold(self.waiting, self.max_pending)
        self.unmatched["orphan_expired"] += _hold(self.orphans, self.max_pending)
        _hold(self.done, self.max_pending)

    def _finish(self, parts: list[_Join]) -> Joined:
        parts = [p for p in parts if p.position.shape[0]]
        if not parts:
            return _empty()
        order = np.argsort(np.concatenate([p.position for p in parts]), kind="stable")

        def cat(name: str) -> Any:
            return np.concatenate([getattr(p, name) for p in parts])[order]

        delay = np.maximum(cat("label_time") - cat("time"), 0.0)
        self.joined += int(delay.shape[0])
        self.delays += np.bincount(np.searchsorted(DELAY_BUCKETS, delay, "left"), minlength=self.delays.shape[0])
        self._delay_sum_us += int(np.rint(delay * 1e6).astype(np.int64).sum())
        return Joined(*(cat(f.name) for f in fields(Joined)))

    def snapshot(self) -> LabelSnapshot | None:
        """Label health for exporters; ``None`` while the model has never joined or waited (inline labels only)."""
        if self.clock is None and self.label_clock is None:
            return None
        return LabelSnapshot(
            pending=len(self.waiting),
            orphans=len(self.orphans),
            joined=self.joined,
            unlabeled=dict(self.unlabeled),
            unmatched=dict(self.unmatched),
            delay_bounds=DELAY_BUCKETS,
            delay_counts=tuple(self.delays.tolist()),
            delay_sum=self.delay_sum,
        )

    def state(self) -> dict[str, Any]:
        return {
            "waiting": self.waiting.state(),
            "orphans": self.orphans.state(),
            "done": self.done.state(),
            "values": list(self.values),
            "codes": len(self._codes),
            "clock": self.clock,
            "label_clock": self.label_clock,
            "joined": self.joined,
            "unlabeled": dict(self.unlabeled),
            "unmatched": dict(self.unmatched),
            "delays": self.delays,
            "delay_sum_us": self._delay_sum_us,
        }

    def restore(self, state: dict[str, Any]) -> None:
        values = state["values"]
        if not isinstance(values, list) or any(type(v) not in _TYPE_CODES for v in values):
            raise ValueError("join values must be a list of integers, strings and booleans")
        self.waiting.restore(state["waiting"])
        self.orphans.restore(state["orphans"])
        self.done.restore(state["done"])
        for table in (self.waiting, self.orphans):
            codes = table.columns["code"]
            if codes.shape[0] and not 0 <= int(codes.min()) <= int(codes.max()) < len(values):
                raise ValueError("join value code out of range")
        self.values = list(values)
        self._codes = {(type(v), v): c for c, v in enumerate(values)}
        if len(self._codes) != len(values) or state["codes"] != len(values):
            raise ValueError("join values are not distinct")
        clock = state["clock"]
        self.clock = None if clock is None else float(clock)
        label_clock = state.get("label_clock", clock)  # checkpoints before it had one clock for both
        self.label_clock = None if label_clock is None else float(label_clock)
        self.joined = _count(state["joined"])
        if set(state["unlabeled"]) != set(UNLABELED_REASONS) or set(state["unmatched"]) != set(UNMATCHED_REASONS):
            raise ValueError("join counters by unknown reasons")
        self.unlabeled = {r: _count(state["unlabeled"][r]) for r in UNLABELED_REASONS}
        self.unmatched = {r: _count(state["unmatched"][r]) for r in UNMATCHED_REASONS}
        delays = state["delays"]
        if not isinstance(delays, np.ndarray) or delays.shape != self.delays.shape:
            raise ValueError("join delay histogram of another shape")
        self.delays = delays.astype(np.int64)
        if "delay_sum_us" in state:
            self._delay_sum_us = _count(state["delay_sum_us"])
        else:  # checkpoints before it kept seconds as a float
            self._delay_sum_us = round(float(state["delay_sum"]) * 1e6)


def _same_types(left: list[Any], right: list[Any]) -> npt.NDArray[np.bool_]:
    """Whether each pair has one type; one set of types per side in the common case (a model's one label type)."""
    types = set(map(type, left))
    if len(types) == 1 and set(map(type, right)) <= types:
        return np.ones(len(left), dtype=bool)
    return np.array([type(x) is type(y) for x, y in zip(left, right, strict=True)], dtype=bool)


def _count(value: Any) -> int:
    if type(value) is not int or value < 0:
        raise ValueError(f"a count must be a whole number >= 0, not {value!r}")
    return value


def _hold(table: SortedTable, limit: int) -> int:
    """Remove the oldest rows (by event time) beyond ``limit``; returns how many left."""
    excess = len(table) - limit
    if excess <= 0:
        return 0
    oldest = np.argpartition(table.columns["time"], excess - 1)[:excess]
    mask = np.zeros(len(table), dtype=bool)
    mask[oldest] = True
    table.take(mask)
    return excess


@dataclass(frozen=True, slots=True)
class _Join(Joined):
    """One part of a batch's joins, with when each label became known (for the label-delay histogram)."""

    label_time: npt.NDArray[np.float64]


class _Batch:
    """One batch's joining events (pending predictions and labels), with both clocks at each row."""

    def __init__(
        self,
        rows: ModelRows,
        late: npt.NDArray[np.bool_],
        clock: npt.NDArray[np.float64],
        label_clock: npt.NDArray[np.float64],
    ) -> None:
        assert rows.role is not None
        assert rows.key is not None
        self.rows = rows
        self.role = rows.role
        self.late = late
        self.clock = clock
        """The newest prediction time up to and including each row."""
        self.label_clock = label_clock
        """The newest label-event time up to and including each row."""
        self.index = np.flatnonzero(rows.role != Role.PREDICTION)
        self.key = rows.key[self.index]
        self.order = np.argsort(self.key, kind="stable")
        """The joining events by key, then by position."""
        ordered = self.key[self.order]
        first = np.empty(ordered.shape[0], dtype=bool)
        first[:1] = True
        np.not_equal(ordered[1:], ordered[:-1], out=first[1:])
        starts = np.flatnonzero(first)
        self.keys = ordered[starts]
        """The batch's distinct keys, sorted: a table is searched for each once, in order."""
        self.inverse = np.empty(ordered.shape[0], dtype=np.intp)
        self.inverse[self.order] = np.cumsum(first) - 1
        self.multiplicity = np.diff(np.append(starts, ordered.shape[0]))[self.inverse]
        self.slow = np.zeros(self.index.shape[0], dtype=bool)

    def span(self, table: SortedTable) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.intp]]:
        """For each joining event, the rows ``lo:hi`` of ``table`` that hold its key."""
        lo, hi = table.span(self.keys)
        return lo[self.inverse], hi[self.inverse]

    def labels_at(self, rows: npt.NDArray[np.intp]) -> npt.NDArray[np.object_]:
        labels = self.rows.labels
        assert labels is not None
        return labels[rows]


def _time(value: float | None) -> float:
    return -np.inf if value is None else value


def _clock(times: npt.NDArray[np.float64], counted: npt.NDArray[np.bool_], start: float) -> npt.NDArray[np.float64]:
    """The newest time of the ``counted`` rows up to each row, from ``start``."""
    return np.maximum.accumulate(np.where(counted, np.maximum(times, start), start))


def _clock_value(value: float) -> float | None:
    return None if value == -np.inf else float(value)


def _value_kinds(values: npt.NDArray[np.object_]) -> npt.NDArray[np.int8]:
    return np.fromiter(map(_TYPE_CODES.__getitem__, map(type, values.tolist())), dtype=np.int8, count=values.shape[0])


def _empty() -> Joined:
    none = np.zeros(0)
    return Joined(np.zeros(0, np.intp), none, np.empty(0, object), np.empty(0, object), none, np.zeros(0, bool))
