"""The mailgun provider: HMAC of timestamp+token with single-use tokens, the mapping of the
docs' payloads and Symfony's fixtures, the simulator's side, and arbitrary input."""

from __future__ import annotations

import contextlib
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest.errors import IngestError, MappingError, PayloadError
from ingest.intake.replay import MemoryReplayGuard
from ingest.providers import PROVIDERS, InboundRequest, NormalizeContext
from ingest.providers.events import Event
from ingest.providers.mailgun import TOLERANCE_SECONDS, MailgunProvider, sign
from mailpulse.config import Secret, SourceConfig
from mailpulse.errors import ConfigError
from mailpulse.simulate.esp import ESPS, SimulatedEvent
from tests.helpers import parse_config
from tests.providers.kit import inbound, refusal

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "mailgun"
EXPECTED: dict[str, list[dict[str, Any]]] = json.loads((FIXTURES / "expected.json").read_text())
VECTORS = sorted(FIXTURES.glob("signature_vector_*.json"))
NOW = 1_790_000_000
CONTEXT = NormalizeContext(source="mg", headers={}, received_at=0, campaign_field=None)


def provider(*keys: str, parent: tuple[str, ...] = ()) -> MailgunProvider:
    credentials = {"signing_key": tuple(Secret(k) for k in keys)} if keys else {}
    if parent:
        credentials["parent_signing_key"] = tuple(Secret(k) for k in parent)
    return MailgunProvider(
        SourceConfig(name="mg", provider="mailgun", credentials=credentials),
        replay=MemoryReplayGuard(),
    )


def request(body: bytes) -> InboundRequest:
    return inbound("mg", {"content-type": "application/json"}, body)


def body_with(signature: dict[str, Any], event: dict[str, Any] | None = None) -> bytes:
    return orjson.dumps({"signature": signature, "event-data": event or {"event": "opened"}})


def signed(key: str, timestamp: int = NOW, token: str = "t" * 50) -> dict[str, Any]:
    return {
        "timestamp": str(timestamp),
        "token": token,
        "signature": sign(key, str(timestamp), token),
    }


def refused(prov: MailgunProvider, body: bytes, now: float = NOW) -> str:
    return refusal(prov, request(body), now)


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


def iso(micros: int) -> str:
    """Exact ISO text of epoch microseconds (no float rounding on the way)."""
    moment = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=micros)
    return moment.isoformat(timespec="microseconds").replace("+00:00", "Z")


def parse_fixture(name: str) -> list[Event]:
    prov = provider("k")
    data = (FIXTURES / name).read_bytes()
    items = prov.split(data, {}) if name.startswith("thirdparty") else [orjson.loads(data)]
    return [event for item in items for event in prov.normalize(item, CONTEXT)]


# --- 1. golden expectations ---------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_fixture_maps_to_expected_rows(name: str) -> None:
    """Every fixture holding an event gives exactly the rows written down from the docs."""
    assert rows(parse_fixture(name)) == EXPECTED[name]


def test_every_event_fixture_has_expectations() -> None:
    fixtures = {p.name for p in FIXTURES.glob("*.json")}
    holding_events = {n for n in fixtures if n.startswith(("mgdocs2026_event", "thirdparty"))}
    assert holding_events == set(EXPECTED)


def test_thirdparty_symfony_opens_and_clicks_share_an_id_but_stay_two_events() -> None:
    """Third-party quirk (Symfony derived clicks.json from opens.json): one event-data.id on two
    event types. The id is scoped by event type, so neither is dropped as the other's copy."""
    (opened,) = parse_fixture("thirdparty_symfony_signed_opens.json")
    (clicked,) = parse_fixture("thirdparty_symfony_signed_clicks.json")
    assert opened.event_id != clicked.event_id
    assert opened.event_id.split(":")[0] == clicked.event_id.split(":")[0]


def test_thirdparty_symfony_accepted_keeps_its_redacted_message_id() -> None:
    """Third-party quirk: Symfony redacted the message id to "##REDACTED##"; kept verbatim."""
    (event,) = parse_fixture("thirdparty_symfony_signed_accepted.json")
    assert event.message_id == "##REDACTED##"


