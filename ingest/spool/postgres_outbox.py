"""The shared engine's outbox: tables ``mailpulse_outbox`` and ``mailpulse_consumers``.

The same rows, states and promises as the embedded outbox (:mod:`ingest.spool.sqlite_outbox`),
in the PostgreSQL database every receiver shares, so an action recorded on one host is sent
by whichever host dispatches. Each write is one transaction that counts as committed only once
PostgreSQL says so; reads use a connection of their own, so the dashboard's counts never wait
behind the dispatcher's writes.

Several dispatchers may take rows at once (one per host, or a new one starting while the old
one still finishes): ``take_due`` locks the rows it picks ``FOR UPDATE SKIP LOCKED``, so a row
another dispatcher is taking is passed over instead of being taken twice or waited for.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager

import psycopg

from ingest.errors import SpoolUnavailable
from ingest.spool.outbox import ActionSummary, NewAction, OutboxRow, Outcome
from ingest.spool.pg import PgConnection, describe

log = logging.getLogger(__name__)

#: The tailer's name in ``mailpulse_consumers``: the spool keeps records until it is past them.
CONSUMER = "actions"
_COLUMNS = (
    "id, action, event_id, webhook_id, event, state, attempts, created_at, received_at, "
    "next_at, finished_at, last_status, last_detail"
)
_STORAGE_ERRORS = (psycopg.Error, OSError)

# ``mailpulse_consumers`` is also created by the spool (ingest.spool.postgres) with this very
# definition: whichever opens the database first creates it, and neither depends on the other.
SCHEMA = """
CREATE TABLE IF NOT EXISTS mailpulse_outbox (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    action TEXT NOT NULL,
    event_id TEXT NOT NULL,
    webhook_id TEXT NOT NULL,
    event BYTEA NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    created_at DOUBLE PRECISION NOT NULL,
    received_at DOUBLE PRECISION NOT NULL,
    next_at DOUBLE PRECISION NOT NULL,
    finished_at DOUBLE PRECISION,
    last_status INTEGER,
    last_detail TEXT,
    UNIQUE (action, event_id)
);
CREATE INDEX IF NOT EXISTS mailpulse_outbox_due ON mailpulse_outbox (state, action, next_at);
CREATE TABLE IF NOT EXISTS mailpulse_consumers (
    name TEXT PRIMARY KEY,
    position BIGINT NOT NULL
);
"""

_TAKE = (
    "UPDATE mailpulse_outbox SET state = 'sending', attempts = attempts + 1, next_at = %s "
    "WHERE id IN (SELECT id FROM mailpulse_outbox WHERE state = 'pending' AND action = %s "
    "AND next_at <= %s ORDER BY next_at, id LIMIT %s FOR UPDATE SKIP LOCKED) "
    f"RETURNING {_COLUMNS}"
)
_SUMMARY = (
    "SELECT action, count(*) FILTER (WHERE state = 'pending'), "
    "count(*) FILTER (WHERE state = 'sending'), "
    "count(*) FILTER (WHERE state = 'pending' AND attempts > 0), "
    "count(*) FILTER (WHERE state = 'dead'), "
    "min(created_at) FILTER (WHERE state IN ('pending', 'sending')) "
    # Delivered rows (a week of them) are left out: the summary is read every second.
    "FROM mailpulse_outbox WHERE state IN ('pending', 'sending', 'dead') GROUP BY action"
)


class PostgresOutbox:
    """The shared :class:`~ingest.spool.outbox.Outbox`, safe to share between threads."""

    def __init__(self, url: str, *, retry_after: int = 30) -> None:
        self.retry_after = retry_after
        self._writer = PgConnection(url, SCHEMA)
        self._reader = PgConnection(url, SCHEMA)
        self._write_lock = threading.Lock()
        self._read_lock = threading.Lock()

    # -- the tailer's side

    def position(self) -> int | None:
        """The spool position matched through, or None before the tailer ever ran."""
        with self._reading() as db:
            found = db.execute(
                "SELECT position FROM mailpulse_consumers WHERE name = %s", (CONSUMER,)
            ).fetchone()
        return int(found[0]) if found else None  # type: ignore[call-overload]

    def enqueue(self, actions: Iterable[NewAction], position: int, now: float) -> int:
        """Record ``actions`` and move the tailer's position, in one transaction."""
        rows = [
            (a.action, a.event_id, a.webhook_id, a.event, now, a.received_at, now) for a in actions
        ]
        added = 0
        with self._writing("enqueue") as db:
            if rows:
                with db.cursor() as cursor:
                    # rowcount sums the executions: a row skipped as a conflict counts 0.
                    cursor.executemany(
                        "INSERT INTO mailpulse_outbox (action, event_id, webhook_id, event, "
                        "state, created_at, received_at, next_at) "
                        "VALUES (%s, %s, %s, %s, 'pending', %s, %s, %s) "
                        "ON CONFLICT (action, event_id) DO NOTHING",
                        rows,
                    )
                    added = max(0, cursor.rowcount)
            db.execute(
                "INSERT INTO mailpulse_consumers (name, position) VALUES (%s, %s) "
                "ON CONFLICT (name) DO UPDATE "
                "SET position = GREATEST(mailpulse_consumers.position, excluded.position)",
                (CONSUMER, position),
            )
        return added

    def release(self) -> None:
        """Let the spool forget records the tailer has not matched (no actions configured)."""
        with self._writing("release") as db:
            db.execute("DELETE FROM mailpulse_consumers WHERE name = %s", (CONSUMER,))

    # -- the dispatcher's side

    def take_due(self, free: Mapping[str, int], now: float, lease_until: float) -> list[OutboxRow]:
        """Mark up to ``free[action]`` due rows of each action as being sent; a row another
        dispatcher is taking at the same moment is skipped, never taken twice."""
        taken: list[OutboxRow] = []
        wanted = {action: slots for action, slots in free.items() if slots > 0}
        if not wanted:
            return taken
        with self._writing("take") as db:
            for action, slots in wanted.items():
                cursor = db.execute(_TAKE, (lease_until, action, now, slots))
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
        with self._writing("finish") as db, db.cursor() as cursor:
            cursor.executemany(
                "UPDATE mailpulse_outbox SET state = %s, next_at = %s, finished_at = %s, "
                "last_status = %s, last_detail = %s WHERE id = %s AND state = 'sending'",
                rows,
            )

    def reset_in_flight(self, now: float) -> int:
        """Make every row left ``sending`` (by a dispatcher that died) due now."""
        with self._writing("recover") as db:
            cursor = db.execute(
                "UPDATE mailpulse_outbox SET state = 'pending', next_at = %s "
                "WHERE state = 'sending'",
                (now,),
            )
            return cursor.rowcount

    def next_due(self, actions: Iterable[str]) -> float | None:
        """The earliest due time among pending rows of ``actions``."""
        wanted = list(actions)
        if not wanted:
            return None
        with self._reading() as db:
            found = db.execute(
                "SELECT min(next_at) FROM mailpulse_outbox WHERE state = 'pending' "
                "AND action = ANY(%s::text[])",
                (wanted,),
            ).fetchone()
        return float(found[0]) if found and found[0] is not None else None  # type: ignore[arg-type]

    # -- operators

    def rows(self, states: Iterable[str], limit: int) -> list[OutboxRow]:
        """Rows in ``states``, newest first."""
        with self._reading() as db:
            cursor = db.execute(
                f"SELECT {_COLUMNS} FROM mailpulse_outbox WHERE state = ANY(%s::text[]) "
                "ORDER BY id DESC LIMIT %s",
                (list(states), limit),
            )
            return [_row(values) for values in cursor.fetchall()]

    def retry(self, ids: Iterable[int] | None, now: float) -> int:
        """Dead rows (the given ones, or all) become pending and due now."""
        with self._writing("retry") as db:
            if ids is None:
                cursor = db.execute(
                    "UPDATE mailpulse_outbox SET state = 'pending', next_at = %s, "
                    "created_at = %s WHERE state = 'dead'",
                    (now, now),
                )
            else:
                cursor = db.execute(
                    "UPDATE mailpulse_outbox SET state = 'pending', next_at = %s, "
                    "created_at = %s WHERE id = ANY(%s::bigint[]) AND state = 'dead'",
                    (now, now, list(ids)),
                )
            return cursor.rowcount

    def summary(self) -> dict[str, ActionSummary]:
        """Counts per action by state, and the oldest action still waiting."""
        with self._reading() as db:
            found = db.execute(_SUMMARY).fetchall()
        return {
            str(action): ActionSummary(
                pending=int(pending),  # type: ignore[call-overload]
                sending=int(sending),  # type: ignore[call-overload]
                failing=int(failing),  # type: ignore[call-overload]
                dead=int(dead),  # type: ignore[call-overload]
                oldest_pending_at=None if oldest is None else float(oldest),  # type: ignore[arg-type]
            )
            for action, pending, sending, failing, dead, oldest in found
        }

    def prune(self, before: float) -> int:
        """Forget delivered rows finished before ``before``."""
        with self._writing("prune") as db:
            cursor = db.execute(
                "DELETE FROM mailpulse_outbox WHERE state = 'delivered' AND finished_at < %s",
                (before,),
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
    def _writing(self, what: str) -> Iterator[psycopg.Connection[tuple[object, ...]]]:
        """One transaction on the writer; failures become SpoolUnavailable (the connection
        is dropped, so the next write starts on a fresh one)."""
        with self._write_lock:
            try:
                with self._writer.transaction() as db:
                    yield db
            except _STORAGE_ERRORS as exc:
                self._writer.reset()  # an OSError while connecting leaves nothing to reuse
                raise self._unavailable(what, exc) from exc

    @contextmanager
    def _reading(self) -> Iterator[psycopg.Connection[tuple[object, ...]]]:
        with self._read_lock:
            try:
                yield self._reader.get()
            except _STORAGE_ERRORS as exc:
                self._reader.reset()
                raise self._unavailable("read", exc) from exc

    def _unavailable(self, what: str, exc: BaseException) -> SpoolUnavailable:
        # describe() names the failure without the URL: it may carry the database password.
        reason = describe(exc)
        log.error("outbox %s failed", what, extra={"reason": reason})
        return SpoolUnavailable(reason, retry_after=self.retry_after)


def _row(values: tuple[object, ...]) -> OutboxRow:
    return OutboxRow(*values)  # type: ignore[arg-type]
