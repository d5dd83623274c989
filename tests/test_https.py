"""Direct HTTPS: ``mailpulse serve --certfile --keyfile`` on loopback with a test certificate."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.helpers import (
    Server,
    event,
    lake_rows,
    mailpulse,
    new_secret,
    signed_headers,
    start_server,
    write_config,
)
from tests.tls import self_signed

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return self_signed(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, tls: tuple[Path, Path]) -> Iterator[Server]:
    directory = tmp_path_factory.mktemp("https")
    secret = new_secret()
    config = write_config(directory, secret, flush_interval_seconds=3600)
    cert, key = tls
    running = start_server(
        config,
        directory,
        secret,
        args=["--certfile", str(cert), "--keyfile", str(key)],
        ca_file=cert,
    )
    try:
        yield running
    finally:
        running.stop()


def test_a_signed_event_is_stored_over_https(server: Server, tls: tuple[Path, Path]) -> None:
    body = json.dumps(event("over-tls")).encode()
    response = requests.post(
        f"{server.base_url}/webhooks/in_house",
        data=body,
        headers=signed_headers(server.secret, body),
        verify=str(tls[0]),
        timeout=10,
    )
    assert response.status_code == 200 and response.json()["status"] == "stored"
    assert server.base_url.startswith("https://")
    assert requests.get(f"{server.base_url}/readyz", verify=str(tls[0]), timeout=5).ok


def test_the_server_presents_the_configured_certificate(server: Server) -> None:
    """Against the system's CAs the handshake fails: it is our self-signed certificate."""
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(f"{server.base_url}/healthz", timeout=5)


def test_plain_http_on_the_tls_port_stores_nothing(server: Server) -> None:
    body = json.dumps(event("over-plain-http")).encode()
    port = int(server.base_url.rsplit(":", 1)[1])
    head = ["POST /webhooks/in_house HTTP/1.1", "Host: 127.0.0.1", f"Content-Length: {len(body)}"]
    head += [f"{k}: {v}" for k, v in signed_headers(server.secret, body).items()]
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode() + body)
        try:
            answer = sock.recv(4096)
        except OSError:  # reset by the TLS layer
            answer = b""
    assert not answer.startswith(b"HTTP/1.1 2")
    assert server.process.poll() is None


def test_only_the_https_event_reached_the_lake(server: Server) -> None:
    flushed = mailpulse("flush", config=server.config_path)
    assert flushed.returncode == 0, flushed.stderr
    ids = {row["event_id"].split(":")[-1] for row in lake_rows(server.data_dir)}
    raw = [json.loads(row["body"])["id"] for row in lake_rows(server.data_dir, "raw")]
    assert raw == ["over-tls"], (raw, ids)


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        (["--certfile", "{cert}"], "--certfile and --keyfile go together"),
        (["--keyfile", "{key}"], "--certfile and --keyfile go together"),
        (["--certfile", "/nonexistent/cert.pem", "--keyfile", "{key}"], "does not exist"),
        (["--certfile", "{cert}", "--keyfile", "{garbage}"], "cannot load the certificate and key"),
        (["--certfile", "{key}", "--keyfile", "{key}"], "cannot load the certificate and key"),
    ],
)
def test_tls_options_misused_give_one_clear_line(
    tls: tuple[Path, Path], tmp_path: Path, arguments: list[str], expected: str
) -> None:
    cert, key = tls
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n")
    config = write_config(tmp_path, new_secret())
    given = [a.format(cert=cert, key=key, garbage=garbage) for a in arguments]
    result = mailpulse("serve", "--port", "0", *given, config=config, timeout=30)
    assert result.returncode == 2
    assert expected in result.stderr
    assert "Traceback" not in result.stderr


def test_a_renewed_certificate_is_served_to_the_next_connection(tmp_path: Path) -> None:
    """The files are read for each new connection: renewing them needs no restart."""
    (tmp_path / "first").mkdir()
    first = self_signed(tmp_path / "first")
    secret = new_secret()
    config = write_config(tmp_path, secret, flush_interval_seconds=3600)
    cert, key = tmp_path / "live-cert.pem", tmp_path / "live-key.pem"
    cert.write_bytes(first[0].read_bytes())
    key.write_bytes(first[1].read_bytes())
    server = start_server(
        config,
        tmp_path,
        secret,
        workers=1,
        args=["--certfile", str(cert), "--keyfile", str(key)],
        ca_file=first[0],
    )
    try:
        (tmp_path / "second").mkdir()
        renewed = self_signed(tmp_path / "second")
        with pytest.raises(requests.exceptions.SSLError):  # not yet: the first is served
            requests.get(f"{server.base_url}/healthz", verify=str(renewed[0]), timeout=5)
        key.write_bytes(renewed[1].read_bytes())
        cert.write_bytes(renewed[0].read_bytes())
        response = requests.get(f"{server.base_url}/healthz", verify=str(renewed[0]), timeout=5)
        assert response.ok
        assert server.process.poll() is None
    finally:
        server.stop()
