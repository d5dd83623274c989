"""Single-use values shared by every worker: a replayed Mailgun token is refused by any of them.

Tokens live in a small SQLite table next to the spool, each with the time it stops mattering
(the end of the timestamp tolerance: a replay after that fails the freshness check anyway).
A provider asks ``seen`` while authenticating and calls ``remember`` only once the request was
stored durably and is about to be acknowledged: a request the spool refused (503) leaves no
trace, so the ESP's byte-identical retry is accepted. Two identical requests racing each other
can both be stored; the flusher drops the second as a duplicate. Only requests whose signature
verified and that were stored reach the table, so an attacker without the key cannot grow it;
expired rows are pruned as new ones arrive, which bounds it by the authentic traffic of one
tolerance window.

A replay database that cannot be opened, read or written (an unwritable spool directory, a
full disk) is a storage failure: :class:`~ingest.errors.SpoolUnavailable` (503), logged with
the file and the reason.

Losing the table (a crash before SQLite's write reached the disk) can only let a replay of a
token from the last moments through; that event is then a duplicate, which the flusher drops.

With the ``postgres`` spool engine the receivers of every host share one table instead:
:class:`~ingest.intake.replay_postgres.PostgresReplayGuard`, with the same interface.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

from ingest.errors import SpoolUnavailable

log = logging.getLogger(__name__)
_T = TypeVar("_T")

_PRUNE_EVERY = 1024  # inserts between prunes of expired rows


class SqliteReplayGuard:
    """A :class:`~ingest.providers.base.ReplayGuard` over one SQLite file (WAL mode)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._local = threading.local()
        self._inserts = 0

    def _connection(self) -> sqlite3.Connection:
        connection: sqlite3.Connection | None = getattr(self._local, "connection", None)
        if connection is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            connection = sqlite3.connect(self.path, timeout=5, isolation_level=None)
            self._set_up(connection)
            self._local.connection = connection
        return connection

    @staticmethod
    def _set_up(connection: sqlite3.Connection) -> None:
        # Switching to WAL takes an exclusive lock and does not wait on SQLite's busy timeout,
        # so workers opening the file at the same moment retry instead of failing a request.
        for attempt in range(50):
            try:
                if connection.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                    connection.execute("PRAGMA journal_mode=WAL")
                connection.execute("PRAGMA synchronous=NORMAL")
                connection.execute(
                    "CREATE TABLE IF NOT EXISTS used "
                    "(key TEXT PRIMARY KEY, expires_at REAL NOT NULL)"
                )
                return
            except sqlite3.OperationalError:
                if attempt == 49:
                    raise
                time.sleep(0.01 * (attempt + 1))

    def _storage(self, operation: Callable[[sqlite3.Connection], _T]) -> _T:
        """Run ``operation`` on this thread's connection; storage failures become 503s."""
        with _storage_failures(self.path):
            return operation(self._connection())

    def seen(self, key: str, *, now: float) -> bool:
        """True when ``key`` was remembered and has not expired at ``now``; records nothing."""
        row = self._storage(
            lambda connection: connection.execute(
                "SELECT 1 FROM used WHERE key = ? AND expires_at >= ?", (key, now)
            ).fetchone()
        )
        return row is not None

    def remember(self, key: str, *, expires_at: float) -> None:
        """Record ``key`` as used until ``expires_at`` (call once its request is durable)."""
        self._inserts += 1
        prune = self._inserts % _PRUNE_EVERY == 0

        def upsert(connection: sqlite3.Connection) -> None:
            if prune:  # by the wall clock: nothing else is at hand once a request is stored
                connection.execute("DELETE FROM used WHERE expires_at < ?", (time.time(),))
            connection.execute(
                "INSERT INTO used (key, expires_at) VALUES (?, ?) ON CONFLICT (key) "
                "DO UPDATE SET expires_at = max(used.expires_at, excluded.expires_at)",
                (key, expires_at),
            )

        self._storage(upsert)

    def first_use(self, key: str, *, now: float, expires_at: float) -> bool:
        """Record ``key``; False when it was already recorded and has not expired at ``now``."""
        self._inserts += 1
        prune = self._inserts % _PRUNE_EVERY == 0

        def insert(connection: sqlite3.Connection) -> int:
            if prune:
                connection.execute("DELETE FROM used WHERE expires_at < ?", (now,))
            cursor = connection.execute(
                "INSERT INTO used (key, expires_at) VALUES (?, ?) "
                "ON CONFLICT (key) DO UPDATE SET expires_at = excluded.expires_at "
                "WHERE used.expires_at < ?",
                (key, expires_at, now),
            )
            return cursor.rowcount

        return self._storage(insert) == 1

    def __len__(self) -> int:
        """Rows currently held (expired ones included until the next prune)."""
        row = self._storage(lambda c: c.execute("SELECT count(*) FROM used").fetchone())
        return int(row[0])


@contextmanager
def _storage_failures(path: Path) -> Iterator[None]:
    # sqlite3 reports an unwritable directory, a full disk or a corrupt file as
    # OperationalError/DatabaseError, and creating the directory as OSError: each means the
    # request cannot be guarded, so it is refused with 503 and the ESP retries it later.
    try:
        yield
    except (sqlite3.Error, OSError) as exc:
        log.error("replay database %s cannot be used: %s", path, exc)
        raise SpoolUnavailable("the replay database cannot be used; retry later") from exc


class MemoryReplayGuard:
    """An in-process guard with a hard size bound, for tests and single-process use."""

    def __init__(self, max_entries: int = 100_000) -> None:
        self.max_entries = max_entries
        self._used: dict[str, float] = {}
        self._lock = threading.Lock()

    def seen(self, key: str, *, now: float) -> bool:
        """True when ``key`` was remembered and has not expired at ``now``; records nothing."""
        with self._lock:
            previous = self._used.get(key)
            return previous is not None and previous >= now

    def remember(self, key: str, *, expires_at: float) -> None:
        """Record ``key`` as used until ``expires_at`` (call once its request is durable)."""
        with self._lock:
            if len(self._used) >= self.max_entries:
                self._used = {k: v for k, v in self._used.items() if v >= time.time()}
                while len(self._used) >= self.max_entries:  # still full: forget the oldest
                    del self._used[next(iter(self._used))]
            self._used[key] = max(expires_at, self._used.get(key, expires_at))

    def first_use(self, key: str, *, now: float, expires_at: float) -> bool:
        """Record ``key``; False when it was already recorded and has not expired at ``now``."""
        with self._lock:
            previous = self._used.get(key)
            if previous is not None and previous >= now:
                return False
            if len(self._used) >= self.max_entries:
                self._used = {k: v for k, v in self._used.items() if v >= now}
                while len(self._used) >= self.max_entries:  # still full: forget the oldest
                    del self._used[next(iter(self._used))]
            self._used[key] = expires_at
            return True
