"""Gunicorn's threaded worker with a deadline on every read, headers included.

Gunicorn's ``gthread`` worker waits a few seconds for a new connection's first byte without
taking a thread, but once a request has started it reads the request line and headers with
no deadline: a client that sends half a header line and stops holds a worker thread forever,
and a handful of them stop the receiver (a "slowloris"). The receiver already bounds body
reads with ``receiver.read_timeout_seconds`` (answered 408); this worker applies the same
deadline to every read and write on the connection, so headers that stop arriving are
answered 408 too and the thread is let go.

It also spreads connections over the workers. All workers accept from one listening socket,
and whichever wakes first takes the connection: a burst of new keep-alive connections (an ESP
opening its pool, a proxy restarting) can all land on one worker, which then serves every
request while its siblings idle (measured: all 16 of wrk's connections on one of two workers,
half the throughput). A worker that already holds a connection per thread leaves new ones in
the kernel's queue for ``ACCEPT_DEFER_SECONDS``, for a sibling with a free thread to take,
then accepts at once those that no sibling took.

Selected by ``python -m ingest.server`` as ``worker_class``, with :func:`deadline_ssl_context`
as gunicorn's ``ssl_context`` hook when it serves TLS.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import time
from collections.abc import Callable
from typing import Any

import orjson
from gunicorn.http.errors import NoMoreData
from gunicorn.workers.gthread import ThreadWorker

#: How long a worker holding a connection per thread leaves a new connection to its siblings.
ACCEPT_DEFER_SECONDS = 0.02


def _answer_timeout(sock: socket.socket, deadline: float) -> NoMoreData:
    """Answer 408 on ``sock`` and return what to raise: gunicorn takes it as a client that
    went away, closes the connection quietly and frees the thread."""
    body = orjson.dumps(
        {
            "error": "request_timeout",
            "message": f"the request headers stopped arriving for {deadline:g} s; send them whole",
        }
    )
    head = (
        "HTTP/1.1 408 Request Timeout\r\nConnection: close\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    with contextlib.suppress(OSError):  # the client is gone too: closing is all that is left
        sock.sendall(head.encode("latin-1") + body)
    return NoMoreData(b"")


class _Deadline(socket.socket):
    """What both kinds of client socket share: a deadline whenever they block.

    Gunicorn switches a connection between non-blocking (while it waits in the poller) and
    blocking (while a thread reads it); here "blocking" means "blocking for at most
    ``deadline`` seconds". While the application runs it sets its own timeout on the socket
    (``environ["gunicorn.socket"]``) and handles a timeout itself; outside it, a read that
    times out means the headers stopped arriving.
    """

    deadline: float = 10.0
    in_app: bool = False

    def setblocking(self, flag: bool) -> None:
        if flag:
            self.settimeout(self.deadline)
        else:
            super().setblocking(False)

    def recv(self, *args: Any) -> bytes:
        try:
            return super().recv(*args)
        except TimeoutError:
            if self.in_app:
                raise  # the receiver answers a body that stopped arriving itself
            raise _answer_timeout(self, self.deadline) from None


class _DeadlineSocket(_Deadline):
    """A plain client socket with :class:`_Deadline`."""

    @classmethod
    def adopt(cls, sock: socket.socket, deadline: float) -> _DeadlineSocket:
        """Take over ``sock``'s connection (the old object no longer owns it)."""
        adopted = cls(sock.family, sock.type, sock.proto, fileno=sock.detach())
        adopted.deadline = deadline
        adopted.setblocking(False)  # as gunicorn left it: waiting in the poller
        return adopted


class _DeadlineSSLSocket(_Deadline, ssl.SSLSocket):
    """A TLS client socket with :class:`_Deadline` (``--certfile``): made by the SSL context
    of :func:`deadline_ssl_context`, it inherits the plain socket's deadline when wrapped and
    keeps it on every later request of a kept-alive connection."""


def deadline_ssl_context(config: Any, default_factory: Callable[[], ssl.SSLContext]) -> Any:
    """Gunicorn's ``ssl_context`` hook: its usual context, making deadline sockets."""
    context = default_factory()
    context.sslsocket_class = _DeadlineSSLSocket
    return context


class DeadlineThreadWorker(ThreadWorker):  # type: ignore[misc]
    """``gthread`` with :class:`_DeadlineSocket` connections."""

    read_deadline = _Deadline.deadline
    _defer_until = 0.0  # not accepting before this (monotonic seconds); 0: not deferring

    def load_wsgi(self) -> None:
        """Load the app, then read its ``receiver.read_timeout_seconds`` once for every
        connection of this worker (another WSGI app keeps the default)."""
        super().load_wsgi()
        config = getattr(self.wsgi, "config", {}).get("MAILPULSE")
        if config is not None:
            self.read_deadline = float(config.receiver.read_timeout_seconds)
        _DeadlineSSLSocket.deadline = self.read_deadline  # one configuration per process

    def accept(self, listener: Any) -> None:
        """Accept a connection, unless a sibling with a free thread should take it first."""
        if self.cfg.workers > 1 and self.nr_conns >= self.cfg.threads:
            self._defer_until = time.monotonic() + ACCEPT_DEFER_SECONDS
            self.set_accept_enabled(False)
            return
        super().accept(listener)

    def set_accept_enabled(self, enabled: bool) -> None:
        """gthread turns accepting back on at every turn of its loop; not while deferring."""
        super().set_accept_enabled(enabled and not self._defer_until)

    def wait_for_and_dispatch_events(self, timeout: float) -> None:
        """Wake up when a deferral ends, and take the connections no sibling took."""
        if self._defer_until:
            remaining = self._defer_until - time.monotonic()
            if remaining > 0:
                timeout = min(timeout, remaining)
            else:
                self._defer_until = 0.0
                for listener in self.sockets if self.alive else ():  # none while stopping
                    self._accept_waiting(listener)
        super().wait_for_and_dispatch_events(timeout)

    def _accept_waiting(self, listener: Any) -> None:
        """Accept every connection waiting on ``listener`` now, whatever this worker holds."""
        while self.nr_conns < self.worker_connections:
            held = self.nr_conns
            super().accept(listener)  # a connection more, or none waiting (EAGAIN)
            if self.nr_conns == held:
                return

    def enqueue_req(self, conn: Any) -> None:
        if not isinstance(conn.sock, _Deadline):
            conn.sock = _DeadlineSocket.adopt(conn.sock, self.read_deadline)
        super().enqueue_req(conn)

    def handle_request(self, req: Any, conn: Any) -> Any:
        sock = conn.sock
        if isinstance(sock, _Deadline):
            sock.in_app = True
        try:
            return super().handle_request(req, conn)
        finally:
            if isinstance(sock, _Deadline):
                sock.in_app = False
                sock.settimeout(sock.deadline)  # the app may have changed it for its body read
