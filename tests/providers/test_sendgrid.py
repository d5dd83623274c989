"""The sendgrid provider: Signed Event Webhook on raw bytes, the mapping of every docs sample,
the simulator's side, and robustness against arbitrary input."""

from __future__ import annotations

import base64
import contextlib
import json
from pathlib import Path
from typing import Any

import orjson
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest.errors import AuthenticationFailed, IngestError, MappingError, PayloadError
from ingest.providers import PROVIDERS, InboundRequest, NormalizeContext
from ingest.providers.events import Event
from ingest.providers.sendgrid import (
    DEFAULT_TOLERANCE_SECONDS,
    FUTURE_SKEW_SECONDS,
    SendGridProvider,
)
from ingest.providers.sendgrid.signature import generate_key_pair, sign
from mailpulse.config import Secret, SourceConfig
from mailpulse.errors import ConfigError
from mailpulse.simulate.esp import ESPS, SimulatedEvent
from tests.helpers import parse_config
from tests.providers.kit import golden_rows, inbound, make_provider, refusal

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "sendgrid"
EXPECTED = json.loads((FIXTURES / "expected.json").read_text())
VECTORS = sorted(FIXTURES.glob("signature_vector_*.json"))
SIG = "x-twilio-email-event-webhook-signature"
TS = "x-twilio-email-event-webhook-timestamp"
NOW = 1_790_000_000
CONTEXT = NormalizeContext(source="sg", headers={}, received_at=0, campaign_field=None)


def provider(*public_keys: str, **extra: Any) -> SendGridProvider:
    options = extra.pop("options", {})
    return make_provider(SendGridProvider, "sg", options, public_key=public_keys, **extra)


def request(body: bytes, headers: dict[str, str]) -> InboundRequest:
    return inbound("sg", headers, body)


def signed(private_pem: str, body: bytes, timestamp: int = NOW) -> dict[str, str]:
    return {SIG: sign(private_pem, str(timestamp), body), TS: str(timestamp)}


def refused(prov: SendGridProvider, req: InboundRequest, now: float = NOW) -> str:
    return refusal(prov, req, now)


