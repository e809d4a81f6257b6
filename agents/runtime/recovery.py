"""Where Faust drops fetched records and seeks back for them, make the seek back reach them.

Faust drops what it fetches while a worker's flow is stopped (during a rebalance, and while
tables recover) and then seeks the stream partitions back to their committed offsets, to fetch
the records again. Two things made that lose records:

- aiokafka's ``seek_to_committed`` leaves alone a partition whose committed offset is None or 0,
  so on a partition its group never committed the dropped records were never fetched again: an
  action request taken by a worker that was killed before its first commit, for instance.
  :class:`RewindingConsumer` seeks such partitions to their beginning, which is where the
  app's ``earliest`` offset reset started them.
- when recovery ends, Faust resumes the stream partitions and then awaits that seek; records
  fetched in between reached the agents while the rest of the fetch was dropped.
  :class:`SeekFirstRecovery` stops the flow first, so nothing is delivered until the seek is done;
  Faust resumes the flow itself right after it.
"""

from __future__ import annotations

from collections.abc import Mapping

from faust.tables import TableManager
from faust.tables.recovery import Recovery
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP


class RewindingConsumer(faust_aiokafka.Consumer):
    """Faust's aiokafka consumer, whose seek back also rewinds never-committed stream partitions.

    Changelog partitions are left alone: table recovery seeks them itself.
    """

    async def seek_to_committed(self) -> Mapping[TP, int]:
        committed = await super().seek_to_committed()
        if self.app.conf.consumer_auto_offset_reset == "earliest":
            changelogs = self.app.tables.changelog_topics
            never_committed = [tp for tp, offset in committed.items() if not offset and tp.topic not in changelogs]
            if never_committed:
                await self._thread.seek_to_beginning(*never_committed)
        return committed


class RewindingTransport(faust_aiokafka.Transport):
    """Faust's aiokafka transport with :class:`RewindingConsumer`."""

    Consumer = RewindingConsumer


class SeekFirstRecovery(Recovery):
    async def on_recovery_completed(self, generation_id: int = 0) -> None:
        self.app.consumer.stop_flow()
        await super().on_recovery_completed(generation_id)


class SeekFirstTableManager(TableManager):
    """Faust's table manager with :class:`SeekFirstRecovery`; set as the app's ``TableManager``."""

    @property
    def recovery(self) -> Recovery:
        if self._recovery is None:
            self._recovery = SeekFirstRecovery(self.app, self, beacon=self.beacon, loop=self.loop)
        return self._recovery
