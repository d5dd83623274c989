"""A generated SNS signing identity for tests: RSA key, self-signed certificate, pinned file.

The certificate is written into a ``certificate_dir`` under the name the ses provider looks
for (``sha256(url).hexdigest() + ".pem"``), so signed messages verify without a network.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import rsa

from ingest.providers.ses.sns import pinned_name
from tests.tls import certificate, private_pem

TEST_CERT_URL = "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-test.pem"
TEST_TOPIC = "arn:aws:sns:us-east-1:123456789012:mailpulse-test"


@dataclass(frozen=True)
class SigningIdentity:
    """A private key (PEM) and its certificate (PEM) pinned for ``url``."""

    key_pem: str
    cert_pem: bytes
    url: str

    def pin(self, directory: Path) -> Path:
        """Write the certificate into ``directory`` under its pinned name."""
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / pinned_name(self.url)
        path.write_bytes(self.cert_pem)
        return path

    def sender(self, topic: str = TEST_TOPIC, version: str = "2") -> dict[str, str]:
        """Sender keys for ``SesProvider.encode`` in signed mode."""
        return {
            "signing_key": self.key_pem,
            "certificate_url": self.url,
            "topic_arn": topic,
            "signature_version": version,
        }


@functools.lru_cache(maxsize=8)
def _key(label: str) -> rsa.RSAPrivateKey:
    del label  # one key per label, generated once per test run
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def identity(
    url: str = TEST_CERT_URL,
    *,
    label: str = "default",
    not_before: datetime = datetime(2020, 1, 1, tzinfo=UTC),
    not_after: datetime = datetime(2040, 1, 1, tzinfo=UTC),
) -> SigningIdentity:
    """A fresh self-signed certificate (CN=sns.amazonaws.com) over a generated key."""
    key = _key(label)
    cert_pem = certificate(key, "sns.amazonaws.com", not_before, not_after)
    key_pem = private_pem(key).decode()
    return SigningIdentity(key_pem, cert_pem, url)
