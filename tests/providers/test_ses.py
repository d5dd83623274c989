"""The ses provider: SNS signatures (official vectors and generated keys), certificate URL
rules without network, raw delivery with Basic auth, subscription confirmations, the mapping
of the SES docs' samples, the simulator's side, and robustness against arbitrary input."""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import shutil
import socket
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest.errors import IngestError, MappingError, PayloadError
from ingest.providers import PROVIDERS, InboundRequest, NormalizeContext
from ingest.providers.events import Event
from ingest.providers.ses import SesProvider, sns
from ingest.providers.shared_secret import basic_header
from mailpulse.config import Secret, SourceConfig
from mailpulse.errors import ConfigError
from mailpulse.simulate.esp import ESPS, SimulatedEvent
from mailpulse.simulate.esp.ses import signed_notification
from tests.helpers import new_secret, parse_config
from tests.providers.kit import inbound, refusal
from tests.providers.sns_keys import TEST_CERT_URL, TEST_TOPIC, SigningIdentity, identity

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "ses"
EXPECTED = json.loads((FIXTURES / "expected.json").read_text())
VECTORS = sorted(FIXTURES.glob("signature_vector_sns_*.json"))
NOW = 1_790_000_000.0
CONTEXT = NormalizeContext(source="ses", headers={}, received_at=0, campaign_field=None)


class NetworkUsed(AssertionError):
    """Raised by the socket guard: a test reached for the network."""


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Any]]:
    """Every test here runs without network: any connection attempt is recorded and fails."""
    attempts: list[Any] = []

    def refuse(*args: Any, **kwargs: Any) -> Any:
        attempts.append(args[1:] or kwargs)
        raise NetworkUsed(f"network connection attempted: {args[1:]!r}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", lambda *a, **k: refuse(None, *a))
    yield attempts


def provider(
    options: dict[str, Any] | None = None, basic_auth: tuple[str, ...] = ()
) -> SesProvider:
    credentials = {"basic_auth": tuple(Secret(v) for v in basic_auth)} if basic_auth else {}
    source = SourceConfig(
        name="ses", provider="ses", credentials=credentials, options=options or {}
    )
    return SesProvider(source)


def request(body: bytes, headers: dict[str, str] | None = None) -> InboundRequest:
    return inbound("ses", headers, body, content_type="text/plain")


def refused(prov: SesProvider, req: InboundRequest, now: float = NOW) -> str:
    return refusal(prov, req, now)


def iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat()


# -- official vectors


