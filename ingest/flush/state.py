"""The flusher's bookkeeping, in one SQLite database (``state/flusher.sqlite``).

* ``seen``: event ids already stored, kept for the dedup window;
* ``journal``: lake files a batch is writing (``added``) or replacing (``removed``);
* ``meta``: the last committed batch number, the spool position flushed, running counts.

A batch is committed by one SQLite transaction (``synchronous=FULL``) that moves the spool
position, records the new ids and marks the journal entry committed. Recovery after a crash
therefore knows exactly which files on disk belong to an uncommitted batch (delete them: the
batch will be claimed again from the spool) and which old files a committed batch replaced
(delete them).
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import orjson

from ingest.errors import LakeError
from mailpulse.storage import LakeStore

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS seen (event_id TEXT PRIMARY KEY, seen_at INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS journal (
    batch INTEGER PRIMARY KEY, phase TEXT NOT NULL, added TEXT NOT NULL, removed TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""


class Numbered(Protocol):
    """A flusher state of either engine, as far as batch numbers go."""

    def last_batch(self) -> int:
        """The number of the last committed batch (0 before any)."""
        ...


@dataclass
class Commit:
    """Everything one batch changes in the state, applied in one transaction."""

    batch: int
    spool_position: int | None  # the spool claim the batch holds, if it holds one
    seen_ids: Sequence[str]
    seen_at: int  # epoch seconds
    counters: dict[str, int]


class FlusherState:
    """Open (and create) the state database of a data directory."""

    def __init__(self, state_dir: Path, store: LakeStore) -> None:
        self.store = store  # the lake whose files the journal names
        state_dir.mkdir(parents=True, exist_ok=True)
        try:
            self.db = sqlite3.connect(state_dir / "flusher.sqlite", isolation_level=None)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=FULL")
            self.db.executescript(_SCHEMA)
        except sqlite3.Error as exc:
            raise LakeError(f"cannot open the flusher state in {state_dir}: {exc}") from exc

    def close(self) -> None:
        """Close the database."""
        self.db.close()

    # -- reading

    def spool_position(self) -> int:
        """The spool position every committed batch together covers (0 before any)."""
        return self.meta("spool_position")

    def last_batch(self) -> int:
        """The number of the last committed batch (0 before any)."""
        return self.meta("last_batch")

    def meta(self, key: str) -> int:
        """A counter from ``meta`` (0 when unset)."""
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return int(row[0]) if row else 0

    def counters(self, prefix: str) -> dict[str, int]:
        """Every ``meta`` counter whose key starts with ``prefix``."""
        rows = self.db.execute(
            "SELECT key, value FROM meta WHERE key >= ? AND key < ?", (prefix, prefix + "\uffff")
        )
        return {key[len(prefix) :]: int(value) for key, value in rows}

    def already_seen(self, event_ids: Iterable[str]) -> set[str]:
        """The subset of ``event_ids`` stored within the dedup window."""
        payload = orjson.dumps(list(event_ids))
        rows = self.db.execute(
            "SELECT event_id FROM seen WHERE event_id IN (SELECT value FROM json_each(?))",
            (payload.decode(),),
        )
        return {row[0] for row in rows}

    # -- writing

    def begin(self, batch: int, added: Sequence[str], removed: Sequence[str] = ()) -> None:
        """Record the files a batch is about to write, before any of them exists."""
        self.db.execute(
            "INSERT INTO journal (batch, phase, added, removed) VALUES (?, 'writing', ?, ?)",
            (batch, journal_uris(self.store, added), journal_uris(self.store, removed)),
        )

    def commit(self, commit: Commit) -> None:
        """Apply a batch atomically: spool position, seen ids, counters, journal phase."""
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        try:
            if commit.spool_position is not None:
                db.execute(
                    "INSERT INTO meta (key, value) VALUES ('spool_position', ?) "
                    "ON CONFLICT (key) DO UPDATE SET value = max(value, excluded.value)",
                    (commit.spool_position,),
                )
            # One statement over a JSON array binds the ids in C, not one Python call each.
            db.execute(
                "INSERT OR IGNORE INTO seen (event_id, seen_at) SELECT value, ? FROM json_each(?)",
                (commit.seen_at, orjson.dumps(list(commit.seen_ids)).decode()),
            )
            for key, delta in commit.counters.items():
                db.execute(
                    "INSERT INTO meta (key, value) VALUES (?, ?) "
                    "ON CONFLICT (key) DO UPDATE SET value = value + excluded.value",
                    (key, delta),
                )
            db.execute(
                "INSERT INTO meta (key, value) VALUES ('last_batch', ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (commit.batch,),
            )
            db.execute("UPDATE journal SET phase = 'committed' WHERE batch = ?", (commit.batch,))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def finish(self, batch: int) -> None:
        """After a commit: delete the files the batch replaced, then forget the entry."""
        row = self.db.execute("SELECT removed FROM journal WHERE batch = ?", (batch,)).fetchone()
        if row:
            remove_journaled(self.store, row[0])
        self.db.execute("DELETE FROM journal WHERE batch = ?", (batch,))

    def recover(self) -> int:
        """Undo uncommitted batches and finish committed ones; returns entries handled."""
        entries = self.db.execute(
            "SELECT batch, phase, added FROM journal ORDER BY batch"
        ).fetchall()
        for batch, phase, added in entries:
            if phase == "writing":
                log.warning("removing files of an unfinished flush", extra={"batch": batch})
                remove_journaled(self.store, added)
                self.db.execute("DELETE FROM journal WHERE batch = ?", (batch,))
            else:
                self.finish(batch)
        return len(entries)

    def prune_seen(self, older_than: int) -> int:
        """Forget ids first seen before ``older_than`` (epoch seconds); returns how many."""
        cursor = self.db.execute("DELETE FROM seen WHERE seen_at < ?", (older_than,))
        return cursor.rowcount

    def set_meta(self, key: str, value: int) -> None:
        """Set one ``meta`` value."""
        self.db.execute(
            "INSERT INTO meta (key, value) VALUES (?, ?) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (key, value),
        )


def next_batch(state: Numbered) -> int:
    """The number of the next batch: one more than the last, and never below the clock's
    milliseconds, so a state started afresh (a new host, a deleted state directory) still
    numbers its files above every file already in the lake. Readers rely on it: a merged
    file hides the files of older batches in its partition (:func:`mailpulse.lake.visible`).
    """
    return max(state.last_batch() + 1, int(time.time() * 1000))


def journal_uris(store: LakeStore, paths: Sequence[str]) -> str:
    """Paths of a batch as the journal keeps them: whole URIs, so a lake moved to another
    ``url`` since is never touched by recovery."""
    return orjson.dumps([store.uri(path) for path in paths]).decode()


def remove_journaled(store: LakeStore, uris: str) -> None:
    """Delete the files of a journal entry (a JSON list of URIs) that are in ``store``."""
    elsewhere = store.remove_uris(orjson.loads(uris))
    if elsewhere:
        log.warning(
            "the flusher journal names files outside the configured lake; left alone",
            extra={"files": len(elsewhere)},
        )
