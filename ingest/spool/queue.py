"""The spool's one interface: a durable queue of accepted requests.

The receiver appends; the flusher claims the oldest records, writes them to the lake and
acknowledges them. Callers see records and positions only, never files, so an engine shared
by several receivers can stand behind the same interface.

Recovery after ``kill -9`` of anyone: an append that did not return was never acknowledged to
the ESP, which retries it; a claim that was never acknowledged is simply claimed again. The
flusher records each claim's position in the same commit as the lake files it wrote, and
acknowledges up to that position before it claims anything, so nothing is written twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from ingest.spool.record import SpoolRecord
from mailpulse.config import Config


@dataclass(frozen=True, slots=True)
class Claim:
    """The oldest records waiting, and the position that acknowledges them all.

    Positions only grow: acknowledging a position also acknowledges every record before it.
    """

    records: list[SpoolRecord]
    position: int  # 0 when nothing was waiting
    size: int  # bytes of the records, as the quota counts them


class Spool(Protocol):
    """A durable queue of :class:`SpoolRecord`; every method is safe to call from threads.

    Every storage failure raises :class:`ingest.errors.SpoolUnavailable`, never another type.
    """

    def append(self, record: SpoolRecord) -> None:
        """Return once ``record`` is durable; concurrent callers share one commit."""

    def claim(self, max_bytes: int, max_records: int, after: int = 0) -> Claim:
        """The oldest unacknowledged records past position ``after``: at most ``max_records``,
        and about ``max_bytes`` (a first record larger than that still comes, alone, so the
        queue always moves). ``after`` lets the flusher read the next batch before it
        acknowledges the one it holds."""

    def acknowledge(self, position: int) -> None:
        """Forget every record at or before ``position`` (a :attr:`Claim.position`)."""

    def pending_bytes(self) -> int:
        """Bytes of records appended and not yet acknowledged."""

    def check_writable(self) -> str | None:
        """None when an append would be accepted now, else a sentence saying why not."""

    def close(self) -> None:
        """Release the engine's connections (it reopens them if used again)."""


def open_spool(config: Config) -> Spool:
    """The spool of ``config``: the embedded engine in ``<data_dir>/spool``, or the
    PostgreSQL database every receiver shares (``[spool] engine = "postgres"``)."""
    limits = {
        "max_bytes": config.receiver.spool_max_bytes,
        "retry_after": config.receiver.retry_after_seconds,
    }
    if config.spool.engine == "postgres" and config.spool.url is not None:
        from ingest.spool.postgres import PostgresSpool

        return PostgresSpool(config.spool.url.reveal(), **limits)
    from ingest.spool.sqlite import SqliteSpool

    return SqliteSpool(config.spool_dir / "spool.sqlite", **limits)
