"""The mandrill provider: HMAC-SHA1 over the configured URL and the form fields, the mapping
of Mandrill.net's (third-party) batches, the simulator's side, and arbitrary input."""

from __future__ import annotations

import contextlib
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest.errors import IngestError, MappingError, PayloadError
from ingest.providers import PROVIDERS, InboundRequest, NormalizeContext
from ingest.providers.events import Event
from ingest.providers.mandrill import MandrillProvider, sign
from mailpulse.config import Secret, SourceConfig
from mailpulse.errors import ConfigError
from mailpulse.simulate.esp import ESPS, SimulatedEvent
from tests.helpers import parse_config
from tests.providers.kit import inbound, refusal

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "mandrill"
EXPECTED: dict[str, list[dict[str, Any]]] = json.loads((FIXTURES / "expected.json").read_text())
VECTOR = json.loads(
    (FIXTURES / "signature_vector_mandrill_thirdparty_mandrillnet.json").read_text()
)
URL = "https://hooks.example.com/webhooks/md"
CONTEXT = NormalizeContext(source="md", headers={}, received_at=0, campaign_field=None)
FORM = "application/x-www-form-urlencoded"


def provider(*keys: str, url: str | None = URL) -> MandrillProvider:
    options = {"url": url} if url is not None else {}
    credentials = {"secret": tuple(Secret(k) for k in keys)} if keys else {}
    return MandrillProvider(
        SourceConfig(name="md", provider="mandrill", credentials=credentials, options=options)
    )


def request(body: bytes, signature: str | None) -> InboundRequest:
    headers = {"content-type": FORM}
    if signature is not None:
        headers["x-mandrill-signature"] = signature
    return inbound("md", headers, body, content_type=FORM)


def form(events: str) -> bytes:
    return urlencode({"mandrill_events": events}).encode()


def refused(prov: MandrillProvider, req: InboundRequest) -> str:
    return refusal(prov, req, 0)


def iso(micros: int) -> str:
    moment = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=micros)
    return moment.isoformat(timespec="microseconds").replace("+00:00", "Z")


def rows(events: list[Event]) -> list[dict[str, Any]]:
    return [
        {
            "event_type": e.event_type,
            "recipient": e.recipient,
            "occurred_at": iso(e.occurred_at),
            "event_id": e.event_id,
            "message_id": e.message_id,
            "bounce_class": e.bounce_class,
            "agent": e.agent,
            "campaign": e.campaign,
            "smtp_status": e.smtp_status,
        }
        for e in events
    ]


def parse(body: bytes, prov: MandrillProvider | None = None) -> list[Event]:
    prov = prov or provider("k")
    return [event for item in prov.split(body, {}) for event in prov.normalize(item, CONTEXT)]


# --- 1. golden expectations (every fixture is third party: Mandrill.net) --------------------


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_thirdparty_mandrillnet_fixture_maps_to_expected_rows(name: str) -> None:
    """Mandrill.net's captured batches (third party; no official samples exist), posted as
    Mandrill posts them, give exactly the rows written down from the event descriptions."""
    events = (FIXTURES / name).read_text().strip()
    assert rows(parse(form(events))) == EXPECTED[name]


def test_every_event_fixture_has_expectations() -> None:
    assert {p.name for p in FIXTURES.glob("thirdparty_*.json")} == set(EXPECTED)


def test_thirdparty_sync_events_map_to_no_rows() -> None:
    """Blacklist/whitelist sync events (third party sample) change Mandrill's lists, not a
    message: no rows, and no error either."""
    items = provider("k").split(
        form((FIXTURES / "thirdparty_mandrillnet_sync_event_blacklist_add.json").read_text()), {}
    )
    assert len(items) == 1 and items[0]["type"] == "blacklist"
    assert provider("k").normalize(items[0], CONTEXT) == []


def test_thirdparty_batch_ids_are_distinct_although_every_event_shares_the_message_id() -> None:
    """Mandrill.net's test batch: nine events of one message at one second, one `_id`."""
    events = parse(
        form(
            (
                FIXTURES / "thirdparty_mandrillnet_test_webhook_batch_all_event_types.json"
            ).read_text()
        )
    )
    assert len({e.message_id for e in events}) == 1
    assert len({e.event_id for e in events}) == 9