def vector(path: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(path.read_text())
    return loaded


def vector_provider(data: dict[str, Any], tmp_path: Path, **options: Any) -> SesProvider:
    envelope = json.loads(data["body"])
    directory = tmp_path / "certs"
    directory.mkdir(parents=True, exist_ok=True)
    shutil.copy(
        FIXTURES / data["cert_file"], directory / sns.pinned_name(envelope["SigningCertURL"])
    )
    settings_ = {"topic_arns": [envelope["TopicArn"]], "certificate_dir": str(directory)}
    return provider({**settings_, **options})


def vector_now(data: dict[str, Any]) -> float:
    return datetime.fromisoformat(json.loads(data["body"])["Timestamp"]).timestamp()


def with_field(data: dict[str, Any], key: str, value: Any) -> bytes:
    envelope = json.loads(data["body"])
    envelope[key] = value
    return json.dumps(envelope).encode()


@pytest.mark.parametrize("path", VECTORS, ids=lambda p: p.stem)
def test_official_vector_verifies_with_a_pinned_clock(path: Path, tmp_path: Path) -> None:
    """Each real SNS signature (v1 and v2, with and without Subject) verifies at its time."""
    data = vector(path)
    envelope = sns.parse_envelope(data["body"].encode())
    assert envelope.signed.decode() == data["string_to_sign"]
    prov = vector_provider(data, tmp_path)
    prov.authenticate(request(data["body"].encode(), data["headers"]), vector_now(data))


@pytest.mark.parametrize("path", VECTORS, ids=lambda p: p.stem)
@pytest.mark.parametrize("key", ["Message", "MessageId", "Subject", "Timestamp", "Signature"])
def test_changing_any_signed_value_fails(path: Path, key: str, tmp_path: Path) -> None:
    """One changed character in a signed value (or the signature) is a bad signature."""
    data = vector(path)
    envelope = json.loads(data["body"])
    if key not in envelope:  # a Subject added to a message signed without one
        changed = "Hello world"
    elif key == "Timestamp":
        changed = envelope[key][:-2] + ("1" if envelope[key][-2] != "1" else "2") + "Z"
    elif key == "Signature":
        head = envelope[key][10]
        changed = envelope[key][:10] + ("A" if head != "A" else "B") + envelope[key][11:]
    else:
        changed = envelope[key][:-1] + ("x" if envelope[key][-1] != "x" else "y")
    prov = vector_provider(data, tmp_path)
    code = refused(prov, request(with_field(data, key, changed)), vector_now(data))
    assert code == "bad_signature"


@pytest.mark.parametrize("path", VECTORS, ids=lambda p: p.stem)
def test_json_layout_is_not_signed(path: Path, tmp_path: Path) -> None:
    """Re-serializing the envelope (other whitespace, key order) still verifies."""
    data = vector(path)
    body = json.dumps(dict(reversed(json.loads(data["body"]).items()))).encode()
    vector_provider(data, tmp_path).authenticate(request(body), vector_now(data))


def test_vector_refusals(tmp_path: Path) -> None:
    """SDK negative cases: wrong version, non-https/off-AWS/non-.pem URL, wrong topic, clock."""
    data = vector(VECTORS[2])
    now = vector_now(data)
    prov = vector_provider(data, tmp_path)
    assert refused(prov, request(with_field(data, "Signature", "bad")), now) == "bad_signature"
    assert (
        refused(prov, request(with_field(data, "SignatureVersion", "3")), now)
        == "unsupported_signature_version"
    )
    url = json.loads(data["body"])["SigningCertURL"]
    for bad in (
        url.replace("https://", "http://"),
        "https://internetbadguys.com/cert.pem",
        url[:-4] + ".txt",
    ):
        code = refused(prov, request(with_field(data, "SigningCertURL", bad)), now)
        assert code == "bad_certificate_url"
    other = vector_provider(data, tmp_path / "other", topic_arns=["arn:aws:sns:us-east-2:1:x"])
    assert refused(other, request(data["body"].encode()), now) == "unknown_topic"
    assert refused(prov, request(data["body"].encode()), now + 3_901) == "stale_timestamp"
    assert refused(prov, request(data["body"].encode()), now - 301) == "stale_timestamp"
    tolerant = vector_provider(data, tmp_path / "t", timestamp_tolerance_seconds=10**9)
    code = refused(tolerant, request(data["body"].encode()), NOW)  # 2026: the cert expired
    assert code == "certificate_expired"


def test_missing_fields_have_their_own_codes(tmp_path: Path) -> None:
    data = vector(VECTORS[0])
    prov = vector_provider(data, tmp_path)
    envelope = json.loads(data["body"])
    for key, code in (
        ("Signature", "missing_signature"),
        ("SignatureVersion", "missing_signature"),
        ("SigningCertURL", "missing_signature"),
        ("MessageId", "bad_message"),
        ("Type", "unsupported_message_type"),
    ):
        body = json.dumps({k: v for k, v in envelope.items() if k != key}).encode()
        assert refused(prov, request(body)) == code
    assert refused(prov, request(b"not json")) == "bad_message"
    assert refused(prov, request(b"[]")) == "bad_message"


# -- certificate URLs and the network


@pytest.mark.parametrize(
    "url",
    [
        "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-abc.pem",
        "https://sns.eu-central-2.amazonaws.com/SimpleNotificationService-abc.pem",
        "https://sns.us-gov-west-1.amazonaws.com/SimpleNotificationService-abc.pem",
        "https://sns.cn-north-1.amazonaws.com.cn/SimpleNotificationService-abc.pem",
    ],
)
def test_aws_certificate_urls(url: str) -> None:
    assert sns.is_aws_certificate_url(url)


@pytest.mark.parametrize(
    "url",
    [
        "http://sns.us-east-1.amazonaws.com/SimpleNotificationService-abc.pem",
        "https://sns.us-east-1.amazonaws.com.evil.com/x.pem",
        "https://sns.us-east-1.amazonaws.com@evil.com/x.pem",
        "https://evil.com/sns.us-east-1.amazonaws.com/x.pem",
        "https://sns.us-east-1.amazonaws.com:8443/x.pem",
        "https://sns.us-east-1.amazonaws.com/x.pem?x=1",
        "https://sns.us-east-1.amazonaws.com/x.pem#frag",
        "https://sns.us-east-1.amazonaws.com/../x.pem/..",
        "https://sns.us-east-1.amazonaws.com/x.txt",
        "https://sns.amazonaws.com/x.pem",
        "https://sqs.us-east-1.amazonaws.com/x.pem",
        "https://sns.cn-north-1.amazonaws.com/x.pem",
        "https://sns.us-east-1.amazonaws.com.cn/x.pem",
        "https://SNS.US-EAST-1.AMAZONAWS.COM/x.pem",
        "https://sns.us-east-1.amazonaws.com\\@evil.com/x.pem",
        " https://sns.us-east-1.amazonaws.com/x.pem",
    ],
)
def test_off_aws_certificate_urls_are_refused_without_any_connection(
    url: str, tmp_path: Path, no_network: list[Any]
) -> None:
    """The URL check runs before any fetch: no socket is ever opened for a foreign URL."""
    ident = identity()
    body = signed_notification(
        "{}",
        message_id="m-1",
        topic_arn=TEST_TOPIC,
        timestamp=sns_time(NOW),
        key_pem=ident.key_pem,
        certificate_url=url,
    )
    prov = provider({"topic_arns": [TEST_TOPIC], "certificate_dir": str(tmp_path)})
    started = time.monotonic()
    assert refused(prov, request(body)) == "bad_certificate_url"
    assert time.monotonic() - started < 1
    assert no_network == []


def test_an_unpinned_aws_url_is_fetched_once_and_cached(tmp_path: Path) -> None:
    """Downloads go through the store: once per URL, then from memory."""
    ident = identity()
    fetched: list[str] = []

    def fetch(url: str) -> bytes:
        fetched.append(url)
        return ident.cert_pem

    prov = signed_provider(tmp_path, ident, pin=False)
    prov.certificates.fetch = fetch
    for n in range(3):
        prov.authenticate(request(signed_body(ident, message_id=f"m-{n}")), NOW)
    assert fetched == [TEST_CERT_URL]


def test_a_failed_download_is_retryable_and_not_repeated_at_once(tmp_path: Path) -> None:
    """A download failure answers 503 (SNS retries) and is not retried for a while."""
    ident = identity()
    calls: list[str] = []

    def fetch(url: str) -> bytes:
        calls.append(url)
        raise sns.CertificateUnavailable("down")

    prov = signed_provider(tmp_path, ident, pin=False)
    prov.certificates.fetch = fetch
    for _ in range(2):
        with pytest.raises(sns.CertificateUnavailable):
            prov.authenticate(request(signed_body(ident)), NOW)
    assert calls == [TEST_CERT_URL]


def test_the_real_download_turns_an_unreachable_host_into_a_retryable_error() -> None:
    """Without a network (the guard, or no DNS here) ``download`` answers 503, never crashes."""
    with pytest.raises((sns.CertificateUnavailable, NetworkUsed)):
        sns.download(TEST_CERT_URL)


def test_a_pinned_file_that_is_no_certificate_is_refused(tmp_path: Path) -> None:
    ident = identity()
    (tmp_path / sns.pinned_name(TEST_CERT_URL)).write_text("not a certificate")
    prov = provider({"topic_arns": [TEST_TOPIC], "certificate_dir": str(tmp_path)})
    assert refused(prov, request(signed_body(ident))) == "bad_certificate"


# -- generated keys: signed SNS end to end


def sns_time(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def signed_body(
    ident: SigningIdentity,
    *,
    message: str = "{}",
    message_id: str = "m-1",
    at: float = NOW,
    version: str = "2",
    topic: str = TEST_TOPIC,
) -> bytes:
    return signed_notification(
        message,
        message_id=message_id,
        topic_arn=topic,
        timestamp=sns_time(at),
        key_pem=ident.key_pem,
        certificate_url=ident.url,
        version=version,
    )


def signed_provider(
    tmp_path: Path, *idents: SigningIdentity, pin: bool = True, **options: Any
) -> SesProvider:
    directory = tmp_path / "certs"
    directory.mkdir(parents=True, exist_ok=True)
    if pin:
        for ident in idents:
            ident.pin(directory)
    return provider({"topic_arns": [TEST_TOPIC], "certificate_dir": str(directory), **options})


@pytest.mark.parametrize("version", ["1", "2"])
def test_generated_key_signs_and_verifies(version: str, tmp_path: Path) -> None:
    ident = identity()
    prov = signed_provider(tmp_path, ident)
    prov.authenticate(request(signed_body(ident, version=version)), NOW)


def test_wrong_key_fails(tmp_path: Path) -> None:
    """A message signed by another key than the pinned certificate's is refused."""
    pinned, other = identity(), identity(label="other")
    prov = signed_provider(tmp_path, pinned)
    assert refused(prov, request(signed_body(other))) == "bad_signature"


def test_rotation_every_listed_topic_and_pinned_certificate_verifies(tmp_path: Path) -> None:
    """Two topics and two certificates (old and new): each verifies."""
    old = identity("https://sns.us-east-1.amazonaws.com/SimpleNotificationService-old.pem")
    new = identity(label="new")
    second_topic = "arn:aws:sns:eu-west-1:123456789012:second"
    prov = signed_provider(tmp_path, old, new, topic_arns=[TEST_TOPIC, second_topic])
    prov.authenticate(request(signed_body(old)), NOW)
    prov.authenticate(request(signed_body(new, topic=second_topic)), NOW)


def test_an_expired_or_future_certificate_is_refused(tmp_path: Path) -> None:
    now = datetime.fromtimestamp(NOW, UTC)
    expired = identity(not_before=now - timedelta(days=400), not_after=now - timedelta(seconds=1))
    prov = signed_provider(tmp_path, expired)
    assert refused(prov, request(signed_body(expired))) == "certificate_expired"
    future = identity(not_before=now + timedelta(days=1), not_after=now + timedelta(days=400))
    prov = signed_provider(tmp_path / "f", future)
    assert refused(prov, request(signed_body(future))) == "certificate_expired"


def test_signature_tolerance_follows_sns_retries(tmp_path: Path) -> None:
    """An hour-old message (an SNS retry) passes; an older one and a future one do not."""
    ident = identity()
    prov = signed_provider(tmp_path, ident)
    prov.authenticate(request(signed_body(ident, at=NOW - 3_600)), NOW)
    assert refused(prov, request(signed_body(ident, at=NOW - 4_000))) == "stale_timestamp"
    assert refused(prov, request(signed_body(ident, at=NOW + 600))) == "stale_timestamp"


def test_basic_auth_when_configured_is_required_on_signed_messages_too(tmp_path: Path) -> None:
    ident = identity()
    credential = f"sns:{new_secret()}"
    prov = provider(
        {"topic_arns": [TEST_TOPIC], "certificate_dir": str(ident.pin(tmp_path).parent)},
        basic_auth=(credential,),
    )
    body = signed_body(ident)
    assert refused(prov, request(body)) == "missing_credentials"
    prov.authenticate(request(body, {"Authorization": basic_header(credential)}), NOW)


def test_signed_messages_need_topic_arns(tmp_path: Path) -> None:
    ident = identity()
    credential = f"sns:{new_secret()}"
    prov = provider({"certificate_dir": str(ident.pin(tmp_path).parent)}, (credential,))
    headers = {"Authorization": basic_header(credential)}
    assert refused(prov, request(signed_body(ident), headers)) == "unknown_topic"


# -- raw message delivery


def raw_headers(credential: str | None = None) -> dict[str, str]:
    headers = {"x-amz-sns-rawdelivery": "true", "x-amz-sns-message-id": "raw-1"}
    if credential is not None:
        headers["Authorization"] = basic_header(credential)
    return headers


def test_raw_delivery_needs_basic_auth_and_accepts_every_listed_credential() -> None:
    old, new = f"sns:{new_secret()}", f"sns:{new_secret()}"
    body = (FIXTURES / "sesdocs_eventpublishing_sns_send.json").read_bytes()
    prov = provider(basic_auth=(new, old))
    prov.authenticate(request(body, raw_headers(old)), NOW)
    prov.authenticate(request(body, raw_headers(new)), NOW)
    assert refused(prov, request(body, raw_headers(f"sns:{new_secret()}"))) == "bad_credentials"
    assert refused(prov, request(body, raw_headers())) == "missing_credentials"


def test_raw_delivery_without_basic_auth_is_refused_with_its_own_code() -> None:
    body = (FIXTURES / "sesdocs_eventpublishing_sns_send.json").read_bytes()
    prov = provider({"topic_arns": [TEST_TOPIC]})
    code = refused(prov, request(body, raw_headers(f"sns:{new_secret()}")))
    assert code == "raw_delivery_unauthenticated"


def test_raw_delivery_ids_use_the_message_id_header_else_a_composite() -> None:
    body = (FIXTURES / "sesdocs_eventpublishing_sns_open.json").read_bytes()
    prov = provider(basic_auth=("a:b",))
    [item] = prov.split(body, {"x-amz-sns-rawdelivery": "true", "x-amz-sns-message-id": "abc"})
    assert [e.event_id for e in prov.normalize(item, CONTEXT)] == ["abc:recipient@example.com"]
    [item] = prov.split(body, {"x-amz-sns-rawdelivery": "true"})
    [first] = prov.normalize(item, CONTEXT)
    [again] = prov.normalize(orjson.loads(orjson.dumps(item)), CONTEXT)
    assert first.event_id == again.event_id and len(first.event_id) == 64


def test_credential_headers_are_never_stored() -> None:
    assert "authorization" in SesProvider.credential_headers


# -- subscription confirmations


def confirmation(ident: SigningIdentity, kind: str = "SubscriptionConfirmation") -> bytes:
    url = (
        "https://sns.us-east-1.amazonaws.com/?Action=ConfirmSubscription"
        f"&TopicArn={TEST_TOPIC}&Token=2336412f37fb687f5d51e6e2425"
    )
    envelope = {
        "Type": kind,
        "MessageId": "165545c9-2a5c-472c-8df2-7ff2be2b3b1b",
        "Token": "2336412f37fb687f5d51e6e2425",
        "TopicArn": TEST_TOPIC,
        "Message": "You have chosen to subscribe.\nTo confirm, visit the SubscribeURL.",
        "SubscribeURL": url,
        "Timestamp": sns_time(NOW),
        "SignatureVersion": "1",
        "SigningCertURL": ident.url,
    }
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import padding, rsa

    key = serialization.load_pem_private_key(ident.key_pem.encode(), password=None)
    assert isinstance(key, rsa.RSAPrivateKey)
    signature = key.sign(sns.string_to_sign(envelope), padding.PKCS1v15(), hashes.SHA1())
    envelope["Signature"] = base64.b64encode(signature).decode()
    return json.dumps(envelope, indent=2).encode()


def confirmation_headers(kind: str = "SubscriptionConfirmation") -> dict[str, str]:
    return {"x-amz-sns-message-type": kind}


def test_subscription_confirmation_is_verified_stored_and_gives_no_rows(tmp_path: Path) -> None:
    ident = identity()
    prov = signed_provider(tmp_path, ident)
    body = confirmation(ident)
    prov.authenticate(request(body, confirmation_headers()), NOW)
    assert prov.split(body, confirmation_headers()) == []
    forged = body.replace(
        b"Token=2336412f37fb687f5d51e6e2425", b"Token=2336412f37fb687f5d51e6e2426"
    )
    assert refused(prov, request(forged)) == "bad_signature"


def test_confirmation_is_logged_for_a_person_unless_auto_confirm(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Off by default: a WARNING with the SubscribeURL, and nothing is fetched."""
    ident = identity()
    prov = signed_provider(tmp_path, ident)
    visited: list[str] = []
    prov.http_get = lambda url, **kw: visited.append(url)
    with caplog.at_level(logging.WARNING, logger="ingest.providers.ses"):
        prov.accepted(request(confirmation(ident), confirmation_headers()))
    [record] = caplog.records
    assert record.levelno == logging.WARNING
    assert "ConfirmSubscription" in record.__dict__["subscribe_url"]
    assert visited == []


def test_auto_confirm_visits_the_subscribe_url_on_a_background_thread(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    ident = identity()
    prov = signed_provider(tmp_path, ident, auto_confirm=True)
    visited: list[tuple[str, dict[str, Any]]] = []

    class Answer:
        status_code = 200

    def get(url: str, **kwargs: Any) -> Answer:
        visited.append((url, kwargs))
        return Answer()

    prov.http_get = get
    with caplog.at_level(logging.INFO, logger="ingest.providers.ses"):
        prov.accepted(request(confirmation(ident), confirmation_headers()))
        deadline = time.monotonic() + 5
        while not any("answered" in r.getMessage() for r in caplog.records):
            assert time.monotonic() < deadline
            time.sleep(0.01)
    [(url, kwargs)] = visited
    assert url.startswith("https://sns.us-east-1.amazonaws.com/?Action=ConfirmSubscription")
    assert kwargs["timeout"] <= 5 and kwargs["allow_redirects"] is False


def test_auto_confirm_never_visits_a_foreign_host(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    prov = provider({"topic_arns": [TEST_TOPIC], "auto_confirm": True})
    visited: list[str] = []
    prov.http_get = lambda url, **kw: visited.append(url)
    envelope = json.loads(confirmation(identity()))
    envelope["SubscribeURL"] = "https://evil.example/?Action=ConfirmSubscription"
    with caplog.at_level(logging.ERROR, logger="ingest.providers.ses"):
        prov.accepted(request(json.dumps(envelope).encode(), confirmation_headers()))
    assert visited == [] and caplog.records


def test_unsubscribe_confirmation_is_logged_and_notifications_are_left_alone(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    ident = identity()
    prov = signed_provider(tmp_path, ident, auto_confirm=True)
    prov.http_get = lambda url, **kw: pytest.fail("nothing may be fetched")
    with caplog.at_level(logging.INFO, logger="ingest.providers.ses"):
        body = confirmation(ident, "UnsubscribeConfirmation")
        prov.accepted(request(body, confirmation_headers("UnsubscribeConfirmation")))
        prov.accepted(request(signed_body(ident), {"x-amz-sns-message-type": "Notification"}))
    assert [r.getMessage() for r in caplog.records] == ["SNS subscription was unsubscribed"]


# -- mapping: the SES docs' samples


def rows(events: list[Event]) -> list[dict[str, Any]]:
    return [
        {
            "event_type": e.event_type,
            "recipient": e.recipient,
            "occurred_at": iso(e.occurred_at / 1_000_000),
            "event_id": e.event_id,
            "message_id": e.message_id,
            "bounce_class": e.bounce_class,
            "agent": e.agent,
            "campaign": e.campaign,
            "smtp_status": e.smtp_status,
            "reason": e.reason,
            "url": e.url,
            "tags": e.tags,
        }
        for e in events
    ]


def wrapped(name: str) -> bytes:
    """A fixture (an SNS ``Message``) inside an SNS Notification whose MessageId is its stem."""
    envelope = {
        "Type": "Notification",
        "MessageId": name.removesuffix(".json"),
        "Message": (FIXTURES / name).read_text(),
    }
    return json.dumps(envelope).encode()


def test_every_event_fixture_has_expectations() -> None:
    assert sorted(EXPECTED) == sorted(p.name for p in FIXTURES.glob("sesdocs_*.json"))


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_fixture_maps_to_the_expected_rows(name: str) -> None:
    prov = provider({"topic_arns": [TEST_TOPIC]})
    items = prov.split(wrapped(name), {})
    assert rows([e for item in items for e in prov.normalize(item, CONTEXT)]) == EXPECTED[name]


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_fixture_as_raw_delivery_maps_to_the_same_rows(name: str) -> None:
    prov = provider(basic_auth=("a:b",))
    headers = {"x-amz-sns-rawdelivery": "true", "x-amz-sns-message-id": name[:-5]}
    items = prov.split((FIXTURES / name).read_bytes(), headers)
    assert rows([e for item in items for e in prov.normalize(item, CONTEXT)]) == EXPECTED[name]


def test_reject_sample_names_the_sender_as_destination_as_published() -> None:
    """Quirk of the docs' Reject sample: mail.destination is the sender; we keep what SES says."""
    [row] = EXPECTED["sesdocs_eventpublishing_sns_reject.json"]
    assert row["recipient"] == "sender@example.com"


def test_raw_keeps_the_ses_event_and_metadata_the_own_tags() -> None:
    prov = provider({"topic_arns": [TEST_TOPIC]})
    [item] = prov.split(wrapped("sesdocs_eventpublishing_sns_delivery.json"), {})
    [event] = prov.normalize(item, CONTEXT)
    original = json.loads((FIXTURES / "sesdocs_eventpublishing_sns_delivery.json").read_text())
    assert orjson.loads(event.raw) == original
    assert json.loads(event.metadata or "") == {
        "myCustomTag1": ["myCustomTagValue1"],
        "myCustomTag2": ["myCustomTagValue2"],
    }


def ses_event(
    kind: str, body: dict[str, Any], tags: dict[str, Any] | None = None
) -> dict[str, Any]:
    mail = {
        "timestamp": "2024-05-01T10:00:00.000Z",
        "messageId": "m-1",
        "destination": ["A@Example.com"],
        "commonHeaders": {"subject": "Spring sale"},
        "tags": tags or {},
    }
    key = {"Rendering Failure": "failure", "DeliveryDelay": "deliveryDelay"}.get(kind, kind.lower())
    return {"eventType": kind, "mail": mail, key: body}


def one(event: dict[str, Any], campaign_field: str | None = None) -> Event:
    context = NormalizeContext(
        source="ses", headers={}, received_at=0, campaign_field=campaign_field
    )
    [row] = provider().normalize({"MessageId": "sns-1", "Message": event}, context)
    return row


@pytest.mark.parametrize(
    ("bounce", "event_type", "bounce_class"),
    [
        ({"bounceType": "Permanent", "bounceSubType": "NoEmail"}, "bounced", "hard"),
        ({"bounceType": "Transient", "bounceSubType": "MailboxFull"}, "bounced", "soft"),
        (
            {"bounceType": "Undetermined", "bounceSubType": "Undetermined"},
            "bounced",
            "undetermined",
        ),
        ({"bounceType": "Permanent", "bounceSubType": "Suppressed"}, "dropped", "bounced"),
        (
            {"bounceType": "Permanent", "bounceSubType": "OnAccountSuppressionList"},
            "dropped",
            "bounced",
        ),
    ],
)
def test_bounce_classes(bounce: dict[str, Any], event_type: str, bounce_class: str) -> None:
    recipients = [{"emailAddress": "a@example.com", "diagnosticCode": "smtp; 552 5.2.2 full"}]
    body = bounce | {"bouncedRecipients": recipients, "timestamp": "2024-05-01T10:00:01.000Z"}
    row = one(ses_event("Bounce", body))
    assert (row.event_type, row.bounce_class, row.smtp_status) == (
        event_type,
        bounce_class,
        "5.2.2",
    )


@pytest.mark.parametrize(
    ("complaint", "event_type", "bounce_class"),
    [
        ({"complaintFeedbackType": "abuse"}, "complained", None),
        ({}, "complained", None),
        ({"complaintFeedbackType": "not-spam"}, "other", None),
        ({"complaintSubType": "OnAccountSuppressionList"}, "dropped", "complained"),
    ],
)
def test_not_spam_is_no_complaint(
    complaint: dict[str, Any], event_type: str, bounce_class: str | None
) -> None:
    body = complaint | {
        "complainedRecipients": [{"emailAddress": "a@example.com"}],
        "timestamp": "2024-05-01T10:00:01.000Z",
    }
    row = one(ses_event("Complaint", body))
    assert (row.event_type, row.bounce_class) == (event_type, bounce_class)


@pytest.mark.parametrize(
    ("old", "new", "event_type"),
    [
        ({"unsubscribeAll": False}, {"unsubscribeAll": True}, "unsubscribed"),
        ({"unsubscribeAll": True}, {"unsubscribeAll": False}, "resubscribed"),
        (
            {"topicSubscriptionStatus": [{"topicName": "t", "subscriptionStatus": "OptIn"}]},
            {"topicSubscriptionStatus": [{"topicName": "t", "subscriptionStatus": "OptOut"}]},
            "unsubscribed",
        ),
        (
            {"topicSubscriptionStatus": [{"topicName": "t", "subscriptionStatus": "OptOut"}]},
            {"topicSubscriptionStatus": [{"topicName": "t", "subscriptionStatus": "OptIn"}]},
            "resubscribed",
        ),
        ({"unsubscribeAll": False}, {"unsubscribeAll": False}, "other"),
    ],
)
def test_subscription_changes(old: dict[str, Any], new: dict[str, Any], event_type: str) -> None:
    body = {
        "timestamp": "2024-05-01T10:00:01.000Z",
        "oldTopicPreferences": old,
        "newTopicPreferences": new,
    }
    assert one(ses_event("Subscription", body)).event_type == event_type


def test_campaign_comes_from_a_tag_and_is_overridable() -> None:
    tags = {"campaign": ["spring"], "ses:configuration-set": ["cs"], "team": ["growth"]}
    event = ses_event("Send", {}, tags)
    assert one(event).campaign == "spring"
    assert one(event, "team").campaign == "growth"
    assert one(event, "ses:configuration-set").campaign == "cs"
    assert one(event, "subject").campaign == "Spring sale"
    assert one(event, "absent").campaign is None
    row = one(event)
    assert row.tags == ["campaign:spring", "team:growth"]
    assert row.recipient == "a@example.com" and row.event_id == "sns-1:a@example.com"


def test_ses_setup_ping_gives_no_rows_and_unknown_types_are_mapping_errors() -> None:
    prov = provider()
    ping = {"notificationType": "AmazonSnsSubscriptionSucceeded", "message": "ok"}
    assert prov.normalize({"MessageId": "x", "Message": ping}, CONTEXT) == []
    with pytest.raises(MappingError):
        prov.normalize(
            {"MessageId": "x", "Message": {"eventType": "Teleport", "mail": {}}}, CONTEXT
        )


@pytest.mark.parametrize(
    "message",
    [None, "Successfully validated SNS topic for Amazon SES event publishing."],
    ids=["sns-docs-hello-world", "ses-topic-validated"],
)
def test_a_plain_text_test_notification_is_a_control_notice_not_an_event(
    message: str | None, caplog: pytest.LogCaptureFixture
) -> None:
    """The SNS docs' sample Notification ("Hello world!", a topic test) and SES's message when
    it validates a topic are acknowledged and logged; they are never quarantined."""
    document = json.loads((FIXTURES / "snsdocs_http_notification_body.json").read_bytes())
    if message is not None:
        document["Message"] = message
    with caplog.at_level(logging.INFO):
        assert provider().split(json.dumps(document).encode(), {}) == []
    assert any(r.getMessage().startswith("SNS control notice") for r in caplog.records)


@pytest.mark.parametrize(
    "name",
    ["snsdocs_http_subscription_confirmation_body", "snsdocs_http_unsubscribe_confirmation_body"],
)
@pytest.mark.parametrize("raw", [False, True], ids=["signed", "raw-delivery-subscription"])
def test_sns_docs_confirmations_split_into_nothing(name: str, raw: bool) -> None:
    """SNS sends confirmations as envelopes even to a raw-delivery subscription."""
    headers = {"x-amz-sns-rawdelivery": "true"} if raw else {}
    assert provider().split((FIXTURES / f"{name}.json").read_bytes(), headers) == []


def test_sns_docs_samples_carry_placeholder_signatures(tmp_path: Path) -> None:
    """Quirk: the SNS docs' bodies are signed with "EXAMPLE..." placeholders: never valid."""
    body = (FIXTURES / "snsdocs_http_notification_body.json").read_bytes()
    prov = provider(
        {
            "topic_arns": ["arn:aws:sns:us-west-2:123456789012:MyTopic"],
            "certificate_dir": str(tmp_path),
        }
    )
    assert refused(prov, request(body), datetime(2012, 5, 2, 0, 54, 7, tzinfo=UTC).timestamp()) in {
        "bad_signature"
    }


# -- round trip through the simulator's side

EMITTED = sorted(SesProvider.emits)
CLASSES = {
    "bounced": ["hard", "soft", "undetermined"],
    "dropped": ["bounced", "policy", "template"],
}


@st.composite
def simulated(draw: st.DrawFn, sequence: int) -> SimulatedEvent:
    kind = draw(st.sampled_from(EMITTED))
    bounce_class = draw(st.sampled_from(CLASSES[kind])) if kind in CLASSES else None
    return SimulatedEvent(
        sequence=sequence,
        event_type=kind,
        recipient=draw(st.sampled_from(["ann@example.com", "Bob@Example.org"])),
        occurred_at=draw(st.floats(1_700_000_000, 1_800_000_000)),
        message_id=ESPS["ses"].message_id(sequence, 7),
        campaign=draw(st.none() | st.sampled_from(["spring", "autumn-2026"])),
        tags=tuple(draw(st.lists(st.sampled_from(["promo", "news"]), max_size=2, unique=True))),
        url="https://example.com/a" if kind == "clicked" else None,
        bounce_class=bounce_class,
        smtp_status="5.1.1" if bounce_class == "hard" else None,
    )


def round_trip(prov: SesProvider, sender: dict[str, str], event: SimulatedEvent) -> list[Event]:
    outbound = ESPS["ses"].encode([event], url="http://x/webhooks/ses", now=NOW, sender=sender)
    headers = {k.lower(): v for k, v in outbound.headers.items()}
    inbound = request(outbound.body, headers)
    prov.authenticate(inbound, NOW)
    stored = {k: v for k, v in headers.items() if k not in prov.credential_headers}
    return [e for item in prov.split(outbound.body, stored) for e in prov.normalize(item, CONTEXT)]


def check_round_trip(prov: SesProvider, sender: dict[str, str], event: SimulatedEvent) -> None:
    [row] = round_trip(prov, sender, event)
    assert row.event_type == event.event_type
    assert row.recipient == event.recipient.lower()
    assert row.message_id == event.message_id
    assert row.campaign == event.campaign
    assert row.occurred_at == int(round(event.occurred_at * 1000)) * 1000
    assert row.bounce_class == event.bounce_class
    assert row.agent == event.agent
    assert row.tags == [f"category:{t}" for t in event.tags] + (
        [f"campaign:{event.campaign}"] if event.campaign else []
    )
    [again] = round_trip(prov, sender, event)
    assert again.event_id == row.event_id


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_round_trip_raw_delivery_with_demo_credentials(data: st.DataObject) -> None:
    receiver, sender = ESPS["ses"].demo_credentials("http://x/webhooks/ses")
    source = parse_config(
        {"data_dir": "/tmp/unused", "sources": {"ses": {"provider": "ses", **receiver}}}, env={}
    ).sources["ses"]
    prov = SesProvider(source)
    event = data.draw(simulated(data.draw(st.integers(0, 10**6))))
    check_round_trip(prov, sender, event)


@pytest.fixture(scope="module")
def signed_setup(tmp_path_factory: pytest.TempPathFactory) -> tuple[SesProvider, SigningIdentity]:
    """A receiver with a pinned generated certificate, and the identity that signs for it."""
    ident = identity()
    return signed_provider(tmp_path_factory.mktemp("signed"), ident), ident


@settings(
    max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data(), version=st.sampled_from(["1", "2"]))
def test_round_trip_signed_sns(
    signed_setup: tuple[SesProvider, SigningIdentity], data: st.DataObject, version: str
) -> None:
    """Signed mode: an SNS Notification per event, verified offline with a pinned certificate."""
    prov, ident = signed_setup
    event = data.draw(simulated(data.draw(st.integers(0, 10**6))))
    check_round_trip(prov, ident.sender(version=version), event)


def test_retries_carry_the_same_sns_message_id(tmp_path: Path) -> None:
    ident = identity()
    event = SimulatedEvent(1, "delivered", "a@example.com", NOW - 5, "m-1")
    first = ESPS["ses"].encode([event], url="u", now=NOW, sender=ident.sender())
    retry = ESPS["ses"].encode([event], url="u", now=NOW + 20, sender=ident.sender())
    other = ESPS["ses"].encode(
        [SimulatedEvent(2, "delivered", "a@example.com", NOW - 5, "m-1")],
        url="u",
        now=NOW,
        sender=ident.sender(),
    )
    ids = [json.loads(r.body)["MessageId"] for r in (first, retry, other)]
    assert ids[0] == ids[1] != ids[2]
    assert first.headers["Content-Type"] == "text/plain; charset=UTF-8"
    assert SesProvider.max_batch == 1


# -- robustness

header_text = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=60)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=20,
)
envelope_values = st.fixed_dictionaries(
    {},
    optional={
        "Type": st.sampled_from(["Notification", "SubscriptionConfirmation", "x"]) | json_values,
        "MessageId": st.text(max_size=10) | json_values,
        "TopicArn": st.just(TEST_TOPIC) | json_values,
        "Message": st.text(max_size=40) | json_values,
        "Subject": st.none() | st.text(max_size=10),
        "Timestamp": st.sampled_from([sns_time(NOW), "2012-01-01", "x"]) | json_values,
        "SignatureVersion": st.sampled_from(["1", "2", "3"]) | json_values,
        "Signature": st.text(max_size=40) | json_values,
        "SigningCertURL": st.sampled_from([TEST_CERT_URL, "https://evil/x.pem"]) | json_values,
        "SubscribeURL": st.text(max_size=20) | json_values,
        "Token": st.text(max_size=20) | json_values,
    },
)
bodies = (
    st.binary(max_size=300)
    | json_values.map(json.dumps).map(str.encode)
    | envelope_values.map(json.dumps).map(str.encode)
)


@pytest.fixture(scope="module")
def fuzz_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("certs")
    identity().pin(directory)
    return directory


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    body=bodies,
    headers=st.dictionaries(
        st.sampled_from(["x-amz-sns-rawdelivery", "authorization", "x-amz-sns-message-type"]),
        header_text | st.just("true"),
    ),
)
def test_authenticate_raises_only_ingest_errors(
    fuzz_dir: Path, body: bytes, headers: dict[str, str]
) -> None:
    prov = provider({"topic_arns": [TEST_TOPIC], "certificate_dir": str(fuzz_dir)}, ("a:b",))
    prov.http_get = lambda url, **kw: None
    with pytest.raises(IngestError):
        prov.authenticate(request(body, headers), NOW)
    prov.accepted(request(body, headers))  # never raises, whatever was stored


