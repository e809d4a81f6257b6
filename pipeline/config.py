"""All configuration in one place: environment variables prefixed ``AIOPS_`` (or a ``.env`` file)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Every knob of the pipeline. The README's configuration table documents each field."""

    model_config = SettingsConfigDict(env_prefix="AIOPS_", env_file=".env", extra="ignore")

    kafka_bootstrap: str = Field("127.0.0.1:9092", description="Kafka bootstrap servers, comma separated.")
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "PLAINTEXT", description="How every Kafka client connects: TLS (SSL), SASL, both, or neither."
    )
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = Field(
        "SCRAM-SHA-512", description="SASL mechanism of the SASL protocols."
    )
    kafka_sasl_username: str | None = Field(None, description="SASL user name (the principal's ACLs apply).")
    kafka_sasl_password: SecretStr | None = Field(None, description="SASL password.")
    kafka_ssl_cafile: Path | None = Field(
        None, description="CA certificates (PEM) the broker's certificate is checked against; unset: the system's."
    )
    kafka_ssl_certfile: Path | None = Field(None, description="Client certificate (PEM), for mutual TLS.")
    kafka_ssl_keyfile: Path | None = Field(None, description="Private key (PEM) of the client certificate.")
    app_id: str = Field(
        "aiops-sentry",
        description="Faust application id: the consumer group and table prefix; ingest and the sink "
        "read in the groups `<AIOPS_APP_ID>-ingest` and `<AIOPS_APP_ID>-sink`.",
    )
    kafka_session_timeout_seconds: float = Field(
        30, ge=6, le=300, description="How soon the group notices a crashed worker and moves its partitions."
    )
    topic_partitions: int = Field(6, ge=1, le=1024, description="Partitions of every aiops.* topic when created.")
    topic_replication: int = Field(1, ge=1, le=16, description="Replication factor of topics when created.")
    metrics_retention_hours: int = Field(72, ge=1, description="Retention of raw metric and internal topics.")
    events_retention_hours: int = Field(24 * 14, ge=1, description="Retention of anomaly, action and DLQ topics.")
    max_future_seconds: float = Field(
        300,
        ge=0,
        description="How far ahead of the worker's clock a sample may be dated; samples later than that, or older "
        "than AIOPS_METRICS_RETENTION_HOURS, are dead-lettered.",
    )
    max_metrics_per_service: int = Field(
        24,
        ge=1,
        le=256,
        description="Metrics one service may have; a sample of one more is dead-lettered. Every metric's model "
        "shares the service's one state record, which must fit Kafka's 1 MB message limit.",
    )
    max_series_per_worker: int = Field(
        50_000, ge=1, description="Series (service, metric) one worker holds; a sample of one more is dead-lettered."
    )
    state_key: SecretStr | None = Field(
        None,
        min_length=16,
        description="Key signing worker state in changelogs (HMAC-SHA256); every worker of one app id needs the "
        "same. Unset: a key generated into `<AIOPS_DATA_DIR>/state.key`.",
    )
    worker_agents: str = Field(
        "ingest,detect,policy,actuate,sink",
        description="Agents a worker runs, comma separated. The sink reads in a consumer group of its own "
        "(`<AIOPS_APP_ID>-sink`): workers that run only `sink` scale the store writes apart from the stream.",
    )
    batch_max_records: int = Field(2000, ge=1, le=100_000, description="Records an agent takes in one batch at most.")
    batch_max_seconds: float = Field(
        0.2,
        gt=0,
        le=10,
        description="How long an agent waits to fill a batch (ingest: for its first record; it then takes what "
        "has arrived): bounds the added latency.",
    )
    window_seconds: float = Field(10, gt=0, le=3600, description="Size of the tumbling windows, in event time.")
    allowed_lateness_seconds: float = Field(
        5, ge=0, le=3600, description="How long after its end a window waits for late samples before it closes."
    )
    detector: str = Field("ensemble_likelihood", description="The per-series detector (see pipeline/detectors/).")
    warmup_windows: int = Field(30, ge=0, description="Windows a series must have seen before it can be anomalous.")
    anomaly_threshold: float = Field(
        0.93, gt=0, lt=1, description="Anomaly score from which a window is an anomaly (0.9 suits robust_zscore)."
    )
    resolve_windows: int = Field(
        3,
        ge=1,
        le=1000,
        description="Windows in a row every metric of an incident must be back in its normal band before it resolves.",
    )
    incident_max_windows: int = Field(
        720,
        ge=1,
        description="Windows a metric may stay out of its band before its new level is taken as normal "
        "(`level_shift_accepted`).",
    )
    policy_file: Path | None = Field(
        None, description="YAML or TOML file with the service catalog and action rules; unset: no automatic actions."
    )
    actions_execute: bool = Field(
        False, description="Carry actions out; false (the default) is a dry run that records what it would do."
    )
    kubeconfig: Path | None = Field(
        None, description="Kubeconfig for GKE actions; unset: $KUBECONFIG or ~/.kube/config, in-cluster inside GKE."
    )
    cloud_run_endpoint: str | None = Field(
        None,
        description="Cloud Run Admin API endpoint override; unset: Google's, with Application Default Credentials.",
    )
    action_attempts: int = Field(4, ge=1, le=20, description="Tries of an action that fails transiently (429, 5xx).")
    action_timeout_seconds: float = Field(
        300, gt=0, description="How long a Cloud Run rollout may take before it counts as failed (transient)."
    )
    gateway_host: str = Field("127.0.0.1", description="Address the HTTP gateway listens on.")
    gateway_port: int = Field(8000, ge=1, le=65535, description="Port of the HTTP gateway and dashboard.")
    api_tokens: str = Field(
        "", description='Bearer tokens with their role, "token:viewer,token:operator"; viewers read, operators act.'
    )
    api_tokens_file: Path | None = Field(
        None, description="A file with one token:role per line, instead of or with AIOPS_API_TOKENS."
    )
    cors_origins: str = Field("", description="Comma separated origins the browser may call the gateway from.")
    max_body_bytes: int = Field(1_048_576, ge=1024, description="Largest request body the gateway accepts.")
    gateway_docs: bool = Field(True, description="Serve the OpenAPI docs (/docs, /redoc, /openapi.json); false: 404.")
    store: Literal["sqlite", "bigquery"] = Field("sqlite", description="Where metrics, anomalies and actions are kept.")
    sqlite_path: Path = Field(Path(".aiops/aiops.sqlite"), description="The SQLite store's file.")
    bigquery_project: str | None = Field(None, description="Google Cloud project of the BigQuery store.")
    bigquery_dataset: str = Field("aiops_data", description="BigQuery dataset of the store.")
    bigquery_endpoint: str | None = Field(None, description="BigQuery API endpoint override (e.g. a local emulator).")
    sink_batch_records: int = Field(5000, ge=1, description="Rows the sink writes to the store in one batch at most.")
    sink_batch_seconds: float = Field(1.0, gt=0, description="How long the sink gathers rows before it writes a batch.")
    kafka_version: str = Field("4.1.1", description="Apache Kafka release the local development broker runs.")
    cache_dir: Path = Field(
        Path.home() / ".cache" / "aiops-sentry", description="Where the local broker's jars are cached."
    )
    data_dir: Path = Field(Path(".aiops"), description="Worker state: Faust table stores and local files.")
    metrics_port: int | None = Field(
        None, ge=1, le=65535, description="Port of a worker's Prometheus `/metrics`; unset: not served."
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field("INFO", description="Log level.")
    log_format: Literal["json", "text"] = Field("json", description="json lines for machines, text for people.")

    @model_validator(mode="after")
    def _kafka_security_is_whole(self) -> Settings:
        """A half-configured connection would fail later, at the broker, with a vaguer message."""
        protocol = self.kafka_security_protocol
        if protocol.startswith("SASL_"):
            if not self.kafka_sasl_username or self.kafka_sasl_password is None:
                raise ValueError(
                    f"AIOPS_KAFKA_SECURITY_PROTOCOL={protocol} needs AIOPS_KAFKA_SASL_USERNAME and "
                    "AIOPS_KAFKA_SASL_PASSWORD"
                )
        elif self.kafka_sasl_username or self.kafka_sasl_password is not None:
            raise ValueError(
                f"AIOPS_KAFKA_SASL_USERNAME/PASSWORD are set but AIOPS_KAFKA_SECURITY_PROTOCOL={protocol} "
                "does not use SASL: choose SASL_SSL (or SASL_PLAINTEXT)"
            )
        tls_files = [self.kafka_ssl_cafile, self.kafka_ssl_certfile, self.kafka_ssl_keyfile]
        if protocol not in ("SSL", "SASL_SSL") and any(tls_files):
            raise ValueError(
                f"AIOPS_KAFKA_SSL_* files are set but AIOPS_KAFKA_SECURITY_PROTOCOL={protocol} does not use TLS: "
                "choose SSL or SASL_SSL"
            )
        if self.kafka_ssl_keyfile and not self.kafka_ssl_certfile:
            raise ValueError("AIOPS_KAFKA_SSL_KEYFILE needs AIOPS_KAFKA_SSL_CERTFILE, the certificate it belongs to")
        return self


@lru_cache
def get_settings() -> Settings:
    return Settings()
