"""StateTable: states held in memory, written at a flush, and the events behind them acknowledged only then."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

from faust.types import TP

from pipeline import topics
from pipeline.app import StateTable, settings

SOURCE = topics.METRIC_SAMPLES.name
PARTITIONS = topics.METRIC_SAMPLES.partitions(settings)
_names = itertools.count()


@dataclass
class Message:
    topic: str
    partition: int


@dataclass
class FakeEvent:
    """The part of a Faust event the table uses: where it came from, and ack()."""

    message: Message
    acked: bool = field(default=False)

    def ack(self) -> bool:
        self.acked = True
        return True


def event(partition: int) -> FakeEvent:
    return FakeEvent(Message(SOURCE, partition))


def table() -> StateTable:
    return StateTable(f"test-states-{next(_names)}", topics.METRIC_SAMPLES)


def partition_of(service: str) -> int:
    return topics.partition_for(service.encode(), PARTITIONS)


def test_a_held_state_is_read_back_as_is_and_its_events_wait_for_the_flush():
    states, state, held = table(), {"windows": 1}, event(0)
    states.hold({"svc": state}, [held], states.generation)
    assert states.get("svc") is state and not held.acked
    states.flush()
    assert held.acked
    assert states.get("svc") is state, "read back without unpickling"
    state["windows"] = 2
    states.hold({"svc": state}, [], states.generation)
    states.flush()
    states["other"] = {}
    assert states.get("svc") == {"windows": 2}


def test_a_value_this_worker_did_not_write_is_read_from_the_changelog():
    states = table()
    states.hold({"svc": {"mine": True}}, [], states.generation)
    states.flush()
    states["svc"] = {"theirs": True}
    assert states.get("svc") == {"theirs": True}


def test_a_batch_begun_before_a_rebalance_is_dropped_and_its_events_stay_unacknowledged():
    states, late = table(), event(0)
    before = states.generation
    states.forget([TP(SOURCE, partition_of("svc"))])
    states.hold({"svc": {"stale": True}}, [late], before)
    states.flush()
    assert states.get("svc") is None and not late.acked


def test_forgetting_a_partition_drops_only_its_unwritten_states_and_events():
    states = table()
    services = [f"svc-{i}" for i in range(40)]
    lost = partition_of(services[0])
    events = [event(partition) for partition in range(PARTITIONS)]
    states.hold({service: {"n": i} for i, service in enumerate(services)}, events, states.generation)
    states.forget([TP(SOURCE, lost), TP("another-topic", 0)])
    states.flush()
    for i, service in enumerate(services):
        assert states.get(service) == (None if partition_of(service) == lost else {"n": i})
    assert [e.acked for e in events] == [e.message.partition != lost for e in events]


def test_partitions_of_other_topics_change_nothing():
    states = table()
    generation = states.generation
    states.forget([TP("aiops.anomalies", 0)])
    assert states.generation == generation
