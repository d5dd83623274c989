"""Spooled payloads -> lake rows as Arrow columns, one chunk of requests at a time.

A chunk's events become columns as soon as its payloads are normalized, so a batch never
holds more than one chunk of :class:`~ingest.providers.events.Event` objects: memory follows the
batch's bytes, and Python's garbage collector has few live objects to walk. The work is
pure (payloads in, rows and quarantine entries out), so a
:class:`~ingest.flush.pool.ChunkPool` can run it in worker processes while the flusher reads
on; the flusher alone dedups, writes and commits.
"""

from __future__ import annotations

import gc
import hashlib
import logging
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from operator import attrgetter
from typing import Any

import orjson
import polars as pl

from ingest.errors import MappingError, PayloadError
from ingest.flush.agents import classify
from ingest.providers import NormalizeContext, Provider
from ingest.providers.events import Event, recipient_domain
from ingest.spool import SpoolRecord
from mailpulse.lake import EVENTS_SCHEMA, TIMESTAMP

log = logging.getLogger(__name__)

#: One payload to normalize: the request it came in, its stage ("parse": a whole body,
#: "map": one event object) and its bytes.
Item = tuple[SpoolRecord, str, bytes]

# Columns built as another type, then converted in one vectorized pass: times from integer
# microseconds; tags from JSON text, as polars builds a list column from Python lists one
# row at a time but decodes a column of JSON arrays at once.
_BUILD_TYPES: dict[str, pl.DataType] = {
    "occurred_at": pl.Int64(),
    "received_at": pl.Int64(),
    "tags": pl.String(),
}
_CONVERSIONS = (
    pl.col("occurred_at", "received_at").cast(TIMESTAMP),
    pl.col("tags").str.json_decode(EVENTS_SCHEMA["tags"]),
)
# Event fields that are columns of the lake under the same name.
_EVENT_FIELDS = (
    "occurred_at",
    "event_id",
    "event_type",
    "bounce_class",
    "recipient",
    "message_id",
    "campaign",
    "metadata",
    "url",
    "user_agent",
    "ip",
    "smtp_status",
    "reason",
    "agent",
    "agent_reason",
    "raw",
)


@dataclass
class Quarantined:
    """One payload that could not be turned into events."""

    quarantine_id: str
    request_id: str
    source: str
    provider: str
    received_at: int
    stage: str
    reason: str
    headers: str
    payload: bytes


@dataclass
class Chunk:
    """What one chunk of payloads became, in arrival order (duplicates not yet dropped)."""

    events: pl.DataFrame  # in the lake's schema
    quarantined: list[Quarantined]


class _Rows:
    """Events of one chunk, and the facts of the request each one came in, as columns."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.sources: list[str] = []
        self.providers: list[str] = []
        self.received_at: list[int] = []
        self.request_ids: list[str] = []
        self.versions: list[int] = []

    def add(self, events: list[Event], record: SpoolRecord, provider: Provider) -> None:
        """Take the events of one request; opens and clicks the ESP did not flag get the agent
        rules' verdict."""
        for event in events:
            if event.agent is None and event.event_type in ("opened", "clicked"):
                event.agent, event.agent_reason = classify(
                    event.event_type, event.user_agent, event.ip
                )
        count = len(events)
        self.events += events
        self.sources += [record.source] * count
        self.providers += [provider.name] * count
        self.received_at += [record.received_at] * count
        self.request_ids += [record.request_id] * count
        self.versions += [provider.parser_version] * count

    def frame(self) -> pl.DataFrame:
        """The rows in the lake's schema: one conversion per column, none per row."""
        events = self.events
        columns = {name: list(map(attrgetter(name), events)) for name in _EVENT_FIELDS}
        columns |= {
            "source": self.sources,
            "provider": self.providers,
            "received_at": self.received_at,
            "request_id": self.request_ids,
            "parser_version": self.versions,
            "recipient_domain": [recipient_domain(event.recipient) for event in events],
            "tags": [orjson.dumps(event.tags).decode() for event in events],
        }
        return pl.DataFrame(
            [
                pl.Series(name, columns[name], dtype=_BUILD_TYPES.get(name, dtype))
                for name, dtype in EVENTS_SCHEMA.items()
            ]
        ).with_columns(*_CONVERSIONS)


def normalize_chunk(
    providers: Mapping[str, Provider],
    campaign_fields: Mapping[str, str | None],
    items: Sequence[Item],
) -> Chunk:
    """Normalize payloads in order; what cannot be normalized becomes a quarantine entry."""
    with _collector_paused():
        return _normalize_items(providers, campaign_fields, items)


@contextmanager
def _collector_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector for one chunk.

    A chunk makes tens of thousands of short-lived objects without cycles, and each automatic
    collection they set off walks the older objects too (the batch's records): about a tenth
    of the flush time. Paused, the collector runs once after the chunk instead.
    """
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def _normalize_items(
    providers: Mapping[str, Provider],
    campaign_fields: Mapping[str, str | None],
    items: Sequence[Item],
) -> Chunk:
    rows = _Rows()
    quarantined: list[Quarantined] = []
    for record, stage, payload in items:
        provider = providers.get(record.source)
        if provider is None:
            reason = f"source {record.source!r} is not configured"
            quarantined.append(_quarantine(record, "?", "route", reason, payload))
            continue
        objects = _split(provider, record, stage, payload, quarantined)
        context = NormalizeContext(
            source=record.source,
            headers=record.headers,
            received_at=record.received_at,
            campaign_field=campaign_fields.get(record.source),
        )
        events: list[Event] = []
        for item in objects:
            try:
                events += provider.normalize(item, context)
            except MappingError as exc:
                reason = str(exc)
            except Exception as exc:  # a provider bug must not stall the flusher: quarantine
                log.exception("provider normalize failed", extra={"source": record.source})
                reason = f"internal error: {exc!r}"[:500]
            else:
                continue
            quarantined.append(_quarantine(record, provider.name, "map", reason, _item_bytes(item)))
        rows.add(events, record, provider)
    return Chunk(rows.frame(), quarantined)


def _split(
    provider: Provider,
    record: SpoolRecord,
    stage: str,
    payload: bytes,
    quarantined: list[Quarantined],
) -> list[Any]:
    """The event objects of a payload; none (and a quarantine entry) when it has none."""
    if stage == "map":
        try:
            return [orjson.loads(payload)]
        except orjson.JSONDecodeError as exc:
            reason = f"not JSON: {exc}"
            quarantined.append(_quarantine(record, provider.name, "map", reason, payload))
            return []
    try:
        return provider.split(payload, record.headers)
    except PayloadError as exc:
        reason = str(exc)
    except Exception as exc:  # same: a provider bug quarantines the body
        log.exception("provider split failed", extra={"source": record.source})
        reason = f"internal error: {exc!r}"[:500]
    quarantined.append(_quarantine(record, provider.name, "parse", reason, payload))
    return []


def _quarantine(
    record: SpoolRecord, provider: str, stage: str, reason: str, payload: bytes
) -> Quarantined:
    digest = hashlib.sha256(f"{record.source}\x1f{stage}\x1f".encode() + payload).hexdigest()
    return Quarantined(
        quarantine_id="q:" + digest,
        request_id=record.request_id,
        source=record.source,
        provider=provider,
        received_at=record.received_at,
        stage=stage,
        reason=reason[:1000],
        headers=orjson.dumps(record.headers).decode(),
        payload=payload,
    )


def _item_bytes(item: Any) -> bytes:
    try:
        return orjson.dumps(item)
    except TypeError:
        return repr(item).encode()
