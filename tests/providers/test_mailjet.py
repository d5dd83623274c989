"""The mailjet provider: Basic authentication, the mapping of Mailjet's documented samples,
exact ``MessageID``s above 2^53, the simulator's side, and robustness against arbitrary input."""

from __future__ import annotations

import contextlib
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ingest.errors import AuthenticationFailed, MappingError, PayloadError
from ingest.providers import PROVIDERS, InboundRequest, NormalizeContext
from ingest.providers.events import Event
from ingest.providers.mailjet import MailjetProvider, loads
from ingest.providers.shared_secret import basic_header
from mailpulse.errors import ConfigError
from mailpulse.simulate.esp import ESPS, SimulatedEvent
from mailpulse.simulate.esp.mailjet import BLOCKS
from tests.helpers import new_secret, parse_config
from tests.providers.kit import golden_rows, inbound, make_provider, refusal

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "mailjet"
EXPECTED = json.loads((FIXTURES / "expected.json").read_text())
INVALID_SAMPLE = "mjdocs_bounce_INVALID_JSON_as_published.txt"
NOW = 1_790_000_000
CONTEXT = NormalizeContext(source="mj", headers={}, received_at=0, campaign_field=None)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
BIG_ID = 19421777835146490  # from Mailjet's docs; the nearest floats are ...488 and ...492


def provider(options: dict[str, Any] | None = None, **credentials: list[str]) -> MailjetProvider:
    return make_provider(MailjetProvider, "mj", options, **credentials)


def request(headers: dict[str, str], body: bytes = b"{}") -> InboundRequest:
    return inbound("mj", headers, body)


def refused(prov: MailjetProvider, req: InboundRequest) -> str:
    return refusal(prov, req, NOW)


# --- authentication ---------------------------------------------------------------------------


def test_basic_auth_accepts_every_listed_credential_and_nothing_else() -> None:
    old, new = f"mailjet:{new_secret()}", f"mailjet:{new_secret()}"
    prov = provider(basic_auth=[old, new])
    for credential in (old, new):
        prov.authenticate(request({"Authorization": basic_header(credential)}), NOW)
    assert refused(prov, request({})) == "missing_credentials"
    assert refused(prov, request({"Authorization": basic_header(old[:-1])})) == "bad_credentials"
    assert refused(prov, request({"Authorization": basic_header("mailjet:")})) == (
        "bad_credentials"
    )
    assert refused(prov, request({"Authorization": "Bearer " + old})) == "bad_credentials"


def test_a_gateway_token_can_be_required_as_well() -> None:
    credential, token = f"u:{new_secret()}", new_secret()
    prov = provider(
        {"token_header": "x-gateway-token"}, basic_auth=[credential], header_token=[token]
    )
    prov.authenticate(
        request({"Authorization": basic_header(credential), "X-Gateway-Token": token}), NOW
    )
    assert refused(prov, request({"Authorization": basic_header(credential)})) == (
        "missing_credentials"
    )
    assert refused(prov, request({"X-Gateway-Token": token})) == "missing_credentials"
    assert "x-gateway-token" in prov.secret_headers


def test_a_source_without_credentials_refuses_everything() -> None:
    assert refused(provider(), request({"Authorization": basic_header("a:b")})) == (
        "no_credentials"
    )


def test_the_authorization_header_is_never_stored() -> None:
    assert "authorization" in MailjetProvider.credential_headers


# --- mapping ----------------------------------------------------------------------------------


def rows(events: list[Event]) -> list[dict[str, Any]]:
    return golden_rows(events, ("tags", "url", "reason", "metadata"))


def mapped(name: str) -> list[dict[str, Any]]:
    prov = provider()
    return [
        row
        for item in prov.split((FIXTURES / name).read_bytes(), {})
        for row in rows(prov.normalize(item, CONTEXT))
    ]


def test_every_fixture_has_expectations() -> None:
    files = {p.name for p in FIXTURES.glob("*.json")} - {"expected.json"}
    assert set(EXPECTED) == files


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_fixture_maps_to_the_expected_rows(name: str) -> None:
    assert mapped(name) == EXPECTED[name]


