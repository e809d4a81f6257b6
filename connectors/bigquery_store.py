"""The store on BigQuery, in the seed's layout: dataset ``aiops_data``; ``metrics_raw``, ``anomalies``, ``actions``;
and ``incidents``.

    store = BigQueryStore("my-project")            # application default credentials
    store.write_metrics(samples)

Tables are created when missing, day-partitioned on ``timestamp`` (history queries prune to the days
they ask for) and clustered by ``service_name`` (per-service queries read only that service's blocks).
Schema changes are additive: a column the layout has and the table lacks is added as NULLABLE (with
``ALTER TABLE ... ADD COLUMN IF NOT EXISTS``); nothing is ever dropped or retyped, so older rows and older
readers keep working.

Why re-delivered events are harmless here: rows are streamed with ``insert_rows_json`` and the event id as
``insertId``, which real BigQuery uses to drop retries within about a minute, best-effort. For the rest
(a replay hours later, an emulator that ignores ``insertId``) every history query keeps one row per event
key with ``QUALIFY ROW_NUMBER() OVER (PARTITION BY <key>) = 1``. The alternative, a load job into a staging
table and a ``MERGE`` per batch, was rejected: a pipeline writing a batch every few seconds would hit the
1,500 load jobs per table per day quota within hours, pay DML scan costs and a job's latency per batch, and
contend with concurrent ``MERGE`` statements on the same table. Streaming plus query-side dedup behaves
the same on BigQuery and on the emulator, costs no jobs on the write path, and keeps writes idempotent.
The price: a duplicate that BigQuery did not drop stays in storage and is scanned, negligible while
redeliveries are rare.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from types import TracebackType
from typing import Any

import orjson
import requests
from google.api_core import exceptions as google_errors
from google.auth import exceptions as auth_errors
from google.cloud import bigquery
from google.cloud.bigquery.retry import DEFAULT_JOB_RETRY, DEFAULT_RETRY

from pipeline.store import (
    ACTIONS,
    ANOMALIES,
    INCIDENTS,
    LAYOUTS,
    METRICS_RAW,
    Kind,
    StoreError,
    TableLayout,
    as_utc,
    canonical_json,
    check_limit,
    metric_rows,
)
from schemas import ActionResult, Anomaly, IncidentEvent, MetricSample

__all__ = ["BigQueryStore", "store_error"]

_TYPES = {
    Kind.STRING: "STRING",
    Kind.INTEGER: "INTEGER",
    Kind.FLOAT: "FLOAT",
    Kind.BOOLEAN: "BOOLEAN",
    Kind.TIMESTAMP: "TIMESTAMP",
    Kind.JSON: "JSON",
}
_DDL = {
    Kind.STRING: "STRING",
    Kind.INTEGER: "INT64",
    Kind.FLOAT: "FLOAT64",
    Kind.BOOLEAN: "BOOL",
    Kind.TIMESTAMP: "TIMESTAMP",
    Kind.JSON: "JSON",
}
_PARAM_TYPES = {"service_name": "STRING", "metric_name": "STRING", "start": "TIMESTAMP", "end": "TIMESTAMP"}
_ROWS_PER_REQUEST = 500
"""BigQuery's recommended ceiling for one streaming insert request."""

_RETRYABLE = (
    google_errors.ServiceUnavailable,
    google_errors.InternalServerError,
    google_errors.TooManyRequests,
    google_errors.DeadlineExceeded,
    google_errors.BadGateway,
    google_errors.GatewayTimeout,
    google_errors.RetryError,
    requests.ConnectionError,
    requests.Timeout,
    auth_errors.TransportError,
    ConnectionError,
    TimeoutError,
)
_TRANSIENT_REASONS = {"backendError", "internalError", "rateLimitExceeded", "timeout", "tableUnavailable"}
"""Error reasons BigQuery documents as worth retrying, even when they arrive on a 403 or in a row error."""


def store_error(err: Exception, what: str) -> StoreError:
    """Classify a client failure: transient (throttled, unavailable, unreachable, timed out) or permanent."""
    if isinstance(err, _RETRYABLE) or _reasons(err) & _TRANSIENT_REASONS:
        return StoreError(f"BigQuery {what}: {err}. Transient: retry with backoff", retryable=True)
    if isinstance(err, auth_errors.DefaultCredentialsError):
        hint = "set GOOGLE_APPLICATION_CREDENTIALS or run `gcloud auth application-default login`, or pass client="
    elif isinstance(err, google_errors.NotFound):
        hint = "the project, dataset or table is missing: check the names, or reopen the store to create them"
    elif isinstance(err, google_errors.Forbidden):
        hint = "grant the caller roles/bigquery.dataEditor and roles/bigquery.jobUser on the project"
    else:
        hint = "the request itself is wrong; retrying will not help"
    return StoreError(f"BigQuery {what} failed: {err}. {hint}", retryable=False)


