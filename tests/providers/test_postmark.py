"""The postmark provider: Basic and header-token authentication, the mapping of Postmark's
samples by RecordType and bounce Type, dedup ids, the simulator's side, and arbitrary input."""

from __future__ import annotations

import contextlib
import json
import secrets
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest.errors import AuthenticationFailed, IngestError, MappingError, PayloadError
from ingest.providers import PROVIDERS, InboundRequest, NormalizeContext
from ingest.providers.events import Event, composite_id
from ingest.providers.postmark import PostmarkProvider
from ingest.providers.shared_secret import basic_header
from mailpulse.config import Secret, SourceConfig
from mailpulse.errors import ConfigError
from mailpulse.simulate.esp import ESPS, SimulatedEvent
from tests.helpers import parse_config
from tests.providers.kit import inbound

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "postmark"
EXPECTED: dict[str, list[dict[str, Any]]] = json.loads((FIXTURES / "expected.json").read_text())
CONTEXT = NormalizeContext(
    source="pm",
    headers={"x-pm-webhook-trace-id": "trace-fixture"},
    received_at=0,
    campaign_field=None,
)
BARE = NormalizeContext(source="pm", headers={}, received_at=0, campaign_field=None)
NOW = 1_790_000_000.0


def provider(
    basic: tuple[str, ...] = (), tokens: tuple[str, ...] = (), **options: Any
) -> PostmarkProvider:
    credentials = {}
    if basic:
        credentials["basic_auth"] = tuple(Secret(b) for b in basic)
    if tokens:
        credentials["header_token"] = tuple(Secret(t) for t in tokens)
    source = SourceConfig(name="pm", provider="postmark", credentials=credentials, options=options)
    return PostmarkProvider(source)


def request(headers: dict[str, str], body: bytes = b"{}") -> InboundRequest:
    return inbound("pm", headers, body)


def credential() -> str:
    return f"postmark:{secrets.token_urlsafe(16)}"


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


