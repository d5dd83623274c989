"""The tailer: reads the spool as it fills, matches events against the rules, records actions.

It follows the spool a little behind the receiver (it looks every tenth of a second), not
the lake: an action starts about a second after the ESP got its 2xx, and never before the
request is durable, since only committed records can be read. Its position is committed
with the actions it recorded (:mod:`ingest.spool.outbox`), and the spool keeps every record
until both the flusher and the tailer are past it.

Events are normalized the way the flusher does it (same providers, same agent rules); the
flusher stays the one that writes the lake, so a record is normalized twice, once for each.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping

import polars as pl

from ingest.actions.rules import match
from ingest.flush.batch import BatchBuilder
from ingest.intake.receiver import VERDICT_HEADER
from ingest.providers import PROVIDERS, Provider
from ingest.spool import Spool, SpoolRecord
from ingest.spool.outbox import NewAction, Outbox
from mailpulse.actions_config import ActionConfig
from mailpulse.config import Config

log = logging.getLogger(__name__)

POLL_SECONDS = 0.1
_SAVE_POSITION_SECONDS = 1.0
_CLAIM_BYTES = 4 * 1024 * 1024
_CLAIM_RECORDS = 2_000


class Tailer:
    """Turns newly spooled requests into recorded actions."""

    def __init__(
        self,
        config: Config,
        spool: Spool,
        outbox: Outbox,
        *,
        clock: Callable[[], float] = time.time,
        on_new: Callable[[], None] = lambda: None,
    ) -> None:
        self.spool = spool
        self.outbox = outbox
        self.clock = clock
        self.on_new = on_new
        self._position: int | None = None  # matched through; None: read it from the outbox
        self._saved_at = 0.0
        self.configure(config)

    def configure(self, config: Config) -> None:
        """Match against ``config``'s sources and actions from now on (a reload)."""
        self.actions: Mapping[str, ActionConfig] = dict(config.actions)
        self.providers: dict[str, Provider] = {
            name: PROVIDERS[source.provider](source) for name, source in config.sources.items()
        }
        self.campaign_fields = {name: s.campaign for name, s in config.sources.items()}

    def step(self) -> int:
        """Match the next records past the tailer's position; how many were read."""
        if self._position is None:
            self._position = self.outbox.position()
            if self._position is None:  # the first run: hold the spool from now on
                self._position = 0
                self._save([], self.clock())
        claim = self.spool.claim(_CLAIM_BYTES, _CLAIM_RECORDS, after=self._position)
        if not claim.records:
            return 0
        found = self._match(claim.records)
        self._position = claim.position
        now = self.clock()
        # Actions are recorded with the position they came from, in one transaction. Records
        # that matched nothing only move the position, which is written at most once a second:
        # matching them again after a crash records nothing, and every commit here waits for
        # the writers' turn the receiver's appends take too.
        due = found or now - self._saved_at >= _SAVE_POSITION_SECONDS
        if due and self._save(found, now):
            self.on_new()
        return len(claim.records)

    def _save(self, found: list[NewAction], now: float) -> int:
        assert self._position is not None
        added = self.outbox.enqueue(found, self._position, now)
        self._saved_at = now
        return added

    def run(self, stop: threading.Event) -> None:
        """Follow the spool until ``stop`` is set, then match what is left."""
        while not stop.is_set():
            try:
                if self.step() >= _CLAIM_RECORDS:
                    continue  # a full claim: more is waiting, read on without a pause
            except Exception:  # the receiver must keep answering; the spool keeps the data
                log.exception("matching events against actions failed; will retry")
                self._position = None  # read it again from the store
                stop.wait(1.0)
            stop.wait(POLL_SECONDS)
        try:
            while self.step():
                pass
            if self._position is not None:
                self._save([], self.clock())
        except Exception:
            log.exception("matching the last events against actions failed")

    def _match(self, records: list[SpoolRecord]) -> list[NewAction]:
        try:
            return match(self._normalize(records), self.actions)
        except Exception:
            # One record the normalizer cannot survive must not stop every action behind it:
            # match one by one, and skip (and name) what fails; the flusher quarantines it.
            found: list[NewAction] = []
            for record in records:
                try:
                    found.extend(match(self._normalize([record]), self.actions))
                except Exception:
                    log.exception("request %s skipped by actions", record.request_id)
            return found

    def _normalize(self, records: list[SpoolRecord]) -> pl.DataFrame:
        builder = BatchBuilder(self.providers, self.campaign_fields)
        for record in records:
            # A shadow-mode source stores requests that failed authentication too: they are
            # kept for the record, never acted on (a forged bounce must not suppress anyone).
            verdict = record.headers.get(VERDICT_HEADER, "verified")
            if record.source in self.providers and verdict == "verified":
                builder.add_request(record)
        return builder.events_frame()