def test_bounce_sample_is_invalid_json_as_published_and_goes_to_quarantine() -> None:
    """Mailjet's docs publish the bounce sample without the comma after ``"user unknown"``.

    That body is not JSON: ``split`` raises ``PayloadError``, so the flusher quarantines the
    request whole (it was authentic and is answered 200; it can be replayed after a fix).
    """
    body = (FIXTURES / INVALID_SAMPLE).read_bytes()
    with pytest.raises(PayloadError):
        provider().split(body, {})


def test_bounce_sample_with_its_missing_comma_restored_is_a_hard_bounce() -> None:
    """The same published sample, repaired in memory, maps to a hard bounce."""
    body = (FIXTURES / INVALID_SAMPLE).read_bytes()
    repaired = body.replace(b'"user unknown"\n', b'"user unknown",\n', 1)
    (item,) = provider().split(repaired, {})
    (event,) = provider().normalize(item, CONTEXT)
    assert (event.event_type, event.bounce_class, event.smtp_status) == ("bounced", "hard", "5.1.1")
    assert event.message_id == "13792286917004336"
    assert event.reason == (
        "recipient: user unknown (Host or domain name not found. Name service error for "
        "name=lbjsnrftlsiuvbsren.com type=A: Host not found)"
    )


def test_message_id_above_2_to_the_53_stays_exact_in_message_id_and_raw() -> None:
    assert BIG_ID > 2**53 and float(BIG_ID) != BIG_ID  # a float would change it
    body = (FIXTURES / "mjdocs_sent.json").read_bytes()
    assert b"19421777835146490" in body
    (item,) = provider().split(body, {})
    (event,) = provider().normalize(item, CONTEXT)
    assert event.message_id == "19421777835146490"
    assert '"MessageID":19421777835146490' in event.raw
    assert json.loads(event.raw, parse_int=str)["MessageID"] == "19421777835146490"


def test_integers_beyond_64_bits_stay_exact_too() -> None:
    """orjson would turn these into floats; the body is parsed again without that loss."""
    huge = 2**70 + 1
    body = b'{"event":"open","time":%d,"MessageID":%d,"email":"a@b.co","x":1.5}' % (NOW, huge)
    (item,) = provider().split(body, {})
    assert item["MessageID"] == huge
    (event,) = provider().normalize(item, CONTEXT)
    assert event.message_id == str(huge)
    assert f'"MessageID":{huge}' in event.raw
    assert loads(b'{"a": 123456789012345678901234567890}') == {"a": 123456789012345678901234567890}


def test_a_float_message_id_is_refused_rather_than_rounded() -> None:
    item = {"event": "open", "time": NOW, "email": "a@b.co", "MessageID": float(BIG_ID)}
    with pytest.raises(MappingError, match="float"):
        provider().normalize(item, CONTEXT)
    small = provider().normalize({**item, "MessageID": 12345.0}, CONTEXT)
    assert small[0].message_id == "12345"


def test_grouped_and_single_deliveries_of_one_event_share_the_event_id() -> None:
    (single,) = provider().normalize(
        orjson.loads((FIXTURES / "mjdocs_sent.json").read_bytes()), CONTEXT
    )
    grouped = orjson.loads((FIXTURES / "mjdocs_grouped_batch_sent_x2.json").read_bytes())
    first = provider().normalize(grouped[0], CONTEXT)[0]
    second = provider().normalize(grouped[1], CONTEXT)[0]
    assert single.event_id == first.event_id != second.event_id


def test_fields_of_a_click() -> None:
    item = orjson.loads((FIXTURES / "mjdocs_click.json").read_bytes())
    (event,) = provider().normalize(item, CONTEXT)
    assert (event.url, event.ip) == ("https://mailjet.com", "127.0.0.1")
    assert event.user_agent is not None and event.user_agent.startswith("Mozilla/5.0 (Macintosh")
    assert event.agent is None  # Mailjet's "agent" is a user agent, not a machine flag
    later = provider().normalize({**item, "url": "https://mailjet.com/other"}, CONTEXT)[0]
    assert later.event_id != event.event_id