def fixture(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((FIXTURES / name).read_bytes())
    return loaded


# --- authentication -----------------------------------------------------------------------


def test_basic_auth_passes_and_rotation_accepts_the_second_credential() -> None:
    old, new = credential(), credential()
    provider((old,)).authenticate(request({"Authorization": basic_header(old)}), NOW)
    provider((new, old)).authenticate(request({"Authorization": basic_header(old)}), NOW)


def test_the_default_token_header_and_a_configured_one() -> None:
    token = secrets.token_urlsafe(24)
    provider(tokens=("other", token)).authenticate(
        request({"X-Postmark-Webhook-Token": token}), NOW
    )
    custom = provider(tokens=(token,), token_header="X-Hook-Secret")
    custom.authenticate(request({"X-Hook-Secret": token}), NOW)
    assert "x-hook-secret" in custom.secret_headers
    with pytest.raises(AuthenticationFailed) as caught:
        custom.authenticate(request({"X-Postmark-Webhook-Token": token}), NOW)
    assert caught.value.code == "missing_credentials"


@pytest.mark.parametrize(
    ("headers", "code"),
    [
        ({}, "missing_credentials"),
        ({"Authorization": "Basic !!!"}, "bad_credentials"),
        ({"Authorization": "Bearer x"}, "bad_credentials"),
    ],
)
def test_missing_or_wrong_basic_credentials_fail(headers: dict[str, str], code: str) -> None:
    with pytest.raises(AuthenticationFailed) as caught:
        provider((credential(),)).authenticate(request(headers), NOW)
    assert caught.value.code == code


def test_any_changed_byte_of_a_credential_fails() -> None:
    good, token = credential(), secrets.token_urlsafe(24)
    both = provider((good,), (token,))
    for position in range(len(good)):
        changed = good[:position] + chr(ord(good[position]) ^ 1) + good[position + 1 :]
        headers = {"Authorization": basic_header(changed), "X-Postmark-Webhook-Token": token}
        with pytest.raises(AuthenticationFailed):
            both.authenticate(request(headers), NOW)
    # With both configured, both must pass.
    with pytest.raises(AuthenticationFailed):
        both.authenticate(request({"Authorization": basic_header(good)}), NOW)
    with pytest.raises(AuthenticationFailed):
        both.authenticate(request({"X-Postmark-Webhook-Token": token}), NOW)


def test_a_source_without_credentials_refuses_everything() -> None:
    with pytest.raises(AuthenticationFailed) as caught:
        provider().authenticate(request({"Authorization": basic_header("a:b")}), NOW)
    assert caught.value.code == "no_credentials"


def test_credentials_are_never_stored_but_the_trace_id_is() -> None:
    assert {"authorization", "x-postmark-webhook-token"} <= PostmarkProvider.credential_headers
    assert "x-pm-webhook-trace-id" not in PostmarkProvider.credential_headers


# --- mapping ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_every_fixture_gives_the_expected_rows(name: str) -> None:
    """Golden rows written from the samples and esp-formats.md §3, compared exactly."""
    body = (FIXTURES / name).read_bytes()
    rows = [
        row(event)
        for item in provider().split(body, {})
        for event in provider().normalize(item, CONTEXT)
    ]
    assert rows == EXPECTED[name]


def test_every_fixture_has_expectations() -> None:
    assert {p.name for p in FIXTURES.glob("*.json")} - {"expected.json"} == set(EXPECTED)


def test_the_older_bounce_sample_without_record_type_is_read_as_a_bounce() -> None:
    """postmarkapp.com's marketing-page sample predates ``RecordType`` and ``MessageStream``."""
    item = fixture("pmsite_email_webhooks_bounce.json")
    assert "RecordType" not in item
    (event,) = provider().normalize(item, BARE)
    assert (event.event_type, event.bounce_class, event.reason) == (
        "bounced",
        "hard",
        "Test bounce details",
    )
    assert json.loads(event.metadata or "") == {"user_id": 43}


def test_the_spam_complaint_sample_is_mapped_by_record_type_not_its_conflicting_type_code() -> None:
    """The postmark-skills sample says ``TypeCode: 512`` (SpamNotification in the postmark.js
    enum); the record is still a complaint."""
    item = fixture("pmskills_spamcomplaint.json")
    assert item["TypeCode"] == 512
    assert provider().normalize(item, BARE)[0].event_type == "complained"


@pytest.mark.parametrize(
    ("bounce_type", "kind", "klass"),
    [
        ("HardBounce", "bounced", "hard"),
        ("SoftBounce", "bounced", "soft"),
        ("Transient", "bounced", "soft"),
        ("DnsError", "bounced", "soft"),
        ("Blocked", "bounced", "soft"),
        ("DMARCPolicy", "bounced", "soft"),
        ("BadEmailAddress", "dropped", "invalid"),
        ("ManuallyDeactivated", "dropped", "suppressed"),
        ("SMTPApiError", "dropped", "error"),
        ("TemplateRenderingFailed", "dropped", "template"),
        ("SpamComplaint", "complained", None),
        ("SpamNotification", "other", None),
        ("AutoResponder", "other", None),
        ("Unknown", "other", None),
        ("SomethingNew", "bounced", "undetermined"),
    ],
)
def test_bounces_map_by_type_string_not_type_code(
    bounce_type: str, kind: str, klass: str | None
) -> None:
    item = {**fixture("pmskills_bounce_hardbounce.json"), "Type": bounce_type, "TypeCode": 1}
    (event,) = provider().normalize(item, BARE)
    assert (event.event_type, event.bounce_class) == (kind, klass)


@pytest.mark.parametrize(
    ("suppress", "reason", "kind", "klass"),
    [
        (True, "ManualSuppression", "unsubscribed", None),
        (True, "HardBounce", "dropped", "bounced"),
        (True, "SpamComplaint", "dropped", "complained"),
        (False, None, "resubscribed", None),
    ],
)
def test_subscription_changes(
    suppress: bool, reason: str | None, kind: str, klass: str | None
) -> None:
    item = {
        **fixture("pmskills_subscriptionchange.json"),
        "SuppressSending": suppress,
        "SuppressionReason": reason,
    }
    (event,) = provider().normalize(item, BARE)
    assert (event.event_type, event.bounce_class) == (kind, klass)


def test_engagement_fields() -> None:
    (click,) = provider().normalize(fixture("pmskills_click.json"), BARE)
    assert (click.url, click.ip, click.user_agent) == (
        "https://yourdomain.com/pricing",
        "203.0.113.1",
        "Mozilla/5.0 ...",
    )
    assert click.tags == ["welcome-email"]
    assert json.loads(click.metadata or "") == {"customer_id": "12345"}
    (opened,) = provider().normalize(fixture("pmskills_open.json"), BARE)
    assert opened.agent is None  # Postmark sends no machine-open flag


def test_without_trace_header_the_id_is_a_composite_of_the_identifying_fields() -> None:
    click = fixture("pmskills_click.json")
    (event,) = provider().normalize(click, BARE)
    assert event.event_id == composite_id(
        "postmark",
        "Click",
        click["MessageID"],
        "john@example.com",
        click["ReceivedAt"],
        None,
        click["OriginalLink"],
    )
    other_link = {**click, "OriginalLink": "https://yourdomain.com/other"}
    later = {**click, "ReceivedAt": "2025-04-05T16:34:00Z"}
    ids = {provider().normalize(item, BARE)[0].event_id for item in (click, other_link, later)}
    assert len(ids) == 3
    bounce = fixture("pmskills_bounce_hardbounce.json")
    assert (
        provider().normalize(bounce, BARE)[0].event_id
        != provider().normalize({**bounce, "ID": 43}, BARE)[0].event_id
    )


def test_campaign_defaults_to_tag_and_can_name_a_metadata_key() -> None:
    item = {**fixture("pmskills_delivery.json"), "Metadata": {"campaign": "winter"}}
    assert provider().normalize(item, BARE)[0].campaign == "welcome-email"
    context = NormalizeContext(source="pm", headers={}, received_at=0, campaign_field="campaign")
    assert provider().normalize(item, context)[0].campaign == "winter"
    context = NormalizeContext(
        source="pm", headers={}, received_at=0, campaign_field="MessageStream"
    )
    assert provider().normalize(item, context)[0].campaign == "outbound"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"RecordType": "Inbound"}, "RecordType"),
        ({"RecordType": 5}, "RecordType"),
        ({"DeliveredAt": None}, "DeliveredAt"),
        ({"Recipient": "nobody"}, "not an email"),
        ({"Recipient": None}, "recipient"),
        ({"Tag": ["a"]}, "expected a string"),
    ],
)
def test_bad_records_raise_mapping_errors(change: dict[str, Any], message: str) -> None:
    with pytest.raises(MappingError, match=message):
        provider().normalize({**fixture("pmskills_delivery.json"), **change}, BARE)


