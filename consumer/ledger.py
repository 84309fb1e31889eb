"""Which partitions this monitor owns, where each model's events come from, and what its state already holds.

The service's loop moves events; this ledger keeps the bookkeeping that lets
model state move with its partition (see ``changelog.py``):

* ownership: the partitions assigned to this member, and those revoked and
  not yet handed back;
* per model: its partition, the last input offset it has processed, and the
  offset through which a restored checkpoint already includes its events
  (events at or before it are skipped: they were counted by the old owner);
* what the next checkpoint must write: models touched since the last one.

It is created before the Kafka consumer, because the rebalance callback
(on the client's IO thread) calls :meth:`withhold` at once: a scrape must
not show a model another process may already be exporting.

>>> withheld = []
>>> ledger = PartitionLedger(on_withhold=withheld.append)
>>> ledger.rebalance([("assigned", {0, 1})])
(set(), {0, 1})
>>> ledger.note({"a": (0, 41), "b": (1, 7)})
>>> ledger.withhold({1}), withheld
({'b'}, [{'b'}])
>>> ledger.rebalance([("revoked", {0, 1}), ("assigned", {0})])
({'b'}, set())
>>> ledger.skip_through("a")  # partition 0 came back: its state already includes offset 41
41
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

Placement = tuple[int, int]
"""A model's (partition, last input offset)."""


class PartitionLedger:
    """Partition ownership and per-model offsets of one monitor process."""

    def __init__(self, on_withhold: Callable[[set[str]], None] | None = None) -> None:
        self._on_withhold = on_withhold
        self._owned: set[int] = set()
        self._revoked: set[int] = set()
        self._placement: dict[str, Placement] = {}
        self._skip_through: dict[str, int] = {}
        self._unsaved: dict[str, Placement] = {}

    def withhold(self, partitions: set[int]) -> set[str]:
        """The models of these partitions (being revoked): stop exporting them now; returns them."""
        gone = {model for model, (p, _offset) in list(self._placement.items()) if p in partitions}
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
            for model, (p, offset) in self._placement.items():
                if p in kept:
                    self._skip_through[model] = offset
            forget |= self.forget_partitions(gone)
            self._owned, self._revoked = set(partitions), set()
        return forget, arrived & self._owned

    def forget_partitions(self, partitions: set[int]) -> set[str]:
        """Drop everything about the models of these partitions; returns them."""
        gone = {model for model, (p, _offset) in self._placement.items() if p in partitions}
        for model in gone:
            self.forget(model)
        return gone

    def forget(self, model: str) -> None:
        self._placement.pop(model, None)
        self._skip_through.pop(model, None)
        self._unsaved.pop(model, None)

    def restored(self, model: str, partition: int, offset: int) -> None:
        """A checkpoint of ``model`` including its events through ``offset`` was restored."""
        self._placement[model] = (partition, offset)
        self._skip_through[model] = offset

    def skip_through(self, model: str) -> int | None:
        """Events of ``model`` at or before this offset are already in its state."""
        return self._skip_through.get(model)

    def note(self, placements: Mapping[str, Placement]) -> None:
        """This batch's models, their partition and last offset: a later checkpoint must save them.

        A model whose skip offset the batch passed no longer needs it.  A model
        whose events in the batch were all skipped (a partition re-read from its
        committed offset after it was handed back) keeps its place: its state
        still includes events through the skip offset, and a checkpoint must
        not label it with an older one, or the next owner would count the
        events in between twice.

        >>> ledger = PartitionLedger()
        >>> ledger.rebalance([("assigned", {0})])
        (set(), {0})
        >>> ledger.note({"a": (0, 900)})
        >>> ledger.rebalance([("revoked", {0}), ("assigned", {0})])  # handed back: re-read from the committed offset
        (set(), set())
        >>> ledger.saved()
        >>> ledger.note({"a": (0, 499)})  # all skipped
        >>> ledger.unsaved(), ledger.skip_through("a")
        ({}, 900)
        >>> ledger.note({"a": (0, 999)})
        >>> ledger.unsaved(), ledger.skip_through("a")
        ({'a': (0, 999)}, None)
        """
        for model, (partition, offset) in placements.items():
            through = self._skip_through.get(model)
            if through is not None:
                if offset <= through:
                    continue  # nothing new: the state already holds these events, and its offset stays
                del self._skip_through[model]
            self._placement[model] = (partition, offset)
            self._unsaved[model] = (partition, offset)

    def unsaved(self) -> dict[str, Placement]:
        """Models touched since the last checkpoint, with the offset their state will include."""
        return dict(self._unsaved)

    def saved(self) -> None:
        """The checkpoint of everything ``unsaved`` returned is durable."""
        self._unsaved = {}

    def partition_of(self, model: str) -> int | None:
        placement = self._placement.get(model)
        return None if placement is None else placement[0]
