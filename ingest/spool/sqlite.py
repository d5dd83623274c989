"""The embedded spool engine: one SQLite database, ``<data_dir>/spool/spool.sqlite``.

Promise 1 lives here: :meth:`SqliteSpool.append` returns only once the record is committed in
WAL mode with ``synchronous=FULL``, which syncs the log at every commit. Many threads of one
process share one commit (group commit, :mod:`ingest.spool.group`), made by one statement
(:meth:`~ingest.spool.connection.Connection.write_one`). Processes (gunicorn workers, the
flusher) take turns through SQLite's own write lock, waiting for it up to a busy timeout.

Record ids come from an ``AUTOINCREMENT`` sequence, so they only grow and are never reused;
a new database starts its sequence at the current time in microseconds, so a spool that was
deleted and created again never hands out a position the flusher already acknowledged.
The bytes waiting are kept in one row updated by the same transactions, so the quota and the
gauges read one number instead of adding up the queue.
"""

from __future__ import annotations

import errno
import functools
import logging
import os
import sqlite3
import threading
from pathlib import Path

from ingest.spool.connection import Connection, describe
from ingest.spool.group import COMMIT_WAIT_SECONDS, GroupCommitSpool
from ingest.spool.queue import Claim
from ingest.spool.record import SpoolRecord

log = logging.getLogger(__name__)

_MIN_FREE_BYTES = 256 * 1024  # below this, /readyz reports the disk full before appends fail


class SqliteSpool(GroupCommitSpool):
    """The embedded :class:`~ingest.spool.queue.Spool`, safe to share between threads."""

    storage_errors = (sqlite3.Error, OSError)
    # Three parameters a row: 256 rows stay under SQLite's oldest limit of 999 per statement.
    max_batch_rows = 256

    def __init__(self, path: Path, *, max_bytes: int, retry_after: int = 30) -> None:
        super().__init__(max_bytes=max_bytes, retry_after=retry_after)
        self.path = path
        self._appender = Connection(path, synchronous="FULL", busy_timeout=0)
        self._writer = Connection(path, synchronous="FULL")
        self._reader = Connection(path, synchronous="FULL")
        self._read_lock = threading.Lock()

    def _insert(self, rows: list[tuple[bytes, bytes, int]], size: int) -> None:
        """One statement: the rows, and (by the view's trigger) the bytes they bring."""
        parameters = [value for row in rows for value in row]
        self._appender.write_one(_append_statement(len(rows)), parameters)
        self._usage += size

    # -- the flusher's side

    def claim(self, max_bytes: int, max_records: int, after: int = 0) -> Claim:
        """The oldest records waiting past ``after``, about ``max_bytes`` and ``max_records``
        at most."""
        records: list[SpoolRecord] = []
        position = size = 0
        with self._read_lock:
            try:
                cursor = self._reader.get().execute(
                    "SELECT id, header, body, size FROM records WHERE id > ? ORDER BY id LIMIT ?",
                    (after, max(1, max_records)),
                )
                for row_id, header, body, row_size in cursor:
                    if records and size + row_size > max_bytes:
                        break
                    records.append(SpoolRecord.decode(header, body))
                    position, size = row_id, size + row_size
                cursor.close()
            except (sqlite3.Error, OSError) as exc:
                raise self._unavailable("claim", exc) from exc
        return Claim(records=records, position=position, size=size)

    def acknowledge(self, position: int) -> None:
        """Delete every record at or before ``position``; a position already acknowledged,
        or 0, changes nothing. Records the actions tailer has not matched yet stay (the
        ``consumers`` table holds its position, see :mod:`ingest.spool.outbox`)."""
        with self._write_lock:
            try:
                db = self._writer.get()
                held = db.execute("SELECT min(position) FROM consumers").fetchone()[0]
                if held is not None:
                    position = min(position, held)
                # A key lookup, not a read of the rows: most passes start by acknowledging a
                # position that already is, and need no write transaction for it.
                waiting = db.execute(
                    "SELECT 1 FROM records WHERE id <= ? LIMIT 1", (position,)
                ).fetchone()
                if waiting:  # ids only grow: nothing at or before it can appear later
                    self._delete_through(position)
                    self._forget_usage()  # room now: read it again
            except (sqlite3.Error, OSError) as exc:
                raise self._unavailable("acknowledge", exc) from exc

    def _delete_through(self, position: int) -> None:
        with self._writer.turn() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                cursor = db.execute("DELETE FROM records WHERE id <= ? RETURNING size", (position,))
                deleted = sum(row[0] for row in cursor)
                db.execute("UPDATE totals SET pending_bytes = pending_bytes - ?", (deleted,))
                db.execute("COMMIT")
            except BaseException:
                Connection.roll_back(db)
                raise

    def pending_bytes(self) -> int:
        """Bytes appended and not yet acknowledged, read from the database now."""
        with self._read_lock:
            try:
                row = self._reader.get().execute("SELECT pending_bytes FROM totals").fetchone()
            except (sqlite3.Error, OSError) as exc:
                raise self._unavailable("read", exc) from exc
        return int(row[0]) if row else 0

    # -- health

    def check_writable(self) -> str | None:
        """None when an append would be accepted now, else the reason it would not."""
        if not self._write_lock.acquire(timeout=COMMIT_WAIT_SECONDS):
            return "the spool did not commit in time"
        try:
            db = self._writer.get()
            db.execute("BEGIN IMMEDIATE")  # the write lock, as an append takes it
            db.execute("ROLLBACK")
            disk = os.statvfs(self.path.parent)
        except (sqlite3.Error, OSError) as exc:
            return describe(exc)
        finally:
            self._write_lock.release()
        if disk.f_bavail * disk.f_frsize < _MIN_FREE_BYTES:
            return describe(OSError(errno.ENOSPC, "no space left"))
        return self._quota_problem()

    def close(self) -> None:
        """Close this process's connections (they reopen if the spool is used again)."""
        with self._write_lock:
            self._appender.close()
            self._writer.close()
        with self._read_lock:
            self._reader.close()

    # -- failures

    def _failed(self, action: str, exc: BaseException, records: int = 0) -> str:
        """Log a storage failure with the file and the reason; return the reason."""
        reason = describe(exc)
        log.error(
            f"spool {action} failed",
            extra={"file": str(self.path), "reason": reason, "records": records},
        )
        return reason


@functools.lru_cache(maxsize=SqliteSpool.max_batch_rows)
def _append_statement(rows: int) -> str:
    """The INSERT of ``rows`` rows into the append view."""
    values = ", ".join(["(?, ?, ?)"] * rows)
    return f"INSERT INTO record_appends (header, body, size) VALUES {values}"
