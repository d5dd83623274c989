"""Hypothesis throws random bytes, headers, content types and paths at the receiver.

Whatever arrives, the answer is a JSON refusal below 500 and nothing unauthenticated is
stored. One run is in-process (many examples, fast); one is against the real server.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import orjson
import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest import create_app
from ingest.providers import PROVIDERS, InboundRequest
from ingest.providers.generic import sign
from mailpulse.config import Config, Secret, SourceConfig
from tests.helpers import Server, running_server, spooled_records

# Printable ASCII without surrounding blanks: what an HTTP client can put in a header at all.
header_text = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=80).map(
    str.strip
)
content_types = st.one_of(
    st.sampled_from(
        [
            "application/json",
            "application/json; charset=utf-8",
            "text/plain",
            "application/x-www-form-urlencoded",
            "",
            "application/json;;;",
            "*/*",
        ]
    ),
    header_text,
)
signature_headers = st.fixed_dictionaries(
    {},
    optional={
        "X-Webhook-Timestamp": st.one_of(
            header_text, st.integers(0, 2**40).map(str), st.just(str(int(time.time())))
        ),
        "X-Webhook-Signature": st.one_of(
            header_text, st.binary(min_size=32, max_size=32).map(lambda b: "sha256=" + b.hex())
        ),
        "Content-Encoding": st.sampled_from(["gzip", "identity", "br"]),
        "Transfer-Encoding": st.just("identity"),
    },
)
bodies = st.one_of(
    st.binary(max_size=3000),
    st.text(max_size=500).map(str.encode),
    st.just(b'{"id":"x","type":"delivered","timestamp":1,"email":"a@b.c"}'),
)
sources = st.one_of(st.just("in_house"), st.text(min_size=1, max_size=40))


def stored_records(config: Config) -> int:
    return len(spooled_records(config.data_dir))


@settings(
    max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    body=bodies,
    headers=signature_headers,
    content_type=content_types,
    source=sources,
    method=st.sampled_from(["POST", "POST", "POST", "PUT", "GET"]),
)
def test_random_requests_in_process(
    config: Config,
    body: bytes,
    headers: dict[str, str],
    content_type: str,
    source: str,
    method: str,
) -> None:
    app = create_app(config)
    response = app.test_client().open(
        f"/webhooks/{quote(source, safe='')}",
        method=method,
        data=body,
        headers={**headers, "Content-Type": content_type},
    )
    app.extensions["mailpulse"].spool.close()
    assert response.status_code < 500 and response.status_code != 200, response.data
    payload = response.get_json()
    assert set(payload) == {"error", "message"}
    assert stored_records(config) == 0


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running_server(tmp_path_factory.mktemp("fuzz"), workers=1) as running:
        yield running


@pytest.mark.slow
@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(body=bodies, headers=signature_headers, content_type=content_types, source=sources)
def test_random_requests_against_the_real_server(
    server: Server, body: bytes, headers: dict[str, str], content_type: str, source: str
) -> None:
    response = requests.post(
        f"{server.base_url}/webhooks/{quote(source, safe='')}",
        data=body,
        headers={**headers, "Content-Type": content_type},
        timeout=10,
    )
    assert 400 <= response.status_code < 500, response.text
    if response.headers.get("content-type", "").startswith("text/html"):
        # gunicorn's own short page for a header it cannot parse (nginx answers it in JSON)
        assert response.status_code == 400 and "Traceback" not in response.text
    else:
        assert set(response.json()) == {"error", "message"}
    assert requests.get(f"{server.base_url}/healthz", timeout=5).status_code == 200
    assert spooled_records(server.data_dir) == []


@settings(max_examples=300, deadline=None)
@given(
    body=st.binary(max_size=2000),
    headers=st.dictionaries(
        st.sampled_from(["x-webhook-timestamp", "x-webhook-signature", "content-type"]), header_text
    ),
    now=st.floats(0, 2e10),
)
def test_generic_authenticate_raises_only_our_errors(
    body: bytes, headers: dict[str, str], now: float
) -> None:
    from ingest.errors import AuthenticationFailed

    provider = PROVIDERS["generic"](SourceConfig("s", "generic", {"secret": (Secret("k"),)}))
    request = InboundRequest(
        "s", "POST", "http://x", headers, body, "127.0.0.1", "application/json"
    )
    with pytest.raises(AuthenticationFailed):
        provider.authenticate(request, now)


@settings(max_examples=300, deadline=None)
@given(
    body=st.one_of(
        st.binary(max_size=2000),
        st.recursive(
            st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=20),
            lambda inner: (
                st.lists(inner, max_size=4)
                | st.dictionaries(
                    st.sampled_from(
                        [
                            "id",
                            "type",
                            "timestamp",
                            "email",
                            "events",
                            "tags",
                            "metadata",
                            "bounce_class",
                            "agent",
                            "campaign",
                            "x",
                        ]
                    ),
                    inner,
                    max_size=6,
                )
            ),
            max_leaves=30,
        ).map(lambda value: orjson.dumps(value) if _serializable(value) else b"null"),
    )
)
def test_generic_split_and_normalize_raise_only_our_errors(body: bytes) -> None:
    from ingest.errors import MappingError, PayloadError
    from ingest.providers import NormalizeContext

    provider = PROVIDERS["generic"](SourceConfig("s", "generic", {"secret": (Secret("k"),)}))
    context = NormalizeContext("s", {}, 0, None)
    try:
        items = provider.split(body, {})
    except PayloadError:
        return
    for item in items:
        with contextlib.suppress(MappingError):
            provider.normalize(item, context)


def _serializable(value: object) -> bool:
    try:
        orjson.dumps(value)
    except TypeError:
        return False
    return True


def test_a_valid_signature_is_what_gets_in(config: Config, tmp_path: Path) -> None:
    """The control for the fuzzers above: the same path with a real signature stores."""
    app = create_app(config)
    body = b'{"id":"x","type":"delivered","timestamp":1,"email":"a@b.c"}'
    now = int(time.time())
    secret = config.sources["in_house"].credentials["secret"][0].reveal()
    response = app.test_client().post(
        "/webhooks/in_house",
        data=body,
        headers={
            "Content-Type": "application/json",
            "X-Webhook-Timestamp": str(now),
            "X-Webhook-Signature": sign(secret, now, body),
        },
    )
    app.extensions["mailpulse"].spool.close()
    assert response.status_code == 200
    assert stored_records(config) == 1
