"""The normalized event every provider maps into, and the helpers providers share.

The lake's columns are documented in DESIGN.md ("The event schema"); :mod:`ingest.schema`
turns lists of :class:`Event` into that table. Times are integers of microseconds since the
Unix epoch (UTC) until the moment they are written, which keeps the flusher's hot loop cheap.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parseaddr
from typing import Any

import orjson

from ingest.errors import MappingError, PayloadError
from mailpulse.lake import AGENTS, BOUNCE_CLASSES, EVENT_TYPES, MESSAGE_EVENT_TYPES

__all__ = ["AGENTS", "BOUNCE_CLASSES", "EVENT_TYPES", "MESSAGE_EVENT_TYPES"]


MICROS = 1_000_000
# Timestamps above this many seconds (year 5138) can only be milliseconds sent by mistake.
_MILLIS_THRESHOLD = 100_000_000_000


@dataclass(slots=True)
class Event:
    """One normalized event, as a provider's ``normalize`` returns it.

    ``source``, ``provider``, ``received_at``, ``recipient_domain`` and ``parser_version`` are
    filled in by the flusher, which knows them for the whole request.
    """

    event_id: str
    event_type: str
    occurred_at: int  # microseconds since the epoch, UTC
    recipient: str
    raw: str
    message_id: str | None = None
    campaign: str | None = None
    tags: list[str] = field(default_factory=list)
    metadata: str | None = None
    url: str | None = None
    user_agent: str | None = None
    ip: str | None = None
    smtp_status: str | None = None
    reason: str | None = None
    bounce_class: str | None = None
    agent: str | None = None
    agent_reason: str | None = None


def parse_timestamp(value: Any, *, field_name: str = "timestamp") -> int:
    """Read an ISO 8601 string or unix seconds (int, float or digits) into epoch microseconds.

    Naive ISO times are taken as UTC. Values that can only be milliseconds are divided back.

    Raises:
        MappingError: when the value is missing or not a time.
    """
    kind = type(value)
    if kind is float or kind is int:  # the common case first (``type is`` leaves out bool)
        return _micros_from_seconds(value, field_name)
    if isinstance(value, str):
        text = value.strip()
        if ":" not in text:  # a float is never written with a colon; ISO times are
            try:
                return _micros_from_seconds(float(text), field_name)
            except ValueError:
                pass
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            raise MappingError(
                f"{field_name} {text[:40]!r} is not ISO 8601 or unix seconds"
            ) from None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        return int(parsed.timestamp() * MICROS)
    if isinstance(value, int | float) and not isinstance(value, bool):  # subclasses
        return _micros_from_seconds(value, field_name)
    if value is None or isinstance(value, bool):
        raise MappingError(f"{field_name} is missing or not a time")
    raise MappingError(f"{field_name} has type {type(value).__name__}, not a time")


def _micros_from_seconds(value: float, field_name: str) -> int:
    """Unix seconds (or milliseconds sent by mistake) as epoch microseconds."""
    # ``value < 0`` is False for NaN; isfinite is asked of floats only (a huge int overflows it).
    if value < 0 or (isinstance(value, float) and not math.isfinite(value)):
        raise MappingError(f"{field_name} is not a finite positive number")
    if value > _MILLIS_THRESHOLD:
        value = value / 1000
    if value > _MILLIS_THRESHOLD:
        raise MappingError(f"{field_name} is too far in the future")
    return int(round(value * MICROS))


def normalize_recipient(value: Any) -> str:
    """Trim and lower-case an address; refuse anything that is not ``local@domain``.

    An address written ``Display Name <address>`` (RFC 5322, as Resend's ``data.to`` may carry
    it) is reduced to the bare address.
    """
    if not isinstance(value, str):
        raise MappingError("recipient address is missing or not a string")
    if "<" in value:  # only then is there a display name to drop; bare addresses skip parsing
        value = parseaddr(value)[1]
    address: str = value.strip().lower()
    local, at, domain = address.rpartition("@")
    if not at or not local or not domain:
        raise MappingError(f"recipient {address[:80]!r} is not an email address")
    return address


#: An RFC 3463 enhanced status code, not part of a dotted IP address or version number.
_ENHANCED_STATUS = re.compile(r"(?<![\d.])([245]\.\d{1,3}\.\d{1,3})(?![\d.])")


def enhanced_status(*texts: Any) -> str | None:
    """The first RFC 3463 enhanced status code (``5.1.1``) in ``texts``; non-strings are skipped.

    Every ESP's bounce text (an SMTP reply, a diagnostic code, a description) is searched the
    same way, so a code reads the same whichever provider reported it.
    """
    for text in texts:
        if isinstance(text, str) and (found := _ENHANCED_STATUS.search(text)):
            return found.group(1)
    return None


def recipient_domain(address: str) -> str:
    """The domain part of a normalized address."""
    return address.rpartition("@")[2]


def optional_str(value: Any, *, limit: int = 8192) -> str | None:
    """A field that should be a short string: numbers become text, empty becomes None."""
    if type(value) is str:  # the common case first: this runs for every field of every event
        return value[:limit] if value else None
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)[:limit]
    raise MappingError(f"expected a string, got {type(value).__name__}")


def string_list(value: Any) -> list[str]:
    """Tags or categories: a string or a list of strings becomes a list of strings."""
    if value is None:
        return []
    if type(value) is str:
        return [value]
    if type(value) is list:
        try:
            "".join(value)  # checks every item is a string, in C
            return value
        except TypeError:
            if all(isinstance(item, str | int) and not isinstance(item, bool) for item in value):
                return [str(item) for item in value]
    raise MappingError("tags must be a string or a list of strings")


def json_text(value: Any) -> str | None:
    """Custom data kept as compact JSON text; None stays None."""
    if value is None:
        return None
    try:
        return orjson.dumps(value).decode()
    except TypeError as exc:
        raise MappingError(f"metadata is not JSON-serializable: {exc}") from None


def composite_id(*parts: object) -> str:
    """A stable event id from identifying fields, for ESPs that send no id of their own.

    DESIGN.md: a SHA-256 of (source-independent) type, message id, recipient, timestamp, url.
    ``None`` and empty values are kept distinct from each other by a separator byte.
    """
    digest = hashlib.sha256()
    for part in parts:
        digest.update(b"\x00" if part is None else str(part).encode())
        digest.update(b"\x1f")
    return digest.hexdigest()


def load_json(body: bytes) -> Any:
    """A request body as JSON, for ``split``; a body that is not JSON is a ``PayloadError``."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise PayloadError(f"body is not JSON: {exc}") from None


