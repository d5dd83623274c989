"""The resend provider: Standard Webhooks / Svix signatures on raw bytes (both header families),
the mapping of Resend's SDK fixtures, the simulator's side, and arbitrary input."""

from __future__ import annotations

import base64
import contextlib
import json
import secrets
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest.errors import AuthenticationFailed, IngestError, MappingError, PayloadError
from ingest.intake.replay import MemoryReplayGuard
from ingest.providers import PROVIDERS, InboundRequest, NormalizeContext
from ingest.providers.events import Event, composite_id, recipient_domain
from ingest.providers.resend import ResendProvider, sign
from mailpulse.config import Secret, SourceConfig
from mailpulse.errors import ConfigError
from mailpulse.simulate.esp import ESPS, SimulatedEvent
from tests.helpers import parse_config
from tests.providers.kit import inbound

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "resend"
EXPECTED: dict[str, list[dict[str, Any]]] = json.loads((FIXTURES / "expected.json").read_text())
VECTORS = sorted(FIXTURES.glob("signature_vector_*.json"))
CONTEXT = NormalizeContext(
    source="rs", headers={"svix-id": "msg_fixture"}, received_at=0, campaign_field=None
)


def new_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


def provider(*keys: str) -> ResendProvider:
    credentials = {"secret": tuple(Secret(k) for k in keys)} if keys else {}
    return ResendProvider(SourceConfig(name="rs", provider="resend", credentials=credentials))


def request(body: bytes, headers: dict[str, str]) -> InboundRequest:
    return inbound("rs", headers, body)


def signed(key: str, body: bytes, timestamp: int, prefix: str = "svix-") -> dict[str, str]:
    msg_id = "msg_2LJGfWkBRtmZ1ucEwSRuqVgKtQ6"
    return {
        f"{prefix}id": msg_id,
        f"{prefix}timestamp": str(timestamp),
        f"{prefix}signature": sign(key, msg_id, timestamp, body),
    }


def vector(path: Path) -> tuple[dict[str, Any], bytes, int]:
    data = json.loads(path.read_text())
    return data, data["body"].encode(), data["verify_at_unix_time"]


def iso(micros: int) -> str:
    return (datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=micros)).isoformat()


def row(event: Event) -> dict[str, Any]:
    return {
        "event_type": event.event_type,
        "recipient": event.recipient,
        "occurred_at": iso(event.occurred_at),
        "event_id": event.event_id,
        "message_id": event.message_id,
        "bounce_class": event.bounce_class,
        "agent": event.agent,
        "campaign": event.campaign,
        "smtp_status": event.smtp_status,
    }


# --- signatures ---------------------------------------------------------------------------


@pytest.mark.parametrize("path", VECTORS, ids=lambda p: p.stem)
def test_every_published_vector_verifies_at_its_time(path: Path) -> None:
    """The Standard Webhooks / Svix vector verifies with svix-* and webhook-* headers alike."""
    data, body, at = vector(path)
    provider(data["secret"]).authenticate(request(body, data["headers"]), at)


@pytest.mark.parametrize("path", VECTORS, ids=lambda p: p.stem)
def test_the_vectors_negative_cases_fail(path: Path) -> None:
    """The library tests' one-character change and foreign signature are refused."""
    data, body, at = vector(path)
    name = next(k for k in data["headers"] if k.endswith("signature"))
    for bad in (
        "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OA=",
        "v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc=",
    ):
        with pytest.raises(AuthenticationFailed) as caught:
            provider(data["secret"]).authenticate(request(body, {**data["headers"], name: bad}), at)
        assert caught.value.code == "bad_signature"


def test_any_entry_of_a_multi_signature_header_may_match_and_other_versions_are_ignored() -> None:
    data, body, at = vector(VECTORS[0])
    name = next(k for k in data["headers"] if k.endswith("signature"))
    good = data["headers"][name]
    other = "Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc="
    header = f"v1,{other} v2,{other} {good} v1,{other}"
    provider(data["secret"]).authenticate(request(body, {**data["headers"], name: header}), at)
    # The right bytes under another version are not a v1 signature.
    only_v2 = "v2," + good.partition(",")[2]
    with pytest.raises(AuthenticationFailed):
        provider(data["secret"]).authenticate(request(body, {**data["headers"], name: only_v2}), at)


