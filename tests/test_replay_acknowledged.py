"""A replay guard remembers only what was acknowledged, and its storage failures are 503s.

Each provider with single-use values (Mailgun tokens, Resend/Svix ids) is driven through the
real receiver app: a request the spool refuses (503) must leave its retry acceptable, and a
replay database that cannot be written answers 503 ``spool_unavailable``, never 500.
"""

from __future__ import annotations

import base64
import json
import logging
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from ingest import create_app
from ingest.providers.mailgun import sign as mailgun_sign
from ingest.providers.resend import sign as resend_sign
from mailpulse.config import Config
from tests.helpers import parse_config

NOW = 1_790_000_000.0
Signer = Callable[[str], tuple[bytes, dict[str, str]]]


def mailgun_request(key: str) -> tuple[bytes, dict[str, str]]:
    token, timestamp = secrets.token_hex(25), str(int(NOW))
    signature = {"token": token, "timestamp": timestamp, "signature": ""}
    signature["signature"] = mailgun_sign(key, timestamp, token)
    event = {"event": "delivered", "id": "ev-1", "timestamp": NOW, "recipient": "a@example.com"}
    body = orjson.dumps({"signature": signature, "event-data": event})
    return body, {"Content-Type": "application/json"}


def resend_request(key: str) -> tuple[bytes, dict[str, str]]:
    body = b'{"type":"email.delivered","data":{"to":["a@example.com"]}}'
    headers = {
        "Content-Type": "application/json",
        "svix-id": "msg_retry",
        "svix-timestamp": str(int(NOW)),
        "svix-signature": resend_sign(key, "msg_retry", int(NOW), body),
    }
    return body, headers


PROVIDERS: dict[str, tuple[str, Signer]] = {
    "mailgun": ("signing_key", mailgun_request),
    "resend": ("secret", resend_request),
}


def new_key(provider: str) -> str:
    raw = secrets.token_bytes(24)
    return "whsec_" + base64.b64encode(raw).decode() if provider == "resend" else raw.hex()


def config_for(tmp_path: Path, provider: str, key: str, **receiver: Any) -> Config:
    document = {
        "data_dir": str(tmp_path / "data"),
        "receiver": receiver,
        "sources": {"esp": {"provider": provider, PROVIDERS[provider][0]: key}},
    }
    return parse_config(document, env={})


def post(config: Config, body: bytes, headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
    app = create_app(config, clock=lambda: NOW)
    try:
        response = app.test_client().post("/webhooks/esp", data=body, headers=headers)
        return response.status_code, json.loads(response.data)
    finally:
        state = app.extensions["mailpulse"]
        state.spool.close()
        for source in state.sources.values():  # the PostgreSQL guard holds connections
            getattr(source.provider.replay, "close", lambda: None)()


@pytest.mark.parametrize("provider", sorted(PROVIDERS))
def test_a_request_the_spool_refused_can_be_retried(tmp_path: Path, provider: str) -> None:
    key = new_key(provider)
    body, headers = PROVIDERS[provider][1](key)
    full = config_for(tmp_path, provider, key, spool_max_bytes=1)
    status, answer = post(full, body, headers)
    assert (status, answer["error"]) == (503, "spool_unavailable")
    roomy = config_for(tmp_path, provider, key)
    assert post(roomy, body, headers)[0] == 200  # the byte-identical retry
    status, answer = post(roomy, body, headers)  # a replay of an acknowledged request
    assert (status, answer["error"]) == (401, "replayed_token")


@pytest.mark.parametrize("provider", sorted(PROVIDERS))
def test_a_replay_sent_to_another_receiver_sharing_postgres_is_refused(
    tmp_path: Path, provider: str, pg_url: str
) -> None:
    key = new_key(provider)
    body, headers = PROVIDERS[provider][1](key)
    hosts = [
        parse_config(
            {
                "data_dir": str(tmp_path / host),  # each host's own disk
                "spool": {"engine": "postgres", "url": pg_url},
                "sources": {"esp": {"provider": provider, PROVIDERS[provider][0]: key}},
            },
            env={},
        )
        for host in ("one", "two")
    ]
    assert post(hosts[0], body, headers)[0] == 200
    status, answer = post(hosts[1], body, headers)
    assert (status, answer["error"]) == (401, "replayed_token")
    assert not (tmp_path / "two" / "spool" / "replay.sqlite").exists()


@pytest.mark.parametrize("provider", sorted(PROVIDERS))
def test_an_unusable_replay_database_is_spool_unavailable(
    tmp_path: Path, provider: str, caplog: pytest.LogCaptureFixture
) -> None:
    """SQLite cannot open its file (a directory stands in its place; root ignores modes)."""
    key = new_key(provider)
    config = config_for(tmp_path, provider, key)
    (config.spool_dir / "replay.sqlite").mkdir(parents=True)
    with caplog.at_level(logging.ERROR, logger="ingest.intake.replay"):
        status, answer = post(config, *PROVIDERS[provider][1](key))
    assert (status, answer["error"]) == (503, "spool_unavailable")
    line = next(r.getMessage() for r in caplog.records if r.name == "ingest.intake.replay")
    assert str(config.spool_dir / "replay.sqlite") in line
    assert "unable to open database file" in line
