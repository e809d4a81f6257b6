"""The store behind the history routes, opened when first needed and again after it failed.

The gateway's live views come from Kafka; only history needs the store. So an unreachable BigQuery or
an unwritable SQLite path must not keep the gateway from starting: history answers 503 with the
reason until the store opens, and the attempts are spaced out (doubling up to a minute) so a down
store is not hammered by every page load.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from pipeline.store import StoreError

log = logging.getLogger("aiops.gateway.store")

FIRST_RETRY_SECONDS = 1.0
MAX_RETRY_SECONDS = 60.0


class LazyStore:
    """Opens the store with ``opener`` on first use; after a failure, again once the backoff has passed.

    Thread-safe: the history routes call it from worker threads.
    """

    def __init__(self, opener: Callable[[], Any], clock: Callable[[], float] = time.monotonic) -> None:
        self._opener = opener
        self._clock = clock
        self._lock = threading.Lock()
        self._store: Any | None = None
        self._delay = FIRST_RETRY_SECONDS
        self._next_attempt = 0.0
        self.error: str | None = None
        """Why the last attempt to open failed; None once open (or before the first attempt)."""

    def get(self) -> Any:
        """The open store; raises a retryable :class:`StoreError` with the reason while it cannot be opened."""
        with self._lock:
            if self._store is not None:
                return self._store
            wait = self._next_attempt - self._clock()
            if wait > 0:
                raise StoreError(f"{self.error}; next attempt in {wait:.0f}s", retryable=True)
            try:
                self._store = self._opener()
            except Exception as err:  # noqa: BLE001 - any failure to open is the store being unavailable
                self.error = f"cannot open the store: {getattr(err, 'message', None) or err}"
                self._next_attempt = self._clock() + self._delay
                log.warning("store unavailable", extra={"error": self.error, "retry_in_s": self._delay})
                self._delay = min(self._delay * 2, MAX_RETRY_SECONDS)
                raise StoreError(self.error, retryable=True) from None
            if self.error is not None:
                log.info("store opened", extra={"after_error": self.error})
            self.error, self._delay = None, FIRST_RETRY_SECONDS
            return self._store

    def close(self) -> None:
        with self._lock:
            store, self._store = self._store, None
        if store is not None and hasattr(store, "close"):
            store.close()
