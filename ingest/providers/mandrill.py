"""``mandrill``: Mailchimp Transactional (Mandrill) webhooks, batched and form-encoded.

Body (``application/x-www-form-urlencoded``): one field, ``mandrill_events``, a JSON array of
up to 1,000 events, "batched and POSTed roughly each minute".

Authentication: ``X-Mandrill-Signature`` is base64(HMAC-SHA1(webhook key, url + for each POST
field sorted by name: name + value)), where url is the webhook URL exactly as registered in
Mandrill (scheme, host, path, query) and values are the decoded form values. The key is the
credential ``secret`` (a list for rotation); the URL is the option ``url``: it is public and it
is what Mandrill signs, whatever host or proxy the request reached us through. Mandrill signs
no timestamp or nonce, so there is nothing to make a replay stale: a replayed batch is
authentic and its events dedup in the flusher.

Mandrill checks a new webhook URL with HEAD before posting to it; HEAD and GET are answered
200 without storing anything.

Mapping: ``send`` -> sent, ``delivered`` -> delivered, ``deferral`` -> deferred,
``hard_bounce`` / ``soft_bounce`` -> bounced hard / soft, ``open`` -> opened, ``click`` ->
clicked, ``spam`` -> complained, ``unsub`` -> unsubscribed, ``reject`` -> dropped (class from
``msg.reject_reason`` when present: ``hard-bounce``/``soft-bounce`` -> ``bounced``, ``spam`` ->
``complained``, ``unsub`` -> ``unsubscribed``, ``invalid`` -> ``invalid``, others ->
``policy``; absent -> ``rejected``). Sync events (``type: blacklist|whitelist``, no ``event``)
change Mandrill's rejection lists, not a message, and ``inbound`` is received mail: both map to
no row (the whole request stays in the raw lake). Unknown message events become ``other``.

Dedup id: Mandrill has no per-event id; ``_id`` is the message's id, the same on every event
of the message. The id is ``composite_id(_id, event, ts, url)`` (``ts`` in whole seconds; the
clicked URL tells apart two clicks of one second).

Campaign: Mandrill has no campaign field. By default the ``campaign`` key of ``msg.metadata``
(where senders put it); ``campaign = "<name>"`` reads another metadata key, or a ``msg`` field
of that name (``subaccount``, ``template``); ``campaign = "tags"`` takes the first tag.

Mandrill flags no machine opens or clicks, so ``agent`` is left to the flusher's rules.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import orjson

from ingest.errors import AuthenticationFailed, MappingError, PayloadError
from ingest.providers.base import (
    InboundRequest,
    NormalizeContext,
    Provider,
)
from ingest.providers.events import (
    MESSAGE_EVENT_TYPES,
    Event,
    composite_id,
    enhanced_status,
    json_text,
    normalize_recipient,
    optional_str,
    parse_timestamp,
    raw_json,
    string_list,
)
from mailpulse.config import SourceConfig

SIGNATURE_HEADER = "x-mandrill-signature"
EVENTS_FIELD = "mandrill_events"
_MAX_FIELDS = 16  # Mandrill posts one field; a flood of fields is not Mandrill
_TYPES = {
    "send": "sent",
    "delivered": "delivered",
    "deferral": "deferred",
    "hard_bounce": "bounced",
    "soft_bounce": "bounced",
    "open": "opened",
    "click": "clicked",
    "spam": "complained",
    "unsub": "unsubscribed",
    "reject": "dropped",
}
_REJECT_CLASSES = {
    "hard-bounce": "bounced",
    "soft-bounce": "bounced",
    "spam": "complained",
    "unsub": "unsubscribed",
    "invalid": "invalid",
}
_NOT_EMAIL_EVENTS = frozenset({"inbound"})


def sign(key: str, url: str, fields: Sequence[tuple[str, str]]) -> str:
    """The ``X-Mandrill-Signature`` for POST ``fields`` sent to the webhook ``url``."""
    signed = url + "".join(name + value for name, value in sorted(fields, key=lambda f: f[0]))
    digest = hmac.new(key.encode(), signed.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


def url_problem(url: Any) -> str | None:
    """Why ``url`` cannot be the webhook URL Mandrill signs, or None when it can."""
    if not isinstance(url, str) or not url:
        return "needs url: the webhook URL exactly as configured in Mandrill (it is signed)"
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc or url != url.strip():
        return f"url {url[:80]!r} must be an http(s) URL, exactly as configured in Mandrill"
    return None


class MandrillProvider(Provider):
    """Mandrill: a form field of batched JSON events, HMAC-SHA1 over URL and fields."""

    name = "mandrill"
    credential_keys = frozenset({"secret"})
    option_keys = frozenset({"url"})
    content_types = frozenset({"application/x-www-form-urlencoded"})
    dedup_key = "composite of the message `_id`, `event`, `ts` and clicked `url`"
    default_campaign_field = "campaign"
    credential_headers = frozenset({"authorization", SIGNATURE_HEADER})
    probe_methods = frozenset({"HEAD", "GET"})
    max_batch = 1000
    emits = MESSAGE_EVENT_TYPES

    @classmethod
    def config_problems(cls, source: SourceConfig) -> list[str]:
        """The key (``secret``) and the signed ``url`` are both required."""
        problems = super().config_problems(source)
        problem = url_problem(source.options.get("url"))
        if problem:
            problems.append(problem)
        return problems

    def authenticate(self, request: InboundRequest, now: float) -> None:
        """Recompute the signature over the configured URL and the decoded form fields."""
        keys = self.source.credentials.get("secret", ())
        url = self.source.options.get("url")
        if not keys or url_problem(url) is not None:
            raise AuthenticationFailed(
                "this source has no webhook key or url configured", code="no_credentials"
            )
        given = request.headers.get(SIGNATURE_HEADER, "").strip()
        if not given:
            raise AuthenticationFailed(
                "X-Mandrill-Signature header is missing", code="missing_signature"
            )
        try:
            fields = _form_fields(request.body)
        except ValueError:
            raise AuthenticationFailed(
                "body is not form-encoded UTF-8, so its signature cannot be checked",
                code="bad_body",
            ) from None
        presented = given.encode("utf-8", "replace")
        matched = False
        for key in keys:  # every key, no early exit: timing says nothing about which
            expected = sign(key.reveal(), str(url), fields).encode()
            matched |= hmac.compare_digest(expected, presented)
        if not matched:
            raise AuthenticationFailed("signature does not match", code="bad_signature")

    def split(self, body: bytes, headers: Mapping[str, str]) -> list[Any]:
        """The events of the ``mandrill_events`` field."""
        try:
            fields = _form_fields(body)
        except ValueError:
            raise PayloadError("body is not form-encoded UTF-8") from None
        values = [value for name, value in fields if name == EVENTS_FIELD]
        if len(values) != 1:
            raise PayloadError(f"body must carry exactly one {EVENTS_FIELD} field")
        try:
            events = orjson.loads(values[0])
        except orjson.JSONDecodeError as exc:
            raise PayloadError(f"{EVENTS_FIELD} is not JSON: {exc}") from None
        if not isinstance(events, list):
            raise PayloadError(f"{EVENTS_FIELD} must be a JSON array")
        return events

    def normalize(self, item: Any, context: NormalizeContext) -> list[Event]:
        """Map one Mandrill event (module docstring)."""
        if not isinstance(item, dict):
            raise MappingError("a Mandrill event must be a JSON object")
        name = item.get("event")
        if name is None and "type" in item:
            return []  # a blacklist/whitelist sync event: no message involved
        if not isinstance(name, str) or not name:
            raise MappingError("event has no event name")
        if name in _NOT_EMAIL_EVENTS:
            return []
        msg = item.get("msg")
        if not isinstance(msg, dict):
            raise MappingError("event has no msg object")
        kind = _TYPES.get(name, "other")
        ts = item.get("ts")
        occurred_at = parse_timestamp(ts, field_name="ts")
        message_id = optional_str(item.get("_id")) or optional_str(msg.get("_id"))
        url = optional_str(item.get("url")) if kind == "clicked" else None
        metadata = msg.get("metadata")
        return [
            Event(
                event_id=composite_id(message_id, name, ts, url),
                event_type=kind,
                occurred_at=occurred_at,
                recipient=normalize_recipient(msg.get("email")),
                raw=raw_json(item),
                message_id=message_id,
                campaign=campaign(msg, self.campaign_field(context)),
                tags=string_list(msg.get("tags")),
                metadata=json_text(metadata) if metadata not in (None, {}, []) else None,
                url=url,
                user_agent=optional_str(item.get("user_agent")),
                ip=optional_str(item.get("ip")),
                smtp_status=_smtp_status(_diagnostic(name, msg)),
                reason=_reason(name, msg),
                bounce_class=_bounce_class(name, msg),
            )
        ]


def campaign(msg: Mapping[str, Any], field: str | None) -> str | None:
    """The campaign of a message under the source's campaign field (module docstring)."""
    if not field:
        return None
    if field == "tags":
        tags = string_list(msg.get("tags"))
        return tags[0] if tags else None
    metadata = msg.get("metadata")
    if not isinstance(metadata, dict) or field not in metadata:
        metadata = msg  # not a metadata key: a field of msg itself
    value = metadata.get(field)
    return optional_str(value) if isinstance(value, str | int | float) else None