def vector(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    return data


@pytest.fixture(scope="module")
def pair() -> tuple[str, str]:
    """A fresh key pair per test run: no private key is committed."""
    return generate_key_pair()


# --- signatures -------------------------------------------------------------------------------


@pytest.mark.parametrize("path", VECTORS, ids=lambda p: p.stem)
def test_official_vectors_verify_at_their_own_time(path: Path) -> None:
    data = vector(path)
    req = request(data["body"].encode(), data["headers"])
    provider(data["public_key"]).authenticate(req, float(data["headers"][TS.title()]))


def test_crlf_vector_verifies_only_with_the_exact_body_bytes() -> None:
    """SendGrid signs the trailing CRLF too: the bytes are used as received, never re-encoded."""
    data = vector(FIXTURES / "signature_vector_sendgrid_python_dropped_crlf.json")
    assert data["body"].endswith("\r\n")
    headers = data["headers"]
    now = float(headers[TS.title()])
    stripped = request(data["body"].rstrip("\r\n").encode(), headers)
    assert refused(provider(data["public_key"]), stripped, now) == "bad_signature"
    reserialized = json.dumps(json.loads(data["body"])).encode()
    assert refused(provider(data["public_key"]), request(reserialized, headers), now) == (
        "bad_signature"
    )


@pytest.mark.parametrize("path", VECTORS, ids=lambda p: p.stem)
def test_negative_cases_published_with_the_vectors_fail(path: Path) -> None:
    data = vector(path)
    now = float(data["headers"][TS.title()])
    for case in data["negative_cases_from_same_test"]:
        headers = dict(data["headers"])
        if "signature" in case:
            headers[SIG.title()] = case["signature"]
        if "timestamp" in case:
            headers[TS.title()] = case["timestamp"]
        body = case.get("body", data["body"]).encode()
        key = case.get("public_key", data["public_key"])
        code = refused(provider(key), request(body, headers), now)
        assert code in {"bad_signature", "bad_timestamp", "missing_timestamp"}, case["what"]


def test_pem_public_key_is_accepted() -> None:
    data = vector(FIXTURES / "signature_vector_sendgrid_python_dropped_crlf.json")
    pem = f"-----BEGIN PUBLIC KEY-----\n{data['public_key']}\n-----END PUBLIC KEY-----\n"
    req = request(data["body"].encode(), data["headers"])
    provider(pem).authenticate(req, float(data["headers"][TS.title()]))


def test_any_changed_byte_of_body_signature_or_timestamp_fails(pair: tuple[str, str]) -> None:
    public, private = pair
    body = b'[{"email":"a@example.com","event":"delivered","timestamp":1790000000}]\r\n'
    headers = signed(private, body)
    prov = provider(public)
    prov.authenticate(request(body, headers), NOW)
    for position in range(len(body)):
        tampered = bytearray(body)
        tampered[position] ^= 0x01
        assert refused(prov, request(bytes(tampered), headers)) == "bad_signature"
    raw_signature = base64.b64decode(headers[SIG])
    for position in range(len(raw_signature)):
        tampered = bytearray(raw_signature)
        tampered[position] ^= 0x01
        changed = {**headers, SIG: base64.b64encode(bytes(tampered)).decode()}
        assert refused(prov, request(body, changed)) == "bad_signature"
    for timestamp in (NOW - 1, NOW + 1, NOW - 10):
        assert refused(prov, request(body, {**headers, TS: str(timestamp)})) == "bad_signature"


def test_another_key_fails_and_rotation_accepts_either(pair: tuple[str, str]) -> None:
    public, private = pair
    other_public, _ = generate_key_pair()
    body = b"[]\r\n"
    req = request(body, signed(private, body))
    assert refused(provider(other_public), req) == "bad_signature"
    provider(other_public, public).authenticate(req, NOW)  # the second of two keys verifies
    provider(public, other_public).authenticate(req, NOW)


def test_a_key_on_another_curve_is_a_config_problem() -> None:
    p384 = ec.generate_private_key(ec.SECP384R1()).public_key()
    der = p384.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    source = SourceConfig(
        name="sg",
        provider="sendgrid",
        credentials={"public_key": (Secret(base64.b64encode(der).decode()),)},
    )
    assert SendGridProvider.config_problems(source) == [
        "public_key entry 1: not an ECDSA P-256 (prime256v1) public key"
    ]
    assert refused(SendGridProvider(source), request(b"[]", {SIG: "x", TS: str(NOW)})) == (
        "no_credentials"
    )


@pytest.mark.parametrize(
    ("skew", "ok"),
    [
        (0, True),
        (DEFAULT_TOLERANCE_SECONDS, True),
        (DEFAULT_TOLERANCE_SECONDS + 1, False),
        (-FUTURE_SKEW_SECONDS, True),
        (-FUTURE_SKEW_SECONDS - 1, False),
        (30 * 86_400, False),
    ],
)
def test_timestamp_window_is_24_hours_back_and_5_minutes_ahead(
    pair: tuple[str, str], skew: int, ok: bool
) -> None:
    """A retry signed at the first attempt stays valid for SendGrid's 24-hour retry horizon."""
    public, private = pair
    body = b"[]\r\n"
    req = request(body, signed(private, body, NOW - skew))
    if ok:
        provider(public).authenticate(req, NOW)
    else:
        assert refused(provider(public), req) == "stale_timestamp"


def test_tolerance_option_narrows_the_window(pair: tuple[str, str]) -> None:
    public, private = pair
    body = b"[]"
    req = request(body, signed(private, body, NOW - 301))
    narrow = provider(public, options={"timestamp_tolerance": 300})
    assert refused(narrow, req) == "stale_timestamp"
    provider(public).authenticate(req, NOW)


def test_a_millisecond_timestamp_header_is_judged_in_seconds(pair: tuple[str, str]) -> None:
    public, private = pair
    body = b"[]"
    provider(public).authenticate(request(body, signed(private, body, NOW * 1000)), NOW)


@pytest.mark.parametrize(
    ("drop", "change", "code"),
    [
        (SIG, {}, "missing_signature"),
        (TS, {}, "missing_timestamp"),
        (None, {SIG: ""}, "missing_signature"),
        (None, {TS: ""}, "missing_timestamp"),
        (None, {TS: "timestamp"}, "bad_timestamp"),
        (None, {TS: "-1790000000"}, "bad_timestamp"),
        (None, {TS: "1790000000.5"}, "bad_timestamp"),
        (None, {SIG: "not base64!"}, "bad_signature"),
        (None, {SIG: "A" * 400}, "bad_signature"),
        (None, {SIG: "é" * 10}, "bad_signature"),
    ],
)
def test_missing_or_malformed_headers_have_their_own_codes(
    pair: tuple[str, str], drop: str | None, change: dict[str, str], code: str
) -> None:
    public, private = pair
    body = b"[]"
    headers = {**signed(private, body), **change}
    headers.pop(drop or "", None)
    assert refused(provider(public), request(body, headers)) == code


def test_a_source_without_keys_refuses_everything(pair: tuple[str, str]) -> None:
    _, private = pair
    body = b"[]"
    assert refused(provider(), request(body, signed(private, body))) == "no_credentials"


def test_authenticate_does_not_parse_the_body(pair: tuple[str, str]) -> None:
    """The receiver checks bytes only: a signed body that is not JSON still authenticates."""
    public, private = pair
    body = b"\xff\xfe not json at all"
    provider(public).authenticate(request(body, signed(private, body)), NOW)


def test_extra_basic_auth_must_pass_too(pair: tuple[str, str]) -> None:
    public, private = pair
    body = b"[]"
    prov = provider(public, basic_auth=["sendgrid:s3cret"])
    good = {**signed(private, body), "Authorization": "Basic c2VuZGdyaWQ6czNjcmV0"}
    prov.authenticate(request(body, good), NOW)
    assert refused(prov, request(body, signed(private, body))) == "missing_credentials"
    wrong = {**good, "Authorization": "Basic c2VuZGdyaWQ6d3Jvbmc="}
    assert refused(prov, request(body, wrong)) == "bad_credentials"
    forged = {**good, SIG: signed(generate_key_pair()[1], body)[SIG]}
    assert refused(prov, request(body, forged)) == "bad_signature"


def test_extra_oauth_bearer_token_must_pass_too(pair: tuple[str, str]) -> None:
    public, private = pair
    body = b"[]"
    prov = provider(public, header_token=["old-token", "new-token"])
    for token in ("old-token", "new-token"):
        headers = {**signed(private, body), "Authorization": f"Bearer {token}"}
        prov.authenticate(request(body, headers), NOW)
    headers = {**signed(private, body), "Authorization": "Bearer other"}
    assert refused(prov, request(body, headers)) == "bad_credentials"


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


def test_every_event_fixture_has_expectations() -> None:
    files = {p.name for p in FIXTURES.glob("*.json")} - {"expected.json"}
    assert set(EXPECTED) == {name for name in files if not name.startswith("signature_vector")}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_fixture_maps_to_the_expected_rows(name: str) -> None:
    assert mapped(name) == EXPECTED[name]


def test_docs_batch_reuses_one_sg_event_id_for_every_event() -> None:
    """Quirk of the 2021 docs sample: every element says ``"sg_event_id": "sg_event_id"``.

    The id is kept verbatim (it is SendGrid's dedup id), so the flusher keeps one of the eleven.
    """
    ids = {row["event_id"] for (row,) in mapped("sgdocs2021_all_event_types_batch.json")}
    assert ids == {"sg_event_id"}


def test_custom_args_only_sample_is_not_an_event() -> None:
    """Quirk: ``[{"userid": "1123"}]`` documents custom args, it is no event: quarantined."""
    assert mapped("sgdocs2021_custom_args_minimal.json") == [
        {"mapping_error": "event has no 'event' name"}
    ]


def test_single_object_samples_are_read_as_one_event() -> None:
    """Quirk: the Marketing Campaigns samples are published as lone objects, not arrays."""
    body = (FIXTURES / "sgdocs2021_marketing_campaign_processed_object.json").read_bytes()
    (item,) = provider().split(body, {})
    assert item["event"] == "processed"


def test_leading_space_in_sg_message_id_is_trimmed() -> None:
    """Quirk of the Twilio ``deferred`` sample: ``" 14c5d..."`` must join the other events."""
    ((deferred,),) = mapped("twiliodocs_deferred.json")
    ((delivered,),) = mapped("twiliodocs_delivered.json")
    assert deferred["message_id"] == delivered["message_id"]


def test_millisecond_timestamp_of_single_send_sample() -> None:
    """Quirk: the Single Send sample's ``timestamp`` is in milliseconds."""
    ((row,),) = mapped("sgdocs2021_marketing_singlesend_open.json")
    assert row["occurred_at"] == "2020-06-09T18:19:12.372000Z"


def test_capitalized_event_name_and_string_timestamp_are_read() -> None:
    """Quirk of the unique-args sample: ``"event": "Processed"``, ``"timestamp": "123456789"``."""
    ((row,),) = mapped("sgdocs2021_unique_args_reserved_keys_processed.json")
    assert (row["event_type"], row["occurred_at"]) == ("sent", "1973-11-29T21:33:09Z")


def test_custom_args_become_metadata_and_reserved_keys_do_not() -> None:
    items = provider().split((FIXTURES / "twiliodocs_click.json").read_bytes(), {})
    (event,) = provider().normalize(items[0], CONTEXT)
    assert json.loads(event.metadata or "") == {"unique_arg_key": "unique_arg_value"}
    assert event.url == "http://example.com/blog/news.html"
    assert event.ip == "255.255.255.255"
    assert event.user_agent is not None and event.user_agent.startswith("Mozilla/5.0 (iPhone")
    assert json.loads(event.raw) == items[0]


def test_machine_open_flag_sets_the_agent() -> None:
    item = json.loads((FIXTURES / "twiliodocs_open.json").read_text())[0]
    (human,) = provider().normalize(item, CONTEXT)
    assert (human.agent, human.agent_reason) == (None, None)  # false: left to heuristics
    (machine,) = provider().normalize({**item, "sg_machine_open": True}, CONTEXT)
    assert (machine.agent, machine.agent_reason) == ("apple_mpp", "esp flag: sg_machine_open")


@pytest.mark.parametrize(
    ("reason", "drop_class"),
    [
        ("Bounced Address", "bounced"),
        ("Invalid", "invalid"),
        ("Invalid SMTPAPI header", "invalid_request"),
        ("Unsubscribed Address", "unsubscribed"),
        ("Spam Reporting Address", "complained"),
        ("Spam Content (if spam checker app enabled)", "content"),
        ("Recipient List over Package Quota", "quota"),
        ("Something new", "other"),
    ],
)
def test_drop_reasons_are_classed(reason: str, drop_class: str) -> None:
    item = {"event": "dropped", "email": "a@b.co", "timestamp": NOW, "reason": reason}
    assert provider().normalize(item, CONTEXT)[0].bounce_class == drop_class


def test_enhanced_status_is_read_from_the_reason_when_status_is_absent() -> None:
    item = {
        "event": "bounce",
        "type": "bounce",
        "email": "a@b.co",
        "timestamp": NOW,
        "reason": "550 5.1.1 The email account that you tried to reach does not exist",
    }
    assert provider().normalize(item, CONTEXT)[0].smtp_status == "5.1.1"


def test_campaign_choice_order_and_override() -> None:
    base: dict[str, Any] = {"event": "delivered", "email": "a@b.co", "timestamp": NOW}
    cases: list[tuple[dict[str, Any], str | None]] = [
        ({"category": ["cat", "dog"]}, "cat"),
        ({"category": "cat", "singlesend_name": "Spring"}, "Spring"),
        ({"singlesend_name": "Spring", "marketing_campaign_name": "Legacy"}, "Legacy"),
        ({"marketing_campaign_name": "Legacy", "campaign": "spring-2026"}, "spring-2026"),
        ({"campaign": {"nested": 1}}, None),
    ]
    for extra, campaign in cases:
        assert provider().normalize({**base, **extra}, CONTEXT)[0].campaign == campaign
    override = NormalizeContext(source="sg", headers={}, received_at=0, campaign_field="batch")
    item = {**base, "batch": "b-7", "campaign": "ignored"}
    assert provider().normalize(item, override)[0].campaign == "b-7"


def test_legacy_event_without_sg_event_id_gets_a_stable_composite_id() -> None:
    item = {"event": "open", "email": "a@b.co", "timestamp": NOW, "sg_message_id": "m1"}
    first = provider().normalize(item, CONTEXT)[0].event_id
    assert first == provider().normalize(dict(item), CONTEXT)[0].event_id
    assert first != provider().normalize({**item, "event": "click"}, CONTEXT)[0].event_id


@pytest.mark.parametrize(
    "body", [b"", b"{", b'"text"', b"42", b"null", b"[1, 2", "[]".encode("utf-16")]
)
def test_unparseable_bodies_raise_payload_errors(body: bytes) -> None:
    with pytest.raises(PayloadError):
        provider().split(body, {})


# --- the simulator's side ---------------------------------------------------------------------

recipients = st.from_regex(r"[a-z][a-z0-9._]{0,10}@[a-z]{1,8}\.(com|org|dev)", fullmatch=True)
texts = st.text(st.characters(min_codepoint=32, max_codepoint=0x2FF), min_size=1, max_size=20)


@st.composite
def simulated(draw: st.DrawFn, sequence: int) -> SimulatedEvent:
    kind = draw(st.sampled_from(sorted(SendGridProvider.emits)))
    bounce_class = None
    if kind == "bounced":
        bounce_class = draw(st.sampled_from(["hard", "soft", "undetermined"]))
    elif kind == "dropped":
        bounce_class = draw(st.sampled_from(["bounced", "invalid", "unsubscribed", "complained"]))
    return SimulatedEvent(
        sequence=sequence,
        event_type=kind,
        recipient=draw(recipients),
        occurred_at=draw(st.floats(1_600_000_000, 1_900_000_000)),
        message_id=ESPS["sendgrid"].message_id(sequence, 7),
        campaign=draw(st.none() | texts),
        tags=tuple(draw(st.lists(texts, max_size=3))),
        url="https://example.com/x" if kind == "clicked" else None,
        agent=draw(st.sampled_from([None, "apple_mpp"])) if kind == "opened" else None,
        bounce_class=bounce_class,
        metadata=draw(st.dictionaries(st.sampled_from(["order", "user", "event"]), texts)),
    )


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), count=st.integers(1, 12))
def test_round_trip_through_encode_authenticate_split_normalize(
    pair: tuple[str, str], data: st.DataObject, count: int
) -> None:
    public, private = pair
    events = [data.draw(simulated(sequence)) for sequence in range(count)]
    prov = provider(public)
    outbound = ESPS["sendgrid"].encode(
        events, url="http://x/webhooks/sg", now=NOW, sender={"private_key": private}
    )
    assert outbound.body.endswith(b"\r\n")
    prov.authenticate(request(outbound.body, dict(outbound.headers)), NOW)
    items = prov.split(outbound.body, outbound.headers)
    assert len(items) == count
    for event, item in zip(events, items, strict=True):
        (row,) = prov.normalize(item, CONTEXT)
        assert row.event_type == event.event_type
        assert row.recipient == event.recipient
        assert row.message_id == event.message_id
        assert row.campaign == (event.campaign or (event.tags[0] if event.tags else None))
        assert row.occurred_at == int(event.occurred_at) * 1_000_000  # SendGrid: whole seconds
        assert row.bounce_class == event.bounce_class
        assert row.agent == event.agent
        assert row.tags == list(event.tags)
        custom = {k: v for k, v in event.metadata.items() if k != "event"}  # reserved key
        if event.campaign is not None:
            custom["campaign"] = event.campaign
        assert json.loads(row.metadata or "{}") == custom
    again = ESPS["sendgrid"].encode(
        events, url="http://x/webhooks/sg", now=NOW + 60, sender={"private_key": private}
    )
    first_ids = [row["sg_event_id"] for row in orjson.loads(outbound.body)]
    assert first_ids == [row["sg_event_id"] for row in orjson.loads(again.body)]
    assert len(set(first_ids)) == count


