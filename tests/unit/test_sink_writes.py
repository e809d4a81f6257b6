"""The sink's write policy: a busy store is retried, a refused record is dead-lettered, the rest stored."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from agents import sink
from pipeline.store import StoreError


@pytest.fixture
def letters(monkeypatch) -> list[tuple[str, str]]:
    sent: list[tuple[str, str]] = []

    async def dead_letter(record, payload: bytes, reason: str) -> None:
        sent.append((record, reason))

    monkeypatch.setattr(sink, "dead_letter", dead_letter)
    return sent


async def test_a_refused_record_is_dead_lettered_and_the_others_are_stored(letters):
    stored: list[str] = []

    def write(items: list[str]) -> int:
        if "bad" in items:
            raise StoreError("row rejected: no such column", retryable=False)
        stored.extend(items)
        return len(items)

    refused = SimpleNamespace(value=b"bad")
    await sink._write(write, [(SimpleNamespace(value=b"ok-1"), "ok-1"), (refused, "bad"), (None, "ok-2")])
    assert stored == ["ok-1", "ok-2"]
    assert letters == [(refused, "store refused the record: row rejected: no such column")]


async def test_a_busy_store_is_retried_until_it_takes_the_whole_batch(letters):
    calls: list[list[str]] = []

    def write(items: list[str]) -> int:
        calls.append(items)
        if len(calls) < 3:
            raise StoreError("database is locked", retryable=True)
        return len(items)

    await sink._write(write, [(None, "a"), (None, "b")])
    assert calls == [["a", "b"]] * 3 and letters == []
