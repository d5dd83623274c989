"""The brevo provider: Basic/bearer authentication, the mapping of the (third-party) Symfony
fixtures, open twins sharing an id, the simulator's side, and robustness against arbitrary
input."""

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
from ingest.providers.brevo import BrevoProvider
from ingest.providers.events import Event
from ingest.providers.shared_secret import basic_header
from mailpulse.errors import ConfigError
from mailpulse.simulate.esp import ESPS, SimulatedEvent
from mailpulse.simulate.esp.brevo import DROPS
from tests.helpers import new_secret, parse_config
from tests.providers.kit import golden_rows, inbound, iso_z, make_provider, refusal

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "brevo"
EXPECTED = json.loads((FIXTURES / "expected.json").read_text())
NOW = 1_790_000_000
CONTEXT = NormalizeContext(source="bv", headers={}, received_at=0, campaign_field=None)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def provider(options: dict[str, Any] | None = None, **credentials: list[str]) -> BrevoProvider:
    return make_provider(BrevoProvider, "bv", options, **credentials)


def request(headers: dict[str, str], body: bytes = b"{}") -> InboundRequest:
    return inbound("bv", headers, body, remote_addr="1.179.112.9")


def refused(prov: BrevoProvider, req: InboundRequest) -> str:
    return refusal(prov, req, NOW)


# --- authentication ---------------------------------------------------------------------------


def test_bearer_token_accepts_every_listed_token_and_nothing_else() -> None:
    old, new = new_secret(), new_secret()
    prov = provider(header_token=[old, new])
    for token in (old, new):
        prov.authenticate(request({"Authorization": f"Bearer {token}"}), NOW)
    assert refused(prov, request({})) == "missing_credentials"
    assert refused(prov, request({"Authorization": f"Bearer {old}x"})) == "bad_credentials"
    assert refused(prov, request({"Authorization": f"Bearer {old[:-1]}"})) == "bad_credentials"
    assert refused(prov, request({"Authorization": old})) == "bad_credentials"  # no scheme
    assert refused(prov, request({"Authorization": basic_header(f"u:{old}")})) == (
        "bad_credentials"
    )


def test_basic_auth_from_the_webhook_url() -> None:
    old, new = f"brevo:{new_secret()}", f"brevo:{new_secret()}"
    prov = provider(basic_auth=[old, new])
    for credential in (old, new):
        prov.authenticate(request({"Authorization": basic_header(credential)}), NOW)
    assert refused(prov, request({})) == "missing_credentials"
    assert refused(prov, request({"Authorization": basic_header(old + "x")})) == ("bad_credentials")
    assert refused(prov, request({"Authorization": "Basic %%%"})) == "bad_credentials"


def test_basic_and_bearer_both_configured_accept_either() -> None:
    credential, token = f"u:{new_secret()}", new_secret()
    prov = provider(basic_auth=[credential], header_token=[token])
    prov.authenticate(request({"Authorization": basic_header(credential)}), NOW)
    prov.authenticate(request({"Authorization": f"Bearer {token}"}), NOW)
    assert refused(prov, request({"Authorization": f"Bearer {credential}"})) == ("bad_credentials")


def test_token_in_a_custom_header() -> None:
    token = new_secret()
    prov = provider({"token_header": "x-brevo-token"}, header_token=[token])
    prov.authenticate(request({"X-Brevo-Token": token}), NOW)
    assert "x-brevo-token" in prov.secret_headers  # never stored
    assert refused(prov, request({"Authorization": f"Bearer {token}"})) == "missing_credentials"


def test_a_source_without_credentials_refuses_everything() -> None:
    assert refused(provider(), request({"Authorization": "Bearer x"})) == "no_credentials"


def test_the_authorization_header_is_never_stored() -> None:
    assert "authorization" in BrevoProvider.credential_headers


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


def fixture_event(name: str) -> dict[str, Any]:
    item: dict[str, Any] = orjson.loads((FIXTURES / name).read_bytes())
    return item


