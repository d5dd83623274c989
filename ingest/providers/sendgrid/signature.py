"""SendGrid's Signed Event Webhook: ECDSA P-256 / SHA-256 over ``timestamp + raw body``.

The verification key is what the SendGrid UI shows: base64 of the DER SubjectPublicKeyInfo
(a PEM block is accepted too). The ``X-Twilio-Email-Event-Webhook-Signature`` header is the
standard base64 of a DER ``ECDSA-Sig-Value``; the signed bytes are the
``X-Twilio-Email-Event-Webhook-Timestamp`` header value followed directly by the body, byte for
byte (SendGrid's bodies end in ``\\r\\n``, which is signed too).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Iterable
from functools import lru_cache

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

SIGNATURE_HEADER = "x-twilio-email-event-webhook-signature"
TIMESTAMP_HEADER = "x-twilio-email-event-webhook-timestamp"
# A DER ECDSA P-256 signature is at most 72 bytes (96 base64 characters); anything much longer
# is refused before decoding.
MAX_SIGNATURE_CHARS = 200

_PREHASHED = ec.ECDSA(Prehashed(hashes.SHA256()))
_SIGN = ec.ECDSA(hashes.SHA256())


class BadKey(ValueError):
    """A configured key that is not a P-256 public (or private) key."""


def load_public_key(text: str) -> ec.EllipticCurvePublicKey:
    """Read a verification key as the SendGrid UI shows it (base64 DER) or as PEM.

    Raises:
        BadKey: when the text is not a P-256 public key.
    """
    text = text.strip()
    try:
        if text.startswith("-----BEGIN"):
            key = serialization.load_pem_public_key(text.encode())
        else:
            der = base64.b64decode("".join(text.split()), validate=True)
            key = serialization.load_der_public_key(der)
    except (ValueError, TypeError, UnsupportedAlgorithm, binascii.Error) as exc:
        raise BadKey("not a base64 DER or PEM public key") from exc
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp256r1":
        raise BadKey("not an ECDSA P-256 (prime256v1) public key")
    return key


def load_public_keys(texts: Iterable[str]) -> tuple[ec.EllipticCurvePublicKey, ...]:
    """Every loadable key of a source, in order; unloadable ones are config problems."""
    keys = []
    for text in texts:
        try:
            keys.append(load_public_key(text))
        except BadKey:
            continue
    return tuple(keys)


def decode_signature(header: str) -> bytes | None:
    """The DER signature bytes of the header value, or None when it is not base64."""
    header = header.strip()
    if not header or len(header) > MAX_SIGNATURE_CHARS:
        return None
    try:
        return base64.b64decode(header, validate=True)
    except (binascii.Error, ValueError):  # ValueError: non-ASCII characters
        return None


def verify(
    keys: Iterable[ec.EllipticCurvePublicKey], signature: bytes, timestamp: bytes, body: bytes
) -> bool:
    """True when any key verifies ``signature`` over ``timestamp + body``.

    The body is hashed once, whatever the number of keys (rotation), and never copied: the
    digest is fed the two parts in turn.
    """
    digest = hashlib.sha256(timestamp)
    digest.update(body)
    prehashed = digest.digest()
    for key in keys:
        try:
            key.verify(signature, prehashed, _PREHASHED)
        except InvalidSignature:
            continue
        return True
    return False


@lru_cache(maxsize=16)
def load_private_key(pem: str) -> ec.EllipticCurvePrivateKey:
    """The sender's signing key (PEM), loaded once per distinct PEM.

    Raises:
        BadKey: when the PEM is not a P-256 private key.
    """
    try:
        key = serialization.load_pem_private_key(pem.encode(), password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise BadKey("not a PEM private key") from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
        raise BadKey("not an ECDSA P-256 private key")
    return key


def sign(private_key_pem: str, timestamp: str, body: bytes) -> str:
    """The signature header value SendGrid would send for ``body`` at ``timestamp``."""
    key = load_private_key(private_key_pem)
    return base64.b64encode(key.sign(timestamp.encode() + body, _SIGN)).decode()


def generate_key_pair() -> tuple[str, str]:
    """A fresh P-256 pair: (public key as the SendGrid UI shows it, private key PEM)."""
    private = ec.generate_private_key(ec.SECP256R1())
    public_der = private.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    private_pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return base64.b64encode(public_der).decode(), private_pem.decode()
