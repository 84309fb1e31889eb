"""The service's side of moving partitions, with an in-memory changelog: checkpoint, restore, skip, commit."""

from __future__ import annotations

import numpy as np
import orjson
import pytest

from decaywatch.consumer.changelog import MemoryStateStore
from decaywatch.consumer.metrics import ServiceMetrics
from decaywatch.consumer.service import MonitorService
from decaywatch.monitor.config import ModelPolicy, MonitorConfig
from decaywatch.monitor.engine import Monitor
from tests.unit.fakes import MemoryAlertSink, MemoryDeadLetters, PartitionedSource, SteppingClock, Where, drain

POLICY = ModelPolicy(baseline=0.85, windows=(50, 200), min_samples=20)


def ScriptedSource(logs: dict[int, list[bytes]] | dict[Where, list[bytes]]) -> PartitionedSource:
    """One topic, ``"t"``, partitioned: the logs by partition number."""
    return PartitionedSource({(k if isinstance(k, tuple) else ("t", k)): v for k, v in logs.items()})


def t(offsets: dict[int, int]) -> dict[Where, int]:
    """Offsets by partition of topic ``"t"``, as the source keeps them."""
    return {("t", p): o for p, o in offsets.items()}


def logs() -> dict[int, list[bytes]]:
    rng = np.random.default_rng(3)
    out: dict[int, list[bytes]] = {0: [], 1: []}
    for i in range(600):
        model = f"m{i % 4}"
        accuracy = 0.5 if model == "m1" and i > 300 else 0.9
        out[i % 4 % 2].append(
            orjson.dumps({"model": model, "prediction": 1, "label": int(rng.random() < accuracy), "ts": float(i)})
        )
    return out


def service(source: PartitionedSource, store: MemoryStateStore | None, interval: float) -> MonitorService:
    journal: list[str] = []
    return MonitorService(
        source, Monitor(MonitorConfig(POLICY)), MemoryAlertSink(journal), MemoryDeadLetters(journal), ServiceMetrics(),
        SteppingClock(), state_store=store, checkpoint_interval_s=interval,
    )  # fmt: skip


def reference() -> dict[str, object]:
    source = ScriptedSource(logs())
    source.assign({0, 1})
    svc = service(source, MemoryStateStore(), interval=0.0)
    drain(svc)
    return dict(svc.snapshot())


def test_offsets_are_committed_only_with_a_checkpoint() -> None:
    source = ScriptedSource(logs())
    source.assign({0, 1})
    store = MemoryStateStore()
    svc = service(source, store, interval=3.5)  # a checkpoint every four steps, the first at once
    drain(svc, steps=1)
    assert source.committed == t({0: 30, 1: 30}) and set(store.records) == {"m0", "m1", "m2", "m3"}
    drain(svc, steps=3)
    assert source.committed == t({0: 30, 1: 30}) and source.position == t({0: 120, 1: 120})  # processed, not committed
    assert store.records["m0"].offset == 28  # m0 is every other record of partition 0
    drain(svc, steps=1)
    assert source.committed == t({0: 150, 1: 150}) and store.records["m0"].offset == 148


def test_a_crash_resumes_exactly_from_the_last_checkpoint() -> None:
    source = ScriptedSource(logs())
    source.assign({0, 1})
    store = MemoryStateStore()
    first = service(source, store, interval=3.5)
    drain(first, steps=7)  # then "SIGKILL": no final checkpoint, and some batches were never committed
    assert source.committed != source.position
    source.assign({0, 1})  # a new member gets both partitions
    second = service(source, store, interval=3.5)
    drain(second)
    assert dict(second.snapshot()) == reference()


def test_state_written_just_before_a_crash_is_not_counted_twice() -> None:
    source = ScriptedSource(logs())
    source.assign({0, 1})
    store = MemoryStateStore()
    first = service(source, store, interval=1e9)
    drain(first, steps=4)
    first.checkpoint()
    source.committed = t({0: 30, 1: 30})  # the crash came between the state flush and the offset commit
    source.assign({0, 1})
    second = service(source, store, interval=1e9)
    drain(second)
    assert dict(second.snapshot()) == reference()