def event_of(name: str, **fields: Any) -> dict[str, Any]:
    return {"event": name, "time": NOW, "MessageID": BIG_ID, "email": "A@B.co", **fields}


@pytest.mark.parametrize(
    ("related", "error"),
    [
        ("domain", "greylisted"),
        ("system", "system issue"),
        ("system", "protocol issue"),
        ("system", "connection issue"),
    ],
)
def test_a_bounce_mailjet_documents_as_temporary_is_deferred(related: str, error: str) -> None:
    """Mailjet's error table: greylisting "will be re-attempted"; system issues are temporary."""
    body = (FIXTURES / INVALID_SAMPLE).read_bytes()
    repaired = body.replace(b'"user unknown"\n', b'"user unknown",\n', 1)
    (item,) = provider().split(repaired, {})
    item = {**item, "hard_bounce": False, "error_related_to": related, "error": error}
    (event,) = provider().normalize(item, CONTEXT)
    assert (event.event_type, event.bounce_class) == ("deferred", None)
    assert event.reason is not None and event.reason.startswith(f"{related}: {error} (")


@pytest.mark.parametrize(
    ("hard", "expected"), [(True, "hard"), (False, "soft"), (None, "undetermined")]
)
def test_bounce_class_follows_hard_bounce(hard: bool | None, expected: str) -> None:
    fields = {} if hard is None else {"hard_bounce": hard}
    (event,) = provider().normalize(event_of("bounce", **fields), CONTEXT)
    assert event.bounce_class == expected


@pytest.mark.parametrize(
    ("error", "drop_class"),
    [
        ("user unknown", "invalid"),
        ("typofix", "invalid"),
        ("preblocked", "bounced"),
        ("spam reporter", "complained"),
        ("blacklisted", "suppressed"),
        ("duplicate in campaign", "duplicate"),
        ("error in template language", "generation"),
        ("content blocked", "content"),
        ("policy issue", "policy"),
        ("something new", "other"),
        (None, "other"),
    ],
)
def test_blocked_is_a_drop_classed_by_its_error(error: str | None, drop_class: str) -> None:
    (event,) = provider().normalize(event_of("blocked", error=error), CONTEXT)
    assert (event.event_type, event.bounce_class) == ("dropped", drop_class)


def test_the_drops_mailjet_makes_for_bad_addresses_are_suppressing() -> None:
    from analytics.suppression import INVALID_DROP_CLASSES

    for error in ("user unknown", "preblocked"):
        (event,) = provider().normalize(event_of("blocked", error=error), CONTEXT)
        assert event.bounce_class in INVALID_DROP_CLASSES


def test_campaign_fields_and_metadata() -> None:
    item = event_of("sent", customcampaign="spring", mj_campaign_id=0, CustomID="c-1")
    (event,) = provider().normalize({**item, "Payload": '{"order": 7}'}, CONTEXT)
    assert event.campaign == "spring"
    assert json.loads(event.metadata or "") == {"CustomID": "c-1", "Payload": {"order": 7}}
    by_id = NormalizeContext("mj", headers={}, received_at=0, campaign_field="mj_campaign_id")
    assert provider().normalize(item, by_id)[0].campaign is None  # 0: no campaign
    assert provider().normalize({**item, "mj_campaign_id": 7257}, by_id)[0].campaign == "7257"
    bare = event_of("sent", customcampaign="", CustomID="", Payload="")
    assert provider().normalize(bare, CONTEXT)[0].metadata is None


def test_unknown_events_are_other() -> None:
    assert provider().normalize(event_of("future"), CONTEXT)[0].event_type == "other"


@pytest.mark.parametrize(
    "item",
    [
        [],
        {"time": NOW, "email": "a@b.co"},
        event_of("open", email="nope"),
        event_of("open", time="soon"),
        event_of("open", time=None),
        event_of("open", MessageID=[1]),
        event_of("open", MessageID=1e300),
    ],
)
def test_malformed_events_raise_mapping_errors(item: Any) -> None:
    with pytest.raises(MappingError):
        provider().normalize(item, CONTEXT)


