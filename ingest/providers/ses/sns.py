"""Amazon SNS message signatures: the envelope, the string SNS signs, and its certificates.

SNS signs each HTTP/S message with RSA PKCS#1 v1.5 (``SignatureVersion`` 1: SHA-1, 2: SHA-256)
over ``key\\nvalue\\n`` for a fixed list of keys in byte order (Notification: Message,
MessageId, Subject when present, Timestamp, TopicArn, Type; (Un)SubscriptionConfirmation:
Message, MessageId, SubscribeURL, Timestamp, Token, TopicArn, Type), using the JSON-decoded
values. The key is in the X.509 certificate at ``SigningCertURL``.

A forged message names its own certificate, so the URL is the trust anchor: only
``https://sns.<region>.amazonaws.com/<name>.pem`` (``.amazonaws.com.cn`` for China regions)
is ever fetched, over verified TLS, and anything else is refused before any network call.
Certificates are cached in memory per URL; a ``certificate_dir`` of pinned PEM files (named
:func:`pinned_name` of the URL) is consulted before any fetch, for air-gapped receivers.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import requests
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from ingest.errors import AuthenticationFailed, SpoolUnavailable
from ingest.providers.freshness import require_fresh

#: SNS retries an HTTP/S delivery for at most 3,600 s (the delivery policy's hard limit) and
#: keeps the original ``Timestamp`` and signature; 300 s more allow for clock skew.
DEFAULT_TOLERANCE_SECONDS = 3_900
#: How far in the future a ``Timestamp`` may be (clock skew only).
FUTURE_SKEW_SECONDS = 300
FETCH_TIMEOUT_SECONDS = 5.0
MAX_CERTIFICATE_BYTES = 64 * 1024
CACHE_ENTRIES = 64
#: After a failed download, the same URL is not tried again for this long.
FAILURE_BACKOFF_SECONDS = 30.0

NOTIFICATION = "Notification"
CONFIRMATION_TYPES = frozenset({"SubscriptionConfirmation", "UnsubscribeConfirmation"})
MESSAGE_TYPES = CONFIRMATION_TYPES | {NOTIFICATION}
_NOTIFICATION_KEYS = ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type")
_CONFIRMATION_KEYS = (
    "Message",
    "MessageId",
    "SubscribeURL",
    "Timestamp",
    "Token",
    "TopicArn",
    "Type",
)
_HASHES: dict[str, Callable[[], hashes.HashAlgorithm]] = {
    "1": hashes.SHA1,
    "2": hashes.SHA256,
}
_REGION = r"(?:[a-z]{2}(?:-[a-z]+)+-\d{1,2})"
# China regions (cn-*) live under .amazonaws.com.cn, every other region under .amazonaws.com.
_AWS_HOST = re.compile(
    rf"sns\.(?:(?!cn-){_REGION}\.amazonaws\.com|cn-[a-z]+-\d{{1,2}}\.amazonaws\.com\.cn)"
)
_CERT_URL = re.compile(rf"https://{_AWS_HOST.pattern}/[A-Za-z0-9_.-]+\.pem", re.ASCII)
_SUBSCRIBE_URL = re.compile(rf"https://{_AWS_HOST.pattern}/\?[A-Za-z0-9_.:%&=+/-]+", re.ASCII)


class CertificateUnavailable(SpoolUnavailable):
    """The signing certificate could not be downloaded right now (answered 503: SNS retries)."""


@dataclass(frozen=True, slots=True)
class Envelope:
    """The parts of an SNS message that authentication needs."""

    type: str
    message_id: str
    topic_arn: str
    timestamp: str
    signature_version: str
    signature: str
    certificate_url: str
    subscribe_url: str | None
    signed: bytes


def pinned_name(url: str) -> str:
    """The file name a pinned certificate for ``url`` has in ``certificate_dir``."""
    return hashlib.sha256(url.encode()).hexdigest() + ".pem"


def is_aws_certificate_url(url: str) -> bool:
    """True only for ``https://sns.<region>.amazonaws.com[.cn]/<name>.pem``."""
    return _CERT_URL.fullmatch(url) is not None