def test_encode_adds_the_extra_credentials_the_sender_holds(pair: tuple[str, str]) -> None:
    public, private = pair
    event = SimulatedEvent(
        sequence=1,
        event_type="delivered",
        recipient="a@b.co",
        occurred_at=NOW,
        message_id=ESPS["sendgrid"].message_id(1, 1),
    )
    prov = provider(public, header_token=["tok"])
    outbound = ESPS["sendgrid"].encode(
        [event], url="", now=NOW, sender={"private_key": private, "header_token": "tok"}
    )
    assert outbound.headers["Authorization"] == "Bearer tok"
    prov.authenticate(request(outbound.body, dict(outbound.headers)), NOW)


def test_demo_credentials_are_a_working_fresh_key_pair() -> None:
    receiver, sender = ESPS["sendgrid"].demo_credentials("http://x/webhooks/sg")
    assert set(receiver) == {"public_key"} and set(sender) == {"private_key"}
    assert sender["private_key"].startswith("-----BEGIN PRIVATE KEY-----")
    assert receiver != ESPS["sendgrid"].demo_credentials("http://x/webhooks/sg")[0]
    body = b"[]\r\n"
    headers = signed(sender["private_key"], body)
    provider(receiver["public_key"]).authenticate(request(body, headers), NOW)


