"""The sparkpost provider: Basic/token authentication, the mapping of SparkPost's own sample
batch, the simulator's side, and robustness against arbitrary input."""

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
from ingest.providers.shared_secret import basic_header
from ingest.providers.sparkpost import BATCH_HEADER, SparkPostProvider
from ingest.providers.sparkpost.mapping import AUTO_REPLY_CLASS, BOUNCE_CLASSES
from mailpulse.errors import ConfigError
from mailpulse.simulate.esp import ESPS, SimulatedEvent
from tests.helpers import new_secret, parse_config
from tests.providers.kit import golden_rows, inbound, make_provider, refusal

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "sparkpost"
EXPECTED = json.loads((FIXTURES / "expected.json").read_text())
TOKEN = "x-messagesystems-webhook-token"
NOW = 1_790_000_000
CONTEXT = NormalizeContext(source="sp", headers={}, received_at=0, campaign_field=None)


def provider(options: dict[str, Any] | None = None, **credentials: list[str]) -> SparkPostProvider:
    return make_provider(SparkPostProvider, "sp", options, **credentials)


def request(headers: dict[str, str], body: bytes = b'[{"msys":{}}]') -> InboundRequest:
    return inbound("sp", headers, body)


def refused(prov: SparkPostProvider, req: InboundRequest) -> str:
    return refusal(prov, req, NOW)


# --- authentication ---------------------------------------------------------------------------


def test_basic_auth_accepts_every_listed_credential_and_nothing_else() -> None:
    old, new = f"sparkpost:{new_secret()}", f"sparkpost:{new_secret()}"
    prov = provider(basic_auth=[old, new])
    for credential in (old, new):
        prov.authenticate(request({"Authorization": basic_header(credential)}), NOW)
    assert refused(prov, request({})) == "missing_credentials"
    assert refused(prov, request({"Authorization": basic_header("sparkpost:x")})) == (
        "bad_credentials"
    )
    assert refused(prov, request({"Authorization": "Bearer " + old})) == "bad_credentials"


def test_legacy_token_header_is_checked() -> None:
    token = new_secret()
    prov = provider(header_token=[token])
    prov.authenticate(request({"X-MessageSystems-Webhook-Token": token}), NOW)
    assert refused(prov, request({})) == "missing_credentials"
    assert refused(prov, request({TOKEN: token[:-1]})) == "bad_credentials"
    assert refused(prov, request({"Authorization": f"Bearer {token}"})) == "missing_credentials"


def test_oauth2_bearer_token_when_the_token_header_is_authorization() -> None:
    token = new_secret()
    prov = provider({"token_header": "authorization"}, header_token=[token])
    prov.authenticate(request({"Authorization": f"Bearer {token}"}), NOW)
    assert refused(prov, request({TOKEN: token})) == "missing_credentials"
    assert refused(prov, request({"Authorization": f"Bearer {token}x"})) == "bad_credentials"


def test_basic_and_token_configured_means_both_must_pass() -> None:
    credential, token = f"u:{new_secret()}", new_secret()
    prov = provider(basic_auth=[credential], header_token=[token])
    both = {"Authorization": basic_header(credential), TOKEN: token}
    prov.authenticate(request(both), NOW)
    assert refused(prov, request({TOKEN: token})) == "missing_credentials"
    assert refused(prov, request({"Authorization": basic_header(credential)})) == (
        "missing_credentials"
    )


def test_a_source_without_credentials_refuses_everything() -> None:
    assert refused(provider(), request({"Authorization": basic_header("a:b")})) == (
        "no_credentials"
    )


def test_the_credential_headers_are_never_stored() -> None:
    assert {"authorization", TOKEN} <= SparkPostProvider.credential_headers


# --- mapping ----------------------------------------------------------------------------------


def rows(events: list[Event]) -> list[dict[str, Any]]:
    return golden_rows(events, ("tags",))


def mapped(name: str) -> list[Any]:
    prov = provider()
    results: list[Any] = []
    for item in prov.split((FIXTURES / name).read_bytes(), {}):
        try:
            results.append(rows(prov.normalize(item, CONTEXT)))
        except MappingError as exc:
            results.append({"mapping_error": str(exc)})
    return results