@pytest.mark.parametrize("body", [b"", b"{", b"[]", b'"x"', b"3"])
def test_unparseable_bodies_raise_payload_errors(body: bytes) -> None:
    with pytest.raises(PayloadError):
        provider().split(body, {})


# --- the simulator's side ---------------------------------------------------------------

T = 1_790_000_000.0
SIMULATED = [
    SimulatedEvent(1, "delivered", "ann@example.com", T + 0.5, "", campaign="bf"),
    SimulatedEvent(
        2,
        "bounced",
        "cy@example.com",
        T + 1.25,
        "",
        bounce_class="hard",
        smtp_status="5.1.1",
        reason="550 5.1.1 no such user",
    ),
    SimulatedEvent(3, "bounced", "cy@example.com", T + 2, "", bounce_class="soft"),
    SimulatedEvent(4, "bounced", "cy@example.com", T + 3, "", bounce_class="undetermined"),
    SimulatedEvent(
        5, "opened", "ann@example.com", T + 4, "", campaign="bf", user_agent="UA", ip="1.2.3.4"
    ),
    SimulatedEvent(6, "clicked", "ann@example.com", T + 5, "", url="https://shop.example.com/x"),
    SimulatedEvent(7, "complained", "ann@example.com", T + 6, "", campaign="bf"),
    SimulatedEvent(8, "unsubscribed", "ann@example.com", T + 7, "", metadata={"k": "v"}),
    SimulatedEvent(9, "resubscribed", "ann@example.com", T + 8.123456, ""),
    # An Apple proxy open: Postmark has no flag for it, so it arrives as a plain open.
    SimulatedEvent(10, "opened", "dy@icloud.com", T + 9, "", agent="apple_mpp"),
]


