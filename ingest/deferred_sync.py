"""Records staged by the requests one server turn answers, made durable together."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ingest.errors import SpoolUnavailable

if TYPE_CHECKING:
    from ingest.spool import Spool

log = logging.getLogger(__name__)

#: The WSGI environ key under which a server that answers many requests in one turn passes
#: the :class:`DeferredSync` those requests' records join (see ``ingest.worker``).
DEFERRED_SYNC = "mailpulse.deferred_sync"


class DeferredSync:
    """Records of the requests one server turn answers, made durable together.

    A thread that answers a turn's requests itself (every request whose bytes had all
    arrived) stages each record here, then :meth:`commit` writes and syncs them all at
    once, and only then are the answers sent. The requests share one sync without a thread
    woken per request. Each record brings what to do once it is durable, or once it is
    certain it is not.
    """

    __slots__ = ("_callbacks", "_parts", "_size", "_spool")

    def __init__(self) -> None:
        self._spool: Spool | None = None
        self._parts: list[bytes] = []
        self._size = 0
        self._callbacks: list[tuple[Callable[[], None], Callable[[SpoolUnavailable], None]]] = []

    def __len__(self) -> int:
        """How many records are staged."""
        return len(self._callbacks)

    def add(
        self,
        spool: Spool,
        parts: tuple[bytes, ...],
        on_durable: Callable[[], None],
        on_failed: Callable[[SpoolUnavailable], None],
    ) -> None:
        """Stage one record's framed ``parts`` for ``spool``."""
        if self._spool is None:
            self._spool = spool
        elif self._spool is not spool:
            raise ValueError("one deferred sync serves one spool")
        self._parts.extend(parts)
        self._size += sum(map(len, parts))
        self._callbacks.append((on_durable, on_failed))

    def commit(self) -> SpoolUnavailable | None:
        """Write and sync every staged record, tell each how it went, and return the failure
        (None when all are durable). Staged records are cleared either way."""
        callbacks, self._callbacks = self._callbacks, []
        parts, self._parts = self._parts, []
        size, self._size = self._size, 0
        if not callbacks or self._spool is None:
            return None
        try:
            self._spool.write_staged(parts, size)
        except SpoolUnavailable as failure:
            for _durable, failed in callbacks:
                _run(failed, failure)
            return failure
        for durable, _failed in callbacks:
            _run(durable)
        return None


def _run(callback: Callable[..., None], *args: Any) -> None:
    """Run one record's callback; a failing one must not cost the others their answers."""
    try:
        callback(*args)
    except Exception:
        log.exception("a spooled request's callback failed")
