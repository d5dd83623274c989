"""The one small interface every provider module implements.

A provider knows three things about its ESP:

1. ``authenticate``: is this request really from the ESP? It looks only at the raw body
   bytes and headers, fails closed and raises :class:`~ingest.errors.AuthenticationFailed`.
   It runs in the receiver, before anything is stored, so it must be cheap.
2. ``split``: the body as received becomes the list of event objects it carries
   (raises :class:`~ingest.errors.PayloadError`; the flusher quarantines the whole body).
3. ``normalize``: one event object becomes zero or more :class:`~ingest.events.Event` rows,
   each with the id that dedups it (raises :class:`~ingest.errors.MappingError`; the flusher
   quarantines that object alone).

Steps 2 and 3 run in the flusher, never while the ESP waits for an answer.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from ingest.events import Event
from mailpulse.config import SourceConfig


@dataclass(frozen=True, slots=True)
class InboundRequest:
    """What the receiver hands a provider: the request exactly as it arrived."""

    source: str
    method: str
    url: str  # path and query string as received
    headers: Mapping[str, str]  # lower-cased names
    body: bytes
    remote_addr: str
    content_type: str  # media type only, lower-cased, without parameters


@dataclass(frozen=True, slots=True)
class NormalizeContext:
    """Facts about the request an event arrived in, for ``normalize``."""

    source: str
    headers: Mapping[str, str]  # lower-cased names, credentials removed
    received_at: int  # epoch microseconds
    campaign_field: str | None  # the source's ``campaign`` override, if any


class Provider(ABC):
    """Base class of provider modules; see the module docstring for the contract."""

    name: ClassVar[str]
    #: Secret keys this provider reads from its source (each may be a list, for rotation).
    credential_keys: ClassVar[frozenset[str]]
    #: Non-secret provider keys (a Mandrill URL, SNS topic ARNs, ...).
    option_keys: ClassVar[frozenset[str]] = frozenset()
    #: Media types the ESP sends; anything else is answered 415.
    content_types: ClassVar[frozenset[str]]
    #: Which field dedups, in words, for the docs and ``--help``.
    dedup_key: ClassVar[str]
    #: The field read as ``campaign`` unless the source sets ``campaign = "..."``.
    default_campaign_field: ClassVar[str | None] = "campaign"
    #: Headers that carry credentials; they are never stored in the raw lake.
    credential_headers: ClassVar[frozenset[str]] = frozenset({"authorization"})
    #: Bump when ``normalize`` changes what it writes, so history can be re-normalized.
    parser_version: ClassVar[int] = 1

    def __init__(self, source: SourceConfig) -> None:
        self.source = source

    @classmethod
    def config_problems(cls, source: SourceConfig) -> list[str]:
        """Mistakes in a source's settings for this provider; empty when it can start."""
        missing = sorted(key for key in cls.credential_keys if not source.credentials.get(key))
        if missing:
            return [f"needs {' and '.join(missing)} (a source without credentials refuses nothing)"]
        return []

    @abstractmethod
    def authenticate(self, request: InboundRequest, now: float) -> None:
        """Raise ``AuthenticationFailed`` unless the request is authentic and fresh."""

    @abstractmethod
    def split(self, body: bytes, headers: Mapping[str, str]) -> list[Any]:
        """The event objects a body carries; raise ``PayloadError`` when it is not parseable."""

    @abstractmethod
    def normalize(self, item: Any, context: NormalizeContext) -> list[Event]:
        """Map one event object to rows; raise ``MappingError`` when it cannot be mapped."""

    def campaign_field(self, context: NormalizeContext) -> str | None:
        """The field to read the campaign from for this source."""
        return context.campaign_field or self.default_campaign_field