@pytest.mark.parametrize(
    "body", [b"", b"[", b'"x"', b"7", b"null", b'{"a": 1.5, "b": ' + b"9" * 5000 + b"}"]
)
def test_unparseable_bodies_raise_payload_errors(body: bytes) -> None:
    with pytest.raises(PayloadError):
        provider().split(body, {})


# --- the simulator's side ---------------------------------------------------------------------

recipients = st.from_regex(r"[a-z][a-z0-9._]{0,10}@[a-z]{1,8}\.(com|org|dev)", fullmatch=True)
texts = st.text(st.characters(min_codepoint=32, max_codepoint=0x2FF), min_size=1, max_size=20)


@st.composite
def simulated(draw: st.DrawFn, sequence: int) -> SimulatedEvent:
    kind = draw(st.sampled_from(sorted(MailjetProvider.emits)))
    bounce_class = None
    if kind == "bounced":
        bounce_class = draw(st.sampled_from(["hard", "soft", "undetermined"]))
    elif kind == "dropped":
        bounce_class = draw(st.sampled_from(sorted(BLOCKS)))
    return SimulatedEvent(
        sequence=sequence,
        event_type=kind,
        recipient=draw(recipients),
        occurred_at=draw(st.floats(1_600_000_000, 1_900_000_000)),
        message_id=ESPS["mailjet"].message_id(sequence, 3),
        campaign=draw(st.none() | texts),
        url="https://example.com/x" if kind == "clicked" else None,
        user_agent=draw(st.none() | texts),
        ip=draw(st.none() | st.just("203.0.113.7")),
        bounce_class=bounce_class,
        reason=draw(st.none() | st.just("550 5.1.1 no such user")),
        metadata=draw(st.dictionaries(texts, texts, max_size=3)),
    )


@settings(max_examples=60, deadline=None)
@given(data=st.data(), count=st.integers(1, 12))
def test_round_trip_through_encode_authenticate_split_normalize(
    data: st.DataObject, count: int
) -> None:
    credential = "mailjet:" + new_secret()
    events = [data.draw(simulated(sequence)) for sequence in range(count)]
    prov = provider(basic_auth=[credential])
    sender = {"basic_auth": credential}
    outbound = ESPS["mailjet"].encode(events, url="http://x/webhooks/mj", now=NOW, sender=sender)
    prov.authenticate(request(dict(outbound.headers), outbound.body), NOW)
    assert isinstance(orjson.loads(outbound.body), dict if count == 1 else list)
    items = prov.split(outbound.body, outbound.headers)
    assert len(items) == count
    ids = []
    for event, item in zip(events, items, strict=True):
        (row,) = prov.normalize(item, CONTEXT)
        assert row.event_type == event.event_type
        assert row.recipient == event.recipient
        assert row.message_id == event.message_id
        assert str(item["MessageID"]) == event.message_id and int(event.message_id) > 2**53
        assert row.campaign == event.campaign
        assert row.occurred_at == int(event.occurred_at) * 1_000_000  # whole seconds
        assert row.bounce_class == event.bounce_class
        assert row.agent is None  # Mailjet flags no machine opens
        payload = json.loads(row.metadata or '{"Payload": {}}')["Payload"]
        assert payload == dict(event.metadata)
        ids.append(row.event_id)
    again = ESPS["mailjet"].encode(events, url="http://x/webhooks/mj", now=NOW + 60, sender=sender)
    assert again.body == outbound.body  # a retry carries the same events, so the same ids
    assert len(set(ids)) == count


def test_simulated_message_ids_are_big_odd_and_distinct() -> None:
    ids = [int(ESPS["mailjet"].message_id(sequence, 7)) for sequence in range(2000)]
    assert len(set(ids)) == 2000
    assert all(2**53 < i < 2**63 and i % 2 == 1 and float(i) != i for i in ids)
    assert ESPS["mailjet"].message_id(5, 7) == ESPS["mailjet"].message_id(5, 7)


