"""One connection to the spool database, opened as the embedded engine needs it.

Writers of every process take turns through a lock file next to the database (``flock``):
a writer waiting for its turn retries every few hundred microseconds, where SQLite's busy
handler sleeps 1, 2, 5, 10 ms and more between tries, far longer than a commit takes. SQLite's
own locking still guards the database; the lock file only shortens the waiting.

Appends skip the lock file: each is one statement (:meth:`Connection.write_one`), so SQLite
takes its write lock and releases it within one call. A transaction of several statements
holds the lock while its thread waits to run Python again between them, and with a dozen
request threads in the process that wait is longer than the commit itself.

A connection is reopened when the database file it opened was removed or replaced (writing
on would put acknowledged requests into a file nobody can read again), and after a fork (a
connection never crosses into a child process; the child opens its own).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

BUSY_TIMEOUT_SECONDS = 5.0  # how long a commit waits for another process's
_FIRST_PAUSE_SECONDS = 0.0001  # waiting for another writer's turn: 0.1 ms, doubling to 1 ms
_LAST_PAUSE_SECONDS = 0.001
_PAGE_BYTES = 16 * 1024
_WAL_LIMIT_BYTES = 64 * 1024 * 1024  # the log is cut back to this after a checkpoint

_SCHEMA = """
CREATE TABLE IF NOT EXISTS records (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    header BLOB NOT NULL,
    body BLOB NOT NULL,
    size INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS totals (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    pending_bytes INTEGER NOT NULL,
    commits INTEGER NOT NULL  -- not counted: GroupCommitSpool.commits counts per process
);
CREATE TABLE IF NOT EXISTS consumers (
    name TEXT PRIMARY KEY,
    position INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    action TEXT NOT NULL,
    event_id TEXT NOT NULL,
    webhook_id TEXT NOT NULL,
    event BLOB NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL,
    received_at REAL NOT NULL,
    next_at REAL NOT NULL,
    finished_at REAL,
    last_status INTEGER,
    last_detail TEXT,
    UNIQUE (action, event_id)
);
CREATE INDEX IF NOT EXISTS outbox_due ON outbox (state, action, next_at);
"""
# Appends insert into this view: its trigger adds each row and the bytes it brings in the
# same statement, so a whole group commit is one statement (see the module's docstring).
_APPEND_VIEW = (
    "CREATE VIEW IF NOT EXISTS record_appends AS SELECT header, body, size FROM records WHERE 0",
    """CREATE TRIGGER IF NOT EXISTS record_appends_insert INSTEAD OF INSERT ON record_appends
    BEGIN
        INSERT INTO records (header, body, size) VALUES (NEW.header, NEW.body, NEW.size);
        UPDATE totals SET pending_bytes = pending_bytes + NEW.size;
    END""",
)
#: The object created last: a database that has it has every one (older ones gain the rest).
_LAST_OBJECT = "record_appends_insert"


class Connection:
    """A lazily opened connection to ``path``; use it under one lock at a time."""

    def __init__(
        self, path: Path, *, synchronous: str, busy_timeout: float = BUSY_TIMEOUT_SECONDS
    ) -> None:
        """``busy_timeout``: how long SQLite itself waits for another process's write lock
        (0 for a connection that only calls :meth:`write_one`, which waits on its own)."""
        self.path = path
        self.synchronous = synchronous
        self.busy_timeout = busy_timeout
        self._db: sqlite3.Connection | None = None
        self._turn_fd: int | None = None
        self._identity: tuple[int, int] | None = None
        self._pid = 0

    def get(self) -> sqlite3.Connection:
        """The open connection, (re)opened if needed; raises ``sqlite3.Error`` or ``OSError``."""
        if self._pid != os.getpid():
            self._db = None  # the parent's: never used here, nor closed by SQLite
            if self._turn_fd is not None:
                os.close(self._turn_fd)  # our copy only: the parent keeps its own
                self._turn_fd = None
        elif self._db is not None and _identity(self.path) != self._identity:
            self.close()
        if self._db is None:
            self._db = self._open()
            self._identity = _identity(self.path)
            self._pid = os.getpid()
        return self._db

    @contextlib.contextmanager
    def turn(self) -> Iterator[sqlite3.Connection]:
        """The connection, with the writers' turn held for one transaction."""
        db = self.get()
        if self._turn_fd is None:
            lock_path = self.path.with_name(self.path.name + ".lock")
            self._turn_fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        _take_turn(self._turn_fd)
        try:
            yield db
        finally:
            fcntl.flock(self._turn_fd, fcntl.LOCK_UN)

    def write_one(self, statement: str, parameters: Sequence[Any]) -> None:
        """Run one writing statement as a transaction of its own.

        While another process holds the write lock, the statement is tried again every few
        hundred microseconds; after SQLite's busy timeout the last ``SQLITE_BUSY`` is raised.
        """
        db = self.get()
        busy: list[sqlite3.OperationalError] = []

        def attempt() -> bool:
            try:
                db.execute(statement, parameters)
            except sqlite3.OperationalError as exc:
                if exc.sqlite_errorcode & 0xFF != sqlite3.SQLITE_BUSY:
                    raise
                busy[:] = [exc]
                return False
            return True

        if not _until_done(attempt):
            raise busy[0]

    def close(self) -> None:
        """Close the connection, if this process opened one."""
        if self._pid == os.getpid():
            if self._db is not None:
                with contextlib.suppress(sqlite3.Error):
                    self._db.close()
            if self._turn_fd is not None:
                os.close(self._turn_fd)
        self._db = None
        self._turn_fd = None

    @staticmethod
    def roll_back(db: sqlite3.Connection) -> None:
        """Undo an open transaction (SQLite may already have, after a full disk)."""
        if db.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                db.execute("ROLLBACK")

    def _open(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Opening (and creating or upgrading the tables) waits for other processes like any
        # transaction; only afterwards does a write_one connection stop SQLite's own waiting.
        db = sqlite3.connect(
            self.path, timeout=BUSY_TIMEOUT_SECONDS, isolation_level=None, check_same_thread=False
        )
        try:
            # Set before the database exists (a no-op after): 16 KiB pages write a 380 KB
            # batch in a quarter of the log frames, and cost small records nothing measurable.
            db.execute(f"PRAGMA page_size={_PAGE_BYTES}")
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(f"PRAGMA synchronous={self.synchronous}")
            db.execute(f"PRAGMA journal_size_limit={_WAL_LIMIT_BYTES}")
            found = "SELECT count(*) FROM sqlite_master WHERE name = ?"
            if not db.execute(found, (_LAST_OBJECT,)).fetchone()[0]:
                db.execute("BEGIN IMMEDIATE")
                _create(db)
                db.execute("COMMIT")
            db.execute(f"PRAGMA busy_timeout={round(self.busy_timeout * 1000)}")
        except BaseException:
            Connection.roll_back(db)
            db.close()
            raise
        return db


def _take_turn(fd: int) -> None:
    """Lock ``fd``, retrying quickly; raise ``TimeoutError`` after SQLite's own busy timeout,
    so a writer hung elsewhere makes an answered failure here, not a hang."""

    def attempt() -> bool:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    if not _until_done(attempt):
        raise TimeoutError("the spool's writer turn stayed taken")


def _until_done(attempt: Callable[[], bool]) -> bool:
    """Call ``attempt`` until it returns True, pausing 0.1 ms (doubling to 1 ms) between
    calls; False once SQLite's busy timeout has passed."""
    deadline = time.monotonic() + BUSY_TIMEOUT_SECONDS
    pause = _FIRST_PAUSE_SECONDS
    while not attempt():
        if time.monotonic() >= deadline:
            return False
        time.sleep(pause)
        pause = min(pause * 2, _LAST_PAUSE_SECONDS)
    return True


def _create(db: sqlite3.Connection) -> None:
    """The tables, in the transaction the caller opened (another process may race us)."""
    for statement in _SCHEMA.split(";"):
        if statement.strip():
            db.execute(statement)
    for statement in _APPEND_VIEW:
        db.execute(statement)
    db.execute("INSERT OR IGNORE INTO totals (id, pending_bytes, commits) VALUES (1, 0, 0)")
    # A new sequence starts at the current time in microseconds: ids only ever grow, even
    # across a spool deleted and created again, so old acknowledged positions stay behind.
    db.execute(
        "INSERT INTO sqlite_sequence (name, seq) SELECT 'records', ? "
        "WHERE NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'records')",
        (time.time_ns() // 1000,),
    )


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return stat.st_dev, stat.st_ino


def describe(exc: BaseException) -> str:
    """A sentence for a storage failure: what an operator can act on, no path or secret."""
    if isinstance(exc, sqlite3.Error):
        name = getattr(exc, "sqlite_errorname", "") or type(exc).__name__
        if name == "SQLITE_FULL":
            return "the disk holding the spool is full"
        if name.startswith(("SQLITE_READONLY", "SQLITE_CANTOPEN", "SQLITE_PERM")):
            return "the spool database cannot be written"
        if name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")):
            return "the spool database stayed locked by another process"
        return f"the spool database cannot be written ({name})"
    if isinstance(exc, TimeoutError):
        return "the spool database stayed locked by another process"
    if isinstance(exc, OSError):
        if exc.errno == errno.ENOSPC:
            return "the disk holding the spool is full"
        if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            return "the spool directory is not writable"
        return f"the spool cannot be written ({errno.errorcode.get(exc.errno or 0, 'error')})"
    return f"the spool cannot be written ({type(exc).__name__})"