def test_fields_beyond_the_golden_columns() -> None:
    (bounce,) = parse_fixture("mgdocs2026_event_data_failed_permanent.json")
    assert bounce.reason is not None and bounce.reason.startswith("550 5.5.0 Requested action")
    assert bounce.tags == ["webhook_payload"] and bounce.metadata is None
    (click,) = parse_fixture("thirdparty_symfony_signed_clicks.json")
    assert click.url is None  # Symfony's click sample has no url
    assert json.loads(click.metadata or "") == {
        "my_var_1": "Mailgun Variable #1",
        "my-var-2": "awesome",
    }
    assert click.ip == "50.56.129.169" and (click.user_agent or "").startswith("Mozilla/5.0 (X11")
    (docs_click,) = parse_fixture("mgdocs2026_event_data_clicked.json")
    assert docs_click.url == "https://sample.mailgun.com"
    (deferred,) = parse_fixture("mgdocs2026_event_data_failed_temporary.json")
    assert (deferred.reason or "").startswith("421 Your IP (161.38.194.10)")
    assert json.loads(deferred.raw)["id"] == "YusK9KhoTwe2C00iRxsEqQ"


def test_docs_bot_snippet_is_not_json_as_published_and_maps_to_apple_once_fixed() -> None:
    """mgdocs2024_opened_bot_apple_snippet.txt has a trailing comma (as published). Fixed by
    hand, its ``client-info.bot: apple`` becomes an ESP-flagged Apple MPP open."""
    text = (FIXTURES / "mgdocs2024_opened_bot_apple_snippet.txt").read_text()
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(text)
    item = orjson.loads(text.replace('"opened",\n}', '"opened"\n}'))
    (event,) = provider("k").normalize(item, CONTEXT)
    assert (event.event_type, event.agent) == ("opened", "apple_mpp")
    assert event.agent_reason == "esp flag: client-info.bot"
    assert len(event.event_id) == 64  # no event-data.id in the snippet: a composite id


def test_docs_pseudojson_envelope_is_refused_cleanly() -> None:
    """mgdocs2024_webhook_envelope_pseudojson.txt (curly quotes, // comments) is not JSON."""
    body = (FIXTURES / "mgdocs2024_webhook_envelope_pseudojson.txt").read_bytes()
    assert refused(provider("k"), body) == "missing_signature"
    with pytest.raises(PayloadError):
        provider("k").split(body, {})


@pytest.mark.parametrize(
    ("bot", "agent"),
    [
        ("apple", "apple_mpp"),
        ("gmail", "gmail_proxy"),
        ("generic", "scanner"),
        ("new-kind", "bot"),
        ("", None),
        (None, None),
    ],
)
def test_client_info_bot_flag(bot: str | None, agent: str | None) -> None:
    base = orjson.loads((FIXTURES / "mgdocs2026_event_data_clicked.json").read_bytes())
    base["client-info"]["bot"] = bot
    (event,) = provider("k").normalize(base, CONTEXT)
    assert event.agent == agent


@pytest.mark.parametrize(
    ("reason", "status", "kind", "bounce_class"),
    [
        ("suppress-bounce", {}, "dropped", "bounced"),
        ("suppress-unsubscribe", {}, "dropped", "unsubscribed"),
        ("suppress-complaint", {}, "dropped", "complained"),
        ("suppress-list", {}, "dropped", "suppressed"),
        ("old", {"code": 421}, "bounced", "soft"),
        ("bounce", {"code": 550, "bounce-type": "soft"}, "bounced", "soft"),
        ("bounce", {"code": 452}, "bounced", "soft"),
        ("generic", {}, "bounced", "undetermined"),
    ],
)
def test_permanent_failures(
    reason: str, status: dict[str, Any], kind: str, bounce_class: str
) -> None:
    base = orjson.loads((FIXTURES / "mgdocs2026_event_data_failed_permanent.json").read_bytes())
    base.update(reason=reason, **{"delivery-status": status})
    (event,) = provider("k").normalize(base, CONTEXT)
    assert (event.event_type, event.bounce_class) == (kind, bounce_class)


def test_campaign_default_and_override() -> None:
    item = orjson.loads((FIXTURES / "mgdocs2026_event_data_opened.json").read_bytes())
    item["campaigns"] = [{"id": "spring", "name": "Spring sale"}]
    item["user-variables"] = {"campaign": "from-variable"}
    prov = provider("k")
    assert prov.normalize(item, CONTEXT)[0].campaign == "spring"
    assert prov.normalize({**item, "campaigns": ["plain"]}, CONTEXT)[0].campaign == "plain"
    override = NormalizeContext(source="mg", headers={}, received_at=0, campaign_field="campaign")
    assert prov.normalize(item, override)[0].campaign == "from-variable"
    tags = NormalizeContext(source="mg", headers={}, received_at=0, campaign_field="tags")
    assert prov.normalize(item, tags)[0].campaign == "webhook_payload"


