"""One connection to the shared PostgreSQL store, as the ``postgres`` spool engine needs it.

The engine keeps everything several receivers must share in one database: the spool, the
actions' outbox, the flusher's state (dedup index, journal, spool position) and the replay
guards. Each user holds a :class:`PgConnection` per role (writer, reader) under a lock of its
own; the connection opens lazily, reopens after a fork (a connection never crosses into a
child process) and after any failure, so a database that comes back is used again without a
restart. Failures are described in a sentence without the URL, which may hold a password.

Tables are created on first use under a transaction-scoped advisory lock, so receivers
starting together do not race each other's ``CREATE TABLE``.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

import psycopg

#: Advisory lock keys (one 64-bit space per database); the values only need to be distinct.
SCHEMA_LOCK = 0x6D61696C70756C01  # creating the tables
APPEND_LOCK = 0x6D61696C70756C02  # appends commit one at a time: ids become visible in order
FLUSHER_LOCK = 0x6D61696C70756C03  # one flusher (or compaction, rollup) at a time, any host
ACTIONS_LOCK = 0x6D61696C70756C04  # one actions dispatcher at a time, any host

CONNECT_TIMEOUT_SECONDS = 5


class PgConnection:
    """A lazily opened autocommit connection to ``url``; use it under one lock at a time."""

    def __init__(self, url: str, schema: str = "") -> None:
        self._url = url
        self._schema = schema  # statements run once per new database, under SCHEMA_LOCK
        self._db: psycopg.Connection[tuple[Any, ...]] | None = None
        self._pid = 0

    def get(self) -> psycopg.Connection[tuple[Any, ...]]:
        """The open connection, (re)opened if needed; raises ``psycopg.Error``."""
        if self._db is not None and (self._pid != os.getpid() or self._db.closed):
            self._db = None  # a parent's, or a broken one: never used again here
        if self._db is None:
            db = psycopg.connect(
                self._url, autocommit=True, connect_timeout=CONNECT_TIMEOUT_SECONDS
            )
            try:
                if self._schema:
                    with db.transaction():
                        db.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK,))
                        db.execute(self._schema)
            except BaseException:
                db.close()
                raise
            self._db, self._pid = db, os.getpid()
        return self._db

    @contextlib.contextmanager
    def transaction(self) -> Iterator[psycopg.Connection[tuple[Any, ...]]]:
        """The connection inside one transaction; on any failure the connection is dropped,
        so the next use starts from a fresh one."""
        try:
            with contextlib.ExitStack() as stack:
                yield self._begin(stack)
        except psycopg.Error:
            self.reset()
            raise

    def _begin(self, stack: contextlib.ExitStack) -> psycopg.Connection[tuple[Any, ...]]:
        """The connection with a transaction begun (its end registered on ``stack``). A
        connection the server ended since its last use (a restart, a pooler, an idle timeout)
        fails at ``BEGIN``, before anything of the transaction was sent: it is replaced and
        the transaction begun once more, so the first write after a restart does not fail."""
        for attempt in (1, 2):
            db = self.get()
            try:
                stack.enter_context(db.transaction())
            except psycopg.OperationalError:
                self.reset()
                if attempt == 2:
                    raise
                continue
            return db
        raise AssertionError("unreachable")

    def query(self, sql: str, params: tuple[object, ...] = ()) -> list[tuple[Any, ...]]:
        """Run a read-only statement and return its rows. A connection found dead (the server
        restarted since its last use) is replaced and the statement tried once more: a read
        may be repeated safely, and the first request after a restart should not fail."""
        for attempt in (1, 2):
            try:
                return self.get().execute(sql, params).fetchall()
            except psycopg.OperationalError:
                self.reset()
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def reset(self) -> None:
        """Close the connection (the next use opens a new one)."""
        if self._db is not None and self._pid == os.getpid():
            with contextlib.suppress(psycopg.Error):
                self._db.close()
        self._db = None

    close = reset


def describe(exc: BaseException) -> str:
    """A sentence for a failure of the shared store: what an operator can act on, no URL."""
    if isinstance(exc, psycopg.errors.ReadOnlySqlTransaction):
        return "the spool database (PostgreSQL) is read-only: a standby, not the primary"
    if isinstance(exc, psycopg.errors.DiskFull):
        return "the disk holding the spool database (PostgreSQL) is full"
    if isinstance(exc, psycopg.errors.InsufficientPrivilege):
        return "the spool database (PostgreSQL) refuses this user the write"
    if isinstance(exc, psycopg.errors.AdminShutdown | psycopg.errors.CannotConnectNow):
        return "the spool database (PostgreSQL) is shutting down or starting"
    if isinstance(exc, psycopg.OperationalError):
        return "the spool database (PostgreSQL) cannot be reached"
    if isinstance(exc, psycopg.Error):
        state = getattr(exc, "sqlstate", None) or type(exc).__name__
        return f"the spool database (PostgreSQL) failed ({state})"
    if isinstance(exc, OSError):
        return "the spool database (PostgreSQL) cannot be reached"
    return f"the spool database (PostgreSQL) failed ({type(exc).__name__})"