@pytest.mark.parametrize("part", ["body", "signature", "timestamp", "id"])
def test_changing_any_single_byte_fails(part: str) -> None:
    """Every byte of body, signature, timestamp and id is covered by the signature."""
    data, body, at = vector(VECTORS[0])
    headers = dict(data["headers"])
    prefix = next(k for k in headers if k.endswith("id")).removesuffix("id")
    for position in range(len(body)):
        changed_body, changed = body, dict(headers)
        if part == "body":
            flipped = bytearray(body)
            flipped[position] ^= 0x01
            changed_body = bytes(flipped)
        else:
            name = prefix + part
            value = changed[name]
            index = position % len(value)
            if part == "signature" and index < 3:
                continue  # the "v1," prefix: changing it changes the version, tested above
            replacement = "1" if value[index] != "1" else "2"
            changed[name] = value[:index] + replacement + value[index + 1 :]
        with pytest.raises(AuthenticationFailed) as caught:
            provider(data["secret"]).authenticate(request(changed_body, changed), at)
        assert caught.value.code == "bad_signature"


def test_wrong_key_fails_and_rotation_accepts_the_second_of_two_keys() -> None:
    data, body, at = vector(VECTORS[0])
    with pytest.raises(AuthenticationFailed) as caught:
        provider(new_secret()).authenticate(request(body, data["headers"]), at)
    assert caught.value.code == "bad_signature"
    provider(new_secret(), data["secret"]).authenticate(request(body, data["headers"]), at)


@pytest.mark.parametrize("prefix", ["svix-", "webhook-"])
@pytest.mark.parametrize(
    ("skew", "ok"),
    [(0, True), (300, True), (-300, True), (301, False), (-301, False), (86_400, False)],
)
def test_timestamp_tolerance_is_300_seconds_both_ways(prefix: str, skew: int, ok: bool) -> None:
    key, body, now = new_secret(), b'{"type":"email.sent"}', 1_790_000_000
    req = request(body, signed(key, body, now + skew, prefix))
    if ok:
        provider(key).authenticate(req, now)
    else:
        with pytest.raises(AuthenticationFailed) as caught:
            provider(key).authenticate(req, now)
        assert caught.value.code == "stale_timestamp"


@pytest.mark.parametrize(
    ("drop", "code"),
    [("id", "missing_id"), ("timestamp", "missing_timestamp"), ("signature", "missing_signature")],
)
def test_missing_headers_fail_with_their_own_codes(drop: str, code: str) -> None:
    key, body, now = new_secret(), b"{}", 1_790_000_000
    headers = {k: v for k, v in signed(key, body, now).items() if not k.endswith(drop)}
    with pytest.raises(AuthenticationFailed) as caught:
        provider(key).authenticate(request(body, headers), now)
    assert caught.value.code == code


def test_a_non_numeric_timestamp_and_a_source_without_secret_are_refused() -> None:
    key, body, now = new_secret(), b"{}", 1_790_000_000
    headers = {**signed(key, body, now), "svix-timestamp": "hello"}
    with pytest.raises(AuthenticationFailed) as caught:
        provider(key).authenticate(request(body, headers), now)
    assert caught.value.code == "bad_timestamp"
    with pytest.raises(AuthenticationFailed) as caught:
        provider().authenticate(request(body, signed(key, body, now)), now)
    assert caught.value.code == "no_credentials"


def test_an_identical_request_inside_the_window_is_a_replay_but_a_resigned_retry_passes() -> None:
    key, body, now = new_secret(), b'{"type":"email.sent"}', 1_790_000_000
    source = SourceConfig(name="rs", provider="resend", credentials={"secret": (Secret(key),)})
    guarded = ResendProvider(source, replay=MemoryReplayGuard())
    guarded.authenticate(request(body, signed(key, body, now)), now)
    guarded.accepted(request(body, signed(key, body, now)))
    with pytest.raises(AuthenticationFailed) as caught:
        guarded.authenticate(request(body, signed(key, body, now)), now + 1)
    assert caught.value.code == "replayed_token"
    guarded.authenticate(request(body, signed(key, body, now + 60)), now + 60)


def test_the_stored_headers_keep_the_id_and_drop_the_signature() -> None:
    """The id dedups at normalize time, so it is stored; signatures never are."""
    assert {"svix-signature", "webhook-signature"} <= ResendProvider.credential_headers
    assert not {"svix-id", "webhook-id"} & ResendProvider.credential_headers


# --- mapping ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_every_fixture_gives_the_expected_rows(name: str) -> None:
    """Golden rows written from the fixtures and esp-formats.md §5, compared exactly."""
    body = (FIXTURES / name).read_bytes()
    rows = [
        row(e) for item in provider().split(body, {}) for e in provider().normalize(item, CONTEXT)
    ]
    assert rows == EXPECTED[name]


