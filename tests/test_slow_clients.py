"""Slow clients straight against ``mailpulse serve``, with no proxy in front.

Gunicorn's threaded worker, used as documented, bounds neither the headers nor the body of a
request once its first bytes have arrived: a client trickling a byte a second holds a worker
thread for as long as it trickles. This is why the internet-facing deployment puts
deploy/nginx.conf in front (tests/test_nginx_proxy.py shows fifty such clients getting
nowhere there).
"""

from __future__ import annotations

import concurrent.futures
import json
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from tests.helpers import Server, event, running_server

pytestmark = pytest.mark.slow

THREADS = 2


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running_server(tmp_path_factory.mktemp("slow"), workers=1, threads=THREADS) as running:
        yield running


def _connect(server: Server) -> socket.socket:
    port = int(server.base_url.rsplit(":", 1)[1])
    return socket.create_connection(("127.0.0.1", port), timeout=30)


def _trickle(server: Server, stop: threading.Event) -> None:
    with _connect(server) as sock:
        for byte in b"POST /webhooks/in_house HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + bytes(99):
            if stop.wait(1.0):
                return
            sock.sendall(bytes([byte]))


def test_clients_trickling_a_byte_a_second_hold_every_thread_without_a_proxy(
    server: Server,
) -> None:
    stop = threading.Event()
    tricklers = [
        threading.Thread(target=_trickle, args=(server, stop), daemon=True)
        for _ in range(2 * THREADS)
    ]
    for thread in tricklers:
        thread.start()
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        try:
            time.sleep(2.0)  # each trickling client has sent a few bytes: threads are taken
            body = json.dumps(event("behind-the-slow")).encode()
            answer = pool.submit(server.post, body)
            time.sleep(3.0)
            assert not answer.done()  # waits as long as the clients keep trickling
        finally:
            stop.set()
            for thread in tricklers:
                thread.join(timeout=5)
        assert answer.result(timeout=30).status_code == 200  # served once they are gone
