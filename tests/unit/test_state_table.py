"""StateTable: states pickled into the changelog, and the objects kept between batches."""

from __future__ import annotations

import itertools
import pickle

from agents.runtime.app import new_faust_app
from agents.runtime.tables import StateTable, TableSpec
from pipeline.config import Settings
from schemas import topics

_names = itertools.count()


def table(*, keep_objects: bool) -> StateTable:
    app = new_faust_app(Settings(app_id=f"test-app-{next(_names)}"))
    spec = TableSpec(f"test-states-{next(_names)}", topics.METRIC_SAMPLES, keep_objects=keep_objects)
    return StateTable(app, spec, partitions=3)


async def test_a_kept_object_is_read_back_as_is_while_the_changelog_holds_what_was_written():
    states, state = table(keep_objects=True), {"windows": 1}
    states.put("svc", state)
    assert states.get("svc") is state
    state["windows"] = 2
    states.put("svc", state)
    assert states.get("svc") is state
    assert pickle.loads(states._table[b"svc"]) == {"windows": 2}


async def test_a_changelog_value_this_table_did_not_write_is_unpickled():
    states = table(keep_objects=True)
    states.put("svc", {"mine": True})
    states._table.data[b"svc"] = pickle.dumps({"recovered": True})
    assert states.get("svc") == {"recovered": True}


async def test_after_forget_the_state_is_read_from_the_changelog():
    states, state = table(keep_objects=True), {"windows": 1}
    states.put("svc", state)
    state["windows"] = 99  # changed by a batch that then failed: never written
    states.forget()
    assert states.get("svc") == {"windows": 1}


async def test_without_keep_objects_every_read_is_a_fresh_copy():
    states, state = table(keep_objects=False), {"windows": 1}
    states.put("svc", state)
    assert states.get("svc") == state and states.get("svc") is not state


async def test_an_unreadable_state_starts_the_service_afresh():
    states = table(keep_objects=True)
    states._table.data[b"svc"] = b"not a pickle"
    assert states.get("svc") is None