def is_aws_subscribe_url(url: str) -> bool:
    """True only for an https URL with a query on an SNS host (a ``SubscribeURL``)."""
    return _SUBSCRIBE_URL.fullmatch(url) is not None


def string_to_sign(message: dict[str, Any]) -> bytes:
    """What SNS signs for ``message`` (a decoded envelope); raises on a malformed one."""
    kind = message.get("Type")
    keys = _NOTIFICATION_KEYS if kind == NOTIFICATION else _CONFIRMATION_KEYS
    parts: list[str] = []
    for key in keys:
        value = message.get(key)
        if key == "Subject" and value is None:
            continue  # "Subject" is signed only when present; a null counts as absent
        if not isinstance(value, str):
            raise _failed(f"SNS message field {key} is missing or not a string", "bad_message")
        parts.append(f"{key}\n{value}\n")
    try:
        return "".join(parts).encode("utf-8")
    except UnicodeEncodeError:
        raise _failed("SNS message is not valid UTF-8", "bad_message") from None


def parse_envelope(body: bytes) -> Envelope:
    """Read the fields authentication needs from an SNS body; refuse anything malformed."""
    try:
        message = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise _failed("body is not an SNS JSON message", "bad_message") from None
    if not isinstance(message, dict):
        raise _failed("body is not an SNS JSON message", "bad_message")
    kind = message.get("Type")
    if not isinstance(kind, str) or kind not in MESSAGE_TYPES:
        raise _failed(
            f"SNS message Type {str(kind)[:40]!r} is not supported", "unsupported_message_type"
        )
    signature = message.get("Signature")
    version = message.get("SignatureVersion")
    certificate_url = message.get("SigningCertURL")
    if not isinstance(signature, str) or not signature or not isinstance(version, str):
        raise _failed("SNS message has no Signature or SignatureVersion", "missing_signature")
    if version not in _HASHES:
        raise _failed(
            f"SignatureVersion {version[:8]!r} is not 1 or 2", "unsupported_signature_version"
        )
    if not isinstance(certificate_url, str) or not certificate_url:
        raise _failed("SNS message has no SigningCertURL", "missing_signature")
    signed = string_to_sign(message)
    subscribe_url = message.get("SubscribeURL")
    return Envelope(
        type=kind,
        message_id=message["MessageId"],
        topic_arn=message["TopicArn"],
        timestamp=message["Timestamp"],
        signature_version=version,
        signature=signature,
        certificate_url=certificate_url,
        subscribe_url=subscribe_url if isinstance(subscribe_url, str) else None,
        signed=signed,
    )


class CertificateStore:
    """SNS signing certificates by URL: pinned files first, then a bounded in-memory cache.

    Thread-safe; one per provider. ``fetch`` downloads a URL already known to be an AWS one.
    """

    def __init__(
        self,
        directory: Path | None = None,
        *,
        fetch: Callable[[str], bytes] | None = None,
        max_entries: int = CACHE_ENTRIES,
    ) -> None:
        self.directory = directory
        self.fetch = fetch or download
        self.max_entries = max_entries
        self._cache: OrderedDict[str, x509.Certificate] = OrderedDict()
        self._failures: dict[str, float] = {}
        self._lock = threading.Lock()

    def get(self, url: str) -> x509.Certificate:
        """The certificate at ``url`` (which the caller has checked is an AWS URL)."""
        with self._lock:
            cached = self._cache.get(url)
            if cached is not None:
                self._cache.move_to_end(url)
                return cached
            failed_at = self._failures.get(url)
        if failed_at is not None and time.monotonic() - failed_at < FAILURE_BACKOFF_SECONDS:
            raise CertificateUnavailable(
                "the SNS signing certificate could not be downloaded recently; retry later",
                retry_after=int(FAILURE_BACKOFF_SECONDS),
            )
        certificate = self._load(url)
        with self._lock:
            self._failures.pop(url, None)
            self._cache[url] = certificate
            while len(self._cache) > self.max_entries:
                self._cache.popitem(last=False)
        return certificate

    def _load(self, url: str) -> x509.Certificate:
        pem: bytes | None = None
        if self.directory is not None:
            try:
                pem = (self.directory / pinned_name(url)).read_bytes()
            except OSError:
                pem = None
        if pem is None:
            try:
                pem = self.fetch(url)
            except CertificateUnavailable:
                with self._lock:
                    self._failures[url] = time.monotonic()
                    if len(self._failures) > self.max_entries:
                        self._failures.pop(next(iter(self._failures)))
                raise
        try:
            return x509.load_pem_x509_certificate(pem)
        except ValueError:
            message = "the SNS signing certificate is not a PEM certificate"
            raise _failed(message, "bad_certificate") from None