# --- arbitrary input --------------------------------------------------------------------------

header_text = st.text(st.characters(min_codepoint=32, max_codepoint=0x10FF), max_size=120)
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
event_like = st.fixed_dictionaries(
    {},
    optional={
        "event": st.sampled_from(["processed", "bounce", "open", "dropped", "x"]) | json_values,
        "email": st.sampled_from(["a@b.co", " A@B.CO ", "nope"]) | json_values,
        "timestamp": st.integers(-(2**70), 2**70) | st.text(max_size=30) | json_values,
        "sg_event_id": json_values,
        "sg_message_id": json_values,
        "smtp-id": json_values,
        "category": json_values,
        "type": json_values,
        "reason": json_values,
        "status": json_values,
        "sg_machine_open": json_values,
        "url": json_values,
        "campaign": json_values,
        "custom": json_values,
    },
)


@settings(max_examples=300, deadline=None)
@given(
    body=st.binary(max_size=300),
    signature=st.none()
    | header_text
    | st.binary(max_size=80).map(lambda b: base64.b64encode(b).decode()),
    timestamp=st.none() | header_text | st.integers(-(2**64), 2**64).map(str),
    authorization=st.none() | header_text,
)
def test_authenticate_raises_only_ingest_errors(
    body: bytes, signature: str | None, timestamp: str | None, authorization: str | None
) -> None:
    headers = {
        name: value
        for name, value in ((SIG, signature), (TS, timestamp), ("authorization", authorization))
        if value is not None
    }
    public = vector(VECTORS[0])["public_key"]
    for prov in (provider(public), provider(public, basic_auth=["u:p"])):
        with pytest.raises(AuthenticationFailed):
            prov.authenticate(request(body, headers), NOW)


