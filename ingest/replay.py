"""Single-use values shared by every worker: a replayed Mailgun token is refused by any of them.

Tokens live in a small SQLite table next to the spool, each with the time it stops mattering
(the end of the timestamp tolerance: a replay after that fails the freshness check anyway).
Only requests whose signature already verified reach the table, so an attacker without the
key cannot grow it; expired rows are pruned as new ones arrive, which bounds it by the
authentic traffic of one tolerance window.

Losing the table (a crash before SQLite's write reached the disk) can only let a replay of a
token from the last moments through; that event is then a duplicate, which the flusher drops.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

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

    def first_use(self, key: str, *, now: float, expires_at: float) -> bool:
        """Record ``key``; False when it was already recorded and has not expired at ``now``."""
        connection = self._connection()
        self._inserts += 1
        if self._inserts % _PRUNE_EVERY == 0:
            connection.execute("DELETE FROM used WHERE expires_at < ?", (now,))
        cursor = connection.execute(
            "INSERT INTO used (key, expires_at) VALUES (?, ?) "
            "ON CONFLICT (key) DO UPDATE SET expires_at = excluded.expires_at "
            "WHERE used.expires_at < ?",
            (key, expires_at, now),
        )
        return cursor.rowcount == 1

    def __len__(self) -> int:
        """Rows currently held (expired ones included until the next prune)."""
        row = self._connection().execute("SELECT count(*) FROM used").fetchone()
        return int(row[0])


class MemoryReplayGuard:
    """An in-process guard with a hard size bound, for tests and single-process use."""

    def __init__(self, max_entries: int = 100_000) -> None:
        self.max_entries = max_entries
        self._used: dict[str, float] = {}
        self._lock = threading.Lock()

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