def test_every_fixture_has_expectations() -> None:
    files = {p.name for p in FIXTURES.glob("*.json")} - {"expected.json"}
    assert set(EXPECTED) == files


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_third_party_symfony_fixture_maps_to_the_expected_rows(name: str) -> None:
    """The fixtures are Symfony's Brevo bridge test data (third party), not Brevo's own."""
    assert mapped(name) == EXPECTED[name]


def test_raw_keeps_the_event_as_sent() -> None:
    item = fixture_event("thirdparty_symfony_hard_bounce.json")
    (event,) = provider().normalize(item, CONTEXT)
    assert json.loads(event.raw) == item


def test_symfony_error_fixture_holds_an_invalid_email_event() -> None:
    """Quirk of the third-party fixtures: Symfony's ``error.json`` carries
    ``"event": "invalid_email"``. It maps as what it says, and since it is the same event as
    ``invalid_email.json`` but for the webhook ``id``, both get one event id."""
    error = provider().normalize(fixture_event("thirdparty_symfony_error.json"), CONTEXT)
    invalid = provider().normalize(fixture_event("thirdparty_symfony_invalid_email.json"), CONTEXT)
    assert (
        fixture_event("thirdparty_symfony_error.json")["id"]
        != (fixture_event("thirdparty_symfony_invalid_email.json")["id"])
    )
    assert [e.event_id for e in error] == [e.event_id for e in invalid]
    assert (error[0].event_type, error[0].bounce_class) == ("dropped", "invalid")


def test_the_webhook_id_is_not_the_event_id() -> None:
    item = fixture_event("thirdparty_symfony_delivered.json")
    (first,) = provider().normalize(item, CONTEXT)
    (other_hook,) = provider().normalize({**item, "id": 1}, CONTEXT)
    (later,) = provider().normalize({**item, "ts_event": item["ts_event"] + 1}, CONTEXT)
    assert first.event_id == other_hook.event_id != later.event_id
    assert first.event_id != "814119"


def test_unique_opened_and_its_opened_twin_share_one_event_id() -> None:
    """Brevo has sent both ``unique_opened`` and ``opened`` for one first open: one row."""
    item = fixture_event("thirdparty_symfony_unique_opened.json")
    (unique,) = provider().normalize(item, CONTEXT)
    (opened,) = provider().normalize({**item, "event": "opened"}, CONTEXT)
    assert unique.event_id == opened.event_id
    assert unique.event_type == opened.event_type == "opened"
    (second_open,) = provider().normalize(
        {**item, "event": "opened", "ts_event": 1685544600}, CONTEXT
    )
    assert second_open.event_id != opened.event_id


def test_proxy_opens_are_flagged_machine_opens() -> None:
    item = fixture_event("thirdparty_symfony_proxy_open.json")
    (proxy,) = provider().normalize(item, CONTEXT)
    (unique,) = provider().normalize({**item, "event": "unique_proxy_open"}, CONTEXT)
    (human,) = provider().normalize({**item, "event": "opened"}, CONTEXT)
    assert (proxy.agent, proxy.agent_reason) == ("apple_mpp", "esp flag: proxy_open")
    assert proxy.event_id == unique.event_id != human.event_id
    assert (human.agent, human.agent_reason) == (None, None)


def event_of(name: str, **fields: Any) -> dict[str, Any]:
    return {"event": name, "email": "A@B.co", "message-id": "<m@x>", "ts_event": NOW, **fields}


@pytest.mark.parametrize(
    ("name", "event_type", "bounce_class"),
    [
        ("request", "sent", None),
        ("hardBounce", "bounced", "hard"),  # the create-webhook API's spelling
        ("softBounce", "bounced", "soft"),
        ("spam", "complained", None),
        ("complaint", "complained", None),
        ("error", "dropped", "error"),
        ("invalid_email", "dropped", "invalid"),
        ("uniqueOpened", "opened", None),
        ("click", "clicked", None),
        ("unsubscribed", "unsubscribed", None),
        ("some_future_event", "other", None),
    ],
)
def test_event_names(name: str, event_type: str, bounce_class: str | None) -> None:
    (event,) = provider().normalize(event_of(name), CONTEXT)
    assert (event.event_type, event.bounce_class) == (event_type, bounce_class)


