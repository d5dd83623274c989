"""Hypothesis fuzzing of every registered provider's ``authenticate``, ``split``, ``normalize``.

Whatever bytes, headers or JSON values arrive, each function either succeeds or raises an
``ingest.errors.IngestError`` subclass (``AuthenticationFailed``, ``PayloadError``,
``MappingError``): never any other exception, which would be a 5xx in the receiver or a
crashed flusher. ``authenticate`` never accepts what was not signed with the configured
credentials. Providers are configured from ``Provider.demo_credentials`` (fresh per run).
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest.errors import AuthenticationFailed, IngestError
from ingest.providers import PROVIDERS, Provider
from ingest.providers.base import (
    InboundRequest,
    NormalizeContext,
    ReplayGuard,
)
from mailpulse.simulate.esp import ESPS, SimulatedEvent
from tests.helpers import parse_config
from tests.security.conftest import SIGNED_URL
from tests.security.test_hostile import AUTH_HEADERS, SCHEME, _document, _event

NAMES = sorted(PROVIDERS)
EXAMPLES = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    database=None,
)


def json_tree(leaves: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.recursive(
        leaves,
        lambda children: (
            st.lists(children, max_size=4)
            | st.dictionaries(st.text(max_size=12), children, max_size=4)
        ),
        max_leaves=20,
    )


_LEAVES = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=40)
)
#: What ``orjson.loads`` (the flusher's parser) can hand ``normalize``: 64-bit integers only.
json_values = json_tree(_LEAVES)
#: On the wire anything goes, big integers included.
wire_values = json_tree(_LEAVES | st.integers(min_value=-(2**200), max_value=2**200))


def to_json(value: Any) -> bytes:
    """JSON text of any value (big integers included, which orjson refuses to write)."""
    return json.dumps(value, ensure_ascii=False).encode("utf-8", "surrogatepass")


header_text = st.text(st.characters(min_codepoint=32, max_codepoint=0x2FF), max_size=120)
bodies = st.one_of(
    st.binary(max_size=2000),
    wire_values.map(to_json),
    st.text(max_size=300).map(lambda text: text.encode("utf-8", "surrogatepass")),
)


class AlwaysFirstUse:
    """A replay guard that forgets: the same example may run twice under Hypothesis."""

    def seen(self, key: str, *, now: float) -> bool:
        return False

    def remember(self, key: str, *, expires_at: float) -> None:
        return None


def configured(
    name: str, replay: ReplayGuard | None = None
) -> tuple[Provider, dict[str, str], bytes, dict[str, str]]:
    """A provider on fresh demo credentials, its sender keys, and one authentic request."""
    cls = PROVIDERS[name]
    url = SIGNED_URL.format(name=name)
    receiver, sender = ESPS[name].demo_credentials(url)
    document = {"data_dir": "/nonexistent", "sources": {name: {"provider": name, **receiver}}}
    provider = cls(parse_config(document, env={}).sources[name], replay=replay)
    simulated = SimulatedEvent(1, "delivered", "a@example.com", time.time(), "<1@x>", "c", ("t",))
    request = ESPS[name].encode([simulated], url=url, now=time.time(), sender=sender)
    return provider, sender, request.body, {k.lower(): v for k, v in request.headers.items()}


def inbound(name: str, body: bytes, headers: dict[str, str], content_type: str) -> InboundRequest:
    return InboundRequest(
        source=name,
        method="POST",
        url=f"/webhooks/{name}",
        headers=headers,
        body=body,
        remote_addr="127.0.0.1",
        content_type=content_type,
    )


@pytest.mark.parametrize("name", NAMES)
def test_authenticate_raises_only_ingest_errors(name: str) -> None:
    provider, _, valid_body, valid_headers = configured(name, replay=AlwaysFirstUse())
    auth = AUTH_HEADERS[name]
    names = sorted(valid_headers) + ["authorization", "x-amz-sns-message-type"]

    @EXAMPLES
    @given(
        body=st.one_of(bodies, st.just(valid_body)),
        keep=st.sets(st.sampled_from(sorted(valid_headers))),
        extra=st.dictionaries(st.sampled_from(names) | header_text, header_text, max_size=6),
        content_type=st.sampled_from(sorted(PROVIDERS[name].content_types)) | header_text,
    )
    def run(body: bytes, keep: set[str], extra: dict[str, str], content_type: str) -> None:
        headers = {k: v for k, v in valid_headers.items() if k in keep}
        headers.update({k.lower(): v for k, v in extra.items()})
        request = inbound(name, body, headers, content_type)
        try:
            provider.authenticate(request, time.time())
        except IngestError as error:
            assert isinstance(error, AuthenticationFailed), repr(error)
            return
        # Accepted: then it carried the credentials of the authentic request where they live.
        carried = any(headers.get(k) == v for k, v in valid_headers.items() if k in auth)
        if SCHEME[name] == "signed-body":
            assert body == valid_body and carried
        elif SCHEME[name] == "signed-token":
            assert body == valid_body
        else:
            assert carried

    run()


@pytest.mark.parametrize("name", NAMES)
def test_split_raises_only_ingest_errors(name: str) -> None:
    provider, _, valid_body, valid_headers = configured(name)

    @EXAMPLES
    @given(
        body=st.one_of(bodies, st.binary(max_size=64).map(lambda junk: valid_body + junk)),
        headers=st.one_of(st.just(valid_headers), st.dictionaries(header_text, header_text)),
    )
    def run(body: bytes, headers: dict[str, str]) -> None:
        try:
            items = provider.split(body, headers)
        except IngestError:
            return
        assert isinstance(items, list)

    run()


@pytest.mark.parametrize("name", NAMES)
def test_normalize_raises_only_ingest_errors(name: str) -> None:
    provider, _, valid_body, valid_headers = configured(name)
    event = _event(name, _document(name, valid_body))
    context = NormalizeContext(
        source=name, headers=valid_headers, received_at=int(time.time() * 1e6), campaign_field=None
    )

    @EXAMPLES
    @given(
        item=st.one_of(
            json_values,
            st.dictionaries(st.sampled_from(sorted(event)), json_values).map(
                lambda changes: {**event, **changes}
            ),
            st.sets(st.sampled_from(sorted(event))).map(
                lambda drop: {k: v for k, v in event.items() if k not in drop}
            ),
        )
    )
    def run(item: Any) -> None:
        if name == "sparkpost":
            item = {"msys": {"message_event": item}}
        try:
            rows = provider.normalize(item, context)
        except IngestError:
            return
        assert isinstance(rows, list)

    run()
