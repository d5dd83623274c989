"""The example nginx config (deploy/nginx.conf), run for real in front of the receiver.

nginx (Debian's package, installed by scripts/system-deps.sh) terminates TLS with a test
certificate and proxies to ``mailpulse serve`` with ``trusted_proxy_hops = 1``.
"""

from __future__ import annotations

import json
import os
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from mailpulse.demo import free_port
from tests import nginx
from tests.helpers import (
    REPO,
    Server,
    event,
    lake_rows,
    mailpulse,
    read_http_answer,
    running_server,
    signed_headers,
)
from tests.tls import self_signed

pytestmark = pytest.mark.slow

EXAMPLE = REPO / "deploy" / "nginx.conf"
SOURCES = """
[sources.local_only]
provider = "generic"
secret_env = "NGINX_TEST_SECRET"
allow_ips = ["127.0.0.1/32"]

[sources.documentation_net]
provider = "generic"
secret_env = "NGINX_TEST_SECRET"
allow_ips = ["203.0.113.0/24"]
"""


@dataclass
class Proxy:
    url: str
    port: int
    ca_file: str
    server: Server

    def post(self, source: str, body: bytes, **headers: str) -> requests.Response:
        return requests.post(
            f"{self.url}/webhooks/{source}",
            data=body,
            headers={**signed_headers(self.server.secret, body), **headers},
            verify=self.ca_file,
            timeout=30,
        )


def _site_config(directory: Path, listen: int, upstream: int, cert: Path, key: Path) -> Path:
    """The example, pointed at test ports and certificate: the site config nginx serves."""
    example = EXAMPLE.read_text()
    for old, new in [
        ("listen 443 ssl;", f"listen 127.0.0.1:{listen} ssl;"),
        ("server 127.0.0.1:8025;", f"server 127.0.0.1:{upstream};"),
        ("/etc/ssl/certs/webhooks.example.com.pem", str(cert)),
        ("/etc/ssl/private/webhooks.example.com.key", str(key)),
    ]:
        assert old in example, f"deploy/nginx.conf no longer has {old!r}"
        example = example.replace(old, new)
    site = directory / "mailpulse.conf"
    site.write_text(example)
    return site


@pytest.fixture(scope="module")
def proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proxy]:
    directory = tmp_path_factory.mktemp("nginx")
    cert, key = self_signed(directory)
    secret = "nginx-" + os.urandom(12).hex()
    os.environ["NGINX_TEST_SECRET"] = secret
    with running_server(
        directory, secret=secret, extra=SOURCES, workers=1, threads=2, trusted_proxy_hops=1
    ) as server:
        port = free_port()
        upstream = int(server.base_url.rsplit(":", 1)[1])
        site = _site_config(directory, port, upstream, cert, key)
        url = f"https://127.0.0.1:{port}"
        try:
            with nginx.running(directory, site, url, str(cert)):
                yield Proxy(url, port, str(cert), server)
        finally:
            os.environ.pop("NGINX_TEST_SECRET", None)


def test_a_signed_event_reaches_the_lake_through_nginx(proxy: Proxy) -> None:
    response = proxy.post("in_house", json.dumps(event("via-nginx")).encode())
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "stored"


def test_a_forged_forwarded_for_changes_nothing(proxy: Proxy) -> None:
    """nginx appends the address it saw; with one trusted hop that is the client address."""
    forged = {"X-Forwarded-For": "203.0.113.9"}
    allowed = proxy.post("local_only", json.dumps(event("forged-1")).encode(), **forged)
    assert allowed.status_code == 200, allowed.text
    refused = proxy.post("documentation_net", json.dumps(event("forged-2")).encode(), **forged)
    assert refused.status_code == 403 and refused.json()["error"] == "forbidden_address"


def test_metrics_and_other_paths_are_not_served(proxy: Proxy) -> None:
    for path in ("/metrics", "//metrics", "/metrics/", "/metrics?x=1", "/", "/webhooks"):
        response = requests.get(f"{proxy.url}{path}", verify=proxy.ca_file, timeout=10)
        assert response.status_code == 404, path
        assert response.json()["error"] == "not_found"
    assert "mailpulse_requests" in requests.get(f"{proxy.server.base_url}/metrics", timeout=5).text


def test_a_body_over_the_limit_is_refused_in_json(proxy: Proxy) -> None:
    response = proxy.post("in_house", b"x" * (12 * 1024 * 1024))
    assert response.status_code == 413
    assert response.json()["error"] == "payload_too_large"


