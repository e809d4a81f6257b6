"""Per-service state of a stage, kept in a Faust table backed by a changelog topic.

Tables hold plain core objects (pickled), so a worker that restarts, or takes over a partition,
resumes with the same windows, models and cooldowns.
"""

from __future__ import annotations

import asyncio
import logging
import pickle
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import faust
from prometheus_client import Gauge

from agents.runtime.producer import kafka_producer, send_keyed
from schemas.topics import TopicSpec

log = logging.getLogger("aiops.state")


@dataclass(frozen=True)
class TableSpec:
    """A stage's state as the topology declares it."""

    name: str
    partitioned_like: TopicSpec
    """The topic whose records the state is built from: the changelog is partitioned like it."""
    keep_objects: bool = False
    """Keep the last object written per service (see :class:`StateTable`): for busy state read every batch."""


class StateTable:
    """A Faust table of core state objects per service, pickled into its changelog topic.

    Keys are service names, encoded exactly like the record keys of the topic the agent reads,
    and the changelog is partitioned by key like that topic: each service's state lives on the
    partition of its records, so it moves with them when workers come and go. Only this app's
    workers write the changelog; keep it closed to other producers like any state store.

    With ``keep_objects`` the table also keeps the last object written per service and hands it
    back while the changelog still holds the bytes written from it, as Kafka Streams caches a
    store: a busy service is unpickled once, not once per batch. An agent that changes such an
    object must then write it, or :meth:`forget` the cache when it cannot (an error mid-batch).
    """

    def __init__(self, app: faust.App, spec: TableSpec, partitions: int, size: Gauge | None = None) -> None:
        table = faust.Table(
            app, name=spec.name, partitions=partitions, key_type=bytes, value_type=bytes, beacon=app.tables.beacon
        )
        self._app = app
        self._table = app.tables.add(table)
        self._changelog = table.changelog_topic.get_topic_name()
        self._keep_objects = spec.keep_objects
        self._objects: dict[str, tuple[bytes, Any]] = {}
        """Per service: the changelog value last written and the object it was written from."""
        self._size = size
        self._sizes: dict[str, int] = {}
        self._bytes = 0

    def get(self, service: str) -> Any:
        """The service's state; None for a new service, or for a state this code cannot read.

        A state saved by another version of the code (a rolling upgrade, a worker taking over
        from an older one) may no longer unpickle. The service then starts afresh, loudly: an
        agent that crashed on it instead would be restarted by Faust and crash again, while its
        batch's offsets were committed.
        """
        raw = self._table.get(service.encode())
        if raw is None:
            return None
        kept = self._objects.get(service)
        if kept is not None and kept[0] is raw:
            return kept[1]
        try:
            return pickle.loads(raw)
        except Exception as err:  # noqa: BLE001 - any unreadable state means the same: start afresh
            log.error(
                "unreadable saved state: starting the service afresh",
                extra={"table": self._table.name, "service": service, "error": repr(err)[:300]},
            )
            return None

    def put(self, service: str, value: Any) -> bytes:
        """Set ``value`` in this worker's copy of the table only, and return its changelog value:
        :meth:`write` also makes it durable."""
        raw = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
        self._table.data[service.encode()] = raw
        self._bytes += len(raw) - self._sizes.get(service, 0)
        self._sizes[service] = len(raw)
        if self._keep_objects:
            self._objects[service] = (raw, value)
        return raw

    async def write(self, states: Mapping[str, Any]) -> None:
        """Write ``states`` and wait until the broker has every one of them in the changelog.

        The records go straight to the producer, not through Faust's table buffer: that buffer
        may still hold records when Faust's own flush returns, and while it holds over a hundred,
        Faust stops handing records to every agent. An agent that acknowledges its events after
        this returns never has an offset committed ahead of the state built from it.
        """
        records = [(service.encode(), self.put(service, value)) for service, value in states.items()]
        await asyncio.gather(*await send_keyed(kafka_producer(self._app), self._changelog, records))
        if self._size is not None:
            self._size.set(self._bytes)

    def forget(self) -> None:
        """Drop the kept objects: the next :meth:`get` of each service reads its changelog value."""
        self._objects.clear()
