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
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Any

import orjson

from pipeline.store import (
    ACTIONS,
    ANOMALIES,
    LAYOUTS,
    METRICS_RAW,
    Kind,
    StoreError,
    TableLayout,
    canonical_json,
    check_limit,
    epoch_micros,
    metric_id,
)
from schemas import ActionResult, Anomaly, MetricSample

__all__ = ["SqliteStore"]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
_SQL_TYPES = {
    Kind.STRING: "TEXT",
    Kind.INTEGER: "INTEGER",
    Kind.FLOAT: "REAL",
    Kind.BOOLEAN: "INTEGER",
    Kind.TIMESTAMP: "INTEGER",
    Kind.JSON: "TEXT",
}
_UNIQUE: dict[str, tuple[str, ...]] = {METRICS_RAW.name: ("service_name", "metric_name", "timestamp", "event_id")}
"""The metrics' conflict target. A sample's event id is a hash of its series, instant, value and tags, so the
id is unique exactly when this tuple is (a re-delivered sample, even one with a caller-given id, repeats all
four). Keyed this way, inserts land next to their series instead of at random points of an index of hashes,
which more than doubles ingest, and the same index serves the per-series history query."""
_INDEXES: dict[str, tuple[tuple[str, ...], ...]] = {
    METRICS_RAW.name: (("service_name", "timestamp"), ("timestamp",)),
    ANOMALIES.name: (("service_name", "timestamp"), ("timestamp",)),
    ACTIONS.name: (("service_name", "timestamp"), ("timestamp",)),
}
"""One per history query shape, so ``ORDER BY timestamp DESC LIMIT n`` walks an index instead of sorting."""
_BUSY_CODES = {sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED}


_ENCODE: dict[Kind, Callable[[Any], Any]] = {
    Kind.TIMESTAMP: lambda value: None if value is None else epoch_micros(value),
    Kind.JSON: lambda value: None if value is None else canonical_json(value).decode(),
    Kind.BOOLEAN: lambda value: None if value is None else int(value),
}
_DECODE: dict[Kind, Callable[[Any], Any]] = {
    Kind.TIMESTAMP: lambda value: _EPOCH + value * _MICROSECOND,
    Kind.JSON: orjson.loads,
    Kind.BOOLEAN: bool,
}


class SqliteStore:
    """A :class:`pipeline.store.Store` in one SQLite file; safe to share between threads."""

    def __init__(self, path: str | Path, *, busy_timeout: float = 5.0) -> None:
        """Open (creating the file, its folder and the tables if missing) the database at ``path``.

        ``busy_timeout``: seconds a write waits for another connection's lock before failing as retryable.
        """
        self.path = Path(path)
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        with self._mapped("open"):
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._conn = sqlite3.connect(
                self.path, timeout=busy_timeout, isolation_level=None, check_same_thread=False
            )
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=FULL")
            for layout in LAYOUTS:
                self._create(self._conn, layout)

    def write_metrics(
        self, samples: Sequence[MetricSample], source: str = "kafka", *, event_ids: Sequence[str] | None = None
    ) -> int:
        if event_ids is not None and len(event_ids) != len(samples):
            raise ValueError(f"got {len(event_ids)} event_ids for {len(samples)} samples: give one per sample")
        rows = []
        for index, sample in enumerate(samples):
            micros = epoch_micros(sample.timestamp)
            tags = canonical_json(sample.tags)
            if event_ids is not None:
                event_id = event_ids[index]
            else:
                event_id = metric_id(sample.service_name, sample.metric_name, micros, sample.value, tags)
            service, metric = sample.service_name, sample.metric_name
            rows.append((event_id, micros, service, metric, sample.value, tags.decode(), source))
        return self._insert(METRICS_RAW, rows)

    def write_anomalies(self, anomalies: Sequence[Anomaly]) -> int:
        return self._insert(ANOMALIES, [self._encode(ANOMALIES, anomaly) for anomaly in anomalies])

    def write_action_results(self, results: Sequence[ActionResult]) -> int:
        return self._insert(ACTIONS, [self._encode(ACTIONS, result) for result in results])

    def recent_metrics(
        self, service_name: str | None, limit: int, metric_name: str | None = None
    ) -> list[MetricSample]:
        where = {"service_name = ?": service_name, "metric_name = ?": metric_name}
        return self._select(METRICS_RAW, where, limit)

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
        columns = ", ".join(
            f"{c.name} {_SQL_TYPES[c.kind]}{' NOT NULL' if c.name in layout.key else ''}" for c in layout.columns
        )
        conn.execute(f"CREATE TABLE IF NOT EXISTS {layout.name} ({columns})")
        present = {row[1] for row in conn.execute(f"PRAGMA table_info({layout.name})")}
        for column in layout.columns:
            if column.name not in present:
                conn.execute(f"ALTER TABLE {layout.name} ADD COLUMN {column.name} {_SQL_TYPES[column.kind]}")
        unique = ", ".join(_UNIQUE.get(layout.name, layout.key))
        conn.execute(f"CREATE UNIQUE INDEX IF NOT EXISTS {layout.name}_key ON {layout.name} ({unique})")
        for index in _INDEXES[layout.name]:
            name = f"{layout.name}_by_{'_'.join(index)}"
            conn.execute(f"CREATE INDEX IF NOT EXISTS {name} ON {layout.name} ({', '.join(index)})")

    @staticmethod
    def _encode(layout: TableLayout, event: Any) -> tuple[Any, ...]:
        values = layout.values(event)
        return tuple(_ENCODE.get(column.kind, _same)(values[column.name]) for column in layout.columns)

    def _insert(self, layout: TableLayout, rows: list[tuple[Any, ...]]) -> int:
        if not rows:
            return 0
        statement = (
            f"INSERT INTO {layout.name} ({', '.join(layout.names)}) VALUES ({', '.join('?' * len(layout.columns))}) "
            f"ON CONFLICT ({', '.join(_UNIQUE.get(layout.name, layout.key))}) DO NOTHING"
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
        sql += " ORDER BY timestamp DESC, rowid DESC LIMIT ?"
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
                f"SQLite {what} on {self.path} failed: {err}. Check the folder exists and is writable",
                retryable=False,
            ) from err


def _same(value: Any) -> Any:
    return value