def test_stalled_clients_wait_in_nginx_not_in_the_receiver(proxy: Proxy) -> None:
    """Twenty bodies that never finish, against a receiver with two threads: nginx holds
    them, and an authentic request still goes straight through."""
    context = ssl.create_default_context(cafile=proxy.ca_file)
    stalled = []
    for n in range(20):
        raw = socket.create_connection(("127.0.0.1", proxy.port), timeout=10)
        sock = context.wrap_socket(raw, server_hostname="localhost")
        head = "POST /webhooks/in_house HTTP/1.1\r\nHost: localhost\r\nContent-Length: 1000\r\n"
        sock.sendall(f'{head}Content-Type: application/json\r\n\r\n{{"id": {n}'.encode())
        stalled.append(sock)
    try:
        started = time.monotonic()
        response = proxy.post("in_house", json.dumps(event("past-the-stalled")).encode())
        assert response.status_code == 200
        assert time.monotonic() - started < 5.0  # a held thread would take read_timeout (10 s)
    finally:
        for sock in stalled:
            sock.close()


def test_malformed_http_is_answered_in_json(proxy: Proxy) -> None:
    context = ssl.create_default_context(cafile=proxy.ca_file)
    raw = socket.create_connection(("127.0.0.1", proxy.port), timeout=10)
    with context.wrap_socket(raw, server_hostname="localhost") as sock:
        head = b"POST /webhooks/in_house HTTP/1.1\r\nHost: localhost\r\n"
        sock.sendall(head + b"Content-Length: ab\r\n\r\n")  # not a number
        status, headers, body = read_http_answer(sock)
    assert status == 400
    assert headers["Content-Type"] == "application/json"
    assert json.loads(body)["error"] == "bad_request"


TRICKLING = 50  # against a receiver with two threads


def _trickle(proxy: Proxy, stop: threading.Event) -> None:
    """A client sending a request a byte a second until ``stop``."""
    context = ssl.create_default_context(cafile=proxy.ca_file)
    raw = socket.create_connection(("127.0.0.1", proxy.port), timeout=10)
    with context.wrap_socket(raw, server_hostname="localhost") as sock:
        request = b"POST /webhooks/in_house HTTP/1.1\r\nHost: localhost\r\nX-Slow: " + b"a" * 100
        for byte in request:
            if stop.wait(1.0):
                return
            sock.sendall(bytes([byte]))


def test_clients_trickling_a_byte_a_second_wait_in_nginx(proxy: Proxy) -> None:
    """Fifty clients trickling their headers: a 380 KB batch, a chunked body and a plain
    event, all over TLS, are answered at once meanwhile."""
    stop = threading.Event()
    tricklers = [
        threading.Thread(target=_trickle, args=(proxy, stop), daemon=True) for _ in range(TRICKLING)
    ]
    for thread in tricklers:
        thread.start()
    try:
        time.sleep(2.0)  # every trickling client has sent its first bytes
        batch = json.dumps([event(f"batch-{n}", note="x" * 300) for n in range(1000)]).encode()
        assert len(batch) > 380_000
        started = time.monotonic()
        assert proxy.post("in_house", batch).status_code == 200
        body = json.dumps(event("chunked-past-the-slow")).encode()
        chunked = requests.post(
            f"{proxy.url}/webhooks/in_house",
            data=iter([body[:10], body[10:]]),  # a generator: sent chunked
            headers=signed_headers(proxy.server.secret, body),
            verify=proxy.ca_file,
            timeout=30,
        )
        assert chunked.status_code == 200, chunked.text
        single = proxy.post("in_house", json.dumps(event("single-past-the-slow")).encode())
        assert single.status_code == 200
        assert time.monotonic() - started < 5.0
    finally:
        stop.set()
        for thread in tricklers:
            thread.join(timeout=5)


def test_only_authenticated_requests_were_stored(proxy: Proxy) -> None:
    flushed = mailpulse("flush", config=proxy.server.config_path)
    assert flushed.returncode == 0, flushed.stderr
    rows = lake_rows(proxy.server.data_dir, "raw")
    ids = [json.loads(row["body"]) for row in rows]
    assert sorted(item["id"] for item in ids if isinstance(item, dict)) == [
        "chunked-past-the-slow",
        "forged-1",
        "past-the-stalled",
        "single-past-the-slow",
        "via-nginx",
    ]
    assert [len(item) for item in ids if isinstance(item, list)] == [1000]
    # What mailpulse saw: nginx's address as the client, the forged entry kept only as text.
    forged = next(
        row
        for row, item in zip(rows, ids, strict=True)
        if isinstance(item, dict) and item["id"] == "forged-1"
    )
    headers = json.loads(forged["headers"])
    assert forged["remote_addr"] == "127.0.0.1"
    assert headers["x-forwarded-for"] == "203.0.113.9, 127.0.0.1"
    assert headers["x-forwarded-proto"] == "https"