def test_non_recipient_events_map_to_nothing_and_others_to_other() -> None:
    prov = provider("k")
    assert (
        prov.normalize({"event": "list_member_uploaded", "id": "x", "timestamp": 1}, CONTEXT) == []
    )
    stored = {"event": "stored", "id": "x", "timestamp": 1.5, "recipient": "a@b.c"}
    assert prov.normalize(stored, CONTEXT)[0].event_type == "other"


# --- 2. signatures ------------------------------------------------------------------------


@pytest.mark.parametrize("path", VECTORS, ids=lambda p: p.stem)
def test_thirdparty_symfony_vectors_verify(path: Path) -> None:
    """Third-party vectors (Symfony's Mailgun bridge tests; Mailgun publishes no key): each
    verifies with the clock pinned to its timestamp, and fails one second past tolerance."""
    vector = json.loads(path.read_text())
    body = vector["body"].encode()
    timestamp = int(orjson.loads(body)["signature"]["timestamp"])
    provider(vector["secret"]).authenticate(request(body), timestamp)
    assert refused(provider(vector["secret"]), body, timestamp + TOLERANCE_SECONDS + 1) == (
        "stale_timestamp"
    )
    assert refused(provider("another-key"), body, timestamp) == "bad_signature"


def test_docs_signature_objects_do_not_verify_without_the_key() -> None:
    """The docs' signature objects are placeholders (no key published): any key fails."""
    for name in (
        "mgdocs2026_signature_object.json",
        "mgdocs2026_signature_object_subaccount_parent_signature.json",
    ):
        signature = json.loads((FIXTURES / name).read_text())
        prov = provider("k", parent=("p",))
        assert refused(prov, body_with(signature), int(signature["timestamp"])) == "bad_signature"


def test_parent_signature_verifies_subaccount_events() -> None:
    """A subaccount event carries parent-signature (the primary account's key, same HMAC), in
    the shape of the docs' subaccount example."""
    shape = json.loads(
        (FIXTURES / "mgdocs2026_signature_object_subaccount_parent_signature.json").read_text()
    )
    ts, token = shape["timestamp"], shape["token"]
    signature = {
        **shape,
        "signature": sign("sub", ts, token),
        "parent-signature": sign("primary", ts, token),
    }
    provider(parent=("primary",)).authenticate(request(body_with(signature)), int(ts))
    provider("sub").authenticate(request(body_with(signature)), int(ts))
    assert (
        refused(provider("other", parent=("other2",)), body_with(signature), int(ts))
        == "bad_signature"
    )
    # A parent signature is checked against parent keys only, never against signing keys.
    assert (
        refused(provider("primary"), body_with({**signature, "signature": "0" * 64}), int(ts))
        == "bad_signature"
    )


def test_every_single_byte_change_fails() -> None:
    signature = signed("k")
    for field in ("signature", "timestamp", "token"):
        value = signature[field]
        for position in range(len(value)):
            changed = (
                value[:position] + ("1" if value[position] != "1" else "2") + value[position + 1 :]
            )
            code = refused(provider("k"), body_with({**signature, field: changed}))
            assert code in ("bad_signature", "stale_timestamp"), (field, position, code)


def test_event_data_is_not_signed_so_the_token_is_single_use() -> None:
    """Mailgun signs only timestamp+token; a second use of an acknowledged token is refused."""
    prov = provider("k")
    signature = signed("k")
    prov.authenticate(request(body_with(signature)), NOW)
    prov.accepted(request(body_with(signature)))
    assert refused(prov, body_with(signature, {"event": "clicked"})) == "replayed_token"


def test_replay_guard_is_consulted_only_after_the_signature_verified() -> None:
    guard = MemoryReplayGuard()
    source = SourceConfig(
        name="mg", provider="mailgun", credentials={"signing_key": (Secret("k"),)}
    )
    prov = MailgunProvider(source, replay=guard)
    forged = {**signed("k"), "signature": "0" * 64}
    assert refused(prov, body_with(forged)) == "bad_signature"
    prov.authenticate(request(body_with(signed("k"))), NOW)  # same token, now genuine: accepted


