"""Turn spooled requests into lake rows: normalize, route failures to quarantine, dedup.

:class:`BatchBuilder` is pure bookkeeping over one batch: the flusher feeds it records (or
quarantined payloads on replay), asks which event ids are new, and gets typed frames back.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson
import polars as pl
import pyarrow as pa

from ingest.agents import classify
from ingest.errors import MappingError, PayloadError
from ingest.events import Event, recipient_domain
from ingest.providers import NormalizeContext, Provider
from ingest.spool import SpoolRecord
from mailpulse.lake import EVENTS_SCHEMA, QUARANTINE_SCHEMA, RAW_SCHEMA, TIMESTAMP

log = logging.getLogger(__name__)

_EVENT_TIMES = ("occurred_at", "received_at")


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
class BatchBuilder:
    """Rows of one batch, before dedup and writing."""

    providers: Mapping[str, Provider]
    campaign_fields: Mapping[str, str | None]
    events: dict[str, tuple[Event, str, str, int, str]] = field(default_factory=dict)
    raw: list[SpoolRecord] = field(default_factory=list)
    quarantined: dict[str, Quarantined] = field(default_factory=dict)
    duplicates_in_batch: dict[str, int] = field(default_factory=dict)

    def add_request(self, record: SpoolRecord) -> None:
        """Keep the request in ``raw`` and normalize what it carries."""
        self.raw.append(record)
        self.add_payload(record, stage="parse", payload=record.body)

    def add_payload(self, record: SpoolRecord, *, stage: str, payload: bytes) -> None:
        """Normalize a whole body (``stage="parse"``) or one event object (``"map"``)."""
        provider = self.providers.get(record.source)
        headers_json = orjson.dumps(record.headers).decode()
        if provider is None:
            self._quarantine(
                record,
                "?",
                "route",
                f"source {record.source!r} is not configured",
                headers_json,
                payload,
            )
            return
        context = NormalizeContext(
            source=record.source,
            headers=record.headers,
            received_at=record.received_at,
            campaign_field=self.campaign_fields.get(record.source),
        )
        if stage == "map":
            try:
                items: list[Any] = [orjson.loads(payload)]
            except orjson.JSONDecodeError as exc:
                self._quarantine(
                    record, provider.name, "map", f"not JSON: {exc}", headers_json, payload
                )
                return
        else:
            try:
                items = provider.split(payload, record.headers)
            except PayloadError as exc:
                self._quarantine(record, provider.name, "parse", str(exc), headers_json, payload)
                return
            except Exception as exc:  # a provider bug must not stall the flusher
                log.exception("provider split failed", extra={"source": record.source})
                self._quarantine(
                    record,
                    provider.name,
                    "parse",
                    f"internal error: {exc!r}"[:500],
                    headers_json,
                    payload,
                )
                return
        for item in items:
            try:
                events = provider.normalize(item, context)
            except MappingError as exc:
                self._quarantine(
                    record, provider.name, "map", str(exc), headers_json, _item_bytes(item)
                )
                continue
            except Exception as exc:  # same: quarantine, keep going
                log.exception("provider normalize failed", extra={"source": record.source})
                self._quarantine(
                    record,
                    provider.name,
                    "map",
                    f"internal error: {exc!r}"[:500],
                    headers_json,
                    _item_bytes(item),
                )
                continue
            for event in events:
                self._add_event(event, record, provider)

    def _add_event(self, event: Event, record: SpoolRecord, provider: Provider) -> None:
        if event.event_id in self.events:
            self.duplicates_in_batch[record.source] = (
                self.duplicates_in_batch.get(record.source, 0) + 1
            )
            return
        if event.event_type in ("opened", "clicked") and event.agent is None:
            event.agent, event.agent_reason = classify(event.event_type, event.user_agent, event.ip)
        self.events[event.event_id] = (
            event,
            record.source,
            provider.name,
            record.received_at,
            record.request_id,
        )

    def _quarantine(
        self,
        record: SpoolRecord,
        provider: str,
        stage: str,
        reason: str,
        headers: str,
        payload: bytes,
    ) -> None:
        digest = hashlib.sha256(f"{record.source}\x1f{stage}\x1f".encode() + payload).hexdigest()
        quarantine_id = "q:" + digest
        self.quarantined.setdefault(
            quarantine_id,
            Quarantined(
                quarantine_id,
                record.request_id,
                record.source,
                provider,
                record.received_at,
                stage,
                reason[:1000],
                headers,
                payload,
            ),
        )

    def drop(self, ids: set[str]) -> None:
        """Forget events (counted as duplicates) and quarantine entries already in the lake."""
        for key in ids:
            entry = self.events.pop(key, None)
            if entry is not None:
                source = entry[1]
                self.duplicates_in_batch[source] = self.duplicates_in_batch.get(source, 0) + 1
            self.quarantined.pop(key, None)

    # -- frames

    def events_frame(self) -> pl.DataFrame:
        """The new events as a frame in the lake's schema."""
        entries = list(self.events.values())
        events = [entry[0] for entry in entries]
        versions = {name: provider.parser_version for name, provider in self.providers.items()}
        columns: dict[str, list[Any]] = {
            "event_id": [e.event_id for e in events],
            "source": [entry[1] for entry in entries],
            "provider": [entry[2] for entry in entries],
            "event_type": [e.event_type for e in events],
            "bounce_class": [e.bounce_class for e in events],
            "occurred_at": [e.occurred_at for e in events],
            "received_at": [entry[3] for entry in entries],
            "recipient": [e.recipient for e in events],
            "recipient_domain": [recipient_domain(e.recipient) for e in events],
            "message_id": [e.message_id for e in events],
            "campaign": [e.campaign for e in events],
            "metadata": [e.metadata for e in events],
            "url": [e.url for e in events],
            "user_agent": [e.user_agent for e in events],
            "ip": [e.ip for e in events],
            "smtp_status": [e.smtp_status for e in events],
            "reason": [e.reason for e in events],
            "agent": [e.agent for e in events],
            "agent_reason": [e.agent_reason for e in events],
            "raw": [e.raw for e in events],
            "parser_version": [versions.get(entry[1], 1) for entry in entries],
            "request_id": [entry[4] for entry in entries],
        }
        schema = {name: dtype for name, dtype in EVENTS_SCHEMA.items() if name != "tags"}
        frame = _frame(columns, schema, _EVENT_TIMES)
        # A list column built through Arrow costs a fraction of one polars Series per row.
        tags = pl.from_arrow(pa.array([e.tags for e in events], type=pa.list_(pa.string())))
        assert isinstance(tags, pl.Series)
        return frame.with_columns(tags.alias("tags")).select(list(EVENTS_SCHEMA))

    def raw_frame(self) -> pl.DataFrame:
        """Every request of the batch, as received (credentials already removed)."""
        columns: dict[str, list[Any]] = {name: [] for name in RAW_SCHEMA}
        for record in self.raw:
            provider = self.providers.get(record.source)
            columns["request_id"].append(record.request_id)
            columns["source"].append(record.source)
            columns["provider"].append(provider.name if provider else None)
            columns["received_at"].append(record.received_at)
            columns["remote_addr"].append(record.remote_addr)
            columns["method"].append(record.method)
            columns["url"].append(record.url)
            columns["content_type"].append(record.content_type)
            columns["headers"].append(orjson.dumps(record.headers).decode())
            columns["body"].append(record.body)
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


def _item_bytes(item: Any) -> bytes:
    try:
        return orjson.dumps(item)
    except TypeError:
        return repr(item).encode()


def _frame(
    columns: dict[str, list[Any]], schema: dict[str, pl.DataType], times: tuple[str, ...]
) -> pl.DataFrame:
    # Times travel as integer microseconds and become timestamps in one vectorized cast.
    overrides: dict[str, pl.DataType] = {**schema, **{name: pl.Int64() for name in times}}
    frame = pl.DataFrame(columns, schema=overrides)
    return frame.with_columns(*(pl.col(name).cast(TIMESTAMP) for name in times))
