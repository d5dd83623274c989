"""One flush batch: requests in, normalized in chunks, deduplicated, typed frames out.

:class:`BatchBuilder` is bookkeeping over one batch. The flusher feeds it records (or
quarantined payloads on replay); it normalizes them a chunk at a time
(:mod:`ingest.flush.normalize`, in worker processes when it has a
:class:`~ingest.flush.pool.ChunkPool` and more than one chunk), then drops repeated and
already stored event ids in bulk and hands back frames in the lake's schemas.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import orjson
import polars as pl

from ingest.flush.normalize import Chunk, Item, Quarantined, normalize_chunk
from ingest.flush.pool import ChunkPool
from ingest.providers import Provider
from ingest.spool import SpoolRecord
from mailpulse.lake import EVENTS_SCHEMA, QUARANTINE_SCHEMA, RAW_SCHEMA, TIMESTAMP

__all__ = ["CHUNK_BYTES", "CHUNK_RECORDS", "BatchBuilder", "Quarantined"]

#: A chunk closes at this many payloads or bytes, whichever comes first: small enough that
#: its Python objects stay few, large enough that handing it to a worker is cheap.
CHUNK_RECORDS = 1_000
CHUNK_BYTES = 2 * 1024 * 1024


@dataclass
class BatchBuilder:
    """Rows of one batch, before dedup and writing."""

    providers: Mapping[str, Provider]
    campaign_fields: Mapping[str, str | None]
    pool: ChunkPool | None = None
    raw: list[SpoolRecord] = field(default_factory=list)
    quarantined: dict[str, Quarantined] = field(default_factory=dict)
    duplicates_in_batch: dict[str, int] = field(default_factory=dict)
    _pending: list[Item] = field(default_factory=list)
    _pending_bytes: int = 0
    _chunks: list[Chunk | Future[Chunk]] = field(default_factory=list)
    _events: pl.DataFrame | None = None

    def add_request(self, record: SpoolRecord) -> None:
        """Keep the request in ``raw`` and normalize what it carries."""
        self.raw.append(record)
        self.add_payload(record, stage="parse", payload=record.body)

    def add_payload(self, record: SpoolRecord, *, stage: str, payload: bytes) -> None:
        """Normalize a whole body (``stage="parse"``) or one event object (``"map"``)."""
        if self._hold(record, stage, payload):
            # A full chunk means more may follow: worth a worker, when there is a pool.
            self._close_chunk(parallel=True)

    def send_ahead(self, records: list[SpoolRecord], chunks: int) -> int:
        """Hand the first ``chunks`` full chunks of ``records`` to the workers, busy or not, and
        return how many records went (none without a pool): they normalize while this process
        writes the previous batch. The caller adds the rest with :meth:`add_request`."""
        if self.pool is None:
            return 0
        for count, record in enumerate(records):
            if len(self._chunks) >= chunks:
                return count
            self.raw.append(record)
            if self._hold(record, "parse", record.body):
                items, self._pending, self._pending_bytes = self._pending, [], 0
                self._chunks.append(self.pool.submit(items))
        return len(records)

    def _hold(self, record: SpoolRecord, stage: str, payload: bytes) -> bool:
        """Keep a payload for the open chunk; whether the chunk is now full."""
        self._pending.append((record, stage, payload))
        self._pending_bytes += len(payload)
        return len(self._pending) >= CHUNK_RECORDS or self._pending_bytes >= CHUNK_BYTES

    def _close_chunk(self, *, parallel: bool) -> None:
        """Normalize the pending payloads: in a free worker, else here while workers work."""
        items, self._pending, self._pending_bytes = self._pending, [], 0
        if not items:
            return
        if parallel and self.pool is not None and self.pool.has_room():
            self._chunks.append(self.pool.submit(items))
        else:
            self._chunks.append(normalize_chunk(self.providers, self.campaign_fields, items))

    # -- dedup

    @property
    def events(self) -> pl.DataFrame:
        """The batch's events, each id once (normalizes what is still pending first)."""
        if self._events is None:
            self._events = self._collect()
        return self._events

    def finish(self) -> None:
        """Normalize what is still pending and wait for every chunk sent to the workers."""
        if self._events is None:
            self._events = self._collect()

    def _collect(self) -> pl.DataFrame:
        """Gather the chunks in order; a repeated id keeps its first row, as ESPs resend."""
        went_to_pool = any(isinstance(chunk, Future) for chunk in self._chunks)
        self._close_chunk(parallel=went_to_pool)
        seen: set[str] = set()
        frames: list[pl.DataFrame] = []
        for pending in self._chunks:
            chunk = pending.result() if isinstance(pending, Future) else pending
            for item in chunk.quarantined:
                self.quarantined.setdefault(item.quarantine_id, item)
            # Filtering chunk by chunk keeps one copy of the batch's rows, not two.
            events = chunk.events
            first = _first_sightings(events["event_id"].to_list(), seen)
            if all(first):
                frames.append(events)
            else:
                keep = pl.Series(first, dtype=pl.Boolean())
                self._count_duplicates(events.filter(~keep))
                frames.append(events.filter(keep))
        self._chunks = []
        if not frames:
            return pl.DataFrame(schema=EVENTS_SCHEMA)
        return pl.concat(frames, rechunk=False)  # no copy: the chunks become the columns

    def event_ids(self) -> list[str]:
        """Ids of the events still in the batch."""
        return self.events["event_id"].to_list()

    def drop(self, ids: Iterable[str]) -> None:
        """Forget events (counted as duplicates) and quarantine entries already in the lake."""
        ids = set(ids)
        if not ids:
            return
        known = self.events["event_id"].is_in(list(ids))
        self._count_duplicates(self.events.filter(known))
        self._events = self.events.filter(~known)
        for key in ids:
            self.quarantined.pop(key, None)

    def _count_duplicates(self, dropped: pl.DataFrame) -> None:
        for source, count in dropped.group_by("source").len().iter_rows():
            self.duplicates_in_batch[source] = self.duplicates_in_batch.get(source, 0) + count

    # -- frames

    def events_frame(self) -> pl.DataFrame:
        """The new events as a frame in the lake's schema."""
        return self.events

    def raw_frame(self) -> pl.DataFrame:
        """Every request of the batch, as received (credentials already removed)."""
        records = self.raw
        names = {name: provider.name for name, provider in self.providers.items()}
        columns: dict[str, list[Any]] = {
            "request_id": [r.request_id for r in records],
            "source": [r.source for r in records],
            "provider": [names.get(r.source) for r in records],
            "received_at": [r.received_at for r in records],
            "remote_addr": [r.remote_addr for r in records],
            "method": [r.method for r in records],
            "url": [r.url for r in records],
            "content_type": [r.content_type for r in records],
            "headers": [orjson.dumps(r.headers).decode() for r in records],
            "body": [r.body for r in records],
        }
        return _frame(columns, RAW_SCHEMA, ("received_at",))

    def quarantine_frame(self, now_micros: int) -> pl.DataFrame:
        """The batch's quarantined payloads."""
        columns: dict[str, list[Any]] = {name: [] for name in QUARANTINE_SCHEMA}
        for item in self.quarantined.values():
            for name in QUARANTINE_SCHEMA:
                if name != "quarantined_at":
                    columns[name].append(getattr(item, name))
            columns["quarantined_at"].append(now_micros)
        return _frame(columns, QUARANTINE_SCHEMA, ("received_at", "quarantined_at"))


def _first_sightings(ids: list[str], seen: set[str]) -> list[bool]:
    """For each id, whether the batch sees it for the first time (and remember it)."""
    first = []
    for event_id in ids:
        first.append(event_id not in seen)
        seen.add(event_id)
    return first


def _frame(
    columns: Mapping[str, list[Any]], schema: dict[str, pl.DataType], times: tuple[str, ...]
) -> pl.DataFrame:
    # Times travel as integer microseconds and become timestamps in one vectorized cast.
    overrides: dict[str, pl.DataType] = {**schema, **{name: pl.Int64() for name in times}}
    frame = pl.DataFrame(columns, schema=overrides)
    return frame.with_columns(*(pl.col(name).cast(TIMESTAMP) for name in times))
