"""Every row of DESIGN.md's status table, against the real server (gunicorn on loopback).

Each refusal carries ``{"error": code, "message": sentence}``; 429 and 503 carry Retry-After.
"""

from __future__ import annotations

import json
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.helpers import Server, event, lake_rows, mailpulse, running_server, signed_headers

EXTRA = """
[sources.office_only]
provider = "generic"
secret_env = "OFFICE_SECRET"
allow_ips = ["10.0.0.0/8", "2001:db8::/32"]

[sources.trickle]
provider = "generic"
secret_env = "OFFICE_SECRET"
rate_limit = "3/minute"

[sources.tiny]
provider = "generic"
secret_env = "OFFICE_SECRET"
max_body_bytes = 2048
"""

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    import os

    directory = tmp_path_factory.mktemp("status")
    secret = "module-" + os.urandom(8).hex()
    os.environ["OFFICE_SECRET"] = secret
    try:
        with running_server(directory, secret=secret, extra=EXTRA, workers=1) as running:
            yield running
    finally:
        os.environ.pop("OFFICE_SECRET", None)


def assert_error(response: requests.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"].startswith("application/json")
    body = response.json()
    assert body["error"] == code
    assert isinstance(body["message"], str) and body["message"]


def test_200_stored(server: Server) -> None:
    response = server.post(event("stored-1"))
    assert response.status_code == 200
    assert response.json()["status"] == "stored"


def test_200_for_a_duplicate(server: Server) -> None:
    body = json.dumps(event("dup-1")).encode()
    assert server.post(body).status_code == 200
    assert server.post(body).status_code == 200


def test_200_for_an_authentic_payload_that_goes_to_quarantine(server: Server) -> None:
    response = server.post(b'{"this is": "not an event"}')
    assert response.status_code == 200
    assert mailpulse("flush", config=server.config_path).returncode == 0
    reasons = [row["reason"] for row in lake_rows(server.data_dir, "quarantine")]
    assert any("no id" in reason for reason in reasons)


def test_404_unknown_source(server: Server) -> None:
    assert_error(server.post(event("x"), source="nobody"), 404, "unknown_source")


def test_404_unknown_path(server: Server) -> None:
    assert_error(requests.get(f"{server.base_url}/nothing-here", timeout=5), 404, "not_found")


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH", "OPTIONS"])
def test_405_method_other_than_post(server: Server, method: str) -> None:
    response = requests.request(method, f"{server.base_url}/webhooks/in_house", timeout=5)
    assert_error(response, 405, "method_not_allowed")
    assert response.headers["Allow"] == "POST"


def test_413_body_over_max_body_bytes(server: Server) -> None:
    body = json.dumps(event("big", reason="x" * 4096)).encode()
    assert_error(server.post(body, source="tiny"), 413, "payload_too_large")


def test_413_chunked_body_over_limit(server: Server) -> None:
    body = json.dumps(event("big", reason="x" * 8192)).encode()
    headers = signed_headers(server.secret, body)

    def chunks() -> Iterator[bytes]:
        for start in range(0, len(body), 1000):
            yield body[start : start + 1000]

    response = requests.post(
        f"{server.base_url}/webhooks/tiny", data=chunks(), headers=headers, timeout=10
    )
    assert_error(response, 413, "payload_too_large")


@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", ""],
)
def test_415_content_type_the_provider_never_sends(server: Server, content_type: str) -> None:
    body = json.dumps(event("ct")).encode()
    headers = {**signed_headers(server.secret, body), "Content-Type": content_type}
    assert_error(server.post(body, headers=headers), 415, "unsupported_media_type")


@pytest.mark.parametrize(
    ("mutate", "code"),
    [
        (lambda h: {k: v for k, v in h.items() if k != "X-Webhook-Signature"}, "missing_signature"),
        (lambda h: {**h, "X-Webhook-Signature": "sha256=" + "0" * 64}, "bad_signature"),
        (lambda h: {**h, "X-Webhook-Timestamp": "1000000000"}, "stale_timestamp"),
    ],
)
def test_401_missing_invalid_or_stale(server: Server, mutate: object, code: str) -> None:
    body = json.dumps(event("auth")).encode()
    headers = mutate(signed_headers(server.secret, body))  # type: ignore[operator]
    assert_error(server.post(body, headers=headers), 401, code)