def test_encode_writes_message_ids_as_exact_json_integers() -> None:
    event = SimulatedEvent(
        sequence=1,
        event_type="delivered",
        recipient="a@b.co",
        occurred_at=NOW,
        message_id=str(BIG_ID + 1),
    )
    outbound = ESPS["mailjet"].encode([event], url="", now=NOW, sender={"basic_auth": "u:p"})
    assert b'"MessageID":19421777835146491' in outbound.body


def test_demo_credentials_are_fresh_and_work() -> None:
    receiver, sender = ESPS["mailjet"].demo_credentials("http://x/webhooks/mj")
    assert receiver == sender and set(receiver) == {"basic_auth"}
    assert receiver != ESPS["mailjet"].demo_credentials("http://x/webhooks/mj")[0]
    config = parse_config({"sources": {"mj": {"provider": "mailjet", **receiver}}}, env={})
    assert MailjetProvider.config_problems(config.sources["mj"]) == []
    prov = provider(basic_auth=[receiver["basic_auth"]])
    prov.authenticate(request({"Authorization": basic_header(sender["basic_auth"])}), NOW)


# --- arbitrary input --------------------------------------------------------------------------

header_text = st.text(st.characters(min_codepoint=32, max_codepoint=0x10FF), max_size=80)
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=5)
    ),
    max_leaves=20,
)
events = st.fixed_dictionaries(
    {},
    optional={
        "event": st.sampled_from(["sent", "open", "click", "bounce", "blocked", "x"]) | json_values,
        "email": st.sampled_from(["a@b.co", "nope"]) | json_values,
        "time": st.integers(-(2**70), 2**70) | json_values,
        "MessageID": st.integers(-(2**80), 2**80) | json_values,
        "Message_GUID": json_values,
        "mj_message_id": json_values,
        "customcampaign": json_values,
        "CustomID": json_values,
        "Payload": st.sampled_from(['{"a": 1}', "{", "x"]) | json_values,
        "hard_bounce": json_values,
        "error": json_values,
        "comment": json_values,
        "smtp_reply": json_values,
        "url": json_values,
        "agent": json_values,
    },
)


@settings(max_examples=300, deadline=None)
@given(
    headers=st.dictionaries(
        st.sampled_from(["authorization", "x-gateway-token", "x-other"]), header_text, max_size=3
    ),
    body=st.binary(max_size=200),
)
def test_authenticate_raises_only_authentication_failures(
    headers: dict[str, str], body: bytes
) -> None:
    for prov in (
        provider(basic_auth=["u:p"]),
        provider(header_token=["t0ken"]),
        provider({"token_header": "x-gateway-token"}, header_token=["t0ken"], basic_auth=["u:p"]),
        provider(),
    ):
        with contextlib.suppress(AuthenticationFailed):
            prov.authenticate(request(headers, body), NOW)


@settings(max_examples=300, deadline=None)
@given(body=st.binary(max_size=300) | json_values.map(json.dumps).map(str.encode))
def test_split_raises_only_payload_errors(body: bytes) -> None:
    with contextlib.suppress(PayloadError):
        provider().split(body, {})


@settings(max_examples=500, deadline=None)
@given(item=events | json_values)
def test_normalize_raises_only_mapping_errors(item: Any) -> None:
    with contextlib.suppress(MappingError):
        for event in provider().normalize(item, CONTEXT):
            assert isinstance(event.event_id, str) and len(event.event_id) == 64
            json.loads(event.raw)


# --- config -----------------------------------------------------------------------------------


def test_missing_credentials_is_one_clear_config_problem() -> None:
    assert PROVIDERS["mailjet"] is MailjetProvider
    with pytest.raises(ConfigError) as caught:
        parse_config({"sources": {"mj": {"provider": "mailjet"}}}, env={})
    assert caught.value.problems == [
        "sources.mj: needs basic_auth and/or header_token "
        "(a source without credentials refuses nothing)"
    ]