def test_every_fixture_has_expectations() -> None:
    files = {p.name for p in FIXTURES.glob("*.json")} - {"expected.json"}
    assert set(EXPECTED) == files


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_fixture_maps_to_the_expected_rows(name: str) -> None:
    assert mapped(name) == EXPECTED[name]


def test_validation_ping_is_accepted_and_yields_no_row() -> None:
    body = (FIXTURES / "sparkpost_docs_validation_ping_batch.json").read_bytes()
    prov = provider(basic_auth=["u:p"])
    prov.authenticate(request({"Authorization": basic_header("u:p")}, body), NOW)
    (ping,) = prov.split(body, {})
    assert prov.normalize(ping, CONTEXT) == []


def test_sample_batch_shares_one_event_id() -> None:
    """Quirk of SparkPost's sample batch: all 19 events carry ``event_id`` 92356927693813856.

    The id is kept verbatim (it is SparkPost's dedup id), so the flusher keeps one row of the
    batch; real batches carry a distinct id per event.
    """
    results = mapped("sparkpost_elixir_webhook_sample_batch.json")
    assert len(results) == 19
    ids = {row["event_id"] for result in results for row in result}
    assert ids == {"92356927693813856"}


def test_split_samples_match_the_batch_they_were_cut_from() -> None:
    """The 19 split files are the batch re-serialized: each maps exactly like its element."""
    batch = orjson.loads((FIXTURES / "sparkpost_elixir_webhook_sample_batch.json").read_bytes())
    for element in batch:
        ((event_class, body),) = element["msys"].items()
        name = f"sparkpost_elixir_sample_split_{event_class}_{body['type']}.json"
        (single,) = orjson.loads((FIXTURES / name).read_bytes())
        assert single == element
        assert mapped(name) == [rows(provider().normalize(element, CONTEXT))]


def test_fields_of_a_click() -> None:
    (item,) = orjson.loads(
        (FIXTURES / "sparkpost_elixir_sample_split_track_event_click.json").read_bytes()
    )
    (event,) = provider().normalize(item, CONTEXT)
    assert event.url == "http://example.com"
    assert event.ip == "127.0.0.1"
    assert event.user_agent is not None and event.user_agent.startswith("Mozilla/5.0 (Macintosh")
    assert json.loads(event.metadata or "") == {"customKey": "customValue"}
    assert json.loads(event.raw) == item


def test_delivery_ip_is_the_receiving_mta_and_is_not_kept() -> None:
    (item,) = orjson.loads(
        (FIXTURES / "sparkpost_elixir_sample_split_message_event_delivery.json").read_bytes()
    )
    (event,) = provider().normalize(item, CONTEXT)
    assert (event.ip, event.user_agent) == (None, None)


def event_of(kind: str, event_class: str = "message_event", **fields: Any) -> dict[str, Any]:
    body = {"type": kind, "rcpt_to": "A@B.co", "timestamp": str(NOW), "event_id": "1", **fields}
    return {"msys": {event_class: body}}


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("10", "hard"),
        ("30", "hard"),
        ("90", "hard"),
        ("20", "soft"),
        ("22", "soft"),
        ("50", "soft"),
        ("54", "soft"),
        ("1", "undetermined"),
        ("25", "undetermined"),
        ("999", "undetermined"),
        (None, "undetermined"),
    ],
)
def test_bounce_classification_codes(code: str | None, expected: str) -> None:
    for kind in ("bounce", "out_of_band"):
        item = event_of(kind, bounce_class=code)
        assert provider().normalize(item, CONTEXT)[0].bounce_class == expected


def test_every_classification_code_of_the_table_is_mapped() -> None:
    assert set(BOUNCE_CLASSES) | {AUTO_REPLY_CLASS} == {
        "1", "10", "20", "21", "22", "23", "24", "25", "26", "30", "40", "50", "51", "52",
        "53", "54", "60", "70", "80", "90", "100",
    }  # fmt: skip
    assert set(BOUNCE_CLASSES.values()) == {"hard", "soft", "undetermined"}


