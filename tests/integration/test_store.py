"""The storage layer, one suite for both stores: SQLite on a temp file, BigQuery on a local emulator.

The BigQuery half drives the real ``google-cloud-bigquery`` client against ``bqemulator`` (BigQuery's REST
API on DuckDB), started here on a free port and stopped at the end of the session. Offline, the
emulator's start-up ``INSTALL spatial`` would try DuckDB's extension site, so the launcher first installs
the ``spatial`` and ``avro`` extensions from their PyPI wheels into a private DuckDB home.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib.util
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests
from google.api_core import exceptions as google_errors
from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import bigquery

from connectors.bigquery_store import BigQueryStore, store_error
from connectors.sqlite_store import SqliteStore
from pipeline.store import ACTIONS, ANOMALIES, LAYOUTS, METRICS_RAW, Store, StoreError, TableLayout, metric_event_id
from schemas import ActionResult, ActionTaken, Anomaly, IncidentEvent, MetricSample

PROJECT = "test-project"
T0 = datetime(2026, 1, 5, 10, 0, tzinfo=UTC)
_EMULATOR_MODULES = ("bqemulator", "duckdb_extensions", "duckdb_extension_spatial", "duckdb_extension_avro")
_LAUNCHER = """
import sys
import duckdb
from duckdb_extensions import import_extension
connection = duckdb.connect()
for name in ("spatial", "avro"):
    import_extension(name, con=connection)
connection.close()
from bqemulator.cli import main
main(["start", *sys.argv[1:]])
"""


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _die_with_parent() -> None:
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


@pytest.fixture(scope="session")
def bigquery_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``http://127.0.0.1:<port>`` of a bqemulator process that lives as long as the session."""
    if missing := [name for name in _EMULATOR_MODULES if importlib.util.find_spec(name) is None]:
        pytest.skip(
            f"BigQuery emulator not installed ({', '.join(missing)}): pip install bqemulator duckdb-extensions "
            "duckdb-extension-spatial duckdb-extension-avro (extension wheels at the installed duckdb's version)"
        )
    home = tmp_path_factory.mktemp("bqemulator-home")
    port = _free_port()
    log_path = home / "emulator.log"
    args = ["--rest-port", str(port), "--grpc-port", "0", "--ephemeral", "--project", PROJECT]
    args += ["--log-level", "warning", "--log-format", "console"]
    env = os.environ | {"HOME": str(home)}  # DuckDB keeps extensions under $HOME/.duckdb: keep them private
    with log_path.open("wb") as log:
        command = [sys.executable, "-c", _LAUNCHER, *args]
        process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, preexec_fn=_die_with_parent)
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while not _answers(f"{endpoint}/bigquery/v2/projects/{PROJECT}/datasets"):
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"bqemulator did not start; its output:\n{log_path.read_text(errors='replace')[-3000:]}")
            time.sleep(0.2)
        yield endpoint
    finally:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


def _answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=2).status_code == 200
    except requests.RequestException:
        return False


def _client(endpoint: str) -> bigquery.Client:
    return bigquery.Client(
        project=PROJECT, credentials=AnonymousCredentials(), client_options=ClientOptions(api_endpoint=endpoint)
    )


@pytest.fixture
def bigquery_client(bigquery_endpoint: str) -> Iterator[bigquery.Client]:
    """The real client, anonymous, pointed at the emulator."""
    client = _client(bigquery_endpoint)
    yield client
    client.close()


