"""Kept-alive requests answered on the worker's polling thread (``ingest/inline.py``).

The worker runs here in-process, its loop in a thread, serving the real receiver on a
loopback socket, so the spool's syncs can be watched and held (``tests/syncs.py``); the
clients are plain sockets speaking HTTP/1.1.
"""

from __future__ import annotations

import errno
import json
import os
import select
import selectors
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
from gunicorn.config import Config as GunicornConfig
from gunicorn.glogging import Logger
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest import create_app
from ingest.inline import PIECES_WAIT_SECONDS
from ingest.metrics import REQUESTS
from ingest.worker import DeadlineThreadWorker
from tests.helpers import (
    Server,
    event,
    load_config,
    new_secret,
    read_http_answer,
    running_server,
    signed_headers,
    write_config,
)
from tests.syncs import SyncSpy

THREADS = 2


def raw_webhook(secret: str, event_id: str, *, chunked: bool = False) -> tuple[bytes, bytes]:
    """A webhook POST to ``in_house`` signed with ``secret``, as its head (up to the blank
    line) and its body, framed by ``Content-Length`` or in one chunk."""
    body = json.dumps(event(event_id)).encode()
    lines = ["POST /webhooks/in_house HTTP/1.1", "Host: mailpulse"]
    lines += [f"{name}: {value}" for name, value in signed_headers(secret, body).items()]
    if chunked:
        lines.append("Transfer-Encoding: chunked")
        body = b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)
    else:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode(), body


@dataclass
class Worker:
    """The worker running in a thread, and what it serves."""

    address: tuple[str, int]
    secret: str
    spool_dir: Path
    process: DeadlineThreadWorker
    clients: list[socket.socket] = field(default_factory=list)

    def request(self, event_id: str, *, signed: bool = True) -> bytes:
        """The bytes of one signed (or wrongly signed) webhook request, kept alive."""
        return b"".join(raw_webhook(self.secret if signed else new_secret(), event_id))

    def connect(self) -> socket.socket:
        """A connection that has had one request answered: from now on it is a kept-alive
        connection."""
        client = socket.create_connection(self.address, timeout=10)
        self.clients.append(client)  # closed when the test ends
        client.sendall(self.request(f"first-{client.getsockname()[1]}"))
        assert read_http_answer(client)[0] == 200
        return client

    def records(self) -> list[str]:
        """Request ids of every record in the spool."""
        from ingest.segments import list_segments, read_segment

        found = []
        for path in list_segments(self.spool_dir):
            found += [r.request_id for r in read_segment(path, 0, 1 << 30).records]
        return found


def counted(outcome: str) -> float:
    """This process's ``mailpulse_requests_total`` for the test source and ``outcome``."""
    value: float = REQUESTS.labels("in_house", outcome)._value.get()
    return value


def answered(client: socket.socket, within: float) -> bool:
    """Whether ``client`` has bytes to read within ``within`` seconds."""
    return bool(select.select([client], [], [], within)[0])


@pytest.fixture
def worker(tmp_path: Path) -> Iterator[Worker]:
    secret = new_secret()
    config = load_config(write_config(tmp_path, secret))
    app = create_app(config)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    cfg = GunicornConfig()
    cfg.set("threads", THREADS)
    cfg.set("workers", 1)
    cfg.set("keepalive", 5)
    process = DeadlineThreadWorker(1, os.getppid(), [listener], _App(app), 30, cfg, Logger(cfg))
    # What init_process does, without the signal handlers only a main thread may install.
    process.prepare_inline()
    process.tpool = process.get_thread_pool()
    process.poller = selectors.DefaultSelector()
    process.method_queue.init()
    process.load_wsgi()
    loop = threading.Thread(target=process.run, name="worker-loop", daemon=True)
    loop.start()
    served = Worker(listener.getsockname(), secret, config.spool_dir, process)
    try:
        yield served
    finally:
        for client in served.clients:
            client.close()
        process.alive = False
        process.method_queue.defer(lambda: None)  # wake the loop up
        loop.join(10)
        process.tmp.close()
        app.extensions["mailpulse"].spool.close()


class _App:
    """Gunicorn's application object, reduced to what a worker asks of it."""

    def __init__(self, wsgi: Any) -> None:
        self._wsgi = wsgi

    def wsgi(self) -> Any:
        return self._wsgi