def object_or_array(body: bytes, problem: str) -> list[Any]:
    """The events of a body that holds one JSON object or an array of them (``split``).

    ``problem`` is the ``PayloadError`` message for any other JSON value.
    """
    document = load_json(body)
    if isinstance(document, list):
        return document
    if isinstance(document, dict):
        return [document]
    raise PayloadError(problem)


def event_name(item: Any, esp: str, field: str = "event") -> str:
    """The event name of one ESP event object, trimmed; ``MappingError`` when there is none."""
    if not isinstance(item, dict):
        raise MappingError(f"a {esp} event must be a JSON object")
    name = item.get(field)
    if not isinstance(name, str) or not name.strip():
        raise MappingError(f"event has no {field!r} name")
    return name.strip()


def class_of(text: str | None, table: Iterable[tuple[str, str]], default: str) -> str:
    """The class of the first ``(needle, class)`` whose needle is in ``text`` (lower-cased).

    ESPs describe drops and blocks in free text; each provider's table says which words mean
    which drop class, in order of precedence.
    """
    lowered = (text or "").lower()
    return next((word for needle, word in table if needle in lowered), default)


def raw_json(item: Any) -> str:
    """The event as compact JSON for the ``raw`` column; ``MappingError`` when it is not JSON."""
    try:
        return orjson.dumps(item).decode()
    except TypeError as exc:  # an integer beyond 64 bits, from a caller other than orjson
        raise MappingError(f"event cannot be kept as JSON: {exc}") from None


@contextmanager
def mapping_errors(what: str = "event") -> Iterator[None]:
    """Turn the odd value a shared helper chokes on into a ``MappingError`` for quarantine.

    ``normalize`` may raise only the project's errors (promise 4): a field of the wrong type
    deep in an ESP's object must quarantine that object, not fail the flusher.
    """
    try:
        yield
    except MappingError:
        raise
    except (TypeError, ValueError, OverflowError) as exc:
        raise MappingError(f"{what} cannot be mapped: {exc}") from None
