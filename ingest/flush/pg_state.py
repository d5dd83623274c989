"""The flusher's bookkeeping in the shared PostgreSQL database (``[spool] engine = "postgres"``).

The same three tables as :mod:`ingest.flush.state`, shared by every receiver on every host:

* ``mailpulse_seen``: event ids already stored, kept for the dedup window, so an ESP retry
  that lands on another host is a duplicate, not a second row;
* ``mailpulse_journal``: lake files a batch is writing (``added``) or replacing (``removed``);
* ``mailpulse_meta``: the last committed batch, the spool position flushed, running counts.

A batch is committed by one PostgreSQL transaction, so exactly-once works as with SQLite:
recovery deletes the files of an uncommitted batch (its spool records are claimed again) and
finishes a committed one.

Journal paths are stored as given: absolute paths in the shared lake directory. This assumes
every host mounts the shared lake (``[lake] url``) at the same path, so that the host taking
over after a dead leader finds that leader's files under the names it journaled.

The leader lock (:mod:`ingest.flush.leader`) is a session-level advisory lock taken on this
object's own connection, and that connection is never reopened: a lost session is a lost
lead, and every later call raises :class:`~ingest.errors.LakeError`. So a leader cut off
from the database (while another host has taken over) can no longer begin or commit a
batch. If it loses the session while writing files, its commit fails before it reaches the
database and it deletes the files it wrote, which the new leader's recovery may have missed;
if the failure comes at ``COMMIT`` itself, the session was alive after the files were
complete, so whoever recovers next finds them through the journal.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg

from ingest.errors import LakeError
from ingest.flush.state import Commit, journal_uris, remove_journaled
from ingest.spool.pg import CONNECT_TIMEOUT_SECONDS, FLUSHER_LOCK, SCHEMA_LOCK, describe
from mailpulse.storage import LakeStore

log = logging.getLogger(__name__)

# Event ids compare bytewise ("C"): the dedup index needs equality, not a language's order.
SCHEMA = """
CREATE TABLE IF NOT EXISTS mailpulse_seen (
    event_id TEXT COLLATE "C" PRIMARY KEY, seen_at BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS mailpulse_journal (
    batch BIGINT PRIMARY KEY, phase TEXT NOT NULL, added TEXT NOT NULL, removed TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS mailpulse_meta (key TEXT PRIMARY KEY, value BIGINT NOT NULL);
"""

# The server drops the session of a host that vanished (power off, network gone) after about
# idle + interval * count seconds, which frees the lead for another host; the operating
# system's default would hold it for hours. Ignored on a Unix socket; needs PostgreSQL 12+.
_SESSION_SETTINGS = """
SET tcp_keepalives_idle = 10; SET tcp_keepalives_interval = 5; SET tcp_keepalives_count = 3;
SET tcp_user_timeout = 30000;
"""
# The same on this side (libpq parameters), so a leader cut off from the database notices.
_CLIENT_KEEPALIVES = {
    "keepalives": 1,
    "keepalives_idle": 10,
    "keepalives_interval": 5,
    "keepalives_count": 3,
}


class PostgresFlusherState:
    """Open (and create) the flusher's tables in the database at ``url``.

    Same public methods and meaning as :class:`ingest.flush.state.FlusherState`. Every
    failure raises :class:`~ingest.errors.LakeError` with a sentence that never holds the URL.
    """

    def __init__(self, url: str, store: LakeStore) -> None:
        self.store = store  # the lake whose files the journal names
        try:
            conninfo = psycopg.conninfo.make_conninfo(
                url, connect_timeout=CONNECT_TIMEOUT_SECONDS, **_CLIENT_KEEPALIVES
            )
            self.db: psycopg.Connection[tuple[Any, ...]] = psycopg.connect(
                conninfo, autocommit=True
            )
        except psycopg.Error as exc:
            # Not chained: a connection error may quote the connection string.
            raise LakeError(f"cannot open the flusher state: {describe(exc)}") from None
        self._writing: dict[int, list[str]] = {}  # files of the batches begun here
        try:
            self._prepare()
        except BaseException:
            self.db.close()
            raise

    def _prepare(self) -> None:
        with self._failing("open the flusher state"):
            self.db.execute(_SESSION_SETTINGS)
            exists = self.db.execute("SELECT to_regclass('mailpulse_meta') IS NOT NULL")
            if not self._one(exists):
                with self.db.transaction():  # receivers starting together: one creates
                    self.db.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK,))
                    self.db.execute(SCHEMA)

    def close(self) -> None:
        """Close the connection (which also releases the lead, if held)."""
        self.db.close()

    # -- the lead (see ingest.flush.leader)

    def try_lead(self) -> bool:
        """Take the flusher lead for this session if no other session holds it."""
        with self._failing("take the flusher lead"):
            taken = self.db.execute("SELECT pg_try_advisory_lock(%s)", (FLUSHER_LOCK,))
            return bool(self._one(taken))

    def release_lead(self) -> None:
        """Give the lead back (closing the connection would too)."""
        with self._failing("release the flusher lead"):
            self.db.execute("SELECT pg_advisory_unlock(%s)", (FLUSHER_LOCK,))

    # -- reading

    def spool_position(self) -> int:
        """The spool position every committed batch together covers (0 before any)."""
        return self.meta("spool_position")

    def last_batch(self) -> int:
        """The number of the last committed batch (0 before any)."""
        return self.meta("last_batch")

    def meta(self, key: str) -> int:
        """A counter from ``mailpulse_meta`` (0 when unset)."""
        with self._failing("read the flusher state"):
            row = self.db.execute(
                "SELECT value FROM mailpulse_meta WHERE key = %s", (key,)
            ).fetchone()
        return int(row[0]) if row else 0

    def counters(self, prefix: str) -> dict[str, int]:
        """Every ``mailpulse_meta`` counter whose key starts with ``prefix``."""
        with self._failing("read the flusher state"):
            rows = self.db.execute(
                "SELECT key, value FROM mailpulse_meta WHERE starts_with(key, %s)", (prefix,)
            ).fetchall()
        return {key[len(prefix) :]: int(value) for key, value in rows}

    def already_seen(self, event_ids: Iterable[str]) -> set[str]:
        """The subset of ``event_ids`` stored within the dedup window (by any host)."""
        with self._failing("read the dedup index"):
            rows = self.db.execute(
                "SELECT s.event_id FROM mailpulse_seen s "
                "JOIN unnest(%s::text[]) AS wanted(id) ON s.event_id = wanted.id",
                (list(event_ids),),
            ).fetchall()
        return {row[0] for row in rows}

    # -- writing

    def begin(self, batch: int, added: Sequence[str], removed: Sequence[str] = ()) -> None:
        """Record the files a batch is about to write, before any of them exists."""
        with self._failing("journal a batch"):
            self.db.execute(
                "INSERT INTO mailpulse_journal (batch, phase, added, removed) "
                "VALUES (%s, 'writing', %s, %s)",
                (batch, journal_uris(self.store, added), journal_uris(self.store, removed)),
            )
        self._writing[batch] = list(added)

    def commit(self, commit: Commit) -> None:
        """Apply a batch atomically: spool position, seen ids, counters, journal phase."""
        added = self._writing.pop(commit.batch, [])
        reached_commit = False
        try:
            with self.db.transaction():
                self._apply(commit)
                reached_commit = True  # only COMMIT itself is left
        except psycopg.Error as exc:
            if not reached_commit:
                # Certainly not committed: the files are garbage, and if this session was
                # lost a new leader's recovery may already have passed them by.
                self.store.remove(added)
            raise LakeError(f"cannot commit batch {commit.batch}: {describe(exc)}") from exc

    def _apply(self, commit: Commit) -> None:
        db = self.db
        if commit.spool_position is not None:
            db.execute(
                "INSERT INTO mailpulse_meta (key, value) VALUES ('spool_position', %s) "
                "ON CONFLICT (key) DO UPDATE "
                "SET value = GREATEST(mailpulse_meta.value, excluded.value)",
                (commit.spool_position,),
            )
        # One statement over an array: the ids travel in one message, not one each.
        db.execute(
            "INSERT INTO mailpulse_seen (event_id, seen_at) SELECT unnest(%s::text[]), %s "
            "ON CONFLICT DO NOTHING",
            (list(commit.seen_ids), commit.seen_at),
        )
        if commit.counters:
            db.execute(
                "INSERT INTO mailpulse_meta (key, value) "
                "SELECT * FROM unnest(%s::text[], %s::bigint[]) "
                "ON CONFLICT (key) DO UPDATE SET value = mailpulse_meta.value + excluded.value",
                (list(commit.counters), list(commit.counters.values())),
            )
        db.execute(
            "INSERT INTO mailpulse_meta (key, value) VALUES ('last_batch', %s) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (commit.batch,),
        )
        db.execute(
            "UPDATE mailpulse_journal SET phase = 'committed' WHERE batch = %s", (commit.batch,)
        )

    def finish(self, batch: int) -> None:
        """After a commit: delete the files the batch replaced, then forget the entry."""
        with self._failing("finish a batch"):
            row = self.db.execute(
                "SELECT removed FROM mailpulse_journal WHERE batch = %s", (batch,)
            ).fetchone()
            if row:
                remove_journaled(self.store, row[0])
            self.db.execute("DELETE FROM mailpulse_journal WHERE batch = %s", (batch,))

    def recover(self) -> int:
        """Undo uncommitted batches (a dead leader's too) and finish committed ones;
        returns entries handled."""
        with self._failing("recover the journal"):
            entries = self.db.execute(
                "SELECT batch, phase, added FROM mailpulse_journal ORDER BY batch"
            ).fetchall()
            for batch, phase, added in entries:
                if phase == "writing":
                    log.warning("removing files of an unfinished flush", extra={"batch": batch})
                    remove_journaled(self.store, added)
                    self.db.execute("DELETE FROM mailpulse_journal WHERE batch = %s", (batch,))
                else:
                    self.finish(batch)
        return len(entries)

    def prune_seen(self, older_than: int) -> int:
        """Forget ids first seen before ``older_than`` (epoch seconds); returns how many."""
        with self._failing("prune the dedup index"):
            cursor = self.db.execute("DELETE FROM mailpulse_seen WHERE seen_at < %s", (older_than,))
        return cursor.rowcount

    def set_meta(self, key: str, value: int) -> None:
        """Set one ``mailpulse_meta`` value."""
        with self._failing("write the flusher state"):
            self.db.execute(
                "INSERT INTO mailpulse_meta (key, value) VALUES (%s, %s) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (key, value),
            )

    # -- failures

    @contextmanager
    def _failing(self, action: str) -> Iterator[None]:
        """Turn a database failure into a :class:`LakeError` that names no URL."""
        try:
            yield
        except psycopg.Error as exc:
            raise LakeError(f"cannot {action}: {describe(exc)}") from exc

    @staticmethod
    def _one(cursor: psycopg.Cursor[tuple[Any, ...]]) -> Any:
        row = cursor.fetchone()
        return row[0] if row else None