def test_kept_alive_requests_wait_for_one_shared_sync(
    worker: Worker, monkeypatch: pytest.MonkeyPatch
) -> None:
    clients = [worker.connect() for _ in range(8)]
    stored_before = counted("stored")
    spy = SyncSpy(monkeypatch)
    spy.hold = threading.Event()
    for number, client in enumerate(clients):
        client.sendall(worker.request(f"kept-{number}"))
    # The disk has not answered: nobody is told "stored", and nothing is counted as stored.
    assert not any(answered(client, 0.3) for client in clients)
    assert counted("stored") == stored_before
    spy.hold.set()
    answers = [read_http_answer(client) for client in clients]
    assert [status for status, _, _ in answers] == [200] * len(clients), answers
    ids = [json.loads(body)["request_id"] for _, _, body in answers]
    assert set(ids) <= set(worker.records())
    assert counted("stored") == stored_before + len(clients)
    # One sync for the request that arrived first, one for the seven that came meanwhile:
    # never a sync per request.
    assert 1 <= spy.syncs <= 3
    assert spy.calls.count("fdatasync") + spy.calls.count("pwritev+dsync") == spy.syncs
    for client in clients:
        client.close()


def test_a_failed_sync_answers_503_and_acknowledges_nothing(
    worker: Worker, monkeypatch: pytest.MonkeyPatch
) -> None:
    clients = [worker.connect() for _ in range(3)]
    before = set(worker.records())
    stored_before, refused_before = counted("stored"), counted("spool_unavailable")
    real_pwritev = os.pwritev

    def broken_disk(fd: int, buffers: Any, offset: int, flags: int = 0) -> int:
        raise OSError(errno.EIO, "input/output error")

    monkeypatch.setattr(os, "pwritev", broken_disk)
    for number, client in enumerate(clients):
        client.sendall(worker.request(f"lost-{number}"))
    for client in clients:
        status, headers, body = read_http_answer(client)
        assert status == 503, body
        assert int(headers["Retry-After"]) > 0 and headers["Connection"] == "close"
        assert json.loads(body)["error"] == "spool_unavailable"
        assert client.recv(1) == b""  # closed after the 503
    assert counted("stored") == stored_before
    assert counted("spool_unavailable") == refused_before + len(clients)
    monkeypatch.setattr(os, "pwritev", real_pwritev)
    # The disk is back: the next request is stored (in a new segment) and answered 200.
    client = worker.connect()
    client.sendall(worker.request("after"))
    assert read_http_answer(client)[0] == 200
    assert len(set(worker.records()) - before) == 2  # the two "first" requests after the failure


