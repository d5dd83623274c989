"""The one small interface every provider module implements.

A provider knows three things about its ESP:

1. ``authenticate``: is this request really from the ESP? It looks only at the raw body
   bytes and headers, fails closed and raises :class:`~ingest.errors.AuthenticationFailed`.
   It runs in the receiver, before anything is stored, so it must be cheap.
2. ``split``: the body as received becomes the list of event objects it carries
   (raises :class:`~ingest.errors.PayloadError`; the flusher quarantines the whole body).
3. ``normalize``: one event object becomes zero or more
   :class:`~ingest.providers.events.Event` rows, each with the id that dedups it (raises
   :class:`~ingest.errors.MappingError`; the flusher quarantines that object alone).

Steps 2 and 3 run in the flusher, never while the ESP waits for an answer.

A provider is the receiving side only: the ESP's side (requests as the ESP writes them, demo
credentials) lives with the simulator, in :mod:`mailpulse.simulate.esp`, which the receiver
never imports.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

from ingest.errors import AuthenticationFailed, SpoolUnavailable
from ingest.intake.replay import MemoryReplayGuard
from ingest.providers.events import EVENT_TYPES, Event
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


class ReplayGuard(Protocol):
    """Remembers single-use values (a Mailgun token) across every worker until they expire.

    Only acknowledged requests are remembered: ``seen`` is asked while authenticating,
    ``remember`` is called once the request is stored. Storage failures raise
    :class:`~ingest.errors.SpoolUnavailable`.
    """

    def seen(self, key: str, *, now: float) -> bool:
        """True when ``key`` was remembered and has not expired at ``now``."""
        ...

    def remember(self, key: str, *, expires_at: float) -> None:
        """Record ``key`` until ``expires_at``, when a replay would fail the timestamp check."""
        ...


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
    #: Methods other than POST the ESP uses to check the URL (Mandrill's HEAD): answered 200,
    #: never stored.
    probe_methods: ClassVar[frozenset[str]] = frozenset()
    #: The most events the ESP puts in one request (1: one event per POST).
    max_batch: ClassVar[int] = 1
    #: The event types (mailpulse vocabulary) this ESP reports; the simulator sends only these.
    emits: ClassVar[frozenset[str]] = EVENT_TYPES

    def __init__(self, source: SourceConfig, *, replay: ReplayGuard | None = None) -> None:
        self.source = source
        # Unit tests construct providers without a shared guard; the receiver passes one.
        self.replay: ReplayGuard = replay if replay is not None else MemoryReplayGuard()
        # A source may name its own token header (``token_header``): it is a credential too.
        token_header = source.options.get("token_header")
        extra = {token_header.lower()} if isinstance(token_header, str) else set()
        #: Headers removed before a request is stored: the class's, plus this source's own.
        self.secret_headers: frozenset[str] = self.credential_headers | extra

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

    def replay_key(self, request: InboundRequest) -> tuple[str, float] | None:
        """The single-use key of an authentic request and when it expires (unix seconds).

        ``None`` (the default) for ESPs whose requests carry nothing single-use.
        """
        return None

    def refuse_replay(self, request: InboundRequest, now: float) -> None:
        """Raise ``AuthenticationFailed`` when the request's single-use key was acknowledged.

        Called by ``authenticate`` once the signature verified; records nothing.
        """
        key = self.replay_key(request)
        if key is not None and self.replay.seen(key[0], now=now):
            raise AuthenticationFailed(
                "this signed request was already received", code="replayed_token"
            )

    def accepted(self, request: InboundRequest) -> None:
        """Called once a request is durably stored: its single-use key is spent only now.

        A request the spool refused leaves no trace, so the ESP's identical retry passes.
        Must not block: anything slow runs on a background thread.
        """
        key = self.replay_key(request)
        if key is None:
            return
        try:
            self.replay.remember(key[0], expires_at=key[1])
        except SpoolUnavailable:
            # The request is stored and answered 200 all the same (the guard logged which file
            # and why): a replay inside the window is then stored again, and the flusher drops
            # it as a duplicate.
            return
