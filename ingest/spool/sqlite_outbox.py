"""The embedded engine's outbox: tables ``outbox`` and ``consumers`` in the spool database.

Writes take the same writers' turn as the receiver's appends (:mod:`ingest.spool.connection`)
and commit with ``synchronous=NORMAL``, synced by the next append's commit (see
:class:`SqliteOutbox`): a recorded action survives a process crash as an acknowledged request
does, and a power cut loses none either, as the requests it came from are still spooled.
The dispatcher batches its writes (every row it takes in one transaction, every outcome it
collected in another), so acting on events adds a few commits a second, not two per action.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from ingest.errors import SpoolUnavailable
from ingest.spool.connection import Connection, describe
from ingest.spool.outbox import ActionSummary, NewAction, OutboxRow, Outcome

log = logging.getLogger(__name__)

#: The tailer's name in ``consumers``: the spool keeps records until it is past them.
CONSUMER = "actions"
_COLUMNS = (
    "id, action, event_id, webhook_id, event, state, attempts, created_at, received_at, "
    "next_at, finished_at, last_status, last_detail"
)


class SqliteOutbox:
    """The embedded :class:`~ingest.spool.outbox.Outbox`, safe to share between threads."""

    def __init__(self, path: Path, *, retry_after: int = 30) -> None:
        self.path = path
        self.retry_after = retry_after
        # NORMAL, not FULL: an outbox commit is not synced on its own, but the next commit of
        # an append (FULL, a few ms later under any traffic) syncs the log with everything
        # before it. A power cut in between loses only the last outbox changes, and no
        # action: an unrecorded action's request is still in the spool (the tailer's position
        # is lost with it, so it is matched again), a lost outcome is attempted once more with
        # the same webhook-id. A process crash loses nothing. Three fsyncs less per delivery
        # leave the disk to the receiver's appends.
        self._writer = Connection(path, synchronous="NORMAL")
        self._reader = Connection(path, synchronous="NORMAL")
        self._write_lock = threading.Lock()
        self._read_lock = threading.Lock()

    # -- the tailer's side

    def position(self) -> int | None:
        """The spool position matched through, or None before the tailer ever ran."""
        with self._reading() as db:
            row = db.execute("SELECT position FROM consumers WHERE name = ?", (CONSUMER,))
            found = row.fetchone()
        return int(found[0]) if found else None

    def enqueue(self, actions: Iterable[NewAction], position: int, now: float) -> int:
        """Record ``actions`` and move the tailer's position, in one transaction."""
        rows = [
            (a.action, a.event_id, a.webhook_id, a.event, now, a.received_at, now) for a in actions
        ]
        with self._writing("enqueue") as db:
            before = db.total_changes
            db.executemany(
                "INSERT OR IGNORE INTO outbox (action, event_id, webhook_id, event, state, "
                "created_at, received_at, next_at) VALUES (?, ?, ?, ?, 'pending', ?, ?, ?)",
                rows,
            )
            added = db.total_changes - before
            db.execute(
                "INSERT INTO consumers (name, position) VALUES (?, ?) ON CONFLICT (name) "
                "DO UPDATE SET position = max(position, excluded.position)",
                (CONSUMER, position),
            )
        return added

    def release(self) -> None:
        """Let the spool forget records the tailer has not matched (no actions configured)."""
        with self._writing("release") as db:
            db.execute("DELETE FROM consumers WHERE name = ?", (CONSUMER,))

    # -- the dispatcher's side

    def take_due(self, free: Mapping[str, int], now: float, lease_until: float) -> list[OutboxRow]:
        """Mark up to ``free[action]`` due rows of each action as being sent."""
        taken: list[OutboxRow] = []
        wanted = {action: slots for action, slots in free.items() if slots > 0}
        if not wanted:
            return taken
        with self._writing("take") as db:
            for action, slots in wanted.items():
                cursor = db.execute(
                    f"UPDATE outbox SET state = 'sending', attempts = attempts + 1, next_at = ? "
                    f"WHERE id IN (SELECT id FROM outbox WHERE state = 'pending' AND action = ? "
                    f"AND next_at <= ? ORDER BY next_at, id LIMIT ?) RETURNING {_COLUMNS}",
                    (lease_until, action, now, slots),
                )
                taken.extend(_row(values) for values in cursor.fetchall())
        taken.sort(key=lambda row: row.id)
        return taken

    def finish(self, outcomes: Iterable[Outcome], now: float) -> None:
        """Write back the outcomes of attempts in one transaction."""
        rows = [
            (o.state, o.next_at, now if o.state != "pending" else None, o.status, o.detail, o.id)
            for o in outcomes
        ]
        if not rows:
            return
        with self._writing("finish") as db:
            db.executemany(
                "UPDATE outbox SET state = ?, next_at = ?, finished_at = ?, last_status = ?, "
                "last_detail = ? WHERE id = ? AND state = 'sending'",
                rows,
            )

    def reset_in_flight(self, now: float) -> int:
        """Make every row left ``sending`` (by a dispatcher that died) due now."""
        with self._writing("recover") as db:
            cursor = db.execute(
                "UPDATE outbox SET state = 'pending', next_at = ? WHERE state = 'sending'", (now,)
            )
            return cursor.rowcount

    def next_due(self, actions: Iterable[str]) -> float | None:
        """The earliest due time among pending rows of ``actions``."""
        wanted = list(actions)
        if not wanted:
            return None
        marks = ", ".join("?" for _ in wanted)
        with self._reading() as db:
            found = db.execute(
                f"SELECT min(next_at) FROM outbox WHERE state = 'pending' AND action IN ({marks})",
                wanted,
            ).fetchone()
        return float(found[0]) if found and found[0] is not None else None

    # -- operators

    def rows(self, states: Iterable[str], limit: int) -> list[OutboxRow]:
        """Rows in ``states``, newest first."""
        wanted = list(states)
        marks = ", ".join("?" for _ in wanted)
        with self._reading() as db:
            cursor = db.execute(
                f"SELECT {_COLUMNS} FROM outbox WHERE state IN ({marks}) ORDER BY id DESC LIMIT ?",
                (*wanted, limit),
            )
            return [_row(values) for values in cursor.fetchall()]

    def retry(self, ids: Iterable[int] | None, now: float) -> int:
        """Dead rows (the given ones, or all) become pending and due now."""
        with self._writing("retry") as db:
            if ids is None:
                cursor = db.execute(
                    "UPDATE outbox SET state = 'pending', next_at = ?, created_at = ? "
                    "WHERE state = 'dead'",
                    (now, now),
                )
                return cursor.rowcount
            changed = 0
            for row_id in ids:
                cursor = db.execute(
                    "UPDATE outbox SET state = 'pending', next_at = ?, created_at = ? "
                    "WHERE id = ? AND state = 'dead'",
                    (now, now, row_id),
                )
                changed += cursor.rowcount
            return changed

    def summary(self) -> dict[str, ActionSummary]:
        """Counts per action by state, and the oldest action still waiting."""
        with self._reading() as db:
            cursor = db.execute(
                "SELECT action, "
                "sum(state = 'pending'), sum(state = 'sending'), "
                "sum(state = 'pending' AND attempts > 0), sum(state = 'dead'), "
                "min(CASE WHEN state IN ('pending', 'sending') THEN created_at END) FROM outbox "
                # Delivered rows (a week of them) are left out: this is read every second.
                "WHERE state IN ('pending', 'sending', 'dead') GROUP BY action"
            )
            return {
                action: ActionSummary(
                    pending=pending,
                    sending=sending,
                    failing=failing,
                    dead=dead,
                    oldest_pending_at=oldest,
                )
                for action, pending, sending, failing, dead, oldest in cursor
            }

    def prune(self, before: float) -> int:
        """Forget delivered rows finished before ``before``."""
        with self._writing("prune") as db:
            cursor = db.execute(
                "DELETE FROM outbox WHERE state = 'delivered' AND finished_at < ?", (before,)
            )
            return cursor.rowcount

    def close(self) -> None:
        """Close this process's connections."""
        with self._write_lock:
            self._writer.close()
        with self._read_lock:
            self._reader.close()

    # -- plumbing

    @contextmanager
    def _writing(self, what: str) -> Iterator[sqlite3.Connection]:
        """One write transaction under the writers' turn; failures become SpoolUnavailable."""
        with self._write_lock:
            try:
                with self._writer.turn() as db:
                    db.execute("BEGIN IMMEDIATE")
                    try:
                        yield db
                        db.execute("COMMIT")
                    except BaseException:
                        Connection.roll_back(db)
                        raise
            except (sqlite3.Error, OSError) as exc:
                raise self._unavailable(what, exc) from exc

    @contextmanager
    def _reading(self) -> Iterator[sqlite3.Connection]:
        with self._read_lock:
            try:
                yield self._reader.get()
            except (sqlite3.Error, OSError) as exc:
                raise self._unavailable("read", exc) from exc

    def _unavailable(self, what: str, exc: BaseException) -> SpoolUnavailable:
        reason = describe(exc)
        log.error("outbox %s failed", what, extra={"file": str(self.path), "reason": reason})
        return SpoolUnavailable(reason, retry_after=self.retry_after)


def _row(values: tuple[object, ...]) -> OutboxRow:
    return OutboxRow(*values)  # type: ignore[arg-type]
