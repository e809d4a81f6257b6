"""The gateway's one connection to Kafka: a consumer that keeps :class:`LiveState` current, a producer for writes.

The consumer uses no consumer group: every gateway reads everything it shows, replaying the
compacted ``aiops.service-health`` from its beginning and the last events of the anomaly, incident and
action topics, then follows them. While Kafka is away the gateway keeps serving what it knows,
says so in its health, and retries with backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError

from connectors.kafka_client import kafka_access
from gateway.kafka_topics import require_topics
from gateway.state import LiveState
from pipeline.config import Settings
from schemas import topics

log = logging.getLogger("aiops.gateway.kafka")

FOLLOWED = (
    topics.SERVICE_HEALTH,
    topics.ANOMALIES,
    topics.INCIDENTS,
    topics.ACTION_REQUESTS,
    topics.ACTION_RESULTS,
)
REPLAY_RECENT = 1000
"""Records per partition replayed at start from the non-compacted topics: enough to fill the recents."""
SEND_TIMEOUT_SECONDS = 15.0
PROBE_SECONDS = 5.0
MAX_BACKOFF_SECONDS = 30.0


def _reason(err: BaseException) -> str:
    """One short line: aiokafka's messages often repeat the class name already."""
    text = str(err) or type(err).__name__
    return text if text.startswith(type(err).__name__) else f"{type(err).__name__}: {text}"


class KafkaUnavailable(Exception):
    """Kafka did not take a write; the message says what happened and what the caller can do."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class KafkaBridge:
    def __init__(self, settings: Settings, state: LiveState) -> None:
        self.settings = settings
        self.state = state
        self.reachable = False
        self.error: str | None = "not connected yet"
        self.caught_up = False
        self._producer: AIOKafkaProducer | None = None
        self._producer_lock = asyncio.Lock()
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        """Start following the topics in the background; returns at once even if Kafka is down."""
        self._tasks = [
            asyncio.create_task(self._follow_forever(), name="gateway-follow"),
            asyncio.create_task(self._probe_forever(), name="gateway-probe"),
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._producer is not None:
            with contextlib.suppress(Exception):
                await self._producer.stop()
            self._producer = None

    # --- writes --------------------------------------------------------------------------------

    async def send(self, topic: str, records: list[tuple[str, bytes]]) -> None:
        """Send ``(key, value)`` records and return once the broker acknowledged every one (acks=all)."""
        try:
            producer = await self._get_producer()
            futures = [await producer.send(topic, value, key=key.encode()) for key, value in records]
            await asyncio.wait_for(asyncio.gather(*futures), SEND_TIMEOUT_SECONDS)
        except (KafkaError, TimeoutError, OSError) as err:
            self._mark(False, _reason(err))
            raise KafkaUnavailable(
                f"Kafka at {self.settings.kafka_bootstrap} did not acknowledge the write "
                f"({type(err).__name__}); nothing is confirmed as accepted: retry later"
            ) from None

    async def _get_producer(self) -> AIOKafkaProducer:
        async with self._producer_lock:
            if self._producer is None:
                producer = kafka_access(self.settings).producer(
                    client_id=f"{self.settings.app_id}-gateway",
                    acks="all",
                    enable_idempotence=True,
                    request_timeout_ms=10_000,
                    max_request_size=max(self.settings.max_body_bytes * 4, 1_048_576),
                    linger_ms=5,
                )
                try:
                    await asyncio.wait_for(producer.start(), SEND_TIMEOUT_SECONDS)
                except BaseException:
                    with contextlib.suppress(Exception):
                        await producer.stop()
                    raise
                self._producer = producer
            return self._producer

    # --- reachability --------------------------------------------------------------------------

    def _mark(self, reachable: bool, error: str | None = None) -> None:
        if reachable != self.reachable:
            log.log(
                logging.INFO if reachable else logging.WARNING,
                "kafka reachable" if reachable else "kafka unreachable",
                extra={"bootstrap": self.settings.kafka_bootstrap, "error": error},
            )
        self.reachable, self.error = reachable, error

    async def _probe_forever(self) -> None:
        """Ask the cluster for metadata every few seconds: the consumer alone would retry silently."""
        while True:
            try:
                producer = await self._get_producer()
                await asyncio.wait_for(producer.client.fetch_all_metadata(), PROBE_SECONDS)
                self._mark(True)
            except asyncio.CancelledError:
                raise
            except Exception as err:  # noqa: BLE001 - any failure means "not reachable"; the reason is kept
                self._mark(False, _reason(err))
            await asyncio.sleep(PROBE_SECONDS)

    # --- reads ---------------------------------------------------------------------------------

    async def _follow_forever(self) -> None:
        backoff = 1.0
        while True:
            try:
                await require_topics(self.settings, FOLLOWED)
                await self._follow()
            except asyncio.CancelledError:
                raise
            except Exception as err:  # noqa: BLE001 - reconnect on anything; the reason is logged
                self._mark(False, _reason(err))
                log.warning("following the topics failed; retrying", extra={"error": str(err), "in_s": backoff})
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_SECONDS)

    async def _follow(self) -> None:
        consumer = kafka_access(self.settings).consumer(
            client_id=f"{self.settings.app_id}-gateway",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
        )
        await consumer.start()
        try:
            ends = await self._assign(consumer)
            self._mark(True)
            started = time.monotonic()
            while True:
                batches = await consumer.getmany(timeout_ms=1000, max_records=2000)
                for records in batches.values():
                    for record in records:
                        self.state.apply(record.topic, record.value)
                if not self.caught_up and all([await consumer.position(tp) >= end for tp, end in ends.items()]):
                    self.caught_up = True
                    log.info(
                        "replayed health and recent events",
                        extra={"services": len(self.state.services), "seconds": round(time.monotonic() - started, 2)},
                    )
        finally:
            await consumer.stop()

    async def _assign(self, consumer: AIOKafkaConsumer) -> dict[TopicPartition, int]:
        """Assign every partition of the followed topics and seek; returns the end offsets to catch up to."""
        producer = await self._get_producer()  # its metadata lookup waits for the topic, the consumer's does not
        partitions: list[TopicPartition] = []
        for spec in FOLLOWED:
            found = await asyncio.wait_for(producer.partitions_for(spec.name), SEND_TIMEOUT_SECONDS)
            if not found:
                raise KafkaError(f"topic {spec.name} has no partitions yet")
            partitions.extend(TopicPartition(spec.name, number) for number in sorted(found))
        consumer.assign(partitions)
        begins = await consumer.beginning_offsets(partitions)
        ends = await consumer.end_offsets(partitions)
        for tp in partitions:
            if tp.topic == topics.SERVICE_HEALTH.name:
                consumer.seek(tp, begins[tp])
            else:
                consumer.seek(tp, max(begins[tp], ends[tp] - REPLAY_RECENT))
        return ends
