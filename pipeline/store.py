"""Where metrics, anomalies and actions are kept: the one contract every storage backend meets.

Kafka delivers at least once, so every write is idempotent: each row carries the identity of its
event (``event_id`` for raw metrics, ``id`` for anomalies, ``(action_id, status)`` for actions) and a
re-delivered event never becomes a second row in what the history queries return.

Table layouts are derived from the event models in :mod:`schemas`, so a field added to a model
becomes a column (added, never dropped, by each backend) without being declared twice.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import Enum, StrEnum
from types import UnionType
from typing import Annotated, Any, Protocol, TypeVar, Union, get_args, get_origin, runtime_checkable

import orjson
from pydantic import BaseModel, ValidationError
from pydantic_core import to_jsonable_python
from tenacity import AsyncRetrying, retry_if_exception, wait_exponential

from schemas import ActionResult, Anomaly, IncidentEvent, MetricSample
from schemas.codec import describe
from schemas.common import epoch_micros

__all__ = [
    "ACTIONS",
    "ANOMALIES",
    "INCIDENTS",
    "LAYOUTS",
    "METRICS_RAW",
    "Column",
    "MetricRow",
    "Kind",
    "Store",
    "StoreError",
    "TableLayout",
    "as_utc",
    "canonical_json",
    "check_limit",
    "epoch_micros",
    "metric_event_id",
    "metric_rows",
    "model_columns",
    "write_batch",
]

log = logging.getLogger("aiops.store")
R = TypeVar("R")
T = TypeVar("T")


class StoreError(Exception):
    """A storage call failed. ``retryable``: a later retry of the same call may succeed (busy, throttled,
    unreachable); otherwise the call itself is wrong (bad request, missing permission, missing table)
    and retrying cannot help. Writes are idempotent, so retrying a write whose outcome is unknown is safe."""

    def __init__(self, message: str, *, retryable: bool) -> None:
        super().__init__(message)
        self.message = message
        self.retryable = retryable


@runtime_checkable
class Store(Protocol):
    """Raw metrics, anomalies and the action log. Every method raises :class:`StoreError` on failure."""

    def write_metrics(
        self, samples: Sequence[MetricSample], source: str = "kafka", *, event_ids: Sequence[str] | None = None
    ) -> int:
        """Store samples (``event_ids`` default to :func:`metric_event_id`); returns the rows newly stored,
        or the rows sent for a backend that only drops duplicates when reading."""
        ...

    def write_anomalies(self, anomalies: Sequence[Anomaly]) -> int:
        """Store anomalies keyed by ``id``; returns rows newly stored (or sent, as for metrics)."""
        ...

    def write_action_results(self, results: Sequence[ActionResult]) -> int:
        """Store each ``(action_id, status)`` transition once; returns rows newly stored (or sent)."""
        ...

    def write_incidents(self, events: Sequence[IncidentEvent]) -> int:
        """Store incident events keyed by ``event_id``; returns rows newly stored (or sent)."""
        ...

    def recent_metrics(
        self, service_name: str | None, limit: int, metric_name: str | None = None
    ) -> list[MetricSample]:
        """The newest ``limit`` samples, newest first, of one service (and metric) or of all."""
        ...

    def anomalies(
        self, start: datetime | None, end: datetime | None, service_name: str | None, limit: int
    ) -> list[Anomaly]:
        """Anomalies with ``start <= timestamp < end`` (either bound optional), newest first."""
        ...

    def incidents(self, limit: int, service_name: str | None = None) -> list[IncidentEvent]:
        """Incident events, newest first: the latest event of an incident is its state."""
        ...

    def action_log(self, limit: int, service_name: str | None = None) -> list[ActionResult]:
        """Action status transitions, newest first."""
        ...

    def close(self) -> None:
        """Release connections; safe to call twice."""
        ...


def metric_event_id(sample: MetricSample) -> str:
    """A deterministic id for a sample: the same measurement re-sent (a replay, a producer retry) gets the
    same id, so it is stored once. The instant is taken in UTC microseconds, the value as a float and the
    tags in key order, so spellings of the same measurement (``+02:00`` vs ``Z``, ``3`` vs ``3.0``) agree."""
    return metric_rows([sample], "")[0][0]


MetricRow = tuple[str, int, str, str, float, str, str]
"""``metrics_raw`` in column order: event_id, timestamp (UTC epoch microseconds), service_name, metric_name,
value, labels (JSON text, keys sorted), source."""


def metric_rows(
    samples: Sequence[MetricSample], source: str, event_ids: Sequence[str] | None = None
) -> list[MetricRow]:
    """Rows for ``metrics_raw``, with :func:`metric_event_id` unless ``event_ids`` (one per sample) are given.

    One tight loop for the ingest path: the id needs the instant and the tags' JSON anyway, so both are
    computed once and reused as column values."""
    if event_ids is not None and len(event_ids) != len(samples):
        raise ValueError(f"got {len(event_ids)} event_ids for {len(samples)} samples: give one per sample")
    rows: list[MetricRow] = []
    append, dumps, sort_keys, blake2b = rows.append, orjson.dumps, orjson.OPT_SORT_KEYS, hashlib.blake2b
    for index, sample in enumerate(samples):
        service, metric, value = sample.service_name, sample.metric_name, float(sample.value)
        micros = epoch_micros(sample.timestamp)
        tags = dumps(sample.tags, option=sort_keys)
        if event_ids is None:
            head = f"{service}\x1f{metric}\x1f{micros}\x1f{value!r}\x1f".encode()
            event_id = blake2b(head + tags, digest_size=16).hexdigest()
        else:
            event_id = event_ids[index]
        append((event_id, micros, service, metric, value, tags.decode(), source))
    return rows


def canonical_json(value: Any) -> bytes:
    """JSON with sorted keys, so equal dicts give equal bytes."""
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


def as_utc(moment: datetime) -> datetime:
    """Query bounds follow the event rule: a naive datetime is UTC."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def check_limit(limit: int) -> int:
    """A history query without a positive limit is the caller's bug, not a storage failure: ValueError."""
    if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
        raise ValueError(f"limit must be a positive int, got {limit!r}")
    return limit


