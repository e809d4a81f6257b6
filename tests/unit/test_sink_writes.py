"""The sink's write policy: a busy store is retried, a refused record is dead-lettered, the rest stored."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from pipeline import store
from pipeline.store import StoreError, write_batch


@pytest.fixture
def letters() -> list[tuple[str, str]]:
    return []


@pytest.fixture(autouse=True)
def quick_backoff(monkeypatch) -> None:
    monkeypatch.setattr(store, "MAX_BACKOFF_SECONDS", 0.01)


def refuse_into(letters: list[tuple[str, str]]):
    async def refuse(record, reason: str) -> None:
        letters.append((record, reason))

    return refuse


async def test_a_refused_record_is_dead_lettered_and_the_others_are_stored(letters):
    stored: list[str] = []

    def write(items: list[str]) -> int:
        if "bad" in items:
            raise StoreError("row rejected: no such column", retryable=False)
        stored.extend(items)
        return len(items)

    refused = SimpleNamespace(value=b"bad")
    await write_batch(
        write, [(SimpleNamespace(value=b"ok-1"), "ok-1"), (refused, "bad"), (None, "ok-2")], refuse_into(letters)
    )
    assert stored == ["ok-1", "ok-2"]
    assert letters == [(refused, "store refused the record: row rejected: no such column")]


async def test_a_busy_store_is_retried_until_it_takes_the_whole_batch(letters):
    calls: list[list[str]] = []

    def write(items: list[str]) -> int:
        calls.append(items)
        if len(calls) < 3:
            raise StoreError("database is locked", retryable=True)
        return len(items)

    await write_batch(write, [(None, "a"), (None, "b")], refuse_into(letters))
    assert calls == [["a", "b"]] * 3 and letters == []