@pytest.mark.parametrize(
    ("reason", "drop_class"),
    [
        ("blocked : due to unsubscribed user", "unsubscribed"),
        ("blocked : due to hard bounce", "bounced"),
        ("blocked : due to spam complaint", "complained"),
        ("blocked : contact in blacklist", "suppressed"),
        ("blocked : invalid email", "invalid"),
        ("blocked", "policy"),
        (None, "policy"),
    ],
)
def test_blocked_is_a_drop_classed_by_its_reason(reason: str | None, drop_class: str) -> None:
    (event,) = provider().normalize(event_of("blocked", reason=reason), CONTEXT)
    assert (event.event_type, event.bounce_class) == ("dropped", drop_class)


def test_invalid_email_drops_are_what_the_suppression_rules_list() -> None:
    from analytics.suppression import INVALID_DROP_CLASSES

    (event,) = provider().normalize(event_of("invalid_email"), CONTEXT)
    assert event.bounce_class in INVALID_DROP_CLASSES


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"ts_event": 1685541608, "ts_epoch": 1685541608993}, "2023-05-31T14:00:08.993000Z"),
        ({"ts_event": 1685541608, "ts_epoch": 1685541600000}, "2023-05-31T14:00:08Z"),
        ({"ts_event": "1685541608"}, "2023-05-31T14:00:08Z"),
        ({"ts_event": None, "ts": 1685541608}, "2023-05-31T14:00:08Z"),
        ({"ts_event": None, "ts_epoch": 1685541608993}, "2023-05-31T14:00:08.993000Z"),
        ({"ts_event": None, "date": "2023-05-31 16:00:08"}, "2023-05-31T14:00:08Z"),  # CEST
        ({"ts_event": None, "date": "2023-01-31 16:00:08"}, "2023-01-31T15:00:08Z"),  # CET
    ],
)
def test_event_time_fields(fields: dict[str, Any], expected: str) -> None:
    item = {k: v for k, v in {**event_of("delivered"), **fields}.items() if v is not None}
    (event,) = provider().normalize(item, CONTEXT)
    assert iso_z(event.occurred_at) == expected


def test_tags_from_the_json_encoded_tag_field_and_the_campaign_override() -> None:
    (event,) = provider().normalize(event_of("delivered", tag='["a","b"]'), CONTEXT)
    assert (event.tags, event.campaign) == (["a", "b"], "a")
    (plain,) = provider().normalize(event_of("delivered", tag="solo"), CONTEXT)
    assert (plain.tags, plain.campaign) == (["solo"], "solo")
    override = NormalizeContext(
        source="bv", headers={}, received_at=0, campaign_field="template_id"
    )
    item = event_of("delivered", tags=["a"], template_id=22)
    assert provider().normalize(item, override)[0].campaign == "22"


def test_custom_header_json_becomes_metadata() -> None:
    item = event_of("delivered", **{"X-Mailin-custom": '{"order": 7}'})
    assert json.loads(provider().normalize(item, CONTEXT)[0].metadata or "") == {
        "X-Mailin-custom": {"order": 7}
    }


def test_engagement_fields() -> None:
    item = event_of("click", link="https://x.co/a", user_agent="UA", sending_ip="1.2.3.4")
    (event,) = provider().normalize(item, CONTEXT)
    assert (event.url, event.user_agent, event.ip) == ("https://x.co/a", "UA", None)
    (delivered,) = provider().normalize(event_of("delivered", user_agent="UA"), CONTEXT)
    assert delivered.user_agent is None


@pytest.mark.parametrize(
    "item",
    [
        {"event": "list_addition", "email": "a@b.co", "list_id": [1]},
        {"event": "contact_updated", "email": "a@b.co"},
        {"event": "delivered", "to": "33612345678", "msg_status": "delivered", "ts_event": NOW},
    ],
)
def test_contact_and_sms_events_yield_no_row(item: dict[str, Any]) -> None:
    assert provider().normalize(item, CONTEXT) == []