def test_every_event_fixture_has_expectations() -> None:
    events = {p.name for p in FIXTURES.glob("*.json")} - {"expected.json"}
    assert events - {p.name for p in VECTORS} == set(EXPECTED)


def test_a_bounce_maps_type_to_class_reason_and_status() -> None:
    """Resend's SES-style bounce: Permanent -> hard, Transient -> soft, else undetermined;
    the suppressed subtype (the rust SDK's fixture) was never attempted: dropped/bounced."""
    item = json.loads((FIXTURES / "resendrust_email_bounced.json").read_bytes())
    bounce = {
        "type": "Permanent",
        "subType": "General",
        "message": "bounced",
        "diagnosticCode": ["smtp; 550 5.1.1 user unknown"],
    }
    cases: list[tuple[dict[str, Any] | None, str, str]] = [
        ({**bounce}, "bounced", "hard"),
        ({**bounce, "type": "Transient"}, "bounced", "soft"),
    ]
    cases += [({"type": "Odd"}, "bounced", "undetermined"), (None, "bounced", "undetermined")]
    for given_bounce, kind, klass in cases:
        data = {k: v for k, v in item["data"].items() if k != "bounce"}
        if given_bounce is not None:
            data["bounce"] = given_bounce
        (event,) = provider().normalize({**item, "data": data}, CONTEXT)
        assert (event.event_type, event.bounce_class) == (kind, klass)
    (event,) = provider().normalize({**item, "data": {**item["data"], "bounce": bounce}}, CONTEXT)
    assert (event.smtp_status, event.reason) == ("5.1.1", "smtp; 550 5.1.1 user unknown")
    (suppressed,) = provider().normalize(item, CONTEXT)
    assert suppressed.reason is not None and "suppression list" in suppressed.reason


def test_engagement_fields_tags_and_metadata() -> None:
    item = json.loads((FIXTURES / "resendrust_email_clicked.json").read_bytes())
    (event,) = provider().normalize(item, CONTEXT)
    assert (event.url, event.ip) == ("https://resend.com", "122.115.53.11")
    assert event.user_agent is not None and event.user_agent.startswith("Mozilla/5.0 (Macintosh")
    assert event.tags == ["category:confirm_email"]
    assert json.loads(event.metadata or "") == {"category": "confirm_email"}
    assert json.loads(event.raw) == item


def test_campaign_is_the_campaign_tag_or_a_data_field_named_by_the_source() -> None:
    item = json.loads((FIXTURES / "resendrust_email_delivered.json").read_bytes())
    listed = [{"name": "campaign", "value": "winter"}, {"name": "team", "value": "growth"}]
    tagged = {**item, "data": {**item["data"], "tags": listed}}
    (event,) = provider().normalize(tagged, CONTEXT)
    assert event.campaign == "winter"
    assert event.tags == ["campaign:winter", "team:growth"]
    for field, expected in (
        ("category", "confirm_email"),
        ("broadcast_id", item["data"]["broadcast_id"]),
    ):
        context = NormalizeContext(
            source="rs", headers={"svix-id": "m"}, received_at=0, campaign_field=field
        )
        assert provider().normalize(item, context)[0].campaign == expected


def test_several_recipients_give_one_row_each_with_suffixed_ids() -> None:
    item = json.loads((FIXTURES / "resendrust_email_delivered.json").read_bytes())
    many = {**item, "data": {**item["data"], "to": ["A@x.org", "b@y.org", "a@x.org"]}}
    events = provider().normalize(many, CONTEXT)
    assert [(e.recipient, e.event_id) for e in events] == [
        ("a@x.org", "msg_fixture:a@x.org"),
        ("b@y.org", "msg_fixture:b@y.org"),
    ]


def test_a_recipient_with_a_display_name_is_stored_as_the_bare_address() -> None:
    """``data.to`` may hold ``Name <address>``, the form the fixture's own ``from`` uses."""
    item = json.loads((FIXTURES / "resendrust_email_delivered.json").read_bytes())
    named = {**item, "data": {**item["data"], "to": ['"Doe, Ann" <Ann@Example.org>', "b@y.org"]}}
    events = provider().normalize(named, CONTEXT)
    assert [e.recipient for e in events] == ["ann@example.org", "b@y.org"]
    assert recipient_domain(events[0].recipient) == "example.org"