class BigQueryStore:
    """A :class:`pipeline.store.Store` on BigQuery. Writes return the rows sent: duplicates are dropped when read."""

    def __init__(
        self,
        project: str,
        dataset: str = "aiops_data",
        client: bigquery.Client | None = None,
        location: str | None = None,
        *,
        timeout: float = 30.0,
    ) -> None:
        """Connect and create the dataset and tables if missing (adding any columns they lack).

        ``timeout`` bounds each call, the client's own retries included, so a caller's retry policy
        (driven by :attr:`StoreError.retryable`) stays in charge instead of a ten-minute default.
        """
        self.project, self.dataset, self.location = project, dataset, location
        self._timeout = timeout
        self._retry = DEFAULT_RETRY.with_timeout(timeout)
        self._job_retry = DEFAULT_JOB_RETRY.with_timeout(timeout)
        self._owns_client = client is None
        with self._mapped(f"connect to project {project}"):
            self.client = client or bigquery.Client(project=project, location=location)
        with self._mapped(f"create dataset {self._dataset_id}"):
            self._ensure_dataset()
        for layout in LAYOUTS:
            with self._mapped(f"create table {self._table_id(layout)}"):
                self._ensure_table(layout)

    def write_metrics(
        self, samples: Sequence[MetricSample], source: str = "kafka", *, event_ids: Sequence[str] | None = None
    ) -> int:
        ids = [row[0] for row in metric_rows(samples, source, event_ids)]
        rows = [
            METRICS_RAW.values(sample, {"event_id": event_id, "source": source})
            for event_id, sample in zip(ids, samples, strict=True)
        ]
        return self._insert(METRICS_RAW, rows)

    def write_anomalies(self, anomalies: Sequence[Anomaly]) -> int:
        return self._insert(ANOMALIES, [ANOMALIES.values(anomaly) for anomaly in anomalies])

    def write_action_results(self, results: Sequence[ActionResult]) -> int:
        return self._insert(ACTIONS, [ACTIONS.values(result) for result in results])

    def write_incidents(self, events: Sequence[IncidentEvent]) -> int:
        return self._insert(INCIDENTS, [INCIDENTS.values(event) for event in events])

    def incidents(self, limit: int, service_name: str | None = None) -> list[IncidentEvent]:
        return self._select(INCIDENTS, {"service_name": service_name}, limit)

    def recent_metrics(
        self, service_name: str | None, limit: int, metric_name: str | None = None
    ) -> list[MetricSample]:
        return self._select(METRICS_RAW, {"service_name": service_name, "metric_name": metric_name}, limit)

    def anomalies(
        self, start: datetime | None, end: datetime | None, service_name: str | None, limit: int
    ) -> list[Anomaly]:
        bounds = {"start": None if start is None else as_utc(start), "end": None if end is None else as_utc(end)}
        return self._select(ANOMALIES, {"service_name": service_name, **bounds}, limit)

    def action_log(self, limit: int, service_name: str | None = None) -> list[ActionResult]:
        return self._select(ACTIONS, {"service_name": service_name}, limit)

    def close(self) -> None:
        """Close the client if the store made it; a client passed in stays the caller's to close."""
        if self._owns_client:
            self.client.close()

    def __enter__(self) -> BigQueryStore:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    @property
    def _dataset_id(self) -> str:
        return f"{self.project}.{self.dataset}"

    def _table_id(self, layout: TableLayout) -> str:
        return f"{self._dataset_id}.{layout.name}"

    def _ensure_dataset(self) -> None:
        dataset = bigquery.Dataset(self._dataset_id)
        if self.location:
            dataset.location = self.location
        self.client.create_dataset(dataset, exists_ok=True, retry=self._retry, timeout=self._timeout)

    def _ensure_table(self, layout: TableLayout) -> None:
        required = {*layout.key, "timestamp"}
        table = bigquery.Table(
            self._table_id(layout),
            schema=[
                bigquery.SchemaField(c.name, _TYPES[c.kind], mode="REQUIRED" if c.name in required else "NULLABLE")
                for c in layout.columns
            ],
        )
        table.time_partitioning = bigquery.TimePartitioning(type_=bigquery.TimePartitioningType.DAY, field="timestamp")
        table.clustering_fields = ["service_name"]
        table = self.client.create_table(table, exists_ok=True, retry=self._retry, timeout=self._timeout)
        missing = [c for c in layout.columns if c.name not in {field.name for field in table.schema}]
        if not missing:
            return
        for column in missing:  # one per statement: the emulator takes no more, BigQuery does not mind
            self._query(
                f"ALTER TABLE `{self._table_id(layout)}` ADD COLUMN IF NOT EXISTS `{column.name}` {_DDL[column.kind]}"
            )
        table = self.client.get_table(self._table_id(layout), retry=self._retry, timeout=self._timeout)
        present = {field.name for field in table.schema}
        if lagging := [bigquery.SchemaField(c.name, _TYPES[c.kind]) for c in missing if c.name not in present]:
            # A catalog that does not follow DDL (bqemulator's) learns the columns from the table's metadata.
            table.schema = [*table.schema, *lagging]
            self.client.update_table(table, ["schema"], retry=self._retry, timeout=self._timeout)

    def _insert(self, layout: TableLayout, rows: list[dict[str, Any]]) -> int:
        unique = {":".join(str(row[name]) for name in layout.key): _json_row(layout, row) for row in rows}
        ids, payload = list(unique), list(unique.values())
        for offset in range(0, len(payload), _ROWS_PER_REQUEST):
            chunk = slice(offset, offset + _ROWS_PER_REQUEST)
            with self._mapped(f"insert into {self._table_id(layout)}"):
                errors = self.client.insert_rows_json(
                    self._table_id(layout), payload[chunk], row_ids=ids[chunk], retry=self._retry, timeout=self._timeout
                )
            if errors:
                raise _row_errors(errors, self._table_id(layout), len(payload[chunk]))
        return len(payload)

    def _select(self, layout: TableLayout, filters: dict[str, Any], limit: int) -> list[Any]:
        given = {name: value for name, value in filters.items() if value is not None}
        conditions = ["TRUE"] + [_CONDITIONS.get(name, f"`{name}` = @{name}") for name in given]
        key = ", ".join(f"`{name}`" for name in layout.key)
        legacy = " OR ".join(f"`{name}` IS NULL" for name in layout.key)
        sql = (
            f"SELECT {', '.join(f'`{name}`' for name in layout.names)} FROM `{self._table_id(layout)}` "
            f"WHERE {' AND '.join(conditions)} "
            f"QUALIFY {legacy} OR ROW_NUMBER() OVER (PARTITION BY {key}) = 1 "
            f"ORDER BY `timestamp` DESC, {', '.join(f'`{name}` DESC' for name in layout.key)} LIMIT @limit"
        )
        parameters = [bigquery.ScalarQueryParameter(name, _PARAM_TYPES[name], value) for name, value in given.items()]
        parameters.append(bigquery.ScalarQueryParameter("limit", "INT64", check_limit(limit)))
        with self._mapped(f"query {self._table_id(layout)}"):
            rows = self._query(sql, parameters)
        kinds = {column.name: column.kind for column in layout.columns}
        return [
            layout.event({name: _read(kinds[name], value) for name, value in row.items() if name in kinds})
            for row in rows
        ]

    def _query(self, sql: str, parameters: Sequence[bigquery.ScalarQueryParameter] = ()) -> list[dict[str, Any]]:
        config = bigquery.QueryJobConfig(query_parameters=list(parameters))
        job = self.client.query(
            sql,
            job_config=config,
            location=self.location,
            retry=self._retry,
            job_retry=self._job_retry,
            timeout=self._timeout,
        )
        return [dict(row.items()) for row in job.result(retry=self._retry, timeout=self._timeout)]

    @contextmanager
    def _mapped(self, what: str) -> Iterator[None]:
        try:
            yield
        except (google_errors.GoogleAPIError, auth_errors.GoogleAuthError, requests.RequestException, OSError) as err:
            raise store_error(err, what) from err


