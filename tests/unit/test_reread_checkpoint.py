"""A partition handed back is re-read from its committed offset; a checkpoint taken during the re-read stays exact.

Both clients restart a partition handed back in an eager rebalance at its
committed offset, behind what the member's state already holds, and the
service skips those events.  A checkpoint in the middle of that re-read must
still label each model's state with the offset it really includes: labelled
with the re-read's offset instead, the next owner would count the events in
between twice (seen on the real broker as a scale-out run over librdkafka
that counted a model's first phase twice).
"""

from __future__ import annotations

from decaywatch.consumer.changelog import MemoryStateStore
from tests.unit.fakes import drain
from tests.unit.test_state_moves import ScriptedSource, logs, reference, service


def test_a_checkpoint_during_a_re_read_keeps_the_offsets_the_state_includes() -> None:
    source = ScriptedSource(logs())
    source.assign({0, 1})
    store = MemoryStateStore()
    owner = service(source, store, interval=1e9)  # one checkpoint, at the first batch (offsets 0..29)
    drain(owner, steps=6)  # processed through offset 179 of each partition, committed at 30
    source.assign({0, 1})  # handed back: positions fall back to 30
    drain(owner, steps=1)  # re-reads 30..59: every event already in the state, skipped
    owner.checkpoint()  # state through 179, offsets committed at 60
    assert {record.offset for record in store.records.values()} >= {178, 179}
    source.assign({0, 1})  # the owner dies; a new member resumes at 60 with the restored state
    successor = service(source, store, interval=1e9)
    drain(successor)
    assert dict(successor.snapshot()) == reference()