@pytest.mark.parametrize("kind", ["bounce", "out_of_band"])
def test_an_auto_reply_is_other_with_its_reason_and_never_a_soft_bounce(
    kind: str, tmp_path: Path
) -> None:
    """Class 60 is SparkPost's Auto-Reply (out of office): the message arrived."""
    from analytics import open_lake
    from analytics.suppression import suppressions
    from mailpulse.config import SuppressionConfig
    from tests.lakes import row, write_lake

    batch = json.loads(
        (FIXTURES / "sparkpost_elixir_sample_split_message_event_bounce.json").read_bytes()
    )
    body = batch[0]["msys"]["message_event"]
    rows = []
    for n in range(5):  # more than the soft-bounce rule needs, a day apart
        element = {**body, "type": kind, "bounce_class": "60", "event_id": f"ooo-{n}",
                   "timestamp": str(int(body["timestamp"]) + n * 86_400),
                   "reason": "Out of office until Monday"}  # fmt: skip
        (event,) = provider().normalize({"msys": {"message_event": element}}, CONTEXT)
        assert (event.event_type, event.bounce_class) == ("other", None)
        assert event.reason == "Out of office until Monday"
        rows.append(row(event.event_id, event.event_type, event.recipient, _utc(event.occurred_at),
                        reason=event.reason))  # fmt: skip
    write_lake(tmp_path, rows)
    with open_lake(tmp_path) as lake:
        assert suppressions(lake, SuppressionConfig()).is_empty()


@pytest.mark.parametrize(
    ("kind", "reason", "drop_class"),
    [
        (
            "policy_rejection",
            "550 5.7.1 recipient address suppressed due to customer policy",
            "suppressed",
        ),
        ("policy_rejection", "554 5.7.1 [internal] recipient previously hard bounced", "bounced"),
        ("policy_rejection", "550 5.1.3 invalid recipient address", "invalid"),
        ("policy_rejection", "MAIL REFUSED - IP (a.b.c.d) is in black list", "policy"),
        ("generation_rejection", "rejected", "policy"),
        ("generation_failure", "template error", "generation"),
    ],
)
def test_drops_are_classed(kind: str, reason: str, drop_class: str) -> None:
    event_class = "message_event" if kind == "policy_rejection" else "gen_event"
    (event,) = provider().normalize(event_of(kind, event_class, reason=reason), CONTEXT)
    assert (event.event_type, event.bounce_class) == ("dropped", drop_class)


def test_enhanced_status_comes_from_the_raw_reason() -> None:
    item = event_of("bounce", bounce_class="10", raw_reason="550 5.1.1 <a@b.co>: user unknown")
    assert provider().normalize(item, CONTEXT)[0].smtp_status == "5.1.1"


@pytest.mark.parametrize(
    ("kind", "event_type"),
    [
        ("initial_open", "opened"),
        ("amp_open", "opened"),
        ("amp_initial_open", "opened"),
        ("amp_click", "clicked"),
        ("some_future_type", "other"),
    ],
)
def test_more_types(kind: str, event_type: str) -> None:
    assert provider().normalize(event_of(kind, "track_event"), CONTEXT)[0].event_type == event_type


def test_relay_and_sms_events_yield_no_row() -> None:
    assert provider().normalize(event_of("relay_injection", "relay_event"), CONTEXT) == []
    assert provider().normalize(event_of("sms_status"), CONTEXT) == []


def test_campaign_override_and_missing_event_id() -> None:
    override = NormalizeContext(
        source="sp", headers={}, received_at=0, campaign_field="template_id"
    )
    item = event_of("delivery", campaign_id="c", template_id="t")
    assert provider().normalize(item, override)[0].campaign == "t"
    assert provider().normalize(item, CONTEXT)[0].campaign == "c"
    body = {k: v for k, v in item["msys"]["message_event"].items() if k != "event_id"}
    first = provider().normalize({"msys": {"message_event": body}}, CONTEXT)[0].event_id
    assert len(first) == 64
    again = provider().normalize({"msys": {"message_event": dict(body)}}, CONTEXT)[0].event_id
    assert first == again