class Kind(StrEnum):
    """A column's type, named once here; each backend maps it to its own SQL type."""

    STRING = "string"
    INTEGER = "integer"
    FLOAT = "float"
    BOOLEAN = "boolean"
    TIMESTAMP = "timestamp"
    JSON = "json"


@dataclass(frozen=True)
class Column:
    name: str
    kind: Kind
    field: str | None = None
    """The model field the column holds; ``None`` for a column the store fills itself."""


@dataclass(frozen=True)
class TableLayout:
    """One table: its columns, the model its rows come back as, and the columns that identify an event."""

    name: str
    model: type[BaseModel]
    columns: tuple[Column, ...]
    key: tuple[str, ...]
    fill: Callable[[Any], dict[str, Any]] | None = None
    """Values of the store-filled columns that follow from the event itself."""

    @property
    def names(self) -> list[str]:
        return [column.name for column in self.columns]

    def values(self, event: BaseModel, extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Column name to plain Python value (enums as their value); ``extra`` for caller-filled columns."""
        filled = (self.fill(event) if self.fill else {}) | dict(extra or {})
        row = {}
        for column in self.columns:
            value = getattr(event, column.field) if column.field else filled.get(column.name)
            if column.kind is Kind.JSON and value is not None:
                value = to_jsonable_python(value)  # nested models (an incident's actions) as plain data
            row[column.name] = value.value if isinstance(value, Enum) else value
        return row

    def event(self, row: Mapping[str, Any]) -> Any:
        """The model back from a stored row; NULLs fall back to the model's defaults (rows of older layouts)."""
        fields = {c.field: row[c.name] for c in self.columns if c.field and row.get(c.name) is not None}
        try:
            return self.model.model_validate(fields)
        except ValidationError as err:
            raise StoreError(
                f"a stored {self.name} row no longer matches {self.model.__name__} ({describe(err)}); "
                "fix or delete that row, the newer model cannot read it",
                retryable=False,
            ) from None


def model_columns(model: type[BaseModel], rename: Mapping[str, str] | None = None) -> tuple[Column, ...]:
    """A column per model field (``schema_version`` is the wire format's, not the row's)."""
    rename = rename or {}
    return tuple(
        Column(rename.get(name, name), _kind(info.annotation), name)
        for name, info in model.model_fields.items()
        if name != "schema_version"
    )


def _kind(annotation: Any) -> Kind:
    if get_origin(annotation) in (Union, UnionType):
        [annotation] = [arg for arg in get_args(annotation) if arg is not type(None)]
    if get_origin(annotation) is Annotated:
        annotation = get_args(annotation)[0]
    if get_origin(annotation) in (dict, list):
        return Kind.JSON
    for base, kind in _KINDS:
        if isinstance(annotation, type) and issubclass(annotation, base):
            return kind
    raise TypeError(f"no column kind for a field of type {annotation!r}: add its type to pipeline.store._KINDS")


def _action_columns(result: ActionResult) -> dict[str, Any]:
    reason = result.metadata.get("reason")
    return {"reason": reason if isinstance(reason, str) else None, "result": result.message}


_KINDS: tuple[tuple[type, Kind], ...] = (
    (bool, Kind.BOOLEAN),  # before int: bool is an int
    (datetime, Kind.TIMESTAMP),
    (int, Kind.INTEGER),
    (float, Kind.FLOAT),
    (str, Kind.STRING),
)

METRICS_RAW = TableLayout(
    name="metrics_raw",
    model=MetricSample,
    columns=(
        Column("event_id", Kind.STRING),
        *model_columns(MetricSample, rename={"tags": "labels"}),
        Column("source", Kind.STRING),
    ),
    key=("event_id",),
)
"""The seed's ``metrics_raw``: the sample's fields with ``tags`` as ``labels``, plus ``event_id`` and ``source``."""

ANOMALIES = TableLayout(name="anomalies", model=Anomaly, columns=model_columns(Anomaly), key=("id",))

ACTIONS = TableLayout(
    name="actions",
    model=ActionResult,
    columns=(*model_columns(ActionResult), Column("reason", Kind.STRING), Column("result", Kind.STRING)),
    key=("action_id", "status"),
    fill=_action_columns,
)
"""The action log: one row per status transition. ``reason`` (from ``metadata["reason"]``) and ``result``
(the outcome text, i.e. ``message``) keep the seed's column names readable for the seed's queries."""

INCIDENTS = TableLayout(
    name="incidents",
    model=IncidentEvent,
    columns=(*model_columns(IncidentEvent), Column("timestamp", Kind.TIMESTAMP)),
    key=("event_id",),
    fill=lambda event: {"timestamp": event.updated_at},
)
"""One row per incident event; ``timestamp`` (the event's ``updated_at``) orders and partitions it like the others."""

LAYOUTS: tuple[TableLayout, ...] = (METRICS_RAW, ANOMALIES, ACTIONS, INCIDENTS)


MAX_BACKOFF_SECONDS = 30.0


async def write_batch(
    write: Callable[[Sequence[T]], int],
    entries: Sequence[tuple[R, T]],
    refuse: Callable[[R, str], Awaitable[None]],
) -> None:
    """Write the items of ``entries`` in one call, off the event loop.

    A busy store (a retryable :class:`StoreError`) is retried with backoff until it takes the
    batch: the caller commits its offsets only after this returns, so nothing is skipped. On a
    permanent error the batch is written item by item, and each item the store refuses is handed
    to ``refuse`` with the reason (the sink dead-letters its record): one bad row costs itself,
    not its batch.
    """
    items = [item for _, item in entries]
    retrying = AsyncRetrying(
        retry=retry_if_exception(lambda err: isinstance(err, StoreError) and err.retryable),
        wait=wait_exponential(multiplier=0.5, max=MAX_BACKOFF_SECONDS),
        before_sleep=lambda state: log.warning(
            "store busy, retrying", extra={"error": str(state.outcome.exception()), "attempt": state.attempt_number}
        ),
        reraise=True,
    )
    try:
        async for attempt in retrying:
            with attempt:
                await asyncio.to_thread(write, items)
        return
    except StoreError:
        pass
    for source, item in entries:
        try:
            await asyncio.to_thread(write, [item])
        except StoreError as err:
            await refuse(source, f"store refused the record: {err.message}")