@settings(max_examples=300, deadline=None)
@given(body=bodies, raw=st.booleans())
def test_split_raises_only_payload_errors(body: bytes, raw: bool) -> None:
    headers = {"x-amz-sns-rawdelivery": "true"} if raw else {}
    with contextlib.suppress(PayloadError):
        provider().split(body, headers)


def mapping_types() -> list[str]:
    return [
        "Send",
        "Delivery",
        "DeliveryDelay",
        "Bounce",
        "Complaint",
        "Open",
        "Click",
        "Reject",
        "Rendering Failure",
        "Subscription",
    ]


ses_like = st.fixed_dictionaries(
    {"eventType": st.sampled_from([*mapping_types(), "x"]) | json_values},
    optional={
        "notificationType": json_values,
        "mail": st.fixed_dictionaries(
            {},
            optional={
                "destination": st.lists(st.sampled_from(["a@b.c", "x", ""]) | json_values),
                "timestamp": st.sampled_from(["2024-01-01T00:00:00Z", "x"]) | json_values,
                "messageId": json_values,
                "tags": json_values,
                "commonHeaders": json_values,
            },
        ),
        "bounce": json_values,
        "complaint": json_values,
        "delivery": json_values,
        "subscription": json_values,
        "open": json_values,
        "click": json_values,
    },
)