def test_webhook_id_wins_and_without_any_id_header_the_id_is_composite() -> None:
    item = json.loads((FIXTURES / "resendrust_email_sent.json").read_bytes())
    context = NormalizeContext(
        source="rs", headers={"webhook-id": "w1"}, received_at=0, campaign_field=None
    )
    assert provider().normalize(item, context)[0].event_id == "w1"
    bare = NormalizeContext(source="rs", headers={}, received_at=0, campaign_field=None)
    (event,) = provider().normalize(item, bare)
    assert event.event_id == composite_id(
        "resend", "email.sent", item["data"]["email_id"], "delivered@resend.dev", item["created_at"]
    )


@pytest.mark.parametrize("kind", ["contact.created", "domain.updated", "suppression.added"])
def test_events_about_contacts_and_domains_give_no_row(kind: str) -> None:
    assert (
        provider().normalize(
            {"type": kind, "created_at": "2024-01-01T00:00:00Z", "data": {}}, CONTEXT
        )
        == []
    )


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ([], "JSON object"),
        ({"data": {}}, "no type"),
        ({"type": "email.sent", "data": []}, "no data"),
        ({"type": "email.sent", "created_at": "x", "data": {"to": ["a@b.c"]}}, "not ISO"),
        ({"type": "email.sent", "created_at": 1, "data": {"to": []}}, "data.to"),
        ({"type": "email.sent", "created_at": 1, "data": {"to": ["nobody"]}}, "not an email"),
        ({"type": "email.sent", "created_at": 1, "data": {"to": "a@b.c", "tags": 3}}, "tags"),
        (
            {"type": "email.bounced", "created_at": 1, "data": {"to": "a@b.c", "bounce": 1}},
            "bounce",
        ),
    ],
)
def test_bad_events_raise_mapping_errors(item: Any, message: str) -> None:
    with pytest.raises(MappingError, match=message):
        provider().normalize(item, CONTEXT)


@pytest.mark.parametrize("body", [b"", b"{", b"[]", b'"x"', b"3"])
def test_unparseable_bodies_raise_payload_errors(body: bytes) -> None:
    with pytest.raises(PayloadError):
        provider().split(body, {})


# --- the simulator's side ---------------------------------------------------------------

SIMULATED = [
    SimulatedEvent(1, "sent", "ann@example.com", 1_790_000_000.123, "", campaign="bf"),
    SimulatedEvent(2, "delivered", "ann@example.com", 1_790_000_010.5, "", campaign="bf"),
    SimulatedEvent(3, "deferred", "bo@example.com", 1_790_000_011.0, "", reason="452 4.2.2 full"),
    SimulatedEvent(
        4,
        "bounced",
        "cy@example.com",
        1_790_000_012.0,
        "",
        bounce_class="hard",
        smtp_status="5.1.1",
        reason="550 5.1.1 no such user",
    ),
    SimulatedEvent(5, "bounced", "cy@example.com", 1_790_000_013.0, "", bounce_class="soft"),
    SimulatedEvent(6, "dropped", "cy@example.com", 1_790_000_014.0, "", bounce_class="bounced"),
    SimulatedEvent(
        7,
        "opened",
        "ann@example.com",
        1_790_000_100.0,
        "",
        campaign="bf",
        user_agent="Mozilla/5.0",
        ip="17.58.0.1",
    ),
    SimulatedEvent(
        8,
        "clicked",
        "ann@example.com",
        1_790_000_200.0,
        "",
        campaign="bf",
        url="https://shop.example.com/x",
        metadata={"customer_id": "cus_1"},
    ),
    SimulatedEvent(9, "complained", "ann@example.com", 1_790_000_300.0, "", tags=("black",)),
    # An Apple proxy open: Resend has no flag for it, so it arrives as a plain open.
    SimulatedEvent(10, "opened", "dy@icloud.com", 1_790_000_301.0, "", agent="apple_mpp"),
]


@pytest.mark.parametrize("index", range(len(SIMULATED)))
def test_round_trip_encode_authenticate_split_normalize(index: int) -> None:
    key = new_secret()
    sim = ESPS["resend"].message_id(SIMULATED[index].sequence, 7)
    event = SimulatedEvent(**{**_fields(SIMULATED[index]), "message_id": sim})
    now = 1_790_000_400.0
    outbound = ESPS["resend"].encode(
        [event], url="http://x/webhooks/rs", now=now, sender={"secret": key}
    )
    headers = {k.lower(): v for k, v in outbound.headers.items()}
    receiver = provider(key)
    receiver.authenticate(request(outbound.body, headers), now)
    stored = {k: v for k, v in headers.items() if k not in ResendProvider.credential_headers}
    context = NormalizeContext(source="rs", headers=stored, received_at=0, campaign_field=None)
    (row_,) = [
        e
        for item in receiver.split(outbound.body, stored)
        for e in receiver.normalize(item, context)
    ]
    assert row_.event_type == event.event_type
    assert (row_.recipient, row_.message_id, row_.campaign) == (
        event.recipient,
        sim,
        event.campaign,
    )
    assert row_.occurred_at == round(event.occurred_at * 1000) * 1000  # milliseconds on the wire
    assert row_.bounce_class == event.bounce_class
    assert row_.agent is None  # Resend flags no machine opens; heuristics are the flusher's
    again = ESPS["resend"].encode([event], url="http://x", now=now + 90, sender={"secret": key})
    assert _id(again.headers) == _id(outbound.headers)


