"""Per-service state of a stage, kept in a Faust table backed by a changelog topic.

Tables hold plain core objects (pickled), so a worker that restarts, or takes over a partition,
resumes with the same windows, models and cooldowns. Unpickling runs whatever the bytes say, so
every changelog value is signed (:class:`StateSeal`) and a value without a valid signature is
never unpickled.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import hmac
import logging
import os
import pickle
import secrets
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import faust
from prometheus_client import Counter, Gauge

from agents.runtime.producer import kafka_producer, send_keyed
from pipeline.config import Settings
from schemas.topics import TopicSpec

log = logging.getLogger("aiops.state")

SIGNED = b"\x01"
"""First byte of a signed changelog value: a pickle starts with 0x80, so a value written before
states were signed is told apart, and refused like any other unsigned one."""
MAC_BYTES = hashlib.sha256().digest_size
MAX_VALUE_BYTES = 1_000_000
"""Largest changelog value written: Kafka's default message limit (1 MiB, producer and broker),
less room for the key and the record's framing."""
KEY_FILE = "state.key"


class StateTooLarge(ValueError):
    """A state whose changelog value would exceed :data:`MAX_VALUE_BYTES`."""


class StateRefused(ValueError):
    """A changelog value that is not this app's own: unsigned, altered, cut short or signed with another key."""


class StateSeal:
    """Signs the changelog values of a worker's tables and checks them before they are unpickled.

    A value is ``0x01 | HMAC-SHA256(key, changelog topic, record key, pickle) | pickle``. The
    topic and record key are signed with the pickle, so a valid value copied to another service
    or table is refused too. Checked with :func:`hmac.compare_digest`, before any byte is unpickled.
    """

    def __init__(self, key: bytes, refused: Counter | None = None) -> None:
        self._key = key
        self._refused = refused

    @classmethod
    def of(cls, settings: Settings, refused: Counter | None = None) -> StateSeal:
        """The seal of ``AIOPS_STATE_KEY``, or of a key kept in ``<AIOPS_DATA_DIR>/state.key``.

        A worker does not refuse to start without a key: ``aiops worker`` and the demo must run
        with no configuration. It generates one instead, which is right for one worker, or several
        sharing a data directory; workers on other machines would each make their own, and then
        refuse the state of every partition they take over from one another (safely, but each
        service would start afresh), hence the warning.
        """
        if settings.state_key is not None:
            return cls(settings.state_key.get_secret_value().encode(), refused)
        return cls(_file_key(settings.data_dir.resolve() / KEY_FILE), refused)

    def seal(self, topic: str, key: bytes, payload: bytes) -> bytes:
        return SIGNED + self._mac(topic, key, payload) + payload

    def open(self, topic: str, key: bytes, value: bytes) -> memoryview:
        """The pickle ``value`` carries; :class:`StateRefused` unless this seal signed it for ``key`` in ``topic``."""
        if len(value) <= 1 + MAC_BYTES or value[:1] != SIGNED:
            raise StateRefused("not a signed state (unsigned, or cut short)")
        payload = memoryview(value)[1 + MAC_BYTES :]
        if not hmac.compare_digest(value[1 : 1 + MAC_BYTES], self._mac(topic, key, payload)):
            raise StateRefused("signature does not match (altered, or signed with another AIOPS_STATE_KEY)")
        return payload

    def count_refused(self, table: str) -> None:
        if self._refused is not None:
            self._refused.labels(table).inc()

    def _mac(self, topic: str, key: bytes, payload: bytes | memoryview) -> bytes:
        name = topic.encode()
        mac = hmac.new(self._key, struct.pack(">HI", len(name), len(key)) + name + key, hashlib.sha256)
        mac.update(payload)
        return mac.digest()