@settings(max_examples=300, deadline=None)
@given(body=st.binary(max_size=300) | json_values.map(json.dumps).map(str.encode))
def test_split_raises_only_payload_errors(body: bytes) -> None:
    with contextlib.suppress(PayloadError):
        provider().split(body, {})


@settings(max_examples=500, deadline=None)
@given(item=event_like | json_values)
def test_normalize_raises_only_mapping_errors(item: Any) -> None:
    try:
        events = provider().normalize(item, CONTEXT)
    except MappingError:
        return
    for event in events:
        assert isinstance(event.event_id, str) and event.event_id
        assert event.recipient == event.recipient.strip().lower()


def test_errors_are_ingest_errors() -> None:
    assert issubclass(MappingError, IngestError) and issubclass(PayloadError, IngestError)


# --- config -----------------------------------------------------------------------------------


def test_missing_public_key_is_one_clear_config_problem() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config({"sources": {"sg": {"provider": "sendgrid"}}}, env={})
    assert caught.value.problems == [
        "sources.sg: needs public_key (the verification key the SendGrid UI shows); "
        "without it every request is refused"
    ]


def test_config_accepts_a_key_list_and_checks_extras(pair: tuple[str, str]) -> None:
    public, _ = pair
    config = parse_config(
        {"sources": {"sg": {"provider": "sendgrid", "public_key": [public, public]}}}, env={}
    )
    assert len(config.sources["sg"].credentials["public_key"]) == 2
    assert "sendgrid" in PROVIDERS
    with pytest.raises(ConfigError) as caught:
        parse_config(
            {
                "sources": {
                    "sg": {
                        "provider": "sendgrid",
                        "public_key": "bm90IGEga2V5",
                        "basic_auth": "no-colon",
                        "timestamp_tolerance": -5,
                    }
                }
            },
            env={},
        )
    assert caught.value.problems == [
        "sources.sg: public_key entry 1: not a base64 DER or PEM public key",
        'sources.sg: basic_auth entries must look like "user:password"',
        "sources.sg: timestamp_tolerance must be a number of seconds from 1 to 604800",
    ]
