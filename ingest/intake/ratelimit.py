"""Per-source rate limits that hold across every gunicorn worker.

Counting is done by ``limits`` (the engine under Flask-Limiter), in a moving window, keyed by
source: one flooded source never uses up another's allowance. It is called from the receiver
rather than as a Flask-Limiter decorator because the check has its place in the receiver's
order: after the IP allowlist (a refused address must not spend a source's allowance), before
the body is read.

Where the counts live is ``receiver.rate_limit_storage``:

- a shared store (``redis://127.0.0.1:6379/0``, ``rediss://``, ``redis+unix://``): every
  worker counts in the same place, so a source's limit is exact however many workers run;
- ``memory://`` (the default): each worker counts alone, so each enforces its *share* of the
  limit, ``ceil(limit / workers)``. The kernel spreads connections over workers unevenly, so a
  source close to its limit may see a few 429s early; a flood is still held to about the limit.

When the shared store stops answering, requests are not refused for it: the per-worker share
applies, with a warning in the log, and the store is tried again every
:data:`RECHECK_SECONDS`.
"""

from __future__ import annotations

import logging
import math
import threading
import time
import urllib.parse
from collections.abc import Callable

from limits import RateLimitItem
from limits.storage import MemoryStorage, Storage, storage_from_string
from limits.strategies import MovingWindowRateLimiter

from ingest.metrics import RATE_LIMIT_STORAGE_ERRORS
from mailpulse.config import SHARED_RATE_LIMIT_SCHEMES, redacted_url

log = logging.getLogger(__name__)

#: How long to count locally after the shared store failed before trying it again.
RECHECK_SECONDS = 5.0
#: A shared store that does not answer within this long counts as down for the request.
STORAGE_TIMEOUT_SECONDS = 0.25


class SourceRateLimiter:
    """Moving-window limits per source, shared through ``storage_uri`` when it is a store."""

    def __init__(
        self,
        storage_uri: str,
        workers: int = 1,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.storage_uri = storage_uri
        self.workers = max(1, workers)
        self._clock = clock
        self._local = MovingWindowRateLimiter(MemoryStorage())
        self._shares: dict[tuple[type[RateLimitItem], int, int], RateLimitItem] = {}
        self._storage: Storage | None = None
        self._shared: MovingWindowRateLimiter | None = None
        if urllib.parse.urlsplit(storage_uri).scheme in SHARED_RATE_LIMIT_SCHEMES:
            storage = storage_from_string(
                storage_uri,
                socket_timeout=STORAGE_TIMEOUT_SECONDS,
                socket_connect_timeout=STORAGE_TIMEOUT_SECONDS,
            )
            assert isinstance(storage, Storage)  # a synchronous scheme gives a synchronous store
            self._storage, self._shared = storage, MovingWindowRateLimiter(storage)
        self._down_until = 0.0
        self._lock = threading.Lock()

    def hit(self, limit: RateLimitItem, source: str) -> bool:
        """Count one request of ``source``; False when it is over ``limit``."""
        shared, storage = self._shared, self._storage
        if shared is not None and storage is not None and self._clock() >= self._down_until:
            try:
                allowed = shared.hit(limit, "source", source)
            except storage.base_exceptions as exc:
                self._went_down(exc)
            else:
                self._came_back()
                return allowed
        return self._local.hit(self.share(limit), "source", source)

    def share(self, limit: RateLimitItem) -> RateLimitItem:
        """What one worker allows when it counts alone: ``ceil(amount / workers)``."""
        key = (type(limit), limit.amount, limit.multiples)
        item = self._shares.get(key)
        if item is None:
            amount = math.ceil(limit.amount / self.workers)
            item = self._shares[key] = type(limit)(amount, limit.multiples)
        return item

    def _went_down(self, error: BaseException) -> None:
        RATE_LIMIT_STORAGE_ERRORS.inc()
        with self._lock:
            first = self._down_until == 0.0
            self._down_until = self._clock() + RECHECK_SECONDS
        if first:
            log.warning(
                "rate-limit storage not answering; each worker now enforces its share of every "
                "limit (1/%d) until it does",
                self.workers,
                extra={"storage": redacted_url(self.storage_uri), "error": type(error).__name__},
            )

    def _came_back(self) -> None:
        if self._down_until:
            with self._lock:
                was_down, self._down_until = self._down_until != 0.0, 0.0
            if was_down:
                log.warning(
                    "rate-limit storage answering again; limits are shared by every worker",
                    extra={"storage": redacted_url(self.storage_uri)},
                )
