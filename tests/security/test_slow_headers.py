"""Headers that stop arriving are answered 408 and free their thread (no slowloris).

One worker with two threads and a 2 s read timeout, so a handful of stalled clients would
hold every thread if reading headers had no deadline.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import Server, event, read_http_answer, running_server, signed_headers

pytestmark = pytest.mark.slow

TIMEOUT = 2  # receiver.read_timeout_seconds here
STALLED = 4  # twice the threads


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    directory = tmp_path_factory.mktemp("slow-headers")
    with running_server(directory, workers=1, threads=2, read_timeout_seconds=TIMEOUT) as running:
        yield running


def _connect(server: Server) -> socket.socket:
    port = int(server.base_url.rsplit(":", 1)[1])
    return socket.create_connection(("127.0.0.1", port), timeout=30)


def _request(server: Server, event_id: str) -> bytes:
    body = json.dumps(event(event_id)).encode()
    head = ["POST /webhooks/in_house HTTP/1.1", "Host: 127.0.0.1"]
    head += [f"{k}: {v}" for k, v in signed_headers(server.secret, body).items()]
    head += [f"Content-Length: {len(body)}"]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


def _assert_408(answer: tuple[int, dict[str, str], bytes]) -> None:
    status, headers, body = answer
    assert status == 408
    assert headers["Content-Type"] == "application/json"
    assert json.loads(body)["error"] == "request_timeout"


def test_headers_that_never_finish_are_answered_408_and_others_are_served(
    server: Server,
) -> None:
    stalled = []
    for n in range(STALLED):
        sock = _connect(server)
        sock.sendall(b"POST /webhooks/in_house HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Half: " + bytes(n))
        stalled.append(sock)
    started = time.monotonic()
    # Every thread is held by a stalled client for at most the read timeout, then served.
    response = server.post(event("after-slowloris"))
    assert response.status_code == 200, response.text
    assert time.monotonic() - started < 4 * TIMEOUT + 5
    for sock in stalled:
        _assert_408(read_http_answer(sock))
        sock.close()


def test_a_kept_alive_connection_that_stalls_mid_headers_is_answered_408(
    server: Server,
) -> None:
    with _connect(server) as sock:
        sock.sendall(_request(server, "keepalive-1"))
        status, _, body = read_http_answer(sock)
        assert status == 200, body
        sock.sendall(b"POST /webhooks/in_house HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        started = time.monotonic()
        _assert_408(read_http_answer(sock))
        assert time.monotonic() - started < TIMEOUT + 3


def test_no_traceback_in_the_log(server: Server) -> None:
    log = server.log()
    assert "Traceback" not in log and "Socket error" not in log, log[-2000:]


def test_a_deadline_on_reads_does_not_cut_a_slow_but_steady_body(
    server: Server, tmp_path: Path
) -> None:
    """Bytes arriving more often than the timeout keep the request alive."""
    request = _request(server, "slow-but-steady")
    with _connect(server) as sock:
        for start in range(0, len(request), len(request) // 5 + 1):
            sock.sendall(request[start : start + len(request) // 5 + 1])
            time.sleep(TIMEOUT / 2)
        status, _, body = read_http_answer(sock)
    assert status == 200, body
