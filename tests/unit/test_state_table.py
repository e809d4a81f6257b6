"""StateTable: states pickled and signed into the changelog, and the objects kept between batches."""

from __future__ import annotations

import itertools
import os
import pickle
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, Counter

from agents.runtime import tables
from agents.runtime.app import new_faust_app
from agents.runtime.tables import MAX_VALUE_BYTES, StateRefused, StateSeal, StateTable, StateTooLarge, TableSpec
from pipeline.config import Settings
from schemas import topics

_names = itertools.count()
KEY = b"k" * 32


def table(*, keep_objects: bool, seal: StateSeal | None = None) -> StateTable:
    app = new_faust_app(Settings(app_id=f"test-app-{next(_names)}"))
    spec = TableSpec(f"test-states-{next(_names)}", topics.METRIC_SAMPLES, keep_objects=keep_objects)
    return StateTable(app, spec, partitions=3, seal=seal or StateSeal(KEY))


def signed(states: StateTable, service: str, value: object, key: bytes = KEY) -> bytes:
    """A changelog value as a worker with ``key`` writes it."""
    return StateSeal(key).seal(states._changelog, service.encode(), pickle.dumps(value))


async def test_a_kept_object_is_read_back_as_is_while_the_changelog_holds_what_was_written():
    states, state = table(keep_objects=True), {"windows": 1}
    states.put("svc", state)
    assert states.get("svc") is state
    state["windows"] = 2
    states.put("svc", state)
    assert states.get("svc") is state
    assert pickle.loads(StateSeal(KEY).open(states._changelog, b"svc", states._table[b"svc"])) == {"windows": 2}


async def test_a_signed_changelog_value_this_table_did_not_write_is_unpickled():
    states = table(keep_objects=True)
    states.put("svc", {"mine": True})
    states._table.data[b"svc"] = signed(states, "svc", {"recovered": True})
    assert states.get("svc") == {"recovered": True}


async def test_after_forget_the_state_is_read_from_the_changelog():
    states, state = table(keep_objects=True), {"windows": 1}
    states.put("svc", state)
    state["windows"] = 99  # changed by a batch that then failed: never written
    states.forget()
    assert states.get("svc") == {"windows": 1}


async def test_forget_of_one_service_keeps_the_others_objects():
    states, mine, other = table(keep_objects=True), {"windows": 1}, {"windows": 2}
    states.put("svc", mine)
    states.put("other", other)
    mine["windows"] = 99
    states.forget("svc")
    assert states.get("svc") == {"windows": 1} and states.get("other") is other


async def test_without_keep_objects_every_read_is_a_fresh_copy():
    states, state = table(keep_objects=False), {"windows": 1}
    states.put("svc", state)
    assert states.get("svc") == state and states.get("svc") is not state


async def test_an_unreadable_state_starts_the_service_afresh():
    states = table(keep_objects=True)
    states._table.data[b"svc"] = StateSeal(KEY).seal(states._changelog, b"svc", b"not a pickle")
    assert states.get("svc") is None


class Marker:
    """Unpickling it creates a file: what a forged state could do, harmlessly."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return Path.touch, (self.path,)


def forgeries(states: StateTable, marker: Path) -> dict[str, bytes]:
    payload = pickle.dumps(Marker(marker))
    good = signed(states, "svc", Marker(marker))
    return {
        "an unsigned value, as written before states were signed": payload,
        "one byte of the pickle changed": good[:-2] + bytes([good[-2] ^ 1]) + good[-1:],
        "one byte of the signature changed": good[:5] + bytes([good[5] ^ 1]) + good[6:],
        "signed with another key": signed(states, "svc", Marker(marker), key=b"another key, 32 bytes long......"),
        "cut short": good[:20],
        "signed for another service": signed(states, "other-svc", Marker(marker)),
        "empty": b"",
    }


@pytest.mark.parametrize("kind", list(forgeries(table(keep_objects=True), Path("x"))))
async def test_a_value_not_signed_by_this_app_for_this_key_is_refused_before_it_is_unpickled(kind, tmp_path, caplog):
    marker = tmp_path / "ran"
    pickle.loads(pickle.dumps(Marker(marker)))
    assert marker.exists(), "the payload should run code when unpickled"
    marker.unlink()
    refused = Counter("aiops_state_refused", "", ["table"], registry=CollectorRegistry())
    states = table(keep_objects=True, seal=StateSeal(KEY, refused))
    states._table.data[b"svc"] = forgeries(states, marker)[kind]

    assert states.get("svc") is None
    assert not marker.exists()
    assert refused.labels(states._table.name)._value.get() == 1
    [record] = [r for r in caplog.records if r.name == "aiops.state"]
    assert record.levelname == "ERROR" and record.service == "svc" and record.table == states._table.name


def test_a_seal_opens_only_what_it_sealed():
    seal = StateSeal(KEY)
    value = seal.seal("topic", b"svc", b"payload")
    assert bytes(seal.open("topic", b"svc", value)) == b"payload"
    for topic, key in (("other-topic", b"svc"), ("topic", b"other")):
        with pytest.raises(StateRefused):
            seal.open(topic, key, value)


async def test_a_state_too_large_for_a_changelog_record_is_refused_before_anything_is_sent():
    states, saved = table(keep_objects=True), {"small": True}
    states.put("svc", saved)
    saved["values"] = os.urandom(MAX_VALUE_BYTES)  # grown by a batch
    with pytest.raises(StateTooLarge, match="svc"):
        await states.write({"svc": saved})
    skipped = await states.write({"svc": saved}, skip_oversized=True)
    assert list(skipped) == ["svc"] and "bytes" in skipped["svc"]
    assert states.get("svc") == {"small": True}, "the service keeps its saved state, not the kept object"


def test_the_key_is_the_setting_when_set(tmp_path):
    settings = Settings(state_key="a shared key of the app", data_dir=tmp_path)
    value = StateSeal.of(settings).seal("t", b"k", b"p")
    assert bytes(StateSeal(b"a shared key of the app").open("t", b"k", value)) == b"p"
    assert not (tmp_path / tables.KEY_FILE).exists()


def test_without_a_key_one_is_generated_into_the_data_dir_readable_by_its_owner_only(tmp_path, caplog):
    tables._file_key.cache_clear()
    settings = Settings(data_dir=tmp_path / "data")
    value = StateSeal.of(settings).seal("t", b"k", b"p")
    path = tmp_path / "data" / tables.KEY_FILE
    assert path.stat().st_mode & 0o777 == 0o600
    assert bytes(StateSeal(path.read_text().strip().encode()).open("t", b"k", value)) == b"p"
    assert "AIOPS_STATE_KEY" in caplog.text
    tables._file_key.cache_clear()
    assert bytes(StateSeal.of(settings).open("t", b"k", value)) == b"p", "a restarted worker reads the same key"
    assert [p.name for p in path.parent.iterdir()] == [tables.KEY_FILE]
