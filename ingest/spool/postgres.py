"""The shared spool engine: PostgreSQL, for several receivers on several hosts.

A request is acknowledged only once its transaction has committed, so its durability is
PostgreSQL's own: the primary's WAL, and whatever replication the team runs (docs/deploy.md,
"Several receivers"). Concurrent requests of one process share one transaction (group
commit, :mod:`ingest.spool.group`).

Positions are record ids from a sequence. Ids are handed out when a row is inserted, not
when its transaction commits, so two receivers committing at once could make id 7 visible
after id 8 and a reader past 8 would never see 7. Appends therefore commit one at a time
under a transaction-scoped advisory lock taken before the first insert: ids become visible in
the order they were handed out, which is what ``claim(after=...)`` and ``acknowledge``
promise. A group commit holds the lock for one insert and one commit, however many requests
it carries.
"""

from __future__ import annotations

import logging
import threading

import psycopg

from ingest.spool.group import COMMIT_WAIT_SECONDS, GroupCommitSpool
from ingest.spool.pg import APPEND_LOCK, PgConnection, describe
from ingest.spool.queue import Claim
from ingest.spool.record import SpoolRecord

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS mailpulse_spool (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    header BYTEA NOT NULL,
    body BYTEA NOT NULL,
    size INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS mailpulse_spool_totals (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    pending_bytes BIGINT NOT NULL
);
INSERT INTO mailpulse_spool_totals (id, pending_bytes) VALUES (1, 0) ON CONFLICT DO NOTHING;
CREATE TABLE IF NOT EXISTS mailpulse_consumers (
    name TEXT PRIMARY KEY,
    position BIGINT NOT NULL
);
"""


class PostgresSpool(GroupCommitSpool):
    """The shared :class:`~ingest.spool.queue.Spool`, safe to share between threads."""

    storage_errors = (psycopg.Error, OSError)

    def __init__(self, url: str, *, max_bytes: int, retry_after: int = 30) -> None:
        super().__init__(max_bytes=max_bytes, retry_after=retry_after)
        self._writer = PgConnection(url, SCHEMA)
        self._reader = PgConnection(url, SCHEMA)
        self._read_lock = threading.Lock()

    def _insert(self, rows: list[tuple[bytes, bytes, int]], size: int) -> None:
        """One transaction: the rows and the running total, after earlier appends committed."""
        with self._writer.transaction() as db:
            db.execute("SELECT pg_advisory_xact_lock(%s)", (APPEND_LOCK,))
            with db.cursor() as cursor:
                cursor.executemany(
                    "INSERT INTO mailpulse_spool (header, body, size) VALUES (%s, %s, %s)", rows
                )
            db.execute(
                "UPDATE mailpulse_spool_totals SET pending_bytes = pending_bytes + %s", (size,)
            )
        self._usage += size

    # -- the flusher's side

    def claim(self, max_bytes: int, max_records: int, after: int = 0) -> Claim:
        """The oldest records past ``after``: about ``max_bytes``, ``max_records`` at most."""
        records: list[SpoolRecord] = []
        position = size = 0
        with self._read_lock:
            try:
                rows = self._reader.query(
                    "SELECT id, header, body, size FROM mailpulse_spool WHERE id > %s "
                    "ORDER BY id LIMIT %s",
                    (after, max(1, max_records)),
                )
            except self.storage_errors as exc:
                self._reader.reset()
                raise self._unavailable("claim", exc) from exc
        for row_id, header, body, row_size in rows:
            if records and size + int(row_size) > max_bytes:
                break
            records.append(SpoolRecord.decode(bytes(header), bytes(body)))
            position, size = int(row_id), size + int(row_size)
        return Claim(records=records, position=position, size=size)

    def acknowledge(self, position: int) -> None:
        """Delete every record at or before ``position``, but none the actions tailer has not
        matched yet."""
        with self._write_lock:
            try:
                with self._writer.transaction() as db:
                    held = db.execute("SELECT min(position) FROM mailpulse_consumers").fetchone()
                    if held and held[0] is not None:
                        position = min(position, int(held[0]))
                    freed = db.execute(
                        "WITH gone AS (DELETE FROM mailpulse_spool WHERE id <= %s RETURNING size) "
                        "SELECT coalesce(sum(size), 0) FROM gone",
                        (position,),
                    ).fetchone()
                    if freed and freed[0]:
                        db.execute(
                            "UPDATE mailpulse_spool_totals SET pending_bytes = pending_bytes - %s",
                            (freed[0],),
                        )
            except self.storage_errors as exc:
                raise self._unavailable("acknowledge", exc) from exc
        self._forget_usage()

    def pending_bytes(self) -> int:
        """Bytes appended by every receiver and not yet acknowledged."""
        with self._read_lock:
            try:
                rows = self._reader.query("SELECT pending_bytes FROM mailpulse_spool_totals")
            except self.storage_errors as exc:
                self._reader.reset()
                raise self._unavailable("read", exc) from exc
        return int(rows[0][0]) if rows else 0

    # -- health

    def check_writable(self) -> str | None:
        """None when the primary takes writes now, else the reason it would not."""
        if not self._write_lock.acquire(timeout=COMMIT_WAIT_SECONDS):
            return "the spool did not commit in time"
        try:
            # Through the writer's connection: the one an append would use must be alive.
            standby = self._writer.query("SELECT pg_is_in_recovery()")
            if standby and standby[0][0]:
                return "the spool database (PostgreSQL) is a standby: it takes no writes"
        except self.storage_errors as exc:
            self._writer.reset()
            return describe(exc)
        finally:
            self._write_lock.release()
        return self._quota_problem()

    def close(self) -> None:
        """Close this process's connections."""
        with self._write_lock:
            self._writer.close()
        with self._read_lock:
            self._reader.close()

    # -- failures

    def _failed(self, action: str, exc: BaseException, records: int = 0) -> str:
        if isinstance(exc, psycopg.Error):
            self._writer.reset()
        reason = describe(exc)
        log.error(f"spool {action} failed", extra={"reason": reason, "records": records})
        return reason
