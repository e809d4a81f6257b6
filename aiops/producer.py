"""``MetricsProducer``: how a Python service pushes samples to ``aiops.metrics``.

    async with MetricsProducer("127.0.0.1:9092") as producer:
        await producer.send([MetricSample(timestamp=now, service_name="payment-api",
                                          metric_name="latency_p95", value=182.0)])

Samples are grouped per service into batch records keyed by service name, and the call
returns once the broker has acknowledged them (idempotent producer, ``acks=all``). On a broker
with TLS or SASL, pass ``security`` (:class:`connectors.kafka_client.KafkaSecurity`), or build the
producer from the ``AIOPS_*`` settings with :meth:`MetricsProducer.from_settings`.
"""

from __future__ import annotations

import csv
import os
import stat
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from types import TracebackType
from typing import TextIO

from pydantic import ValidationError

from connectors.kafka_client import KafkaAccess, KafkaSecurity
from pipeline.config import Settings
from pipeline.ingest import parse_metrics_record
from schemas import MetricBatch, MetricSample, encode
from schemas.codec import describe
from schemas.metrics import MAX_BATCH
from schemas.topics import METRICS


class MetricsProducer:
    def __init__(
        self,
        bootstrap: str,
        topic: str = METRICS.name,
        batch_size: int = 500,
        *,
        security: KafkaSecurity | None = None,
    ) -> None:
        if not 1 <= batch_size <= MAX_BATCH:
            raise ValueError(f"batch_size must be between 1 and {MAX_BATCH}")
        self.topic = topic
        self.batch_size = batch_size
        self._producer = KafkaAccess(bootstrap, security or KafkaSecurity()).producer(
            acks="all", enable_idempotence=True, linger_ms=5, compression_type=None
        )

    @classmethod
    def from_settings(cls, settings: Settings, topic: str = METRICS.name, batch_size: int = 500) -> MetricsProducer:
        """A producer to ``AIOPS_KAFKA_BOOTSTRAP`` with the ``AIOPS_KAFKA_*`` security settings."""
        return cls(settings.kafka_bootstrap, topic, batch_size, security=KafkaSecurity.from_settings(settings))

    async def __aenter__(self) -> MetricsProducer:
        await self._producer.start()
        return self

    async def __aexit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        await self._producer.stop()

    async def send(self, samples: Iterable[MetricSample]) -> int:
        """Publish samples; returns how many were acknowledged."""
        by_service: dict[str, list[MetricSample]] = defaultdict(list)
        for sample in samples:
            by_service[sample.service_name].append(sample)
        pending = []
        for service, group in by_service.items():
            for i in range(0, len(group), self.batch_size):
                record = encode(MetricBatch(metrics=group[i : i + self.batch_size]))
                pending.append(await self._producer.send(self.topic, record, key=service.encode()))
        for delivery in pending:
            await delivery
        return sum(len(group) for group in by_service.values())


@dataclass(frozen=True)
class BadLine:
    number: int
    reason: str


def read_json_lines(lines: Iterable[str]) -> Iterator[MetricSample | BadLine]:
    """Samples from JSON lines, each a sample or a ``{"metrics": [...]}`` batch; blank lines are skipped."""
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        result = parse_metrics_record(line.encode())
        yield from result.samples
        for rejection in result.rejected:
            yield BadLine(number, rejection.reason)


CSV_COLUMNS = ("timestamp", "service_name", "metric_name", "value")


def read_csv(lines: Iterable[str]) -> Iterator[MetricSample | BadLine]:
    """Samples from CSV with a header naming at least timestamp, service_name, metric_name, value.

    Any other column becomes a tag, so ``region`` or ``pod`` columns are kept.
    """
    reader = csv.DictReader(lines)
    missing = [column for column in CSV_COLUMNS if column not in (reader.fieldnames or [])]
    if missing:
        yield BadLine(1, f"header lacks {', '.join(missing)}; it needs {', '.join(CSV_COLUMNS)}")
        return
    for row in reader:
        tags = {key: value for key, value in row.items() if key not in CSV_COLUMNS and key and value}
        try:
            value = float(row["value"])
            yield MetricSample(
                timestamp=row["timestamp"],
                service_name=row["service_name"],
                metric_name=row["metric_name"],
                value=value,
                tags=tags,
            )
        except ValueError as err:
            reason = describe(err) if isinstance(err, ValidationError) else f"value: not a number: {row['value']!r}"
            yield BadLine(reader.line_num, reason)


Progress = Callable[[int, int | None], None]
"""``progress(done, total)``: bytes read of a regular file (``total`` its size), else lines read (``total`` None)."""


def regular_file_size(stream: TextIO) -> int | None:
    """Size of the regular file behind ``stream``; None for a pipe, a terminal or an in-memory stream,
    whose end nobody knows before reaching it."""
    try:
        status = os.fstat(stream.fileno())
    except (AttributeError, OSError, ValueError):
        return None
    return status.st_size if stat.S_ISREG(status.st_mode) else None


def lines_with_progress(stream: TextIO, progress: Progress, every: int = 1_000) -> Iterator[str]:
    """The lines of ``stream``, telling ``progress`` how far reading has got every ``every`` lines and at the end.

    For a regular file the count is the byte position under the text layer (``stream.buffer.tell()``):
    exact whatever the encoding, and free, where re-encoding every line to measure it would not be.
    """
    size = regular_file_size(stream)
    count = 0
    for count, line in enumerate(stream, start=1):
        yield line
        if count % every == 0:
            progress(stream.buffer.tell() if size is not None else count, size)
    progress(stream.buffer.tell() if size is not None else count, size)