def test_fields_beyond_the_golden_columns() -> None:
    events = parse(
        form(
            (
                FIXTURES / "thirdparty_mandrillnet_test_webhook_batch_all_event_types.json"
            ).read_text()
        )
    )
    by_type = {e.event_type + (e.bounce_class or ""): e for e in events}
    assert by_type["bouncedhard"].reason is not None
    assert by_type["bouncedhard"].reason.startswith("550 5.1.1 The email account")
    assert by_type["deferred"].reason == "451 4.3.5 Temporarily unavailable, try again later."
    assert by_type["clicked"].url == "http://mandrill.com"
    assert by_type["opened"].ip == "127.0.0.1" and by_type["opened"].agent is None
    assert (by_type["opened"].user_agent or "").endswith("Postbox/1.1.3")
    assert json.loads(by_type["sent"].metadata or "") == {"user_id": 111}
    assert by_type["sent"].tags == ["webhook-example"]
    assert json.loads(by_type["sent"].raw)["event"] == "send"


def test_campaign_default_override_and_tags() -> None:
    item = {
        "event": "send",
        "ts": 1,
        "_id": "m",
        "msg": {
            "email": "a@b.c",
            "tags": ["t1"],
            "metadata": {"campaign": "spring", "other": "x"},
            "template": "tpl",
        },
    }
    prov = provider("k")
    assert prov.normalize(item, CONTEXT)[0].campaign == "spring"
    for field, expected in (("other", "x"), ("template", "tpl"), ("tags", "t1"), ("none", None)):
        context = NormalizeContext(source="md", headers={}, received_at=0, campaign_field=field)
        assert prov.normalize(item, context)[0].campaign == expected


@pytest.mark.parametrize(
    ("reason", "bounce_class"),
    [
        ("hard-bounce", "bounced"),
        ("soft-bounce", "bounced"),
        ("spam", "complained"),
        ("unsub", "unsubscribed"),
        ("invalid", "invalid"),
        ("custom", "policy"),
        (None, "rejected"),
    ],
)
def test_reject_classes(reason: str | None, bounce_class: str) -> None:
    msg: dict[str, Any] = {"email": "a@b.c"}
    if reason:
        msg["reject_reason"] = reason
    (event,) = provider("k").normalize(
        {"event": "reject", "ts": 1, "_id": "m", "msg": msg}, CONTEXT
    )
    assert (event.event_type, event.bounce_class) == ("dropped", bounce_class)


def test_inbound_maps_to_nothing_and_unknown_events_to_other() -> None:
    prov = provider("k")
    assert prov.normalize({"event": "inbound", "ts": 1, "msg": {"email": "a@b.c"}}, CONTEXT) == []
    (other,) = prov.normalize(
        {"event": "new_kind", "ts": 1, "_id": "m", "msg": {"email": "a@b.c"}}, CONTEXT
    )
    assert other.event_type == "other"


def test_split_refuses_what_is_not_one_events_array() -> None:
    for body in (
        b"",
        b"x=1",
        form("{}"),
        form("not json"),
        b"mandrill_events=%5B%5D&mandrill_events=%5B%5D",
        b"%ZZ",
    ):
        with pytest.raises(PayloadError):
            provider("k").split(body, {})
    assert provider("k").split(form("[]"), {}) == []


# --- 2. signatures ------------------------------------------------------------------------


def vector_request(**changes: Any) -> tuple[MandrillProvider, InboundRequest]:
    url = changes.get("url", VECTOR["webhook_url"])
    prov = provider(changes.get("key", VECTOR["secret"]), url=url)
    body = changes.get("body", VECTOR["body"].encode())
    signature = changes.get("signature", VECTOR["headers"]["X-Mandrill-Signature"])
    return prov, request(body, signature)


def test_thirdparty_mandrillnet_vector_verifies() -> None:
    """The real signature Mandrill.net captured (third party): key, URL and field verify, and
    the re-encoded body decodes to exactly the signed field value."""
    prov, req = vector_request()
    prov.authenticate(req, 0)
    assert prov.split(req.body, {}) == json.loads(VECTOR["form_fields"]["mandrill_events"])
    signed_value = (
        FIXTURES / "thirdparty_mandrillnet_signed_sample_webhook_mandrill_events.json"
    ).read_text()
    assert signed_value == VECTOR["form_fields"]["mandrill_events"]


