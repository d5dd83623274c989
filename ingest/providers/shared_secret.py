"""Authentication for ESPs that sign nothing: HTTP Basic credentials and shared header tokens.

Postmark, SparkPost, Brevo and Mailjet (and SES raw delivery, SendGrid's optional extra) can
only prove who they are with a secret they send back: ``basic_auth = ["user:pass", ...]``
(credentials in the webhook URL, which the ESP sends as ``Authorization: Basic``) and/or
``header_token`` (a token in a header; ``Authorization: Bearer <token>`` when the header is
``authorization``). Every configured mechanism must pass; each accepts any of its listed
values (rotation). Comparisons are constant-time.

This is a helper module that provider modules use, not a provider: those ESPs subclass
:class:`SharedSecretProvider`, which brings the credential keys, the config check and
``authenticate``.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from abc import ABC
from collections.abc import Iterable, Mapping
from typing import ClassVar

from ingest.errors import AuthenticationFailed
from ingest.providers.base import InboundRequest, Provider
from mailpulse.config import Secret, SourceConfig

BASIC_AUTH = "basic_auth"
HEADER_TOKEN = "header_token"
#: The non-secret option naming the header a token arrives in.
TOKEN_HEADER_OPTION = "token_header"
KEYS = frozenset({BASIC_AUTH, HEADER_TOKEN})


class SharedSecretProvider(Provider, ABC):
    """A provider whose ESP proves itself only with Basic credentials and/or a header token."""

    credential_keys = KEYS
    option_keys = frozenset({TOKEN_HEADER_OPTION})
    #: The header a token arrives in unless the source sets ``token_header``.
    token_header: ClassVar[str]

    @classmethod
    def config_problems(cls, source: SourceConfig) -> list[str]:
        """``basic_auth`` and/or ``header_token``, well-formed."""
        return config_problems(source)

    def authenticate(self, request: InboundRequest, now: float) -> None:
        """Basic credentials and/or the token, compared in constant time."""
        check(request.headers, self.source, default_token_header=self.token_header)


def config_problems(source: SourceConfig) -> list[str]:
    """A source that signs nothing needs at least one of the two, and well-formed."""
    problems = []
    if not source.credentials.get(BASIC_AUTH) and not source.credentials.get(HEADER_TOKEN):
        problems.append(
            "needs basic_auth and/or header_token (a source without credentials refuses nothing)"
        )
    for value in source.credentials.get(BASIC_AUTH, ()):
        user, colon, _ = value.reveal().partition(":")
        if not colon or not user:
            problems.append('basic_auth entries must look like "user:password"')
            break
    header = source.options.get(TOKEN_HEADER_OPTION)
    if header is not None and (not isinstance(header, str) or not header.strip()):
        problems.append("token_header must be a header name")
    return problems


def check(headers: Mapping[str, str], source: SourceConfig, *, default_token_header: str) -> None:
    """Raise ``AuthenticationFailed`` unless every configured mechanism passes."""
    basic = source.credentials.get(BASIC_AUTH, ())
    tokens = source.credentials.get(HEADER_TOKEN, ())
    if not basic and not tokens:
        raise AuthenticationFailed(
            "this source has no credentials configured", code="no_credentials"
        )
    header = str(source.options.get(TOKEN_HEADER_OPTION) or default_token_header).lower()
    if basic and tokens and header == "authorization":
        # Both would need the one Authorization header: either proves the sender.
        if _basic_ok(headers, basic) or _token_ok(headers, header, tokens):
            return
        raise AuthenticationFailed("credentials do not match", code="bad_credentials")
    if basic and not _basic_ok(headers, basic):
        if "authorization" not in headers:
            raise AuthenticationFailed(
                "Authorization header is missing (Basic credentials expected)",
                code="missing_credentials",
            )
        raise AuthenticationFailed("Basic credentials do not match", code="bad_credentials")
    if tokens and not _token_ok(headers, header, tokens):
        if header not in headers:
            raise AuthenticationFailed(f"{header} header is missing", code="missing_credentials")
        raise AuthenticationFailed("header token does not match", code="bad_credentials")


def basic_header(credential: str) -> str:
    """The ``Authorization`` value for ``user:pass``, as senders (and the simulator) send it."""
    return "Basic " + base64.b64encode(credential.encode()).decode()


def _basic_ok(headers: Mapping[str, str], accepted: Iterable[Secret]) -> bool:
    value = headers.get("authorization", "")
    scheme, _, encoded = value.strip().partition(" ")
    if scheme.lower() != "basic":
        return False
    try:
        given = base64.b64decode(encoded.strip(), validate=True)
    except (binascii.Error, ValueError):
        return False
    return _any_equal(given, accepted)


def _token_ok(headers: Mapping[str, str], header: str, accepted: Iterable[Secret]) -> bool:
    value = headers.get(header, "").strip()
    if header == "authorization":
        scheme, _, value = value.partition(" ")
        if scheme.lower() != "bearer":
            return False
        value = value.strip()
    return _any_equal(value.encode("utf-8", "surrogateescape"), accepted)


def _any_equal(given: bytes, accepted: Iterable[Secret]) -> bool:
    # Compare against every value, not stopping at the first match, so timing says nothing
    # about which (or whether an early) entry matched.
    matched = False
    for secret in accepted:
        matched |= hmac.compare_digest(given, secret.reveal().encode())
    return matched
