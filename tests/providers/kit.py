"""What the provider tests share: building a source and a request, reading a refusal, and
turning normalized events into the rows the golden files (``tests/fixtures/<provider>/
expected.json``) hold."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import pytest

from ingest.errors import AuthenticationFailed
from ingest.providers import PROVIDERS, InboundRequest, Provider
from ingest.providers.events import Event
from mailpulse.config import Secret, SourceConfig

P = TypeVar("P", bound=Provider)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

#: The columns every golden file holds; providers add their own (tags, url, reason, ...).
GOLDEN_COLUMNS = (
    "event_type",
    "recipient",
    "occurred_at",
    "event_id",
    "message_id",
    "bounce_class",
    "agent",
    "campaign",
    "smtp_status",
)


def make_provider(
    kind: type[P],
    name: str,
    options: Mapping[str, Any] | None = None,
    **credentials: Sequence[str],
) -> P:
    """A provider of class ``kind`` for a source ``name`` with these credentials."""
    source = SourceConfig(
        name=name,
        provider=kind.name,
        credentials={key: tuple(Secret(v) for v in values) for key, values in credentials.items()},
        options=dict(options or {}),
    )
    assert PROVIDERS[kind.name] is kind
    return kind(source)


def inbound(
    source: str,
    headers: Mapping[str, str] | None = None,
    body: bytes = b"{}",
    *,
    content_type: str = "application/json",
    remote_addr: str = "127.0.0.1",
) -> InboundRequest:
    """A POST to ``/webhooks/<source>`` as the receiver hands it to a provider."""
    return InboundRequest(
        source=source,
        method="POST",
        url=f"/webhooks/{source}",
        headers={k.lower(): v for k, v in (headers or {}).items()},
        body=body,
        remote_addr=remote_addr,
        content_type=content_type,
    )


def refusal(provider: Provider, request: InboundRequest, now: float) -> str:
    """The reason code ``provider`` refuses ``request`` with (the test fails if it accepts)."""
    with pytest.raises(AuthenticationFailed) as caught:
        provider.authenticate(request, now)
    return caught.value.code


def iso_z(micros: int) -> str:
    """Epoch microseconds as exact ISO text ending in ``Z`` (no float rounding)."""
    return (EPOCH + timedelta(microseconds=micros)).isoformat().replace("+00:00", "Z")


def golden_rows(events: Iterable[Event], extra: Sequence[str] = ()) -> list[dict[str, Any]]:
    """Events as golden rows: :data:`GOLDEN_COLUMNS` plus ``extra``, time as :func:`iso_z`."""
    return [
        {
            column: iso_z(event.occurred_at) if column == "occurred_at" else getattr(event, column)
            for column in (*GOLDEN_COLUMNS, *extra)
        }
        for event in events
    ]