@settings(max_examples=400, deadline=None)
@given(
    item=json_values | ses_like | st.builds(lambda m: {"MessageId": "x", "Message": m}, ses_like)
)
def test_normalize_raises_only_mapping_errors(item: Any) -> None:
    with contextlib.suppress(MappingError):
        provider().normalize(item, CONTEXT)


# -- config


def test_missing_credentials_is_one_clear_config_problem() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config({"sources": {"s": {"provider": "ses"}}}, env={})
    [problem] = caught.value.problems
    assert "topic_arns" in problem and "basic_auth" in problem


def test_options_are_checked(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(
            {
                "sources": {
                    "s": {
                        "provider": "ses",
                        "topic_arns": ["not-an-arn"],
                        "certificate_dir": str(tmp_path / "absent"),
                        "auto_confirm": "yes",
                        "timestamp_tolerance_seconds": -1,
                    }
                }
            },
            env={},
        )
    assert len(caught.value.problems) == 4
    config = parse_config(
        {
            "sources": {
                "s": {
                    "provider": "ses",
                    "topic_arns": [TEST_TOPIC],
                    "certificate_dir": str(tmp_path),
                    "auto_confirm": True,
                }
            }
        },
        env={},
    )
    assert PROVIDERS["ses"] is SesProvider
    assert SesProvider(config.sources["s"]).topic_arns == {TEST_TOPIC}


# -- through the receiver and the flusher


def test_end_to_end_signed_and_raw_through_the_receiver_and_flusher(tmp_path: Path) -> None:
    """A signed SNS delivery and its retry, a raw one, a forgery and a confirmation, in-process:
    stored events reach the lake once; the forgery is a 401 and nothing of it is kept."""
    from ingest import create_app
    from ingest.flush.flusher import Flusher
    from tests.helpers import lake_rows

    ident = identity()
    directory = tmp_path / "certs"
    ident.pin(directory)
    credential = f"sns:{new_secret()}"
    config = parse_config(
        {
            "data_dir": str(tmp_path / "data"),
            "sources": {
                "signed": {
                    "provider": "ses",
                    "topic_arns": [TEST_TOPIC],
                    "certificate_dir": str(directory),
                },
                "raw": {"provider": "ses", "basic_auth": [credential]},
            },
        },
        env={},
    )
    app = create_app(config, clock=lambda: NOW)
    client = app.test_client()
    delivered = SimulatedEvent(1, "delivered", "ann@example.com", NOW - 30, "m-1", "spring")
    bounced = SimulatedEvent(2, "bounced", "bob@example.com", NOW - 20, "m-2", bounce_class="hard")
    try:
        for attempt in range(2):  # the second is an SNS retry: same MessageId
            out = ESPS["ses"].encode([delivered], url="u", now=NOW - attempt, sender=ident.sender())
            response = client.post("/webhooks/signed", data=out.body, headers=dict(out.headers))
            assert response.status_code == 200, response.get_json()
        out = ESPS["ses"].encode([bounced], url="u", now=NOW, sender={"basic_auth": credential})
        response = client.post("/webhooks/raw", data=out.body, headers=dict(out.headers))
        assert response.status_code == 200
        forged = out.body.replace(b"bob@", b"eve@")
        signed = ESPS["ses"].encode([bounced], url="u", now=NOW, sender=ident.sender())
        tampered = signed.body.replace(b"bob@example.com", b"eve@example.com")
        response = client.post("/webhooks/signed", data=tampered, headers=dict(signed.headers))
        assert (response.status_code, response.get_json()["error"]) == (401, "bad_signature")
        response = client.post(
            "/webhooks/raw",
            data=forged,
            headers={"x-amz-sns-rawdelivery": "true", "Content-Type": "application/json"},
        )
        assert response.status_code == 401
        headers = {"Content-Type": "application/xml", **confirmation_headers()}
        assert client.post("/webhooks/signed", data=b"<x/>", headers=headers).status_code == 415
        body = confirmation(ident)
        headers = {"Content-Type": "text/plain; charset=UTF-8", **confirmation_headers()}
        assert client.post("/webhooks/signed", data=body, headers=headers).status_code == 200
    finally:
        app.extensions["mailpulse"].spool.close()
    result = Flusher(config, clock=lambda: NOW).flush()
    assert (result.events, result.duplicates, result.quarantined) == (2, 1, 0)
    found = sorted(
        (r["source"], r["event_type"], r["recipient"], r["campaign"], r["bounce_class"])
        for r in lake_rows(config.data_dir)
    )
    assert found == [
        ("raw", "bounced", "bob@example.com", None, "hard"),
        ("signed", "delivered", "ann@example.com", "spring", None),
    ]