def test_thirdparty_vector_negative_case_other_url_query() -> None:
    """The vector's own negative case: the URL with ``?oof=1`` added does not verify."""
    prov, req = vector_request(url=VECTOR["webhook_url"] + "?oof=1")
    assert refused(prov, req) == "bad_signature"


def test_any_changed_byte_of_field_signature_or_key_fails() -> None:
    field = VECTOR["form_fields"]["mandrill_events"]
    for position in range(0, len(field), 97):
        changed = (
            field[:position] + ("a" if field[position] != "a" else "b") + field[position + 1 :]
        )
        prov, req = vector_request(body=form(changed))
        assert refused(prov, req) == "bad_signature"
    signature = VECTOR["headers"]["X-Mandrill-Signature"]
    for position in range(len(signature)):
        changed = (
            signature[:position]
            + ("A" if signature[position] != "A" else "B")
            + signature[position + 1 :]
        )
        prov, req = vector_request(signature=changed)
        assert refused(prov, req) == "bad_signature"
    prov, req = vector_request(key="another-key")
    assert refused(prov, req) == "bad_signature"
    prov, req = vector_request(body=VECTOR["body"].encode() + b"&extra=1")
    assert refused(prov, req) == "bad_signature"


def test_signature_is_over_sorted_field_names_and_decoded_values() -> None:
    fields = [("b", "2"), ("a", "1 +&")]
    body = urlencode(fields).encode()
    signature = sign("k", URL, [("a", "1 +&"), ("b", "2")])
    provider("k").authenticate(request(body, signature), 0)


def test_missing_signature_missing_config_and_bad_encoding_have_their_codes() -> None:
    body = form("[]")
    assert refused(provider("k"), request(body, None)) == "missing_signature"
    assert (
        refused(provider(), request(body, sign("k", URL, [("mandrill_events", "[]")])))
        == "no_credentials"
    )
    assert refused(provider("k", url=None), request(body, "x")) == "no_credentials"
    assert refused(provider("k"), request(b"\xff\xfe=1", "x")) == "bad_body"
    assert refused(provider("k"), request(b"a=%ff", "x")) == "bad_body"


def test_mandrill_test_post_with_an_empty_batch_verifies() -> None:
    """Mandrill's check POST carries ``mandrill_events=[]`` (3p note); it is authentic."""
    body = form("[]")
    provider("test-webhook").authenticate(
        request(body, sign("test-webhook", URL, [("mandrill_events", "[]")])), 0
    )
    assert MandrillProvider.probe_methods == frozenset({"HEAD", "GET"})


def test_rotation_accepts_the_second_key() -> None:
    body = form("[]")
    provider("new", "old").authenticate(
        request(body, sign("old", URL, [("mandrill_events", "[]")])), 0
    )


# --- 3. round trip ------------------------------------------------------------------------


def simulated() -> list[SimulatedEvent]:
    base = dict(
        recipient="Ann@Example.com", campaign="spring", tags=("spring",), metadata={"c": "1"}
    )
    cases: list[dict[str, Any]] = [
        dict(event_type="sent"),
        dict(event_type="delivered"),
        dict(event_type="deferred", reason="452 4.2.2 Mailbox full", smtp_status="4.2.2"),
        dict(event_type="bounced", bounce_class="hard", reason="550 5.1.1 no such user"),
        dict(event_type="bounced", bounce_class="soft", reason="552 5.2.2 Over Quota"),
        dict(event_type="dropped", bounce_class="bounced", reason="Bounced Address"),
        dict(event_type="opened", user_agent="Mozilla/5.0", ip="17.58.0.1"),
        dict(event_type="clicked", url="https://x.example/a", ip="203.0.113.7"),
        dict(event_type="clicked", url="https://x.example/b", ip="203.0.113.7"),
        dict(event_type="complained"),
        dict(event_type="unsubscribed", campaign=None, tags=()),
    ]
    return [
        SimulatedEvent(
            sequence=100 + number,
            occurred_at=1_795_000_000.75 + number,
            message_id=ESPS["mandrill"].message_id(number, 7),
            **{**base, **case},
        )
        for number, case in enumerate(cases)
    ]