@pytest.mark.parametrize("mechanisms", ["basic", "token", "both"])
@pytest.mark.parametrize("index", range(len(SIMULATED)))
def test_round_trip_encode_authenticate_split_normalize(index: int, mechanisms: str) -> None:
    basic, token = credential(), secrets.token_urlsafe(24)
    receiver_keys = {
        "basic": ((basic,), ()),
        "token": ((), (token,)),
        "both": ((basic,), (token,)),
    }[mechanisms]
    sender = {"basic_auth": basic, "header_token": token}
    if mechanisms != "both":  # the sender sends only what the receiver is set up for
        sender.pop("header_token" if mechanisms == "basic" else "basic_auth")
    receiver = provider(*receiver_keys)
    event = replace(
        SIMULATED[index], message_id=ESPS["postmark"].message_id(SIMULATED[index].sequence, 7)
    )
    outbound = ESPS["postmark"].encode([event], url="http://x", now=NOW, sender=sender)
    headers = {k.lower(): v for k, v in outbound.headers.items()}
    receiver.authenticate(request(headers, outbound.body), NOW)
    stored = {k: v for k, v in headers.items() if k not in receiver.secret_headers}
    assert "x-pm-webhook-trace-id" in stored
    context = NormalizeContext(source="pm", headers=stored, received_at=0, campaign_field=None)
    (got,) = [
        e
        for item in receiver.split(outbound.body, stored)
        for e in receiver.normalize(item, context)
    ]
    assert (got.event_type, got.recipient, got.message_id) == (
        event.event_type,
        event.recipient,
        event.message_id,
    )
    assert got.campaign == event.campaign
    assert got.occurred_at == round(event.occurred_at * 1_000_000)
    assert got.bounce_class == event.bounce_class
    assert got.agent is None  # Postmark flags no machine opens; heuristics are the flusher's
    again = ESPS["postmark"].encode([event], url="http://x", now=NOW + 60, sender=sender)
    assert again.headers["X-PM-Webhook-Trace-Id"] == outbound.headers["X-PM-Webhook-Trace-Id"]
    again_headers = {k.lower(): v for k, v in again.headers.items()}
    again_context = NormalizeContext(
        source="pm", headers=again_headers, received_at=0, campaign_field=None
    )
    (retried,) = receiver.normalize(receiver.split(again.body, {})[0], again_context)
    assert retried.event_id == got.event_id


def test_only_the_types_postmark_reports_are_emitted() -> None:
    assert "sent" not in PostmarkProvider.emits
    assert "deferred" not in PostmarkProvider.emits
    assert {"delivered", "bounced", "opened", "clicked", "complained"} <= PostmarkProvider.emits


def test_demo_credentials_authenticate_the_encoded_request() -> None:
    receiver_keys, sender_keys = ESPS["postmark"].demo_credentials("http://x")
    receiver = provider((receiver_keys["basic_auth"],), (receiver_keys["header_token"],))
    outbound = ESPS["postmark"].encode(SIMULATED[:1], url="http://x", now=NOW, sender=sender_keys)
    receiver.authenticate(request(dict(outbound.headers), outbound.body), NOW)


# --- configuration --------------------------------------------------------------------------


def test_missing_or_malformed_credentials_are_config_problems() -> None:
    assert PROVIDERS["postmark"] is PostmarkProvider
    with pytest.raises(ConfigError) as caught:
        parse_config({"sources": {"pm": {"provider": "postmark"}}}, env={})
    assert "needs basic_auth and/or header_token" in str(caught.value)
    with pytest.raises(ConfigError) as caught:
        parse_config({"sources": {"pm": {"provider": "postmark", "basic_auth": "nocolon"}}}, env={})
    assert "user:password" in str(caught.value)
    assert "nocolon" not in str(caught.value)
    parse_config(
        {"sources": {"pm": {"provider": "postmark", "header_token": "t", "token_header": "X-A"}}},
        env={},
    )


# --- arbitrary input ----------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    body=st.binary(max_size=300),
    headers=st.dictionaries(
        st.sampled_from(["authorization", "x-postmark-webhook-token", "x"]), st.text(max_size=60)
    ),
)
def test_authenticate_and_split_raise_only_ingest_errors(
    body: bytes, headers: dict[str, str]
) -> None:
    for call in (
        lambda: provider((credential(),), ("t",)).authenticate(request(headers, body), NOW),
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
                "RecordType": st.sampled_from(
                    ["Delivery", "Bounce", "SpamComplaint", "Open", "Click", "SubscriptionChange"]
                ),
                "Type": json_values,
                "Email": st.one_of(json_values, st.just("a@b.c")),
                "Recipient": st.one_of(json_values, st.just("a@b.c")),
                "MessageID": json_values,
                "Tag": json_values,
                "Metadata": json_values,
                "Geo": json_values,
                "Details": json_values,
                "SuppressSending": json_values,
                "DeliveredAt": json_values,
                "BouncedAt": json_values,
                "ReceivedAt": json_values,
                "ChangedAt": json_values,
            }
        ),
    )
)
def test_normalize_raises_only_mapping_errors(item: Any) -> None:
    with contextlib.suppress(MappingError):
        provider().normalize(item, CONTEXT)
