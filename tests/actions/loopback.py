"""A destination for actions: a real HTTP server on loopback that records what it receives.

It answers from a plan (a status, a delay, headers, a body), in turn per request, the last
entry repeating; ``plan`` may also be a function of the request. Tests read what arrived,
with the time it arrived, and can wait until some condition holds.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson


@dataclass
class Received:
    """One request as the server read it; header names lower case."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    at: float  # time.time() when it arrived

    def json(self) -> Any:
        """The body parsed as JSON."""
        return orjson.loads(self.body)


@dataclass
class Reply:
    """One answer: ``delay`` seconds first (to outlast a client's timeout)."""

    status: int = 200
    body: bytes = b"ok"
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


Plan = list[Reply] | Callable[[Received], Reply]


class Destination(ThreadingHTTPServer):
    """Records requests and answers by ``plan``."""

    daemon_threads = True

    def __init__(self, port: int = 0) -> None:
        super().__init__(("127.0.0.1", port), _Handler)
        self.received: list[Received] = []
        self.plan: Plan = [Reply()]
        self._served = 0
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        """Base URL of the server."""
        return f"http://127.0.0.1:{self.server_address[1]}"

    def reply_for(self, request: Received) -> Reply:
        """Record ``request`` and pick its answer."""
        with self._lock:
            self.received.append(request)
            plan = self.plan
            if not callable(plan):
                reply = plan[min(self._served, len(plan) - 1)]
                self._served += 1
                return reply
        return plan(request)  # outside the lock: requests are answered concurrently

    def wait_until(self, condition: Callable[[list[Received]], bool], timeout: float) -> bool:
        """Poll ``condition`` over what arrived until it holds or ``timeout`` passes."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if condition(list(self.received)):
                    return True
            time.sleep(0.02)
        with self._lock:
            return condition(list(self.received))

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Quiet: a client that gave up leaves a broken pipe behind."""


class _Handler(BaseHTTPRequestHandler):
    server: Destination
    protocol_version = "HTTP/1.1"
    # Headers and body leave in two writes: with Nagle's algorithm on, the body would wait
    # for the client's delayed ACK of the headers (about 40 ms a request on Linux).
    disable_nagle_algorithm = True

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        if len(body) < length:  # the sender died mid-request: nothing arrived, as for any server
            self.close_connection = True
            return
        request = Received(
            method=self.command,
            path=self.path,
            headers={k.lower(): v for k, v in self.headers.items()},
            body=body,
            at=time.time(),
        )
        reply = self.server.reply_for(request)
        if reply.delay:
            time.sleep(reply.delay)
        self.send_response(reply.status)
        for name, value in reply.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(reply.body)))
        self.end_headers()
        self.wfile.write(reply.body)

    do_POST = do_PUT = do_GET = _serve

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet."""


@contextmanager
def destination(plan: Plan | None = None, port: int = 0) -> Iterator[Destination]:
    """A running :class:`Destination`, shut down afterwards."""
    server = Destination(port)
    if plan is not None:
        server.plan = plan
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.daemon = True
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