@pytest.mark.parametrize(
    "item",
    [
        [],
        {"msys": []},
        {"other": {}},
        {"msys": {"message_event": {}, "track_event": {}}},
        {"msys": {"message_event": []}},
        {"msys": {"message_event": {"rcpt_to": "a@b.co"}}},
        event_of("delivery", rcpt_to="not-an-address"),
        event_of("delivery", timestamp="soon"),
    ],
)
def test_malformed_elements_raise_mapping_errors(item: Any) -> None:
    with pytest.raises(MappingError):
        provider().normalize(item, CONTEXT)


@pytest.mark.parametrize("body", [b"", b"[", b'"x"', b"7", b'{"results": []}'])
def test_unparseable_bodies_raise_payload_errors(body: bytes) -> None:
    with pytest.raises(PayloadError):
        provider().split(body, {})


# --- the simulator's side ---------------------------------------------------------------------

recipients = st.from_regex(r"[a-z][a-z0-9._]{0,10}@[a-z]{1,8}\.(com|org|dev)", fullmatch=True)
texts = st.text(st.characters(min_codepoint=32, max_codepoint=0x2FF), min_size=1, max_size=20)


@st.composite
def simulated(draw: st.DrawFn, sequence: int) -> SimulatedEvent:
    kind = draw(st.sampled_from(sorted(SparkPostProvider.emits)))
    bounce_class = None
    if kind == "bounced":
        bounce_class = draw(st.sampled_from(["hard", "soft", "undetermined"]))
    elif kind == "dropped":
        bounce_class = draw(
            st.sampled_from(["bounced", "suppressed", "invalid", "policy", "generation"])
        )
    return SimulatedEvent(
        sequence=sequence,
        event_type=kind,
        recipient=draw(recipients),
        occurred_at=draw(st.floats(1_600_000_000, 1_900_000_000)),
        message_id=ESPS["sparkpost"].message_id(sequence, 3),
        campaign=draw(st.none() | texts),
        tags=tuple(draw(st.lists(texts, max_size=3))),
        url="https://example.com/x" if kind == "clicked" else None,
        bounce_class=bounce_class,
        metadata=draw(st.dictionaries(texts, texts, max_size=3)),
    )


@settings(max_examples=60, deadline=None)
@given(data=st.data(), count=st.integers(1, 12))
def test_round_trip_through_encode_authenticate_split_normalize(
    data: st.DataObject, count: int
) -> None:
    credential = "sparkpost:" + new_secret()
    events = [data.draw(simulated(sequence)) for sequence in range(count)]
    prov = provider(basic_auth=[credential])
    sender = {"basic_auth": credential}
    outbound = ESPS["sparkpost"].encode(events, url="http://x/webhooks/sp", now=NOW, sender=sender)
    prov.authenticate(request(dict(outbound.headers), outbound.body), NOW)
    items = prov.split(outbound.body, outbound.headers)
    assert len(items) == count
    for event, item in zip(events, items, strict=True):
        (row,) = prov.normalize(item, CONTEXT)
        assert row.event_type == event.event_type
        assert row.recipient == event.recipient
        assert row.message_id == event.message_id
        assert row.campaign == event.campaign
        assert row.occurred_at == int(event.occurred_at) * 1_000_000  # whole seconds, as text
        assert row.bounce_class == event.bounce_class
        assert row.agent is None  # SparkPost flags no machine opens
        assert row.tags == list(event.tags)
        assert json.loads(row.metadata or "{}") == dict(event.metadata)
    again = ESPS["sparkpost"].encode(
        events, url="http://x/webhooks/sp", now=NOW + 60, sender=sender
    )
    assert again.body == outbound.body  # same ids (and same batch id) on a retry
    assert again.headers[BATCH_HEADER] == outbound.headers[BATCH_HEADER]
    ids = [next(iter(e["msys"].values()))["event_id"] for e in orjson.loads(outbound.body)]
    assert len(set(ids)) == count