def test_round_trip_through_encode_authenticate_split_normalize() -> None:
    prov = provider("k")
    events = simulated()
    assert all(event.event_type in prov.emits for event in events)
    outbound = ESPS["mandrill"].encode(
        events, url="http://127.0.0.1:8025/webhooks/md", now=0, sender={"secret": "k", "url": URL}
    )
    assert outbound.headers["Content-Type"] == FORM
    prov.authenticate(request(outbound.body, outbound.headers["X-Mandrill-Signature"]), 0)
    normalized = parse(outbound.body, prov)
    assert len(normalized) == len(events)
    for event, row in zip(events, normalized, strict=True):
        expected_class = event.bounce_class if event.event_type in ("bounced", "dropped") else None
        assert (row.event_type, row.recipient, row.message_id, row.campaign) == (
            event.event_type,
            event.recipient.lower(),
            event.message_id,
            event.campaign,
        )
        assert row.occurred_at == int(event.occurred_at) * 1_000_000  # Mandrill's ts: seconds
        assert (row.bounce_class, row.agent) == (expected_class, None)
    assert len({row.event_id for row in normalized}) == len(events)


def test_encode_signs_the_target_url_when_the_sender_has_none() -> None:
    prov = provider("k", url="http://127.0.0.1:8025/webhooks/md")
    outbound = ESPS["mandrill"].encode(
        simulated()[:2], url="http://127.0.0.1:8025/webhooks/md", now=0, sender={"secret": "k"}
    )
    prov.authenticate(request(outbound.body, outbound.headers["X-Mandrill-Signature"]), 0)


def test_encoding_twice_gives_the_same_event_ids() -> None:
    first, second = (
        ESPS["mandrill"].encode(simulated(), url=URL, now=now, sender={"secret": "k", "url": URL})
        for now in (0, 60)
    )
    assert [e.event_id for e in parse(first.body)] == [e.event_id for e in parse(second.body)]


def test_demo_credentials_round_trip() -> None:
    receiver, sender = ESPS["mandrill"].demo_credentials(URL)
    prov = provider(receiver["secret"], url=receiver["url"])
    outbound = ESPS["mandrill"].encode(simulated()[:1], url=URL, now=0, sender=sender)
    prov.authenticate(request(outbound.body, outbound.headers["X-Mandrill-Signature"]), 0)


# --- 4. arbitrary input -------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=5)
    ),
    max_leaves=20,
)
mandrill_like = st.fixed_dictionaries(
    {},
    optional={
        "event": st.sampled_from(["send", "click", "reject", "hard_bounce", "deferral", "x"])
        | json_values,
        "ts": json_values,
        "_id": json_values,
        "url": json_values,
        "type": json_values,
        "msg": st.dictionaries(
            st.sampled_from(
                ["email", "tags", "metadata", "smtp_events", "diag", "reject_reason", "_id"]
            ),
            json_values | st.just("a@b.c"),
        )
        | json_values,
    },
)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(body=st.binary(max_size=300), signature=st.text(max_size=40))
def test_authenticate_and_split_raise_only_ingest_errors(body: bytes, signature: str) -> None:
    with contextlib.suppress(IngestError):
        provider("k").authenticate(request(body, signature), 0)
    with contextlib.suppress(IngestError):
        provider("k").split(body, {})


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(value=json_values)
def test_split_raises_only_payload_errors_on_json_fields(value: Any) -> None:
    with contextlib.suppress(PayloadError):
        provider("k").split(form(json.dumps(value)), {})


@settings(max_examples=500, suppress_health_check=[HealthCheck.too_slow])
@given(item=json_values | mandrill_like)
def test_normalize_raises_only_mapping_errors(item: Any) -> None:
    with contextlib.suppress(MappingError):
        provider("k").normalize(item, CONTEXT)


# --- 5. config ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"url": URL}, "sources.md: needs secret"),
        ({"secret": "k"}, "sources.md: needs url"),
        ({"secret": "k", "url": "ftp://x/y"}, "must be an http(s) URL"),
        ({"secret": "k", "url": "hooks.example.com/x"}, "must be an http(s) URL"),
    ],
)
def test_missing_credentials_or_url_is_a_config_problem(
    table: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config({"sources": {"md": {"provider": "mandrill", **table}}}, env={})
    assert message in str(caught.value)


def test_complete_source_parses() -> None:
    config = parse_config(
        {"sources": {"md": {"provider": "mandrill", "secret": "k", "url": URL}}}, env={}
    )
    assert PROVIDERS["mandrill"] is MandrillProvider
    assert config.sources["md"].options["url"] == URL