def test_rotation_accepts_the_second_key() -> None:
    provider("new", "old").authenticate(request(body_with(signed("old"))), NOW)


@pytest.mark.parametrize(
    ("signature", "code"),
    [
        (None, "missing_signature"),
        ({"timestamp": str(NOW), "token": "t"}, "missing_signature"),
        ({"token": "t", "signature": "00"}, "missing_signature"),
        ({"timestamp": "soon", "token": "t", "signature": "00"}, "bad_timestamp"),
        ({"timestamp": str(NOW), "signature": "00"}, "bad_token"),
        ({"timestamp": str(NOW - 301), "token": "t", "signature": "00"}, "stale_timestamp"),
        ({"timestamp": str(NOW + 301), "token": "t", "signature": "00"}, "stale_timestamp"),
    ],
)
def test_missing_and_malformed_fields_have_their_codes(signature: Any, code: str) -> None:
    body = orjson.dumps({"event-data": {}} if signature is None else {"signature": signature})
    assert refused(provider("k"), body) == code


def test_timestamp_tolerance_edges() -> None:
    provider("k").authenticate(request(body_with(signed("k", NOW - 300))), NOW)
    provider("k").authenticate(request(body_with(signed("k", NOW + 300, "u" * 50))), NOW)


def test_source_without_keys_refuses_everything() -> None:
    assert refused(provider(), body_with(signed("k"))) == "no_credentials"


# --- 3. round trip ------------------------------------------------------------------------


def simulated() -> list[SimulatedEvent]:
    base = dict(
        recipient="Ann@Example.com", campaign="spring", tags=("spring",), metadata={"c": "1"}
    )
    cases: list[dict[str, Any]] = [
        dict(event_type="sent"),
        dict(event_type="delivered", smtp_status="2.0.0"),
        dict(event_type="deferred", smtp_status="4.2.2", reason="452 4.2.2 Mailbox full"),
        dict(event_type="bounced", bounce_class="hard", smtp_status="5.1.1", reason="550 no"),
        dict(event_type="bounced", bounce_class="soft", smtp_status="4.2.2", reason="452 full"),
        dict(event_type="bounced", bounce_class="undetermined"),
        dict(event_type="dropped", bounce_class="bounced", reason="Bounced Address"),
        dict(event_type="dropped", bounce_class="unsubscribed"),
        dict(event_type="opened", agent="apple_mpp", user_agent="Mozilla/5.0", ip="17.58.0.1"),
        dict(event_type="opened", agent="gmail_proxy"),
        dict(event_type="opened", user_agent="Outlook", ip="203.0.113.7"),
        dict(event_type="clicked", agent="scanner", url="https://x.example/a"),
        dict(event_type="clicked", url="https://x.example/b"),
        dict(event_type="complained"),
        dict(event_type="unsubscribed"),
        dict(event_type="sent", campaign=None, tags=()),
    ]
    return [
        SimulatedEvent(
            sequence=100 + number,
            occurred_at=1_795_000_000.123 + number,
            message_id=ESPS["mailgun"].message_id(number, 7),
            **{**base, **case},
        )
        for number, case in enumerate(cases)
    ]


def test_round_trip_through_encode_authenticate_split_normalize() -> None:
    sender = {"signing_key": "k"}
    prov = provider("k")
    for event in simulated():
        assert event.event_type in prov.emits
        outbound = ESPS["mailgun"].encode(
            [event], url="http://x/webhooks/mg", now=NOW, sender=sender
        )
        assert outbound.headers["Content-Type"] == "application/json"
        prov.authenticate(request(outbound.body), NOW)
        (item,) = prov.split(outbound.body, {})
        (row,) = prov.normalize(item, CONTEXT)
        expected_class = event.bounce_class if event.event_type in ("bounced", "dropped") else None
        assert (row.event_type, row.recipient, row.message_id, row.campaign) == (
            event.event_type,
            event.recipient.lower(),
            event.message_id,
            event.campaign,
        )
        assert row.occurred_at == round(event.occurred_at * 1_000_000)
        assert (row.bounce_class, row.agent) == (expected_class, event.agent)
        assert row.tags == list(event.tags)


