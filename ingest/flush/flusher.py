"""The flusher: spool -> normalize -> dedup -> lake, exactly once (promise 2).

One flusher runs at a time: per data directory (an ``flock``), or across every host sharing
the PostgreSQL engine (an advisory lock); see :mod:`ingest.flush.leader`. Each batch goes
through the same steps:

1. claim the oldest records the spool holds (:mod:`ingest.spool`);
2. normalize them (:mod:`ingest.flush.batch`); failures go to quarantine, never back to the ESP;
3. drop every event id already stored: the ``seen`` table covers the dedup window, and events
   older than the window are also checked against their lake partition;
4. journal the file names, write the Parquet files atomically, then commit the claim's spool
   position and the ids in one transaction (:mod:`ingest.flush.state`, or
   :mod:`ingest.flush.pg_state` shared by several hosts); a crash before the
   commit undoes the files (the claim is simply claimed again), a crash after it is already
   complete;
5. acknowledge the claim, so the spool forgets it. A pass first acknowledges the committed
   position, in case the last one crashed between its commit and its acknowledgement.
"""

from __future__ import annotations

import hashlib
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass

import polars as pl

from ingest.errors import FlusherBusy
from ingest.flush.batch import BatchBuilder
from ingest.flush.event_times import implausible
from ingest.flush.leader import AnyFlusherState, locked_state
from ingest.flush.leader import flusher_lock as flusher_lock  # where callers found it
from ingest.flush.pool import ChunkPool
from ingest.flush.state import Commit, next_batch
from ingest.providers import PROVIDERS, Provider
from ingest.providers.events import MICROS
from ingest.spool import Claim, Spool, open_spool
from mailpulse import lake
from mailpulse.config import Config

log = logging.getLogger(__name__)

BATCH_RECORDS = 100_000
# Chunks of the next batch each worker is handed while this process writes the current one.
_AHEAD_CHUNKS = 8
_PRUNE_EVERY_SECONDS = 6 * 3600


@dataclass
class FlushResult:
    """What one flush did."""

    requests: int = 0
    events: int = 0
    duplicates: int = 0
    quarantined: int = 0
    batches: int = 0

    def add(self, other: FlushResult) -> None:
        """Accumulate another result into this one."""
        self.requests += other.requests
        self.events += other.events
        self.duplicates += other.duplicates
        self.quarantined += other.quarantined
        self.batches += other.batches