def _form_fields(body: bytes) -> list[tuple[str, str]]:
    """Decoded form fields; ValueError for anything that is not strict form encoding."""
    text = body.decode("utf-8")
    if not text:
        return []
    return parse_qsl(
        text,
        keep_blank_values=True,
        strict_parsing=True,
        encoding="utf-8",
        errors="strict",
        max_num_fields=_MAX_FIELDS,
    )


def _diagnostic(name: str, msg: Mapping[str, Any]) -> str | None:
    if name == "deferral":
        smtp_events = msg.get("smtp_events")
        if isinstance(smtp_events, list) and smtp_events and isinstance(smtp_events[-1], dict):
            return optional_str(smtp_events[-1].get("diag"))
        return None
    if name in ("hard_bounce", "soft_bounce"):
        return optional_str(msg.get("diag"))
    return None


def _smtp_status(diagnostic: str | None) -> str | None:
    return enhanced_status(diagnostic)


def _reason(name: str, msg: Mapping[str, Any]) -> str | None:
    diagnostic = _diagnostic(name, msg)
    if diagnostic:
        return diagnostic.removeprefix("smtp;").strip() or None
    if name in ("hard_bounce", "soft_bounce"):
        return optional_str(msg.get("bounce_description"))
    if name == "reject":
        return optional_str(msg.get("reject_reason"))
    return None


def _bounce_class(name: str, msg: Mapping[str, Any]) -> str | None:
    if name == "hard_bounce":
        return "hard"
    if name == "soft_bounce":
        return "soft"
    if name == "reject":
        reason = msg.get("reject_reason")
        if not isinstance(reason, str) or not reason:
            return "rejected"
        return _REJECT_CLASSES.get(reason, "policy")
    return None