def test_encoding_twice_keeps_event_ids_but_not_tokens() -> None:
    """A retry carries the same event-data.id but a fresh token, as Mailgun's retries do."""
    prov = provider("k")
    event = simulated()[3]
    first = ESPS["mailgun"].encode([event], url="u", now=NOW, sender={"signing_key": "k"})
    second = ESPS["mailgun"].encode([event], url="u", now=NOW + 600, sender={"signing_key": "k"})
    ids = [prov.normalize(prov.split(r.body, {})[0], CONTEXT)[0].event_id for r in (first, second)]
    assert ids[0] == ids[1]
    tokens = [orjson.loads(r.body)["signature"]["token"] for r in (first, second)]
    assert tokens[0] != tokens[1] and len(tokens[0]) == 50
    prov.authenticate(request(first.body), NOW)
    prov.authenticate(request(second.body), NOW + 600)  # a retry is not a replay


def test_encode_signs_parent_signature_when_the_sender_has_a_parent_key() -> None:
    prov = provider(parent=("primary",))
    outbound = ESPS["mailgun"].encode(
        simulated()[:1],
        url="u",
        now=NOW,
        sender={"signing_key": "sub", "parent_signing_key": "primary"},
    )
    prov.authenticate(request(outbound.body), NOW)


def test_demo_credentials_round_trip() -> None:
    receiver, sender = ESPS["mailgun"].demo_credentials("http://x/webhooks/mg")
    prov = provider(receiver["signing_key"])
    outbound = ESPS["mailgun"].encode(simulated()[:1], url="u", now=NOW, sender=sender)
    prov.authenticate(request(outbound.body), NOW)


# --- 4. arbitrary input -------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=5)
    ),
    max_leaves=20,
)


def mailgun_like() -> st.SearchStrategy[Any]:
    keys = [
        "event",
        "id",
        "timestamp",
        "recipient",
        "message",
        "delivery-status",
        "client-info",
        "severity",
        "reason",
        "campaigns",
        "tags",
        "user-variables",
        "url",
        "ip",
    ]
    return st.dictionaries(st.sampled_from(keys), json_values, max_size=10)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(body=st.binary(max_size=300))
def test_authenticate_and_split_raise_only_ingest_errors_on_bytes(body: bytes) -> None:
    with contextlib.suppress(IngestError):
        provider("k").authenticate(request(body), NOW)
    with contextlib.suppress(IngestError):
        provider("k").split(body, {})


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(signature=json_values, event=json_values)
def test_authenticate_raises_only_ingest_errors_on_json(signature: Any, event: Any) -> None:
    body = json.dumps({"signature": signature, "event-data": event}).encode()
    with contextlib.suppress(IngestError):
        provider("k", parent=("p",)).authenticate(request(body), NOW)


@settings(max_examples=500, suppress_health_check=[HealthCheck.too_slow])
@given(item=json_values | mailgun_like())
def test_normalize_raises_only_mapping_errors(item: Any) -> None:
    with contextlib.suppress(MappingError):
        provider("k").normalize(item, CONTEXT)


# --- 5. config ----------------------------------------------------------------------------


def test_source_without_keys_is_a_config_problem(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config({"sources": {"mg": {"provider": "mailgun"}}}, base_dir=tmp_path, env={})
    assert "sources.mg: needs signing_key" in str(caught.value)
    assert PROVIDERS["mailgun"] is MailgunProvider


def test_parent_key_alone_is_enough() -> None:
    source = SourceConfig(
        name="mg", provider="mailgun", credentials={"parent_signing_key": (Secret("p"),)}
    )
    assert MailgunProvider.config_problems(source) == []


def test_a_rejected_event_without_recipient_takes_the_to_header() -> None:
    """``rejected`` may lack ``recipient``; the address is in ``message.headers.to``."""
    item = json.loads((FIXTURES / "mgdocs2026_event_data_failed_permanent.json").read_bytes())
    rejected = {k: v for k, v in item.items() if k not in ("recipient", "severity", "reason")}
    rejected["event"] = "rejected"
    (event,) = provider().normalize(rejected, CONTEXT)
    assert (event.event_type, event.bounce_class) == ("dropped", "rejected")
    assert event.recipient == "badrecipient@sample.mailgun.com"
    headers = item["message"]["headers"]
    several = {**rejected, "message": {"headers": {**headers, "to": "Ann <A@x.org>, b@y.org"}}}
    events = provider().normalize(several, CONTEXT)
    assert [e.recipient for e in events] == ["a@x.org", "b@y.org"]
    assert len({e.event_id for e in events}) == 2
    without = {**rejected, "message": {"headers": {"message-id": "m"}}}
    with pytest.raises(MappingError):
        provider().normalize(without, CONTEXT)