@functools.cache
def _file_key(path: Path) -> bytes:
    """The key in ``path``, made there (readable by its owner only) if there is none; read once per process."""
    created = False
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        made = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
        with os.fdopen(os.open(made, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as file:
            file.write(secrets.token_hex(32) + "\n")
        try:
            os.link(made, path)  # atomic: of workers starting together, one key wins and all read it
            created = True
        except FileExistsError:
            pass
        finally:
            made.unlink()
    key = path.read_text().strip().encode()
    if len(key) < 16:
        raise ValueError(f"{path}: a state key of at least 16 characters expected")
    log.warning(
        "AIOPS_STATE_KEY is not set: state is signed with a key kept in a local file; every worker of "
        "one app id must share one key (set AIOPS_STATE_KEY), or each refuses the others' state",
        extra={"path": str(path), "generated": created},
    )
    return key


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
    workers write the changelog; keep it closed to other producers like any state store. Values
    are signed (:class:`StateSeal`), so one written by anyone else is refused, never unpickled.

    With ``keep_objects`` the table also keeps the last object written per service and hands it
    back while the changelog still holds the bytes written from it, as Kafka Streams caches a
    store: a busy service is unpickled once, not once per batch. An agent that changes such an
    object must then write it, or :meth:`forget` the cache when it cannot (an error mid-batch).
    """

    def __init__(
        self, app: faust.App, spec: TableSpec, partitions: int, size: Gauge | None = None, *, seal: StateSeal
    ) -> None:
        table = faust.Table(
            app, name=spec.name, partitions=partitions, key_type=bytes, value_type=bytes, beacon=app.tables.beacon
        )
        self._app = app
        self._seal = seal
        self._table = app.tables.add(table)
        self._changelog = table.changelog_topic.get_topic_name()
        self._keep_objects = spec.keep_objects
        self._objects: dict[str, tuple[bytes, Any]] = {}
        """Per service: the changelog value last written and the object it was written from."""
        self._size = size
        self._sizes: dict[str, int] = {}
        self._bytes = 0

    def get(self, service: str) -> Any:
        """The service's state; None for a new service, or for a state this worker must not or cannot read.

        A value this app did not sign (:class:`StateSeal`) is refused before it is unpickled: it
        was written by someone who could write to the changelog, and unpickling it could run any
        code. A state saved by another version of the code (a rolling upgrade, a worker taking
        over from an older one) may no longer unpickle. Either way the service starts afresh,
        loudly: an agent that crashed on it instead would be restarted by Faust and crash again,
        while its batch's offsets were committed.
        """
        key = service.encode()
        raw = self._table.get(key)
        if raw is None:
            return None
        kept = self._objects.get(service)
        if kept is not None and kept[0] is raw:
            return kept[1]
        try:
            payload = self._seal.open(self._changelog, key, raw)
        except StateRefused as err:
            self._seal.count_refused(self._table.name)
            log.error(
                "refused saved state: starting the service afresh",
                extra={"table": self._table.name, "service": service, "error": str(err)},
            )
            return None
        try:
            return pickle.loads(payload)
        except Exception as err:  # noqa: BLE001 - any unreadable state means the same: start afresh
            log.error(
                "unreadable saved state: starting the service afresh",
                extra={"table": self._table.name, "service": service, "error": repr(err)[:300]},
            )
            return None

    def put(self, service: str, value: Any) -> bytes:
        """Set ``value`` in this worker's copy of the table only, and return its changelog value:
        :meth:`write` also makes it durable."""
        return self._set(service, self._encode(service, value), value)

    async def write(self, states: Mapping[str, Any], *, skip_oversized: bool = False) -> dict[str, str]:
        """Write ``states`` and wait until the broker has every one of them in the changelog.

        The records go straight to the producer, not through Faust's table buffer: that buffer
        may still hold records when Faust's own flush returns, and while it holds over a hundred,
        Faust stops handing records to every agent. An agent that acknowledges its events after
        this returns never has an offset committed ahead of the state built from it.

        A state over :data:`MAX_VALUE_BYTES` cannot be written. It raises :class:`StateTooLarge`
        before anything is sent, unless ``skip_oversized``: then every other state is written,
        that service keeps its saved state (its kept object is dropped), and the services left
        out are returned with the reason, for the agent to dead-letter their input: one service
        grown too big must not stop the others' state.
        """
        encoded = {service: (self._encode(service, value), value) for service, value in states.items()}
        skipped = {
            service: f"state of {service} in {self._table.name} is {len(raw):,} bytes, over the {MAX_VALUE_BYTES:,} "
            "a changelog record may hold"
            for service, (raw, _) in encoded.items()
            if len(raw) > MAX_VALUE_BYTES
        }
        if skipped and not skip_oversized:
            raise StateTooLarge("; ".join(skipped.values()))
        for service in skipped:
            self._objects.pop(service, None)
            log.error("state too large: not saved", extra={"table": self._table.name, "service": service})
        records = [
            (service.encode(), self._set(service, raw, value))
            for service, (raw, value) in encoded.items()
            if service not in skipped
        ]
        if records:
            await asyncio.gather(*await send_keyed(kafka_producer(self._app), self._changelog, records))
        if self._size is not None:
            self._size.set(self._bytes)
        return skipped

    def _encode(self, service: str, value: Any) -> bytes:
        return self._seal.seal(self._changelog, service.encode(), pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL))

    def _set(self, service: str, raw: bytes, value: Any) -> bytes:
        self._table.data[service.encode()] = raw
        self._bytes += len(raw) - self._sizes.get(service, 0)
        self._sizes[service] = len(raw)
        if self._keep_objects:
            self._objects[service] = (raw, value)
        return raw

    def forget(self, service: str | None = None) -> None:
        """Drop the kept objects (of ``service`` only, when given): the next :meth:`get` reads the changelog value."""
        if service is None:
            self._objects.clear()
        else:
            self._objects.pop(service, None)
