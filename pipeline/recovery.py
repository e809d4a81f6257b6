"""Faust's table recovery, holding the fetcher while stream partitions are sought back.

When recovery ends, Faust resumes the stream partitions and then awaits the seek to their
committed offsets. Records fetched during that wait reach the agents; whatever is still queued
is dropped when flow control resumes, and where nothing is committed yet the seek does not
rewind, so those records are never fetched again: an action request taken over by a restarted
worker could be lost that way. Stopping the consumer's flow first means nothing is fetched from
a stream partition until the seek is done; Faust resumes the flow itself right after it.
"""

from __future__ import annotations

from faust.tables import TableManager
from faust.tables.recovery import Recovery


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
