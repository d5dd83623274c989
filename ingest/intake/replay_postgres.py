"""Single-use values shared by every receiver on every host: table ``mailpulse_replay``.

With the ``postgres`` spool engine several receivers on several hosts take the same sources,
so a Mailgun token or a Svix id acknowledged by one must be refused by all of them: a
per-host SQLite file would let a replay sent to another host through. The guard keeps the
semantics of :class:`~ingest.intake.replay.SqliteReplayGuard` (``seen`` while authenticating,
``remember`` once the request is stored, expired rows pruned as new ones arrive) in the
database the spool already depends on, so it adds nothing that could fail on its own.

A database that cannot be reached or written is a storage failure:
:class:`~ingest.errors.SpoolUnavailable` (503), logged with the reason and never the URL,
which may hold a password.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

import psycopg

from ingest.errors import SpoolUnavailable
from ingest.spool.pg import PgConnection, describe

log = logging.getLogger(__name__)
_T = TypeVar("_T")
_Db = psycopg.Connection[tuple[object, ...]]

_PRUNE_EVERY = 1024  # inserts between prunes of expired rows, as for the SQLite guard
#: Connections per process: requests are checked concurrently, yet a process with many
#: threads must not open a database connection for each of them.
CONNECTIONS = 4

SCHEMA = """
CREATE TABLE IF NOT EXISTS mailpulse_replay (
    key TEXT PRIMARY KEY,
    expires_at DOUBLE PRECISION NOT NULL
);
CREATE INDEX IF NOT EXISTS mailpulse_replay_expiry ON mailpulse_replay (expires_at);
"""


class PostgresReplayGuard:
    """A :class:`~ingest.providers.base.ReplayGuard` in the shared PostgreSQL database."""

    def __init__(self, url: str, *, connections: int = CONNECTIONS) -> None:
        # Each connection opens on first use, so an idle process holds none.
        self._idle = [PgConnection(url, SCHEMA) for _ in range(max(1, connections))]
        self._lock = threading.Lock()
        self._free = threading.Semaphore(len(self._idle))
        self._inserts = 0

    @contextmanager
    def _borrowed(self) -> Iterator[PgConnection]:
        """A connection no other thread is using, given back afterwards."""
        with self._free:
            with self._lock:
                connection = self._idle.pop()
            try:
                yield connection
            finally:
                with self._lock:
                    self._idle.append(connection)

    def _storage(self, operation: Callable[[_Db], _T]) -> _T:
        """Run ``operation`` on a connection (autocommit: each statement commits on its own);
        storage failures become 503s and drop the connection, so the next use reconnects."""
        with self._borrowed() as connection:
            try:
                return operation(connection.get())
            except (psycopg.Error, OSError) as exc:
                connection.reset()
                log.error("replay database cannot be used", extra={"reason": describe(exc)})
                raise SpoolUnavailable("the replay database cannot be used; retry later") from exc

    def seen(self, key: str, *, now: float) -> bool:
        """True when ``key`` was remembered and has not expired at ``now``; records nothing."""
        row = self._storage(
            lambda db: db.execute(
                "SELECT 1 FROM mailpulse_replay WHERE key = %s AND expires_at >= %s", (key, now)
            ).fetchone()
        )
        return row is not None

    def remember(self, key: str, *, expires_at: float) -> None:
        """Record ``key`` as used until ``expires_at`` (call once its request is durable)."""
        self._inserts += 1
        prune = self._inserts % _PRUNE_EVERY == 0

        def upsert(db: _Db) -> None:
            if prune:  # by the wall clock: nothing else is at hand once a request is stored
                db.execute("DELETE FROM mailpulse_replay WHERE expires_at < %s", (time.time(),))
            db.execute(
                "INSERT INTO mailpulse_replay (key, expires_at) VALUES (%s, %s) "
                "ON CONFLICT (key) DO UPDATE "
                "SET expires_at = GREATEST(mailpulse_replay.expires_at, excluded.expires_at)",
                (key, expires_at),
            )

        self._storage(upsert)

    def first_use(self, key: str, *, now: float, expires_at: float) -> bool:
        """Record ``key``; False when it was already recorded and has not expired at ``now``."""
        self._inserts += 1
        prune = self._inserts % _PRUNE_EVERY == 0

        def insert(db: _Db) -> int:
            if prune:
                db.execute("DELETE FROM mailpulse_replay WHERE expires_at < %s", (now,))
            # A concurrent insert of the same key waits for the first to commit, then finds
            # its row unexpired: exactly one caller sees a row count of 1.
            cursor = db.execute(
                "INSERT INTO mailpulse_replay (key, expires_at) VALUES (%s, %s) "
                "ON CONFLICT (key) DO UPDATE SET expires_at = excluded.expires_at "
                "WHERE mailpulse_replay.expires_at < %s",
                (key, expires_at, now),
            )
            return cursor.rowcount

        return self._storage(insert) == 1

    def __len__(self) -> int:
        """Rows currently held (expired ones included until the next prune)."""
        row = self._storage(
            lambda db: db.execute("SELECT count(*) FROM mailpulse_replay").fetchone()
        )
        return int(row[0]) if row else 0  # type: ignore[call-overload]

    def close(self) -> None:
        """Close this process's idle connections (they reopen if the guard is used again)."""
        with self._lock:
            for connection in self._idle:
                connection.close()