@pytest.mark.parametrize(
    "item",
    [
        [],
        "delivered",
        {"email": "a@b.co", "ts_event": NOW},
        event_of("delivered", email="nope"),
        event_of("delivered", ts_event="soon"),
        {"event": "delivered", "email": "a@b.co"},
        event_of("delivered", ts_event=None, date="yesterday"),
        event_of("delivered", ts_event=None, date="1969-12-31 23:00:00"),
        event_of("delivered", tags=[{"x": 1}]),
    ],
)
def test_malformed_events_raise_mapping_errors(item: Any) -> None:
    with pytest.raises(MappingError):
        provider().normalize(item, CONTEXT)


def test_a_batched_array_is_split_into_its_events() -> None:
    items = [
        fixture_event("thirdparty_symfony_request.json"),
        fixture_event("thirdparty_symfony_delivered.json"),
    ]
    assert provider().split(orjson.dumps(items), {}) == items
    assert provider().split(orjson.dumps(items[0]), {}) == [items[0]]


@pytest.mark.parametrize("body", [b"", b"[", b'"x"', b"7", b"null"])
def test_unparseable_bodies_raise_payload_errors(body: bytes) -> None:
    with pytest.raises(PayloadError):
        provider().split(body, {})


# --- the simulator's side ---------------------------------------------------------------------

recipients = st.from_regex(r"[a-z][a-z0-9._]{0,10}@[a-z]{1,8}\.(com|org|dev)", fullmatch=True)
texts = st.text(st.characters(min_codepoint=32, max_codepoint=0x2FF), min_size=1, max_size=20)


@st.composite
def simulated(draw: st.DrawFn, sequence: int) -> SimulatedEvent:
    kind = draw(st.sampled_from(sorted(BrevoProvider.emits)))
    bounce_class = None
    if kind == "bounced":
        bounce_class = draw(st.sampled_from(["hard", "soft"]))
    elif kind == "dropped":
        bounce_class = draw(st.sampled_from(sorted(DROPS)))
    return SimulatedEvent(
        sequence=sequence,
        event_type=kind,
        recipient=draw(recipients),
        occurred_at=draw(st.floats(1_600_000_000, 1_900_000_000)),
        message_id=ESPS["brevo"].message_id(sequence, 3),
        campaign=draw(texts),
        tags=tuple(draw(st.lists(texts, max_size=3))),
        url="https://example.com/x" if kind == "clicked" else None,
        user_agent=draw(st.none() | texts),
        agent=draw(st.sampled_from([None, "apple_mpp"])) if kind == "opened" else None,
        bounce_class=bounce_class,
        metadata=draw(st.dictionaries(texts, texts, max_size=3)),
    )


def assert_round_trip(prov: BrevoProvider, event: SimulatedEvent, row: Event) -> None:
    assert row.event_type == event.event_type
    assert row.recipient == event.recipient
    assert row.message_id == event.message_id
    assert row.campaign == event.campaign  # the first tag
    assert abs(row.occurred_at - event.occurred_at * 1_000_000) <= 500  # milliseconds
    assert row.bounce_class == event.bounce_class
    assert row.agent == ("apple_mpp" if event.agent else None)
    assert json.loads(row.metadata or '{"X-Mailin-custom": {}}') == {
        "X-Mailin-custom": dict(event.metadata)
    }


@settings(max_examples=60, deadline=None)
@given(data=st.data(), count=st.integers(1, 12))
def test_round_trip_through_encode_authenticate_split_normalize(
    data: st.DataObject, count: int
) -> None:
    token = new_secret()
    events = [data.draw(simulated(sequence)) for sequence in range(count)]
    prov = provider(header_token=[token])
    sender = {"header_token": token}
    outbound = ESPS["brevo"].encode(events, url="http://x/webhooks/bv", now=NOW, sender=sender)
    assert outbound.headers["Authorization"] == f"Bearer {token}"
    prov.authenticate(request(dict(outbound.headers), outbound.body), NOW)
    assert isinstance(orjson.loads(outbound.body), dict if count == 1 else list)
    items = prov.split(outbound.body, outbound.headers)
    assert len(items) == count
    ids = []
    for event, item in zip(events, items, strict=True):
        (row,) = prov.normalize(item, CONTEXT)
        assert_round_trip(prov, event, row)
        ids.append(row.event_id)
    again = ESPS["brevo"].encode(events, url="http://x/webhooks/bv", now=NOW + 60, sender=sender)
    assert again.body == outbound.body  # a retry carries the same events, so the same ids
    assert len(set(ids)) == count