def test_401_signed_with_another_key(server: Server) -> None:
    body = json.dumps(event("wrong-key")).encode()
    assert_error(
        server.post(body, headers=signed_headers("not-the-secret", body)), 401, "bad_signature"
    )


def test_403_client_ip_not_allowed(server: Server) -> None:
    assert_error(server.post(event("ip"), source="office_only"), 403, "forbidden_address")


def test_429_over_rate_limit_with_retry_after(server: Server) -> None:
    statuses = [server.post(event(f"rl-{n}"), source="trickle") for n in range(5)]
    assert [r.status_code for r in statuses[:3]] == [200, 200, 200]
    assert_error(statuses[3], 429, "rate_limited")
    assert int(statuses[3].headers["Retry-After"]) >= 1


def test_healthz_and_readyz(server: Server) -> None:
    assert requests.get(f"{server.base_url}/healthz", timeout=5).json() == {"status": "ok"}
    assert requests.get(f"{server.base_url}/readyz", timeout=5).status_code == 200


def test_metrics_count_requests_by_source_and_outcome(server: Server) -> None:
    server.post(event("metric-1"))
    text = requests.get(f"{server.base_url}/metrics", timeout=5).text
    assert 'mailpulse_requests_total{outcome="stored",source="in_house"}' in text
    assert "mailpulse_spool_bytes" in text
    assert "mailpulse_flush_lag_seconds" in text


def test_503_when_the_spool_cannot_be_written(tmp_path: Path) -> None:
    """A spool path that cannot hold files: 503 with Retry-After, never 200, nothing stored."""
    with running_server(tmp_path, workers=1) as server:
        spool = server.data_dir / "spool"
        shutil.rmtree(spool, ignore_errors=True)
        spool.write_text("not a directory")
        response = server.post(event("no-room"))
        assert_error(response, 503, "spool_unavailable")
        assert int(response.headers["Retry-After"]) > 0
        assert requests.get(f"{server.base_url}/readyz", timeout=5).status_code == 503
        spool.unlink()
        assert server.post(event("room-again")).status_code == 200
    assert server.process.returncode is not None


def test_503_when_the_spool_is_full(tmp_path: Path) -> None:
    """Past ``spool_max_bytes`` the receiver refuses rather than filling the disk."""
    with running_server(tmp_path, workers=1, spool_max_bytes=4000) as server:
        answers = [server.post(event(f"fill-{n}", reason="y" * 500)).status_code for n in range(12)]
        assert 200 in answers
        assert answers[-1] == 503
        assert set(answers) == {200, 503}
        stored = answers.count(200)
        assert mailpulse("flush", config=server.config_path).returncode == 0
        assert len(lake_rows(server.data_dir)) == stored


def test_server_still_answers_after_a_slow_loris_connection(server: Server) -> None:
    host, port = server.base_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as slow:
        slow.sendall(b"POST /webhooks/in_house HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")
        assert server.post(event("while-slow")).status_code == 200


@pytest.mark.parametrize(
    "raw",
    [
        b"NOT A REQUEST LINE\r\n\r\n",
        b"POST /webhooks/in_house HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: identity\r\n\r\n",
        b"POST /webhooks/in_house HTTP/1.1\r\nHost: x\r\nBad Header Name: 1\r\n\r\n",
        b"POST /webhooks/in_house HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\n\r\nzz\r\n",
    ],
    ids=["request-line", "transfer-coding", "header-name", "chunk-size"],
)
def test_malformed_http_is_refused_without_a_5xx_or_a_traceback(server: Server, raw: bytes) -> None:
    """Gunicorn refuses most of these before the app runs, with its own short page (behind
    deploy/nginx.conf they get nginx's JSON answer: tests/test_nginx_proxy.py)."""
    host, port = server.base_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as connection:
        connection.sendall(raw)
        answer = b""
        while chunk := connection.recv(65536):
            answer += chunk
    head, _, rest = answer.partition(b"\r\n\r\n")
    length = int(
        next(
            line.split(b":")[1]
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        )
    )
    body = rest[:length]  # the first answer; a broken stream may earn a second
    status = int(head.split(b" ")[1])
    assert 400 <= status < 500, answer
    assert b"Traceback" not in answer
    if b"Content-Type: application/json" in head:  # reached the app
        assert set(json.loads(body)) == {"error", "message"}
    else:
        assert status == 400 and b"Content-Type: text/html" in head and len(body) < 1000