def test_encode_sends_the_token_in_the_configured_header() -> None:
    token = new_secret()
    event = SimulatedEvent(
        sequence=1, event_type="delivered", recipient="a@b.co", occurred_at=NOW, message_id="m"
    )
    legacy = ESPS["sparkpost"].encode([event], url="", now=NOW, sender={"header_token": token})
    provider(header_token=[token]).authenticate(request(dict(legacy.headers), legacy.body), NOW)
    oauth_sender = {"header_token": token, "token_header": "Authorization"}
    oauth = ESPS["sparkpost"].encode([event], url="", now=NOW, sender=oauth_sender)
    assert oauth.headers["Authorization"] == f"Bearer {token}"
    oauth_provider = provider({"token_header": "authorization"}, header_token=[token])
    oauth_provider.authenticate(request(dict(oauth.headers), oauth.body), NOW)


def test_demo_credentials_are_fresh_and_work() -> None:
    receiver, sender = ESPS["sparkpost"].demo_credentials("http://x/webhooks/sp")
    assert receiver == sender and set(receiver) == {"basic_auth"}
    assert receiver != ESPS["sparkpost"].demo_credentials("http://x/webhooks/sp")[0]
    assert (
        SparkPostProvider.config_problems(
            parse_config(
                {"sources": {"sp": {"provider": "sparkpost", **receiver}}}, env={}
            ).sources["sp"]
        )
        == []
    )
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
event_bodies = st.fixed_dictionaries(
    {},
    optional={
        "type": st.sampled_from(["bounce", "delivery", "open", "policy_rejection", "x"])
        | json_values,
        "rcpt_to": st.sampled_from(["a@b.co", "nope"]) | json_values,
        "timestamp": st.integers(-(2**70), 2**70).map(str) | json_values,
        "event_id": json_values,
        "message_id": json_values,
        "bounce_class": json_values,
        "reason": json_values,
        "raw_reason": json_values,
        "rcpt_tags": json_values,
        "rcpt_meta": json_values,
        "campaign_id": json_values,
        "target_link_url": json_values,
    },
)
elements = st.builds(
    lambda event_class, body: {"msys": {event_class: body}},
    st.sampled_from(["message_event", "track_event", "gen_event", "relay_event"]) | st.text(),
    event_bodies | json_values,
)


@settings(max_examples=300, deadline=None)
@given(
    headers=st.dictionaries(
        st.sampled_from(["authorization", TOKEN, "x-other"]), header_text, max_size=3
    ),
    body=st.binary(max_size=200),
)
def test_authenticate_raises_only_authentication_failures(
    headers: dict[str, str], body: bytes
) -> None:
    for prov in (
        provider(basic_auth=["u:p"]),
        provider(header_token=["t0ken"]),
        provider({"token_header": "authorization"}, header_token=["t0ken"], basic_auth=["u:p"]),
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
@given(item=elements | json_values)
def test_normalize_raises_only_mapping_errors(item: Any) -> None:
    with contextlib.suppress(MappingError):
        for event in provider().normalize(item, CONTEXT):
            assert isinstance(event.event_id, str) and event.event_id


# --- config -----------------------------------------------------------------------------------


def test_missing_credentials_is_one_clear_config_problem() -> None:
    assert "sparkpost" in PROVIDERS
    with pytest.raises(ConfigError) as caught:
        parse_config({"sources": {"sp": {"provider": "sparkpost"}}}, env={})
    assert caught.value.problems == [
        "sources.sp: needs basic_auth and/or header_token "
        "(a source without credentials refuses nothing)"
    ]


def test_token_header_option_is_accepted_by_the_config() -> None:
    config = parse_config(
        {
            "sources": {
                "sp": {
                    "provider": "sparkpost",
                    "header_token": ["a", "b"],
                    "token_header": "authorization",
                }
            }
        },
        env={},
    )
    assert config.sources["sp"].options == {"token_header": "authorization"}


def _utc(micros: int) -> datetime:
    return datetime.fromtimestamp(micros / 1_000_000, tz=UTC)