def download(url: str) -> bytes:
    """GET an AWS certificate URL with a short timeout, no redirects and a size cap."""
    try:
        with requests.get(
            url, timeout=FETCH_TIMEOUT_SECONDS, allow_redirects=False, stream=True
        ) as response:
            if response.status_code != 200:
                if response.status_code >= 500:
                    raise CertificateUnavailable(
                        f"SNS certificate download answered {response.status_code}; retry later"
                    )
                raise _failed(
                    f"SNS certificate download answered {response.status_code}",
                    "bad_certificate",
                )
            content = response.raw.read(MAX_CERTIFICATE_BYTES + 1, decode_content=True)
    except requests.RequestException as exc:
        raise CertificateUnavailable(
            f"SNS certificate could not be downloaded ({type(exc).__name__}); retry later"
        ) from None
    if len(content) > MAX_CERTIFICATE_BYTES:
        raise _failed("SNS certificate download is too large", "bad_certificate")
    return bytes(content)


def verify(
    envelope: Envelope,
    *,
    store: CertificateStore,
    topic_arns: Collection[str],
    now: float,
    tolerance: float = DEFAULT_TOLERANCE_SECONDS,
) -> None:
    """Check topic, freshness, certificate URL, certificate and signature, in order of cost."""
    if envelope.topic_arn not in topic_arns:
        if not topic_arns:
            raise _failed("no topic_arns are configured for signed SNS messages", "unknown_topic")
        raise _failed("the SNS TopicArn is not in this source's topic_arns", "unknown_topic")
    sent_at = _timestamp(envelope.timestamp)
    require_fresh(sent_at, now, field="SNS Timestamp", back=tolerance, ahead=FUTURE_SKEW_SECONDS)
    if not is_aws_certificate_url(envelope.certificate_url):
        raise _failed(
            "SigningCertURL is not an https .pem URL on an sns.<region>.amazonaws.com host",
            "bad_certificate_url",
        )
    try:
        signature = base64.b64decode(envelope.signature, validate=True)
    except (binascii.Error, ValueError):
        raise _failed("Signature is not base64", "bad_signature") from None
    certificate = store.get(envelope.certificate_url)
    moment = datetime.fromtimestamp(now, UTC)
    if not certificate.not_valid_before_utc <= moment <= certificate.not_valid_after_utc:
        raise _failed("the SNS signing certificate is not valid now", "certificate_expired")
    key = certificate.public_key()
    if not isinstance(key, rsa.RSAPublicKey):
        raise _failed("the SNS signing certificate has no RSA key", "bad_certificate")
    try:
        key.verify(
            signature, envelope.signed, padding.PKCS1v15(), _HASHES[envelope.signature_version]()
        )
    except InvalidSignature:
        raise _failed("SNS signature does not match", "bad_signature") from None


def _timestamp(value: str) -> float:
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise _failed("SNS Timestamp is not ISO 8601", "bad_timestamp") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


def _failed(message: str, code: str) -> AuthenticationFailed:
    return AuthenticationFailed(message, code=code)