@pytest.fixture(params=["sqlite", "bigquery"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """A fresh, empty store: a new SQLite file, or a new dataset on the session's emulator."""
    if request.param == "sqlite":
        opened: Store = SqliteStore(tmp_path / "aiops.sqlite")
    else:
        client = request.getfixturevalue("bigquery_client")
        opened = BigQueryStore(PROJECT, f"aiops_{uuid.uuid4().hex[:10]}", client=client, timeout=20)
    yield opened
    opened.close()


def stored_rows(store: Store, layout: TableLayout) -> tuple[int, int]:
    """(rows physically in the table, distinct event keys among them)."""
    key = ", ".join(layout.key)
    if isinstance(store, SqliteStore):
        with contextlib.closing(sqlite3.connect(store.path)) as conn:
            rows = conn.execute(f"SELECT COUNT(*) FROM {layout.name}").fetchone()[0]
            keys = conn.execute(f"SELECT COUNT(*) FROM (SELECT DISTINCT {key} FROM {layout.name})").fetchone()[0]
        return rows, keys
    table = f"`{store.project}.{store.dataset}.{layout.name}`"
    sql = f"SELECT COUNT(*) AS n, (SELECT COUNT(*) FROM (SELECT DISTINCT {key} FROM {table})) AS k FROM {table}"
    [row] = list(store.client.query(sql).result())
    return row["n"], row["k"]


def metric(service: str, name: str, seconds: float, value: float, **tags: str) -> MetricSample:
    return MetricSample(
        timestamp=T0 + timedelta(seconds=seconds), service_name=service, metric_name=name, value=value, tags=tags
    )


def anomaly(service: str, minutes: int, score: float = 0.9) -> Anomaly:
    moment = T0 + timedelta(minutes=minutes)
    return Anomaly(
        id=f"an-{service}-{minutes}",
        timestamp=moment,
        service_name=service,
        metric_name="latency_p95",
        window_start=moment - timedelta(minutes=1),
        window_end=moment,
        anomaly_score=score,
        expected_value=120.0,
        actual_value=870.5,
        severity="critical",
        model="robust_zscore",
        metric_values={"latency_p95": 870.5, "error_rate": 4.25},
    )


def action(action_id: str, status: str, seconds: int, service: str = "payment-api") -> ActionResult:
    return ActionResult(
        action_id=action_id,
        action_type="rollout_restart",
        status=status,
        message=f"{status} for {action_id}",
        service_name=service,
        target_type="gke",
        triggered_by="policy:latency",
        timestamp=T0 + timedelta(seconds=seconds),
        metadata={"reason": "latency_p95 critical", "attempt": 1, "nested": {"replicas": [2, 4]}},
    )


def test_the_store_creates_its_tables(store: Store) -> None:
    assert isinstance(store, Store)
    if isinstance(store, SqliteStore):
        with contextlib.closing(sqlite3.connect(store.path)) as conn:
            assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
            for layout in LAYOUTS:
                columns = [row[1] for row in conn.execute(f"PRAGMA table_info({layout.name})")]
                assert columns == layout.names
            indexes = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
            assert {"metrics_raw_by_timestamp", "anomalies_by_service_name_timestamp", "actions_key"} <= indexes
    else:
        for layout in LAYOUTS:
            table = store.client.get_table(f"{store.project}.{store.dataset}.{layout.name}")
            assert [field.name for field in table.schema] == layout.names
            assert (table.time_partitioning.type_, table.time_partitioning.field) == ("DAY", "timestamp")
            assert table.clustering_fields == ["service_name"]
        types = {f.name: f.field_type for f in store.client.get_table(f"{store.dataset}.anomalies").schema}
        assert types["metric_values"] == "JSON" and types["window_start"] == "TIMESTAMP"
        assert types["is_anomaly"] == "BOOLEAN" and types["anomaly_score"] == "FLOAT"


def test_recent_metrics_come_back_newest_first_per_service(store: Store) -> None:
    batch = [metric("payment-api", "cpu_usage", s, 40.0 + s, pod="p-1") for s in range(10)]
    batch += [metric("payment-api", "error_rate", s + 0.5, 0.25 * s) for s in range(10)]
    batch += [metric("checkout", "cpu_usage", s + 0.25, 10.0 + s, region="eu") for s in range(5)]
    assert store.write_metrics(batch) == len(batch)

    recent = store.recent_metrics("payment-api", limit=4)
    assert [(m.metric_name, m.value) for m in recent] == [
        ("error_rate", 2.25),
        ("cpu_usage", 49.0),
        ("error_rate", 2.0),
        ("cpu_usage", 48.0),
    ]
    assert recent[1] == batch[9]  # timestamps (to the microsecond), tags and values survive the round trip
    cpu = store.recent_metrics("payment-api", limit=3, metric_name="cpu_usage")
    assert [m.value for m in cpu] == [49.0, 48.0, 47.0]
    assert store.recent_metrics("checkout", limit=100) == sorted(batch[20:], key=lambda m: m.timestamp, reverse=True)
    everything = store.recent_metrics(None, limit=1000)
    assert len(everything) == len(batch)
    assert [m.timestamp for m in everything] == sorted((m.timestamp for m in batch), reverse=True)
    assert store.recent_metrics("unknown-service", limit=10) == []


def test_anomalies_by_time_range_and_service(store: Store) -> None:
    found = [anomaly("payment-api", minute) for minute in range(6)] + [anomaly("checkout", 2, 0.5)]
    assert store.write_anomalies(found) == len(found)

    window = store.anomalies(T0 + timedelta(minutes=1), T0 + timedelta(minutes=4), "payment-api", limit=10)
    assert [a.id for a in window] == ["an-payment-api-3", "an-payment-api-2", "an-payment-api-1"]  # end excluded
    assert window[0] == found[3]
    assert [a.id for a in store.anomalies(None, None, "checkout", limit=10)] == ["an-checkout-2"]
    assert len(store.anomalies(T0 + timedelta(minutes=2), None, None, limit=10)) == 5
    assert [a.id for a in store.anomalies(None, T0 + timedelta(minutes=1), None, limit=10)] == ["an-payment-api-0"]
    assert len(store.anomalies(None, None, None, limit=2)) == 2
    naive_start = (T0 + timedelta(minutes=5)).replace(tzinfo=None)  # naive means UTC, as in the events
    assert [a.id for a in store.anomalies(naive_start, None, None, limit=10)] == ["an-payment-api-5"]


def test_action_log_keeps_each_status_transition(store: Store) -> None:
    log = [action("a-1", "pending", 0), action("a-1", "in_progress", 1), action("a-1", "success", 5)]
    log += [action("a-2", "rejected", 3, service="checkout")]
    assert store.write_action_results(log) == 4

    assert [(r.action_id, r.status.value) for r in store.action_log(limit=10)] == [
        ("a-1", "success"),
        ("a-2", "rejected"),
        ("a-1", "in_progress"),
        ("a-1", "pending"),
    ]
    assert store.action_log(limit=10, service_name="checkout") == [log[3]]
    assert store.action_log(limit=1)[0] == log[2]  # metadata (nested JSON) and enums survive the round trip


def incident(event: int, change: str, service: str = "payment-api", minute: int = 0) -> IncidentEvent:
    return IncidentEvent(
        event_id=f"ev-{service}-{event}", incident_id=f"in-{service}", change=change, service_name=service,
        metrics=["latency_p95", "error_rate"], first_severity="high", worst_severity="critical",
        started_at=T0, updated_at=T0 + timedelta(minutes=minute), anomaly_count=event + 1, reason=f"change {event}",
        resolved_at=T0 + timedelta(minutes=minute) if change == "resolved" else None,
        resolution="recovered" if change == "resolved" else None,
        actions=[  # as the policy republishes an incident: with its actions and their verdicts
            ActionTaken(action_id="act-1", action_type="rollout_restart", requested_at=T0, verification="verified",
                        verified_at=T0 + timedelta(minutes=minute))
        ] if change == "resolved" else None,
    )  # fmt: skip


def test_incident_events_are_kept_once_each_newest_first(store: Store) -> None:
    events = [incident(0, "opened"), incident(1, "updated", minute=1), incident(2, "resolved", minute=3)]
    events += [incident(0, "opened", service="checkout", minute=2)]
    assert store.write_incidents(events + events[:2]) >= 4
    assert [e.event_id for e in store.incidents(limit=10)] == [
        "ev-payment-api-2",
        "ev-checkout-0",
        "ev-payment-api-1",
        "ev-payment-api-0",
    ]
    assert store.incidents(limit=10, service_name="payment-api")[0] == events[2]  # lists and enums round-trip
    assert store.incidents(limit=1, service_name="checkout") == [events[3]]


def test_a_redelivered_batch_does_not_double_rows(store: Store) -> None:
    samples = [metric("payment-api", "latency_p95", s, 100.0 + s, pod=f"p-{s % 3}") for s in range(50)]
    found = [anomaly("payment-api", minute) for minute in range(5)]
    log = [action("a-9", "pending", 0), action("a-9", "success", 2)]
    first = (store.write_metrics(samples), store.write_anomalies(found), store.write_action_results(log))
    again = (
        store.write_metrics(samples[10:] + samples[:10]),  # re-delivered, in another order
        store.write_anomalies(found + found[:2]),  # and with duplicates inside the batch
        store.write_action_results(log),
    )
    assert first == (50, 5, 2)
    if isinstance(store, SqliteStore):
        assert again == (0, 0, 0)  # SQLite knows at write time
    assert len(store.recent_metrics("payment-api", limit=1000)) == 50
    assert len(store.anomalies(None, None, None, limit=1000)) == 5
    assert len(store.action_log(limit=1000)) == 2
    for layout, expected in ((METRICS_RAW, 50), (ANOMALIES, 5), (ACTIONS, 2)):
        rows, events = stored_rows(store, layout)
        assert events == expected
        if isinstance(store, SqliteStore):
            assert rows == expected
        else:  # the emulator ignores insertId (BigQuery drops such retries best-effort): reads drop them
            assert expected <= rows <= 2 * expected


def test_caller_given_event_ids_key_the_metrics(store: Store) -> None:
    sample = metric("payment-api", "cpu_usage", 1, 50.0)
    store.write_metrics([sample], event_ids=["kafka:aiops.metrics:0:42"])
    store.write_metrics([sample], event_ids=["kafka:aiops.metrics:0:42"])
    assert store.recent_metrics("payment-api", limit=10) == [sample]
    with pytest.raises(ValueError, match="one per sample"):
        store.write_metrics([sample, sample], event_ids=["only-one"])


def test_a_limit_must_be_positive(store: Store) -> None:
    with pytest.raises(ValueError, match="limit must be a positive int"):
        store.recent_metrics(None, limit=0)


def test_the_metric_event_id_is_deterministic_and_spelling_blind() -> None:
    sample = metric("payment-api", "cpu_usage", 1.5, 3.0, pod="p-1", region="eu")
    same = MetricSample.model_validate(
        {
            "timestamp": (T0 + timedelta(seconds=1.5)).astimezone(UTC).isoformat().replace("+00:00", "Z"),
            "service_name": "payment-api",
            "metric_name": "cpu_usage",
            "value": 3,
            "tags": {"region": "eu", "pod": "p-1"},
        }
    )
    assert metric_event_id(sample) == metric_event_id(same)
    assert len(metric_event_id(sample)) == 32
    for other in (
        metric("payment-api", "cpu_usage", 1.5, 3.000001, pod="p-1", region="eu"),
        metric("payment-api", "cpu_usage", 1.500001, 3.0, pod="p-1", region="eu"),
        metric("payment-api", "cpu_usage", 1.5, 3.0, pod="p-2", region="eu"),
        metric("payment-api", "memory_usage", 1.5, 3.0, pod="p-1", region="eu"),
        metric("checkout", "cpu_usage", 1.5, 3.0, pod="p-1", region="eu"),
    ):
        assert metric_event_id(other) != metric_event_id(sample)


def test_sqlite_busy_is_retryable(tmp_path: Path) -> None:
    path = tmp_path / "busy.sqlite"
    with SqliteStore(path, busy_timeout=0.05) as store:
        store.write_metrics([metric("payment-api", "cpu_usage", 0, 1.0)])
        holder = sqlite3.connect(path, isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")  # another writer holds the lock
        try:
            with pytest.raises(StoreError, match="retry after a pause") as caught:
                store.write_metrics([metric("payment-api", "cpu_usage", 1, 2.0)])
            assert caught.value.retryable
            assert len(store.recent_metrics("payment-api", limit=10)) == 1  # WAL: readers are not blocked
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        store.write_metrics([metric("payment-api", "cpu_usage", 1, 2.0)])  # the retry succeeds
        assert len(store.recent_metrics("payment-api", limit=10)) == 2


def test_sqlite_errors_that_a_retry_cannot_fix_are_permanent(tmp_path: Path) -> None:
    junk = tmp_path / "not-a-database.sqlite"
    junk.write_bytes(b"this is not a database file, whatever its name says" * 100)
    with pytest.raises(StoreError, match="retrying will not help") as caught:
        SqliteStore(junk)
    assert not caught.value.retryable
    store = SqliteStore(tmp_path / "closed.sqlite")
    store.close()
    store.close()
    with pytest.raises(StoreError, match="closed") as caught:
        store.action_log(limit=1)
    assert not caught.value.retryable


def test_bigquery_schema_upgrades_are_additive(bigquery_client: bigquery.Client) -> None:
    client = bigquery_client
    dataset = f"seed_{uuid.uuid4().hex[:10]}"
    client.create_dataset(dataset)
    seed_columns = [("timestamp", "TIMESTAMP"), ("service_name", "STRING"), ("metric_name", "STRING")]
    seed_columns += [("value", "FLOAT"), ("labels", "JSON"), ("source", "STRING"), ("region", "STRING")]
    seed = bigquery.Table(
        f"{PROJECT}.{dataset}.metrics_raw", schema=[bigquery.SchemaField(n, t) for n, t in seed_columns]
    )
    client.create_table(seed)
    legacy = {"timestamp": T0.isoformat(), "service_name": "payment-api", "metric_name": "cpu_usage", "value": 7.5}
    assert client.insert_rows_json(seed.reference, [legacy | {"labels": '{"pod": "p-0"}', "region": "eu"}]) == []

    with BigQueryStore(PROJECT, dataset, client=client, timeout=20) as store:
        schema = client.get_table(seed.reference).schema
        assert [f.name for f in schema] == [n for n, _ in seed_columns] + ["event_id"]  # added, nothing dropped
        assert {f.name: f.mode for f in schema}["event_id"] == "NULLABLE"
        new = metric("payment-api", "cpu_usage", 60, 8.5, pod="p-1")
        store.write_metrics([new])
        store.write_metrics([new])
        old = metric("payment-api", "cpu_usage", 0, 7.5, pod="p-0")
        assert store.recent_metrics("payment-api", limit=10) == [new, old]  # rows without event_id still read

    with BigQueryStore(PROJECT, dataset, client=client, timeout=20):  # reopening changes nothing
        assert client.get_table(seed.reference).schema == schema


def test_bigquery_default_dataset_is_the_seeds(bigquery_client: bigquery.Client) -> None:
    with BigQueryStore(PROJECT, client=bigquery_client, timeout=20) as store:
        assert store.dataset == "aiops_data"
        tables = {table.table_id for table in bigquery_client.list_tables("aiops_data")}
        assert tables >= {"metrics_raw", "anomalies", "actions"}


def test_bigquery_unreachable_is_retryable() -> None:
    with pytest.raises(StoreError, match="retry with backoff") as caught:
        BigQueryStore(PROJECT, client=_client(f"http://127.0.0.1:{_free_port()}"), timeout=1)
    assert caught.value.retryable


def test_bigquery_missing_dataset_is_permanent(bigquery_client: bigquery.Client) -> None:
    dataset = f"gone_{uuid.uuid4().hex[:10]}"
    with BigQueryStore(PROJECT, dataset, client=bigquery_client, timeout=5) as store:
        bigquery_client.delete_dataset(dataset, delete_contents=True)
        with pytest.raises(StoreError, match="missing") as caught:
            store.anomalies(None, None, None, limit=10)
        assert not caught.value.retryable


@pytest.mark.parametrize(
    ("error", "retryable"),
    [
        (google_errors.ServiceUnavailable("backend down"), True),
        (google_errors.InternalServerError("oops"), True),
        (google_errors.TooManyRequests("slow down"), True),
        (google_errors.DeadlineExceeded("late"), True),
        (google_errors.RetryError("gave up", cause=None), True),
        (requests.ConnectionError("refused"), True),
        (google_errors.Forbidden("quota", errors=[{"reason": "rateLimitExceeded"}]), True),
        (google_errors.BadRequest("bad query"), False),
        (google_errors.Forbidden("no permission", errors=[{"reason": "accessDenied"}]), False),
        (google_errors.NotFound("no table"), False),
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, Exception) else str(value),
)
def test_bigquery_errors_are_classified(error: Exception, retryable: bool) -> None:
    mapped = store_error(error, "insert into p.d.t")
    assert mapped.retryable is retryable
    assert "p.d.t" in mapped.message
