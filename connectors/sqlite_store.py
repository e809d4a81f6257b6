"""The default store: one SQLite file, nothing to set up, fast enough for a single node.

    store = SqliteStore(".aiops/aiops.sqlite")
    store.write_metrics(samples)          # a re-delivered sample is not stored twice
    store.recent_metrics("payment-api", limit=100)

WAL mode lets the dashboard read while the pipeline writes. Each batch is one ``BEGIN IMMEDIATE``
transaction with ``executemany`` and ``ON CONFLICT (<event key>) DO NOTHING``: the write lock is taken
up front (so a busy database fails before any row is sent, as a retryable error) and a batch is stored
whole or not at all. ``synchronous=FULL`` costs one fsync per batch, which batching makes cheap, and
means a batch acknowledged here (and so committed on Kafka) survives a power loss.

Timestamps are stored as integer microseconds since the epoch (UTC): exact, compact and ordered.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any

import orjson

from pipeline.store import (
    ACTIONS,
    ANOMALIES,
    INCIDENTS,
    LAYOUTS,
    METRICS_RAW,
    Kind,
    StoreError,
    TableLayout,
    canonical_json,
    check_limit,
    epoch_micros,
    metric_rows,
)
from schemas import ActionResult, Anomaly, IncidentEvent, MetricSample
from schemas.common import from_epoch_micros

__all__ = ["SqliteStore"]


@dataclass(frozen=True)
class _Physical:
    """How one table sits in SQLite: its conflict target, whether rows are clustered on it, its indexes."""

    unique: tuple[str, ...]
    clustered: bool
    indexes: tuple[tuple[str, ...], ...]
    order: str


_PHYSICAL = {
    METRICS_RAW.name: _Physical(
        unique=("service_name", "timestamp", "metric_name", "event_id"),
        clustered=True,
        indexes=(("timestamp",),),
        order="timestamp DESC, service_name DESC, metric_name DESC, event_id DESC",
    ),
    ANOMALIES.name: _Physical(
        unique=ANOMALIES.key,
        clustered=False,
        indexes=(("service_name", "timestamp"), ("timestamp",)),
        order="timestamp DESC, rowid DESC",
    ),
    ACTIONS.name: _Physical(
        unique=ACTIONS.key,
        clustered=False,
        indexes=(("service_name", "timestamp"), ("timestamp",)),
        order="timestamp DESC, rowid DESC",
    ),
    INCIDENTS.name: _Physical(
        unique=INCIDENTS.key,
        clustered=False,
        indexes=(("service_name", "timestamp"), ("timestamp",)),
        order="timestamp DESC, rowid DESC",
    ),
}
"""Raw metrics are the volume, so their table is a ``WITHOUT ROWID`` b-tree keyed by (service, time, metric,
event id): one b-tree is both the rows, the duplicate check and the per-service history index, inserts land
next to their series rather than at random points of an index of hashes, and only ``timestamp`` (for the
all-services query) needs a second b-tree. That ingests faster than a rowid table with a unique index on
``event_id`` and one index per query. A sample's event id hashes its series, instant, value and
tags, so the id is unique exactly when this key is (a re-delivered sample, even one with a caller-given id,
repeats all four). A per-metric query walks the service's recent rows and keeps that metric's."""

_SQL_TYPES = {
    Kind.STRING: "TEXT",
    Kind.INTEGER: "INTEGER",
    Kind.FLOAT: "REAL",
    Kind.BOOLEAN: "INTEGER",
    Kind.TIMESTAMP: "INTEGER",
    Kind.JSON: "TEXT",
}
_CACHE_KIB = 65_536
"""Page cache ceiling (used only as needed): a batch touches a leaf page per series, more than the 2 MiB default."""
_BUSY_CODES = {sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED}

_ENCODE: dict[Kind, Callable[[Any], Any]] = {
    Kind.TIMESTAMP: epoch_micros,
    Kind.JSON: lambda value: canonical_json(value).decode(),
    Kind.BOOLEAN: int,
}
_DECODE: dict[Kind, Callable[[Any], Any]] = {
    Kind.TIMESTAMP: from_epoch_micros,
    Kind.JSON: orjson.loads,
    Kind.BOOLEAN: bool,
}


class SqliteStore:
    """A :class:`pipeline.store.Store` in one SQLite file; safe to share between threads."""

    def __init__(self, path: str | Path, *, busy_timeout: float = 5.0) -> None:
        """Open the database at ``path``, creating the file, its folder and the tables if missing.

        ``busy_timeout``: seconds a call waits for another connection's lock before failing as retryable.
        """
        self.path = Path(path)
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        with self._mapped("open"):
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._conn = sqlite3.connect(self.path, timeout=busy_timeout, isolation_level=None, check_same_thread=False)
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=FULL")
            self._conn.execute(f"PRAGMA cache_size=-{_CACHE_KIB}")
            for layout in LAYOUTS:
                self._create(self._conn, layout)

    def write_metrics(
        self, samples: Sequence[MetricSample], source: str = "kafka", *, event_ids: Sequence[str] | None = None
    ) -> int:
        rows = metric_rows(samples, source, event_ids)
        return self._insert(METRICS_RAW, rows)

    def write_anomalies(self, anomalies: Sequence[Anomaly]) -> int:
        return self._insert(ANOMALIES, [self._encode(ANOMALIES, anomaly) for anomaly in anomalies])

    def write_action_results(self, results: Sequence[ActionResult]) -> int:
        return self._insert(ACTIONS, [self._encode(ACTIONS, result) for result in results])

    def write_incidents(self, events: Sequence[IncidentEvent]) -> int:
        return self._insert(INCIDENTS, [self._encode(INCIDENTS, event) for event in events])

    def recent_metrics(
        self, service_name: str | None, limit: int, metric_name: str | None = None
    ) -> list[MetricSample]:
        return self._select(METRICS_RAW, {"service_name = ?": service_name, "metric_name = ?": metric_name}, limit)

    def incidents(self, limit: int, service_name: str | None = None) -> list[IncidentEvent]:
        return self._select(INCIDENTS, {"service_name = ?": service_name}, limit)

    def anomalies(
        self, start: datetime | None, end: datetime | None, service_name: str | None, limit: int
    ) -> list[Anomaly]:
        where = {
            "service_name = ?": service_name,
            "timestamp >= ?": None if start is None else epoch_micros(start),
            "timestamp < ?": None if end is None else epoch_micros(end),
        }
        return self._select(ANOMALIES, where, limit)

    def action_log(self, limit: int, service_name: str | None = None) -> list[ActionResult]:
        return self._select(ACTIONS, {"service_name = ?": service_name}, limit)

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def __enter__(self) -> SqliteStore:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    @staticmethod
    def _create(conn: sqlite3.Connection, layout: TableLayout) -> None:
        """Create the table, or add the columns a newer layout has (never dropping any), and its indexes."""
        physical = _PHYSICAL[layout.name]
        unique = ", ".join(physical.unique)
        columns = ", ".join(
            f"{c.name} {_SQL_TYPES[c.kind]}{' NOT NULL' if c.name in physical.unique else ''}" for c in layout.columns
        )
        clustered = f", PRIMARY KEY ({unique})) WITHOUT ROWID" if physical.clustered else ")"
        conn.execute(f"CREATE TABLE IF NOT EXISTS {layout.name} ({columns}{clustered}")
        present = {row[1] for row in conn.execute(f"PRAGMA table_info({layout.name})")}
        for column in layout.columns:
            if column.name not in present:
                conn.execute(f"ALTER TABLE {layout.name} ADD COLUMN {column.name} {_SQL_TYPES[column.kind]}")
        if not physical.clustered:
            conn.execute(f"CREATE UNIQUE INDEX IF NOT EXISTS {layout.name}_key ON {layout.name} ({unique})")
        for index in physical.indexes:
            name = f"{layout.name}_by_{'_'.join(index)}"
            conn.execute(f"CREATE INDEX IF NOT EXISTS {name} ON {layout.name} ({', '.join(index)})")

    @staticmethod
    def _encode(layout: TableLayout, event: Any) -> tuple[Any, ...]:
        values = layout.values(event)
        return tuple(
            None if values[c.name] is None else _ENCODE.get(c.kind, _same)(values[c.name]) for c in layout.columns
        )

    def _insert(self, layout: TableLayout, rows: list[tuple[Any, ...]]) -> int:
        if not rows:
            return 0
        statement = (
            f"INSERT INTO {layout.name} ({', '.join(layout.names)}) VALUES ({', '.join('?' * len(layout.columns))}) "
            f"ON CONFLICT ({', '.join(_PHYSICAL[layout.name].unique)}) DO NOTHING"
        )
        with self._lock, self._mapped(f"write to {layout.name}"):
            conn = self._connection()
            before = conn.total_changes
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.executemany(statement, rows)
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            return conn.total_changes - before

    def _select(self, layout: TableLayout, where: dict[str, Any], limit: int) -> list[Any]:
        conditions = {clause: value for clause, value in where.items() if value is not None}
        sql = f"SELECT {', '.join(layout.names)} FROM {layout.name}"
        if conditions:
            sql += " WHERE " + " AND ".join(conditions)
        sql += f" ORDER BY {_PHYSICAL[layout.name].order} LIMIT ?"
        with self._lock, self._mapped(f"read from {layout.name}"):
            rows = self._connection().execute(sql, [*conditions.values(), check_limit(limit)]).fetchall()
        decoders = [_DECODE.get(column.kind, _same) for column in layout.columns]
        return [
            layout.event(
                {
                    name: None if value is None else decode(value)
                    for name, decode, value in zip(layout.names, decoders, row, strict=True)
                }
            )
            for row in rows
        ]

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StoreError(f"the store on {self.path} is closed: open a new SqliteStore", retryable=False)
        return self._conn

    @contextmanager
    def _mapped(self, what: str) -> Iterator[None]:
        try:
            yield
        except sqlite3.Error as err:
            code = getattr(err, "sqlite_errorcode", 0) & 0xFF
            if code in _BUSY_CODES or "locked" in str(err) or "busy" in str(err):
                raise StoreError(
                    f"SQLite {what} on {self.path}: {err}. Another connection holds the lock: retry after a pause "
                    "(or raise busy_timeout)",
                    retryable=True,
                ) from err
            raise StoreError(
                f"SQLite {what} on {self.path} failed: {err}. Check that the path is a writable SQLite database "
                "(retrying will not help)",
                retryable=False,
            ) from err
        except OSError as err:
            raise StoreError(
                f"SQLite {what} on {self.path} failed: {err}. Check that the folder exists and is writable",
                retryable=False,
            ) from err


def _same(value: Any) -> Any:
    return value