_CONDITIONS = {"start": "`timestamp` >= @start", "end": "`timestamp` < @end"}


def _json_row(layout: TableLayout, values: dict[str, Any]) -> dict[str, Any]:
    """A row as the insertAll API takes it: timestamps as ISO 8601 strings, JSON columns as JSON text."""
    row = {}
    for column in layout.columns:
        value = values[column.name]
        if value is not None and column.kind is Kind.TIMESTAMP:
            value = as_utc(value).isoformat()
        elif value is not None and column.kind is Kind.JSON:
            value = canonical_json(value).decode()
        row[column.name] = value
    return row


def _read(kind: Kind, value: Any) -> Any:
    # JSON arrives parsed from current clients, as text from older ones and from STRING columns of older tables.
    if kind is Kind.JSON and isinstance(value, str | bytes):
        return orjson.loads(value)
    return value


def _reasons(err: Exception) -> set[str]:
    details = getattr(err, "errors", None) or []
    return {item.get("reason", "") for item in details if isinstance(item, dict)}


def _row_errors(errors: Sequence[dict[str, Any]], table: str, sent: int) -> StoreError:
    reasons = {item.get("reason", "") for row in errors for item in row.get("errors", [])}
    failed = reasons - {"stopped"}  # "stopped": not inserted because another row of the request failed
    retryable = bool(failed) and failed <= _TRANSIENT_REASONS
    advice = "Transient: retry the batch (duplicates are dropped when read)" if retryable else "Fix the rows"
    return StoreError(
        f"BigQuery rejected {len(errors)} of {sent} rows inserted into {table} ({', '.join(sorted(reasons))}); "
        f"first: {errors[0]}. {advice}",
        retryable=retryable,
    )