def test_both_header_families_are_sent() -> None:
    key = new_secret()
    names = set()
    for event in SIMULATED[:2]:
        outbound = ESPS["resend"].encode([event], url="http://x", now=1.0, sender={"secret": key})
        names |= {k.lower() for k in outbound.headers}
    assert {"svix-id", "webhook-id", "svix-signature", "webhook-signature"} <= names


def test_only_the_types_resend_reports_are_emitted() -> None:
    assert ResendProvider.emits == {
        "sent",
        "delivered",
        "deferred",
        "bounced",
        "dropped",
        "opened",
        "clicked",
        "complained",
    }


def test_demo_credentials_sign_what_the_receiver_accepts() -> None:
    receiver_keys, sender_keys = ESPS["resend"].demo_credentials("http://x")
    assert receiver_keys["secret"].startswith("whsec_")
    body, now = b'{"type":"email.sent"}', 1_790_000_000
    provider(receiver_keys["secret"]).authenticate(
        request(body, signed(sender_keys["secret"], body, now)), now
    )


def _fields(event: SimulatedEvent) -> dict[str, Any]:
    return {name: getattr(event, name) for name in SimulatedEvent.__dataclass_fields__}


def _id(headers: Any) -> str:
    lowered = {k.lower(): v for k, v in headers.items()}
    return str(lowered.get("svix-id") or lowered.get("webhook-id"))


# --- configuration --------------------------------------------------------------------------


def test_a_source_without_secret_or_with_a_malformed_one_is_a_config_problem() -> None:
    assert PROVIDERS["resend"] is ResendProvider
    with pytest.raises(ConfigError) as caught:
        parse_config({"sources": {"rs": {"provider": "resend"}}}, env={})
    assert "needs secret" in str(caught.value)
    with pytest.raises(ConfigError) as caught:
        parse_config({"sources": {"rs": {"provider": "resend", "secret": "whsec_%%%"}}}, env={})
    assert "whsec_" in str(caught.value)
    assert "%%%" not in str(caught.value)
    parse_config(
        {"sources": {"rs": {"provider": "resend", "secret": [new_secret(), new_secret()]}}}, env={}
    )


# --- arbitrary input ----------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=20,
)
header_names = st.sampled_from(
    [
        "svix-id",
        "svix-timestamp",
        "svix-signature",
        "webhook-id",
        "webhook-timestamp",
        "webhook-signature",
        "x",
    ]
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=st.binary(max_size=300), headers=st.dictionaries(header_names, st.text(max_size=60)))
def test_authenticate_and_split_raise_only_ingest_errors(
    body: bytes, headers: dict[str, str]
) -> None:
    for call in (
        lambda: provider(new_secret()).authenticate(request(body, headers), 1_790_000_000),
        lambda: provider().split(body, headers),
    ):
        with contextlib.suppress(IngestError):
            call()


@settings(max_examples=500, deadline=None)
@given(
    item=st.one_of(
        json_values,
        st.fixed_dictionaries(
            {
                "type": st.sampled_from(
                    [
                        "email.bounced",
                        "email.clicked",
                        "email.opened",
                        "email.failed",
                        "email.suppressed",
                        "x",
                    ]
                ),
                "created_at": json_values,
                "data": st.one_of(
                    json_values,
                    st.fixed_dictionaries(
                        {
                            "to": json_values,
                            "tags": json_values,
                            "bounce": json_values,
                            "click": json_values,
                            "open": json_values,
                            "failed": json_values,
                            "suppressed": json_values,
                            "email_id": json_values,
                        }
                    ),
                ),
            },
        ),
    )
)
def test_normalize_raises_only_mapping_errors(item: Any) -> None:
    with contextlib.suppress(MappingError):
        provider().normalize(item, CONTEXT)
