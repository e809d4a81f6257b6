"""Open the store the settings name: SQLite by default, BigQuery in production."""

from __future__ import annotations

from pipeline.config import Settings
from pipeline.store import Store


def open_store(settings: Settings) -> Store:
    if settings.store == "sqlite":
        from connectors.sqlite_store import SqliteStore

        settings.sqlite_path.parent.mkdir(parents=True, exist_ok=True)
        return SqliteStore(settings.sqlite_path)
    if not settings.bigquery_project:
        raise ValueError("AIOPS_STORE=bigquery needs AIOPS_BIGQUERY_PROJECT")
    from google.cloud import bigquery

    from connectors.bigquery_store import BigQueryStore

    client = None
    if settings.bigquery_endpoint:
        from google.auth.credentials import AnonymousCredentials

        client = bigquery.Client(
            project=settings.bigquery_project,
            credentials=AnonymousCredentials(),
            client_options={"api_endpoint": settings.bigquery_endpoint},
        )
    return BigQueryStore(settings.bigquery_project, settings.bigquery_dataset, client=client)