def test_requests_in_pieces_still_share_one_sync(
    worker: Worker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Many clients write the headers and the body separately: those requests wait in the
    poller for their bodies and are answered inline all the same."""
    clients = [worker.connect() for _ in range(8)]
    spy = SyncSpy(monkeypatch)
    spy.hold = threading.Event()
    pieces = [raw_webhook(worker.secret, f"pieces-{n}") for n in range(8)]
    for client, (head, _) in zip(clients, pieces, strict=True):
        client.sendall(head)
    time.sleep(0.2)
    for client, (_, body) in zip(clients, pieces, strict=True):
        client.sendall(body)
    assert not any(answered(client, 0.3) for client in clients)
    spy.hold.set()
    assert [read_http_answer(client)[0] for client in clients] == [200] * len(clients)
    assert 1 <= spy.syncs <= 3


def test_a_request_still_in_pieces_after_the_wait_is_read_by_the_pool(worker: Worker) -> None:
    client = worker.connect()
    head, body = raw_webhook(worker.secret, "slow")
    client.sendall(head)
    time.sleep(PIECES_WAIT_SECONDS + 0.3)
    assert worker.process._in_pieces == []  # handed over to a pool thread
    client.sendall(body)
    assert read_http_answer(client)[0] == 200


def test_requests_in_pieces_pipelined_or_chunked_are_all_answered(worker: Worker) -> None:
    client = worker.connect()
    # Headers now, body later: the request waits in the poller for its rest.
    head, body = raw_webhook(worker.secret, "split")
    client.sendall(head)
    time.sleep(0.2)
    client.sendall(body)
    assert read_http_answer(client)[0] == 200
    # Two requests in one write: both answered, in order, on the same connection.
    client.sendall(worker.request("pipelined-1") + worker.request("pipelined-2", signed=False))
    assert read_http_answer(client)[0] == 200
    assert read_http_answer(client)[0] == 401
    # A chunked body on a kept-alive connection.
    client.sendall(b"".join(raw_webhook(worker.secret, "chunked", chunked=True)))
    assert read_http_answer(client)[0] == 200
    client.close()


def test_refusals_are_answered_without_a_sync(
    worker: Worker, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = worker.connect()
    spy = SyncSpy(monkeypatch)
    client.sendall(worker.request("forged", signed=False))
    status, _, body = read_http_answer(client)
    assert status == 401, body
    assert spy.syncs == 0
    # The connection is still usable.
    client.sendall(worker.request("genuine"))
    assert read_http_answer(client)[0] == 200
    assert spy.syncs == 1
    client.close()


def test_a_closed_kept_alive_connection_is_let_go(worker: Worker) -> None:
    clients = [worker.connect() for _ in range(THREADS * 2)]
    assert worker.process.nr_conns == len(clients)
    for client in clients:
        client.close()
    # The worker counts its connections to decide whether to accept more: each one the
    # client closed must leave the count.
    deadline = time.monotonic() + 5
    while worker.process.nr_conns and time.monotonic() < deadline:
        time.sleep(0.05)
    assert worker.process.nr_conns == 0


@pytest.mark.parametrize("how", ["kept-alive", "new-connection", "in-pieces"])
def test_a_webhook_is_answered_while_every_pool_thread_is_stuck(tmp_path: Path, how: str) -> None:
    """On the real server: one pool thread, held by a client that sends half its headers and
    stops. A webhook on a kept-alive or a new connection, or sent as headers then body, does
    not wait for that thread."""
    with running_server(tmp_path, workers=1, threads=1, read_timeout_seconds=8) as server:
        session = requests.Session()

        def post(event_id: str) -> requests.Response:
            body = json.dumps(event(event_id)).encode()
            headers = signed_headers(server.secret, body)
            url = f"{server.base_url}/webhooks/in_house"
            return session.post(url, data=body, headers=headers, timeout=30)

        assert post("before").status_code == 200
        host, port = server.base_url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=20) as stalled:
            stalled.sendall(b"POST /webhooks/in_house HTTP/1.1\r\nHost: x\r\nContent-Le")
            # The rest of those headers is waited for in the poller first, then by the pool
            # thread, which now blocks on them until the read deadline.
            time.sleep(PIECES_WAIT_SECONDS + 0.5)
            started = time.monotonic()
            if how == "in-pieces":
                status = post_in_pieces(server, "during")
            else:
                if how == "new-connection":
                    session.close()  # the next request opens a new connection
                status = post("during").status_code
            waited = time.monotonic() - started
            assert status == 200
            assert waited < 4, f"answered after {waited:.1f} s: it waited for the pool"
            assert read_http_answer(stalled)[0] == 408  # the deadline still holds
        session.close()


def post_in_pieces(server: Server, event_id: str) -> int:
    """POST a signed webhook on a new connection, headers and body in two writes 0.2 s apart;
    the answer's status."""
    head, body = raw_webhook(server.secret, event_id)
    host, port = server.base_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=20) as client:
        client.sendall(head)
        time.sleep(0.2)
        client.sendall(body)
        return read_http_answer(client)[0]


_PREFIXES = [
    b"",
    b"POST /webhooks/in_house HTTP/1.1\r\nHost: x\r\n",
    b"POST /webhooks/in_house HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    b"Content-Length: 12\r\n\r\n",
    b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n",
]


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(prefix=st.sampled_from(_PREFIXES), tail=st.binary(max_size=600))
def test_random_bytes_on_a_kept_alive_connection_never_get_a_5xx(
    worker: Worker, prefix: bytes, tail: bytes
) -> None:
    before = set(worker.records())
    client = worker.connect()
    client.sendall(prefix + tail)
    client.shutdown(socket.SHUT_WR)  # nothing more is coming: whatever was sent is answered
    reply = b""
    while chunk := client.recv(65536):
        reply += chunk
    statuses = [int(line[9:12]) for line in reply.split(b"\r\n") if line.startswith(b"HTTP/1.")]
    assert all(status < 500 for status in statuses), reply[:300]
    # Only the connection's own first (signed) request was stored.
    assert len(set(worker.records()) - before) == 1