def test_a_partition_moves_to_another_member_and_back() -> None:
    source = ScriptedSource(logs())
    source.assign({0, 1})
    store = MemoryStateStore()
    a = service(source, store, interval=3.5)
    drain(a, steps=3)
    a.checkpoint()
    source.assign({0})  # partition 1 leaves a ...
    drain(a, steps=1)
    assert set(a.snapshot()) == {"m0", "m2"}  # ... and its models stop being exported there at once
    b_source = ScriptedSource(source.logs)
    b_source.committed = source.committed
    b_source.assign({1})
    b = service(b_source, store, interval=3.5)
    drain(b)
    b.checkpoint()
    drain(a)
    a.checkpoint()
    merged = {**dict(a.snapshot()), **dict(b.snapshot())}
    assert merged == reference()


def test_a_partition_given_back_to_its_owner_skips_what_its_state_holds() -> None:
    source = ScriptedSource(logs())
    source.assign({0, 1})
    svc = service(source, MemoryStateStore(), interval=1e9)
    drain(svc, steps=6)  # nothing committed since the first checkpoint
    source.assign({0, 1})  # an eager rebalance hands everything back: positions fall back to the commit
    drain(svc)
    assert dict(svc.snapshot()) == reference()


def test_an_idle_monitor_checkpoints_what_it_handled_once_the_interval_has_passed() -> None:
    source = ScriptedSource(logs())
    source.assign({0, 1})
    store = MemoryStateStore()
    svc = service(source, store, interval=100.0)
    drain(svc, steps=1)  # the first checkpoint comes at once
    drain(svc)  # the rest is handled, not committed: the interval has not passed
    assert source.committed == t({0: 30, 1: 30}) and source.position == t({0: 300, 1: 300})
    svc.clock.now += 100.0  # type: ignore[attr-defined]
    assert svc.step() is None  # no input: the handled tail is checkpointed and committed
    assert source.committed == t({0: 300, 1: 300}) and store.records["m0"].offset == 298


class RefusingSource(PartitionedSource):
    """A member whose commits Kafka refuses while ``rebalancing`` (kafka-python's RebalanceInProgressError)."""

    rebalancing = False

    def commit(self) -> bool:
        return False if self.rebalancing else super().commit()


@pytest.mark.parametrize("with_state", [True, False])
def test_a_commit_refused_in_a_rebalance_is_tried_again_while_idle(with_state: bool) -> None:
    source = RefusingSource({("t", p): log for p, log in logs().items()})
    source.assign({0, 1})
    # with state every batch is checkpointed (interval 0), so the last commit of the stream is the refused one
    svc = service(source, MemoryStateStore() if with_state else None, interval=0.0 if with_state else 100.0)
    source.rebalancing = True
    drain(svc)  # everything handled, every commit refused
    assert source.committed == t({0: 0, 1: 0}) and source.position == t({0: 300, 1: 300})
    source.rebalancing = False
    svc.clock.now += 100.0  # type: ignore[attr-defined]
    assert svc.step() is None  # idle: committed after all (before, the handled tail stayed uncommitted)
    assert source.committed == t({0: 300, 1: 300})


class UnreachableStore(MemoryStateStore):
    """A changelog whose flushes time out while ``down`` (Kafka unreachable), counting the writes it was given."""

    def __init__(self) -> None:
        super().__init__()
        self.down = False
        self.writes = 0

    def write(self, model: str, placement: tuple[int, int, int], state: bytes) -> None:
        self.writes += 1
        super().write(model, placement, state)

    def flush(self, timeout_s: float | None = None) -> None:
        if self.down:
            raise TimeoutError(f"not acknowledged within {timeout_s} s")


def test_an_idle_checkpoint_during_an_outage_neither_blocks_nor_piles_up_writes() -> None:
    source = ScriptedSource(logs())
    source.assign({0, 1})
    store = UnreachableStore()
    svc = service(source, store, interval=100.0)
    drain(svc)  # handled, one checkpoint at the start
    store.down = True
    writes = store.writes
    for _ in range(3):
        svc.clock.now += 100.0  # type: ignore[attr-defined]
        assert svc.step() is None  # the idle checkpoint times out: the loop goes on
    assert store.writes == writes + 4  # the four models written once, then only waited for
    assert source.committed == t({0: 30, 1: 30})  # nothing committed without durable state
    store.down = False
    svc.clock.now += 100.0  # type: ignore[attr-defined]
    assert svc.step() is None
    assert source.committed == t({0: 300, 1: 300})
