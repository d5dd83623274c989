"""The generic provider: its signature scheme on raw bytes and its mapping of every body shape."""

from __future__ import annotations

import hashlib
import hmac
import json

import pytest

from ingest.errors import AuthenticationFailed, MappingError, PayloadError
from ingest.providers import InboundRequest, NormalizeContext
from ingest.providers.generic import GenericProvider, sign
from mailpulse.config import Secret, SourceConfig

NOW = 1_790_000_000


def provider(*secrets: str) -> GenericProvider:
    source = SourceConfig(
        name="s", provider="generic", credentials={"secret": tuple(Secret(s) for s in secrets)}
    )
    return GenericProvider(source)


def request(body: bytes, headers: dict[str, str]) -> InboundRequest:
    return InboundRequest(
        source="s",
        method="POST",
        url="http://x/webhooks/s",
        headers={k.lower(): v for k, v in headers.items()},
        body=body,
        remote_addr="127.0.0.1",
        content_type="application/json",
    )


def signed(secret: str, body: bytes, timestamp: int = NOW) -> dict[str, str]:
    return {
        "X-Webhook-Timestamp": str(timestamp),
        "X-Webhook-Signature": sign(secret, timestamp, body),
    }


def test_known_answer_signature() -> None:
    """The scheme is HMAC-SHA256 over ``<timestamp>.<raw body>``, hex, prefixed ``sha256=``."""
    expected = hmac.new(b"key", b"1700000000.{}", hashlib.sha256).hexdigest()
    assert sign("key", 1700000000, b"{}") == f"sha256={expected}"


def test_valid_signature_passes_and_rotation_accepts_any_listed_secret() -> None:
    body = b'{"id":"1"}'
    provider("a").authenticate(request(body, signed("a", body)), NOW)
    provider("new", "old").authenticate(request(body, signed("old", body)), NOW)


@pytest.mark.parametrize("position", [0, 5, 9])
def test_any_changed_body_byte_fails(position: int) -> None:
    body = b'{"id":"1"}'
    headers = signed("a", body)
    tampered = bytearray(body)
    tampered[position] ^= 0x01
    with pytest.raises(AuthenticationFailed) as caught:
        provider("a").authenticate(request(bytes(tampered), headers), NOW)
    assert caught.value.code == "bad_signature"


def test_changed_signature_timestamp_or_key_fails() -> None:
    body = b"[]"
    headers = signed("a", body)
    flipped = headers["X-Webhook-Signature"][:-1] + (
        "0" if headers["X-Webhook-Signature"][-1] != "0" else "1"
    )
    cases = [
        ({**headers, "X-Webhook-Signature": flipped}, "a", "bad_signature"),
        ({**headers, "X-Webhook-Timestamp": str(NOW + 1)}, "a", "bad_signature"),
        (headers, "b", "bad_signature"),
        ({"X-Webhook-Timestamp": str(NOW)}, "a", "missing_signature"),
        ({"X-Webhook-Signature": headers["X-Webhook-Signature"]}, "a", "missing_timestamp"),
        ({**headers, "X-Webhook-Timestamp": "soon"}, "a", "bad_timestamp"),
    ]
    for given, key, code in cases:
        with pytest.raises(AuthenticationFailed) as caught:
            provider(key).authenticate(request(body, given), NOW)
        assert caught.value.code == code


@pytest.mark.parametrize(
    ("skew", "ok"),
    [(0, True), (300, True), (-300, True), (301, False), (-301, False), (86_400, False)],
)
def test_timestamp_tolerance_is_300_seconds(skew: int, ok: bool) -> None:
    body = b"{}"
    req = request(body, signed("a", body, NOW + skew))
    if ok:
        provider("a").authenticate(req, NOW)
    else:
        with pytest.raises(AuthenticationFailed) as caught:
            provider("a").authenticate(req, NOW)
        assert caught.value.code == "stale_timestamp"


CONTEXT = NormalizeContext(source="s", headers={}, received_at=NOW * 1_000_000, campaign_field=None)
ONE = {
    "id": "e1",
    "type": "bounced",
    "timestamp": "2026-11-27T10:00:00Z",
    "email": " Ann@Example.COM ",
    "message_id": "m1",
    "campaign": "c1",
    "bounce_class": "hard",
    "reason": "550 no such user",
    "smtp_status": "5.1.1",
    "tags": ["a", "b"],
    "metadata": {"k": 1},
}


@pytest.mark.parametrize(
    "body",
    [ONE, [ONE, {**ONE, "id": "e2"}], {"events": [ONE, {**ONE, "id": "e2"}]}],
    ids=["object", "array", "events-wrapper"],
)
def test_every_body_shape_splits(body: object) -> None:
    items = provider("a").split(json.dumps(body).encode(), {})
    assert [item["id"] for item in items] == (
        ["e1"] if isinstance(body, dict) and "events" not in body else ["e1", "e2"]
    )


def test_normalize_maps_every_field() -> None:
    (event,) = provider("a").normalize(ONE, CONTEXT)
    assert event.event_id == "e1"
    assert event.event_type == "bounced"
    assert event.occurred_at == 1_795_773_600_000_000
    assert event.recipient == "ann@example.com"
    assert (event.message_id, event.campaign, event.bounce_class) == ("m1", "c1", "hard")
    assert (event.smtp_status, event.reason) == ("5.1.1", "550 no such user")
    assert event.tags == ["a", "b"]
    assert json.loads(event.metadata or "") == {"k": 1}
    assert json.loads(event.raw) == ONE


def test_unix_seconds_and_milliseconds_are_the_same_instant() -> None:
    seconds = provider("a").normalize({**ONE, "timestamp": 1_795_773_600}, CONTEXT)[0]
    millis = provider("a").normalize({**ONE, "timestamp": 1_795_773_600_000}, CONTEXT)[0]
    text = provider("a").normalize({**ONE, "timestamp": "1795773600"}, CONTEXT)[0]
    assert seconds.occurred_at == millis.occurred_at == text.occurred_at == 1_795_773_600_000_000


def test_campaign_field_can_be_overridden_per_source() -> None:
    context = NormalizeContext(source="s", headers={}, received_at=0, campaign_field="batch")
    (event,) = provider("a").normalize({**ONE, "batch": "winter"}, context)
    assert event.campaign == "winter"


def test_a_bounce_without_class_is_undetermined() -> None:
    item = {k: v for k, v in ONE.items() if k != "bounce_class"}
    assert provider("a").normalize(item, CONTEXT)[0].bounce_class == "undetermined"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"id": None}, "no id"),
        ({"type": "exploded"}, "not one of the event types"),
        ({"timestamp": "yesterday"}, "not ISO 8601"),
        ({"timestamp": None}, "missing"),
        ({"email": "not-an-address"}, "not an email address"),
        ({"email": 5}, "not a string"),
        ({"bounce_class": "medium"}, "not hard/soft/undetermined"),
        ({"tags": {"a": 1}}, "tags must be"),
        ({"agent": "robot"}, "agent"),
    ],
)
def test_bad_events_raise_mapping_errors(change: dict[str, object], message: str) -> None:
    with pytest.raises(MappingError, match=message):
        provider("a").normalize({**ONE, **change}, CONTEXT)


@pytest.mark.parametrize("body", [b"", b"{", b'"text"', b"42", b'{"events": 3}'])
def test_unparseable_bodies_raise_payload_errors(body: bytes) -> None:
    with pytest.raises(PayloadError):
        provider("a").split(body, {})
