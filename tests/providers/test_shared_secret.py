"""Basic credentials and header tokens, for the ESPs that sign nothing."""

from __future__ import annotations

import base64
import secrets
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ingest.errors import AuthenticationFailed
from ingest.providers import PROVIDERS
from ingest.providers import shared_secret as auth
from mailpulse.config import Secret, SourceConfig


def source(
    basic: tuple[str, ...] = (), tokens: tuple[str, ...] = (), **options: Any
) -> SourceConfig:
    credentials: dict[str, tuple[Secret, ...]] = {}
    if basic:
        credentials[auth.BASIC_AUTH] = tuple(Secret(value) for value in basic)
    if tokens:
        credentials[auth.HEADER_TOKEN] = tuple(Secret(value) for value in tokens)
    return SourceConfig(name="esp", provider="postmark", credentials=credentials, options=options)


def check(headers: dict[str, str], config: SourceConfig, header: str = "x-token") -> None:
    auth.check(headers, config, default_token_header=header)


def basic(credential: str) -> dict[str, str]:
    return {"authorization": auth.basic_header(credential)}


USER = f"esp:{secrets.token_urlsafe(12)}"
OTHER = f"esp:{secrets.token_urlsafe(12)}"
TOKEN = secrets.token_urlsafe(24)


def test_basic_credentials_verify_and_any_listed_one_does() -> None:
    config = source(basic=(OTHER, USER))
    check(basic(USER), config)
    check(basic(OTHER), config)


@pytest.mark.parametrize(
    ("headers", "code"),
    [
        ({}, "missing_credentials"),
        ({"authorization": "Bearer " + USER}, "bad_credentials"),
        ({"authorization": "Basic !!!not-base64"}, "bad_credentials"),
        ({"authorization": auth.basic_header(USER + "x")}, "bad_credentials"),
        ({"authorization": auth.basic_header(USER.upper())}, "bad_credentials"),
    ],
)
def test_wrong_or_missing_basic_credentials_fail(headers: dict[str, str], code: str) -> None:
    with pytest.raises(AuthenticationFailed) as failure:
        check(headers, source(basic=(USER,)))
    assert failure.value.code == code
    assert USER.split(":")[1] not in str(failure.value)


def test_header_token_in_its_own_header_and_as_bearer() -> None:
    check({"x-token": TOKEN}, source(tokens=(TOKEN,)))
    check({"authorization": f"Bearer {TOKEN}"}, source(tokens=(TOKEN,)), header="authorization")
    with pytest.raises(AuthenticationFailed, match="missing"):
        check({}, source(tokens=(TOKEN,)))
    with pytest.raises(AuthenticationFailed):
        check({"x-token": TOKEN[:-1]}, source(tokens=(TOKEN,)))
    with pytest.raises(AuthenticationFailed):  # a bare token where a Bearer is expected
        check({"authorization": TOKEN}, source(tokens=(TOKEN,)), header="authorization")


def test_token_header_option_names_the_header() -> None:
    config = source(tokens=(TOKEN,), token_header="X-Custom-Auth")
    check({"x-custom-auth": TOKEN}, config)
    with pytest.raises(AuthenticationFailed):
        check({"x-token": TOKEN}, config)


def test_both_configured_in_different_headers_both_must_pass() -> None:
    config = source(basic=(USER,), tokens=(TOKEN,))
    check({**basic(USER), "x-token": TOKEN}, config)
    with pytest.raises(AuthenticationFailed):
        check(basic(USER), config)
    with pytest.raises(AuthenticationFailed):
        check({"x-token": TOKEN}, config)


def test_both_configured_in_authorization_either_passes() -> None:
    config = source(basic=(USER,), tokens=(TOKEN,))
    check(basic(USER), config, header="authorization")
    check({"authorization": f"Bearer {TOKEN}"}, config, header="authorization")
    with pytest.raises(AuthenticationFailed):
        check({"authorization": "Bearer nope"}, config, header="authorization")


def test_no_credentials_refuse_everything_and_is_a_config_problem() -> None:
    with pytest.raises(AuthenticationFailed):
        check(basic(USER), source())
    assert auth.config_problems(source()) == [
        "needs basic_auth and/or header_token (a source without credentials refuses nothing)"
    ]
    assert auth.config_problems(source(basic=("no-colon",))) == [
        'basic_auth entries must look like "user:password"'
    ]
    assert auth.config_problems(source(basic=(USER,))) == []


def test_a_custom_token_header_is_never_stored() -> None:
    config = source(tokens=(TOKEN,), token_header="X-Custom-Auth")
    provider = PROVIDERS["generic"](config)
    assert "x-custom-auth" in provider.secret_headers
    assert "authorization" in provider.secret_headers


@given(
    headers=st.dictionaries(
        st.sampled_from(["authorization", "x-token", "x-other"]), st.text(max_size=80)
    )
)
def test_arbitrary_headers_fail_closed_with_our_error(headers: dict[str, str]) -> None:
    with pytest.raises(AuthenticationFailed):
        check(headers, source(basic=(USER,), tokens=(TOKEN,)))


def test_basic_header_is_what_http_clients_send() -> None:
    assert auth.basic_header("a:b") == "Basic " + base64.b64encode(b"a:b").decode()
