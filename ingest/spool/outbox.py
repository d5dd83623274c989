"""The outbox: actions recorded durably before they are attempted, in the spool's own store.

The actions tailer reads the spool past its own position (the spool keeps every record until
both the flusher and the tailer are past it), matches the events against the rules and, in
one transaction, records the actions and moves its position: a crash before the commit
repeats the matching, after it nothing is matched twice. An action is unique per event and
action name, so an ESP's retry of an event already acted on adds nothing.

Every row goes ``pending`` -> ``sending`` (taken by the dispatcher, its attempt counted and
made durable before the request leaves) -> ``delivered``, back to ``pending`` with a later
due time, or ``dead`` (a final refusal, or the give-up horizon passed). A crash while
``sending`` leaves the row to be taken again with the same idempotency id: at most the
attempt in flight repeats.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Protocol

from mailpulse.config import Config

#: Row states; ``failing`` in summaries is a pending row that has been attempted before.
STATES = ("pending", "sending", "delivered", "dead")


@dataclass(frozen=True, slots=True)
class NewAction:
    """An action the rules matched, not yet recorded."""

    action: str
    event_id: str
    webhook_id: str  # stable per event and action: every attempt carries it
    event: bytes  # the normalized event as JSON
    received_at: float  # when the receiver accepted the request carrying the event


@dataclass(frozen=True, slots=True)
class OutboxRow:
    """One recorded action and where it stands."""

    id: int
    action: str
    event_id: str
    webhook_id: str
    event: bytes
    state: str
    attempts: int
    created_at: float
    received_at: float
    next_at: float  # when it is due (pending) or its lease ends (sending)
    finished_at: float | None
    last_status: int | None
    last_detail: str | None


@dataclass(frozen=True, slots=True)
class Outcome:
    """What became of one attempt, written back by the dispatcher."""

    id: int
    state: str  # delivered, pending (retry at next_at) or dead
    next_at: float
    status: int | None
    detail: str


@dataclass(frozen=True, slots=True)
class ActionSummary:
    """The rows of one action still to deliver or dead, for the status file, metrics and the
    dashboard (delivered ones are counted by the dispatcher's outcome counters)."""

    pending: int = 0
    sending: int = 0
    failing: int = 0  # pending rows that failed at least once
    dead: int = 0
    oldest_pending_at: float | None = None  # created_at of the oldest pending or sending row


class Outbox(Protocol):
    """Durable actions; every method is safe to call from threads.

    Storage failures raise :class:`ingest.errors.SpoolUnavailable`.
    """

    def position(self) -> int | None:
        """The spool position the tailer has matched through; None before it ever ran."""

    def enqueue(self, actions: Iterable[NewAction], position: int, now: float) -> int:
        """Record ``actions`` (an action already recorded for the event is skipped) and move
        the tailer to ``position``, in one transaction; the number of new rows."""

    def release(self) -> None:
        """Stop holding spool records for the tailer (no action is configured any more)."""

    def take_due(self, free: Mapping[str, int], now: float, lease_until: float) -> list[OutboxRow]:
        """Mark at most ``free[action]`` due rows of each action ``sending`` until
        ``lease_until``, counting their attempt, and return them (oldest due first)."""

    def finish(self, outcomes: Iterable[Outcome], now: float) -> None:
        """Write back what became of attempts, in one transaction."""

    def reset_in_flight(self, now: float) -> int:
        """Make every ``sending`` row due now (a dispatcher starting after a crash)."""

    def next_due(self, actions: Iterable[str]) -> float | None:
        """The earliest due time of a pending row of ``actions``, or None."""

    def rows(self, states: Iterable[str], limit: int) -> list[OutboxRow]:
        """Rows in ``states``, newest first."""

    def retry(self, ids: Iterable[int] | None, now: float) -> int:
        """Make the given dead rows (every dead row for None) pending and due now."""

    def summary(self) -> dict[str, ActionSummary]:
        """Counts per action name."""

    def prune(self, before: float) -> int:
        """Forget delivered rows finished before ``before``; dead rows are kept."""

    def close(self) -> None:
        """Release the connections."""


def open_outbox(config: Config) -> Outbox:
    """The outbox of ``config``'s spool engine, in the spool's own database: the embedded
    file, or the PostgreSQL database every receiver shares (``[spool] engine = "postgres"``)."""
    retry_after = config.receiver.retry_after_seconds
    if config.spool.engine == "postgres" and config.spool.url is not None:
        from ingest.spool.postgres_outbox import PostgresOutbox

        return PostgresOutbox(config.spool.url.reveal(), retry_after=retry_after)
    from ingest.spool.sqlite_outbox import SqliteOutbox

    return SqliteOutbox(config.spool_dir / "spool.sqlite", retry_after=retry_after)