class Flusher:
    """Moves spooled requests into the lake for one configuration."""

    def __init__(
        self,
        config: Config,
        *,
        clock: Callable[[], float] = time.time,
        batch_bytes: int | None = None,
        batch_records: int = BATCH_RECORDS,
        spool: Spool | None = None,
        workers: int | None = None,
    ) -> None:
        """``workers``: processes that normalize a large batch beside this one (default: one
        per CPU but the first; 0: this process alone)."""
        self.config = config
        self.spool = spool if spool is not None else open_spool(config)
        self.clock = clock
        self.batch_bytes = batch_bytes or config.lake.flush_batch_bytes
        self.batch_records = batch_records
        self.providers: dict[str, Provider] = {
            name: PROVIDERS[source.provider](source) for name, source in config.sources.items()
        }
        self.campaign_fields = {name: s.campaign for name, s in config.sources.items()}
        if workers is None:
            workers = (os.cpu_count() or 1) - 1
        scratch = config.state_dir / "flush-chunks"
        self.pool = ChunkPool(config.sources, workers, scratch) if workers > 0 else None
        # Who leads, as the shared state records it: this host and process, this start.
        self.identity = _identity()
        self.passes = self.batches = 0

    # -- entry points

    def flush(self, wait_seconds: float = 60.0) -> FlushResult:
        """Drain everything spooled so far into the lake (waits for a running flusher)."""
        with locked_state(self.config, wait_seconds) as state, self._closing_pool():
            return self._drain(state)

    def try_flush(self) -> FlushResult | None:
        """One pass if no other flusher is busy; None when one is."""
        try:
            with locked_state(self.config) as state, self._closing_pool():
                return self._drain(state)
        except FlusherBusy:
            return None

    def new_builder(self) -> BatchBuilder:
        """An empty batch that normalizes with this flusher's providers (and workers)."""
        return BatchBuilder(self.providers, self.campaign_fields, pool=self.pool)

    @contextmanager
    def _closing_pool(self) -> Iterator[None]:
        # Workers live for one pass: an idle receiver keeps no extra processes. Closed while
        # the lock is still held, so the next flusher finds only its own files to clear.
        try:
            yield
        finally:
            if self.pool is not None:
                self.pool.close()

    def run_forever(self, stop: threading.Event, interval: float) -> None:
        """Flush every ``interval`` seconds until ``stop`` is set, then once more."""
        while not stop.wait(interval):
            try:
                self.try_flush()
            except Exception:  # keep the receiver's flusher alive; the spool keeps the data
                log.exception("flush failed; will retry")
        self.flush()

    # -- the work

    def _drain(self, state: AnyFlusherState) -> FlushResult:
        # What the last pass committed is in the lake, whether or not it got to say so.
        self._note_lead(state)
        position = state.spool_position()
        self.spool.acknowledge(position)
        # Drain what is spooled now, not what keeps arriving: under steady traffic a
        # pass must still end, release the lock and report its status.
        remaining = self.spool.pending_bytes()
        claim = self._claim(position) if remaining > 0 else None
        total = FlushResult()
        if claim is not None:
            with ThreadPoolExecutor(1, thread_name_prefix="mailpulse-acknowledge") as acks:
                total = self._drain_claims(state, claim, remaining, acks)
        self._maybe_prune(state)
        self._write_status(state)
        if total.requests:
            log.info(
                "flushed",
                extra={
                    "requests": total.requests,
                    "events": total.events,
                    "duplicates": total.duplicates,
                    "quarantined": total.quarantined,
                },
            )
        return total

    def _drain_claims(
        self, state: AnyFlusherState, claim: Claim, remaining: int, acks: ThreadPoolExecutor
    ) -> FlushResult:
        """Write batch after batch, starting with ``claim``, until ``remaining`` bytes are in."""
        total = FlushResult()
        builder, sent, acknowledged = self.new_builder(), 0, None
        while claim.records:
            for record in claim.records[sent:]:
                builder.add_request(record)
            builder.finish()  # every chunk normalized: the workers are free again
            remaining -= claim.size
            ahead, sent, following = self.new_builder(), 0, None
            if remaining > 0 and self.pool is not None:
                # Claimed before this batch commits, so the workers normalize it meanwhile. A
                # crash loses nothing: only a committed spool position is ever acknowledged.
                following = self._claim(claim.position)
                sent = ahead.send_ahead(following.records, _AHEAD_CHUNKS * self.pool.workers)
            total.add(self.write_batch(state, builder, claim.position))
            self.batches += 1
            # The spool forgets the batch (deleting records is SQLite's own work, done without
            # the interpreter lock) while the next batch is built; one at a time, in order. A
            # crash before it ends loses nothing: the next pass acknowledges the committed
            # position first.
            if acknowledged is not None:
                acknowledged.result()
            acknowledged = acks.submit(self.spool.acknowledge, claim.position)
            if remaining <= 0:
                break
            claim = following if following is not None else self._claim(claim.position)
            builder = ahead
        if acknowledged is not None:
            acknowledged.result()
        return total

    def _claim(self, after: int) -> Claim:
        return self.spool.claim(self.batch_bytes, self.batch_records, after=after)

    def write_batch(
        self,
        state: AnyFlusherState,
        builder: BatchBuilder,
        spool_position: int | None,
        *,
        replaces: list[str] | None = None,
        dedup_quarantine: bool = True,
    ) -> FlushResult:
        """Dedup ``builder``, write its files atomically and commit them as one batch.

        ``spool_position`` is the spool claim the batch holds, committed with it.
        ``replaces`` names lake files the batch supersedes (quarantine replay); they are deleted
        only after the commit. Call with the flusher lock held.
        """
        now = self.clock()
        ids = builder.event_ids()  # normalizes what is still pending, then drops repeats
        known = state.already_seen([*ids, *(builder.quarantined if dedup_quarantine else ())])
        builder.drop(known)
        builder.drop(self._stored_before_window(builder.events, now))
        events = builder.events_frame()
        frames = {
            "events": events,
            "raw": builder.raw_frame(),
            "quarantine": builder.quarantine_frame(int(now * MICROS)),
        }
        batch = next_batch(state)
        store = self.config.lake_store
        planned: list[tuple[str, pl.DataFrame]] = []
        for table, frame in frames.items():
            for date, part in lake.split_by_date(frame, table).items():
                planned.append((lake.plan_path(store, table, date, batch), part))
        state.begin(batch, [path for path, _ in planned], replaces or [])
        for path, part in planned:
            store.write_parquet(part, path)
        store.sync_folders(path for path, _ in planned)

        counters = _counters(builder, events)
        state.commit(
            Commit(
                batch=batch,
                spool_position=spool_position,
                seen_ids=[*events["event_id"].to_list(), *builder.quarantined],
                seen_at=int(now),
                counters=counters,
            )
        )
        state.finish(batch)
        return FlushResult(
            requests=len(builder.raw),
            events=len(builder.events),
            duplicates=sum(builder.duplicates_in_batch.values()),
            quarantined=len(builder.quarantined),
            batches=1,
        )

    def _stored_before_window(self, events: pl.DataFrame, now: float) -> set[str]:
        """Ids of events older than the dedup window that their lake partition already holds.

        An event id that arrives again was first stored at or after its own ``occurred_at``;
        so only events that happened before the window can have a first copy the ``seen``
        table has already forgotten.
        """
        window_start = int((now - self.config.lake.dedup_window_days * 86_400) * MICROS)
        old = events.select("event_id", "occurred_at").filter(
            pl.col("occurred_at").dt.epoch("us") < window_start
        )
        found: set[str] = set()
        for day, part in lake.split_by_date(old, "events").items():
            ids = part["event_id"].to_list()
            files = lake.list_files(self.config.lake_store, "events", day)
            if files:
                stored = self.config.lake_store.read_parquet(files, ["event_id"])
                found.update(stored.filter(pl.col("event_id").is_in(ids))["event_id"].to_list())
        return found

    def _maybe_prune(self, state: AnyFlusherState) -> None:
        now = int(self.clock())
        if now - state.meta("last_prune") < _PRUNE_EVERY_SECONDS:
            return
        state.prune_seen(now - self.config.lake.dedup_window_days * 86_400)
        state.set_meta("last_prune", now)

    def _note_lead(self, state: AnyFlusherState) -> None:
        """Count this pass, and a change of lead when the last pass was another process's
        (another host's, with the shared engine; an earlier ``serve``, with the local one)."""
        self.passes += 1
        previous = state.meta("leader")
        if previous != self.identity:
            if previous:
                state.set_meta("lead_changes", state.meta("lead_changes") + 1)
            state.set_meta("leader", self.identity)

    def _write_status(self, state: AnyFlusherState) -> None:
        pending = self.spool.pending_bytes()
        store = self.config.lake_store
        events: dict[str, dict[str, int]] = {}
        for key, value in state.counters("events:").items():
            source, _, outcome = key.rpartition(":")
            events.setdefault(source, {})[outcome] = value
        status = {
            "last_flush_at": self.clock(),
            "pending_bytes": pending,
            "quarantine_rows": store.count_rows(lake.list_files(store, "quarantine")),
            "events": events,
            "implausible_time": state.counters("implausible:"),
            # This process's share of the work, and how often the lead moved between them.
            "host": socket.gethostname(),
            "passes": self.passes,
            "batches": self.batches,
            "lead_changes": state.meta("lead_changes"),
        }
        lake.write_status(self.config.state_dir, status)


def _counters(builder: BatchBuilder, events: pl.DataFrame) -> dict[str, int]:
    counters: dict[str, int] = {}
    if not events.is_empty():
        for source, count in events.group_by("source").len().iter_rows():
            counters[f"events:{source}:stored"] = count
    for source, count in builder.duplicates_in_batch.items():
        counters[f"events:{source}:duplicate"] = (
            counters.get(f"events:{source}:duplicate", 0) + count
        )
    for item in builder.quarantined.values():
        key = f"events:{item.source}:quarantined"
        counters[key] = counters.get(key, 0) + 1
    for source, (count, example) in implausible(events).items():
        counters[f"implausible:{source}"] = count
        log.warning(
            "%d event(s) from source %s dated implausibly (before 2000 or over a year after "
            "receipt), e.g. %s: stored in the lake under that date; check the sender's clock",
            count,
            source,
            example.isoformat(),
        )
    return counters


def _identity() -> int:
    """A number for this process on this host, started now (fits a signed 64-bit column)."""
    name = f"{socket.gethostname()}:{os.getpid()}:{time.time_ns()}"
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:7], "big") + 1
