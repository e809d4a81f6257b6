"""StateTable: states held in memory, written at a flush, and the events behind them acknowledged only then."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

from pipeline import topics
from pipeline.app import StateTable

SOURCE = topics.METRIC_SAMPLES.name
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
    states.forget()
    states.hold({"svc": {"stale": True}}, [late], before)
    states.flush()
    assert states.get("svc") is None and not late.acked


def test_a_rebalance_drops_every_unwritten_state_and_unacknowledged_event():
    states, written, unwritten = table(), event(0), event(1)
    states.hold({"kept": {"n": 1}}, [written], states.generation)
    states.flush()
    states.hold({"kept": {"n": 2}, "new": {"n": 1}}, [unwritten], states.generation)
    states.forget()
    states.flush()
    assert states.get("kept") == {"n": 1} and states.get("new") is None
    assert written.acked and not unwritten.acked
