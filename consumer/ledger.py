"""Which partitions this monitor owns, where each model's events come from, and what its state already holds.

The service's loop moves events; this ledger keeps the bookkeeping that lets
model state move with its partition (see ``changelog.py``):

* ownership: the partitions assigned to this member, and those revoked and
  not yet handed back;
* per model: its partition, the last input offset it has processed on each
  input topic (predictions, and labels when they come on their own topic,
  co-partitioned), and the offsets through which a restored checkpoint
  already includes its events (events at or before them are skipped: they
  were counted by the old owner);
* what the next checkpoint must write: models touched since the last one.

It is created before the Kafka consumer, because the rebalance callback
(on the client's IO thread) calls :meth:`withhold` at once: a scrape must
not show a model another process may already be exporting.

>>> withheld = []
>>> ledger = PartitionLedger(on_withhold=withheld.append)
>>> ledger.rebalance([("assigned", {0, 1})])
(set(), {0, 1})
>>> ledger.note({"a": (0, 41, NONE), "b": (1, 7, 3)})
>>> ledger.withhold({1}), withheld
({'b'}, [{'b'}])
>>> ledger.rebalance([("revoked", {0, 1}), ("assigned", {0})])
({'b'}, set())
>>> ledger.skip_through("a")  # partition 0 came back: its state already includes offset 41 of the predictions
(41, -1)
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

Placement = tuple[int, int, int]
"""A model's (partition, last offset on the predictions topic, last offset on the labels topic); ``NONE``: no event yet."""
Offsets = tuple[int, int]
"""Offsets on the predictions and the labels topic."""
NONE = -1
"""No offset: no event of the model on that topic yet (or no labels topic)."""


class PartitionLedger:
    """Partition ownership and per-model offsets of one monitor process."""

    def __init__(self, on_withhold: Callable[[set[str]], None] | None = None) -> None:
        self._on_withhold = on_withhold
        self._owned: set[int] = set()
        self._revoked: set[int] = set()
        self._placement: dict[str, Placement] = {}
        self._skip_through: dict[str, Offsets] = {}
        self._unsaved: dict[str, Placement] = {}

    def withhold(self, partitions: set[int]) -> set[str]:
        """The models of these partitions (being revoked): stop exporting them now; returns them."""
        gone = {model for model, (p, *_offsets) in list(self._placement.items()) if p in partitions}
        if gone and self._on_withhold is not None:
            self._on_withhold(gone)
        return gone

    def rebalance(self, events: Iterable[tuple[str, set[int]]]) -> tuple[set[str], set[int]]:
        """Apply partition moves in order; returns the models to forget and the partitions newly arrived."""
        forget: set[str] = set()
        arrived: set[int] = set()
        for kind, partitions in events:
            if kind == "revoked":
                self._revoked |= partitions
                continue
            gone = self._revoked - partitions
            kept = partitions & self._owned & self._revoked
            arrived |= partitions - self._owned
            # A partition given back to us resumes from its committed offset, behind what we hold: skip that.
            for model, (p, offset, label_offset) in self._placement.items():
                if p in kept:
                    self._skip_through[model] = (offset, label_offset)
            forget |= self.forget_partitions(gone)
            self._owned, self._revoked = set(partitions), set()
        return forget, arrived & self._owned

    def forget_partitions(self, partitions: set[int]) -> set[str]:
        """Drop everything about the models of these partitions; returns them."""
        gone = {model for model, (p, *_offsets) in self._placement.items() if p in partitions}
        for model in gone:
            self.forget(model)
        return gone

    def forget(self, model: str) -> None:
        self._placement.pop(model, None)
        self._skip_through.pop(model, None)
        self._unsaved.pop(model, None)

    def restored(self, model: str, partition: int, offset: int, label_offset: int = NONE) -> None:
        """A checkpoint of ``model`` including its events through these offsets (per input topic) was restored."""
        self._placement[model] = (partition, offset, label_offset)
        self._skip_through[model] = (offset, label_offset)

    def skip_through(self, model: str) -> Offsets | None:
        """Events of ``model`` at or before these offsets (predictions, labels topic) are already in its state."""
        return self._skip_through.get(model)

    def note(self, placements: Mapping[str, Placement]) -> None:
        """This batch's models, their partition and last offsets: a later checkpoint must save them.

        A model's offsets only move forward: a model whose events in the batch
        were all skipped (a partition re-read from its committed offset after
        it was handed back) keeps its place, since its state still includes
        events through the skip offsets, and a checkpoint must not label it
        with older ones, or the next owner would count the events in between
        twice.  Once the batches have passed the skip offsets on both topics,
        they are no longer needed.

        >>> ledger = PartitionLedger()
        >>> ledger.rebalance([("assigned", {0})])
        (set(), {0})
        >>> ledger.note({"a": (0, 900, 50)})
        >>> ledger.rebalance([("revoked", {0}), ("assigned", {0})])  # handed back: re-read from the committed offsets
        (set(), set())
        >>> ledger.saved()
        >>> ledger.note({"a": (0, 499, 20)})  # all skipped
        >>> ledger.unsaved(), ledger.skip_through("a")
        ({}, (900, 50))
        >>> ledger.note({"a": (0, 999, NONE)})
        >>> ledger.unsaved(), ledger.skip_through("a")
        ({'a': (0, 999, 50)}, (900, 50))
        >>> ledger.note({"a": (0, NONE, 51)})
        >>> ledger.unsaved(), ledger.skip_through("a")
        ({'a': (0, 999, 51)}, None)
        """
        for model, (partition, offset, label_offset) in placements.items():
            before = self._placement.get(model)
            now = (
                (partition, offset, label_offset)
                if before is None
                else (partition, max(offset, before[1]), max(label_offset, before[2]))
            )
            if now != before:
                self._placement[model] = now
                self._unsaved[model] = now
            through = self._skip_through.get(model)
            if through is not None and all(t == NONE or n > t for n, t in zip(now[1:], through, strict=True)):
                del self._skip_through[model]

    def unsaved(self) -> dict[str, Placement]:
        """Models touched since the last checkpoint, with the offset their state will include."""
        return dict(self._unsaved)

    def saved(self) -> None:
        """The checkpoint of everything ``unsaved`` returned is durable."""
        self._unsaved = {}

    def partition_of(self, model: str) -> int | None:
        placement = self._placement.get(model)
        return None if placement is None else placement[0]