def test_encode_with_basic_credentials() -> None:
    credential = f"brevo:{new_secret()}"
    event = SimulatedEvent(
        sequence=1, event_type="delivered", recipient="a@b.co", occurred_at=NOW, message_id="m"
    )
    outbound = ESPS["brevo"].encode([event], url="", now=NOW, sender={"basic_auth": credential})
    provider(basic_auth=[credential]).authenticate(
        request(dict(outbound.headers), outbound.body), NOW
    )


def test_message_ids_are_brevo_shaped_and_distinct() -> None:
    ids = {ESPS["brevo"].message_id(sequence, 7) for sequence in range(1000)}
    assert len(ids) == 1000
    assert all(i.startswith("<") and i.endswith(">") and "@" in i for i in ids)
    assert ESPS["brevo"].message_id(5, 7) == ESPS["brevo"].message_id(5, 7)


def test_demo_credentials_are_fresh_and_work() -> None:
    receiver, sender = ESPS["brevo"].demo_credentials("http://x/webhooks/bv")
    assert receiver == sender and set(receiver) == {"header_token"}
    assert receiver != ESPS["brevo"].demo_credentials("http://x/webhooks/bv")[0]
    config = parse_config({"sources": {"bv": {"provider": "brevo", **receiver}}}, env={})
    assert BrevoProvider.config_problems(config.sources["bv"]) == []
    event = SimulatedEvent(
        sequence=1, event_type="opened", recipient="a@b.co", occurred_at=NOW, message_id="m"
    )
    outbound = ESPS["brevo"].encode([event], url="", now=NOW, sender=sender)
    provider(header_token=[receiver["header_token"]]).authenticate(
        request(dict(outbound.headers), outbound.body), NOW
    )


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
        "event": st.sampled_from(
            ["delivered", "blocked", "proxy_open", "click", "hard_bounce", "list_addition", "x"]
        )
        | json_values,
        "email": st.sampled_from(["a@b.co", "nope"]) | json_values,
        "ts_event": st.integers(-(2**70), 2**70) | json_values,
        "ts_epoch": st.integers(-(2**70), 2**70) | json_values,
        "ts": json_values,
        "date": st.sampled_from(["2023-05-31 16:00:08", "0001-01-01 00:00:00"]) | json_values,
        "message-id": json_values,
        "tags": json_values,
        "tag": st.sampled_from(['["a"]', "[", "t"]) | json_values,
        "reason": json_values,
        "link": json_values,
        "user_agent": json_values,
        "X-Mailin-custom": st.sampled_from(['{"a": 1}', "[1", "x"]) | json_values,
        "to": json_values,
    },
)


@settings(max_examples=300, deadline=None)
@given(
    headers=st.dictionaries(
        st.sampled_from(["authorization", "x-brevo-token", "x-other"]), header_text, max_size=3
    ),
    body=st.binary(max_size=200),
)
def test_authenticate_raises_only_authentication_failures(
    headers: dict[str, str], body: bytes
) -> None:
    for prov in (
        provider(basic_auth=["u:p"]),
        provider(header_token=["t0ken"]),
        provider({"token_header": "x-brevo-token"}, header_token=["t0ken"], basic_auth=["u:p"]),
        provider(header_token=["t0ken"], basic_auth=["u:p"]),
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


# --- config -----------------------------------------------------------------------------------


def test_missing_credentials_is_one_clear_config_problem() -> None:
    assert PROVIDERS["brevo"] is BrevoProvider
    with pytest.raises(ConfigError) as caught:
        parse_config({"sources": {"bv": {"provider": "brevo"}}}, env={})
    assert caught.value.problems == [
        "sources.bv: needs basic_auth and/or header_token "
        "(a source without credentials refuses nothing)"
    ]


def test_token_header_option_is_accepted_by_the_config() -> None:
    config = parse_config(
        {"sources": {"bv": {"provider": "brevo", "header_token": "t", "token_header": "x-t"}}},
        env={},
    )
    assert config.sources["bv"].options == {"token_header": "x-t"}
