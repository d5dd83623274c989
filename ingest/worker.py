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

A plain HTTP/1.1 request that arrives whole, on a new or a kept-alive connection, is answered
on the polling thread itself, many to a sync (:mod:`ingest.inline`); everything else goes to
the thread pool. So a new connection waits for its first bytes in the poller, not in a thread.

Selected by ``python -m ingest.server`` as ``worker_class``, with :func:`deadline_ssl_context`
as gunicorn's ``ssl_context`` hook when it serves TLS.
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import ssl
import time
from collections.abc import Callable
from concurrent.futures import Future
from datetime import datetime
from functools import partial
from typing import Any

from gunicorn.http import wsgi
from gunicorn.http.errors import NoMoreData
from gunicorn.workers.gthread import ThreadWorker

from ingest import inline
from ingest.deferred_sync import DEFERRED_SYNC, DeferredSync
from ingest.http_errors import raw_error_answer

#: How long a worker holding a connection per thread leaves a new connection to its siblings.
ACCEPT_DEFER_SECONDS = 0.02


def _answer_timeout(sock: socket.socket, deadline: float) -> NoMoreData:
    """Answer 408 on ``sock`` and return what to raise: gunicorn takes it as a client that
    went away, closes the connection quietly and frees the thread."""
    message = f"the request headers stopped arriving for {deadline:g} s; send them whole"
    answer = raw_error_answer(408, "Request Timeout", "request_timeout", message)
    with contextlib.suppress(OSError):  # the client is gone too: closing is all that is left
        sock.sendall(answer)
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

    alive: bool  # gunicorn's: False once the worker is stopping
    read_deadline = _Deadline.deadline
    _defer_until = 0.0  # not accepting before this (monotonic seconds); 0: not deferring

    def init_process(self) -> None:
        self.prepare_inline()
        super().init_process()

    def prepare_inline(self) -> None:
        """Set up what answering inline needs (before the loop runs)."""
        self._deferred = DeferredSync()  # records staged by this turn's inline requests
        self._held: list[tuple[Any, bytes, bool]] = []  # their answers: conn, bytes, keep-alive
        self._in_pieces: list[Any] = []  # connections waiting in the poller for the rest
        # Plain HTTP/1.1 only: a TLS handshake, or HTTP/2 sniffing, happens in a pool thread.
        h2c = getattr(self.cfg, "http2_cleartext", None) not in (None, "off")
        self._plain = not self.cfg.is_ssl and not h2c

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
        if self._in_pieces:
            first = min(conn.pieces_since for conn in self._in_pieces)
            timeout = max(0.0, min(timeout, first + inline.PIECES_WAIT_SECONDS - time.monotonic()))
        super().wait_for_and_dispatch_events(timeout)
        if self._in_pieces:  # first: what arrived at the last moment joins this turn's sync
            self._give_up_on_pieces()
        if self._held:
            self._answer_held()

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
        if self._plain and not conn.initialized and not conn.data_ready:
            # A new connection waits for its first bytes in the poller, not in a pool thread,
            # so that its first request can be answered inline too.
            conn.sock.setblocking(False)
            conn.timeout = time.monotonic() + self.cfg.keepalive
            self.pending_conns.append(conn)
            self.poller.register(
                conn.sock, selectors.EVENT_READ, partial(self.on_pending_socket_readable, conn)
            )
            return
        super().enqueue_req(conn)

    def on_pending_socket_readable(self, conn: Any, client: Any) -> None:
        """A new connection's first bytes arrived: answer its request here when it can be."""
        self.poller.unregister(client)
        self.pending_conns.remove(conn)
        conn.data_ready = True
        if self._plain and not conn.initialized:
            conn.init()  # plain HTTP/1.1: only makes the connection's parser
            conn.sock.setblocking(False)
        self._serve(conn)

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

    def on_client_socket_readable(self, conn: Any, client: Any) -> None:
        """A kept-alive connection has more to say: answer it here when it can be."""
        self.poller.unregister(client)
        self.keepalived_conns.remove(conn)
        self._serve(conn)

    def _serve(self, conn: Any) -> None:
        """Answer ``conn``'s request here if it can be, else hand it to a pool thread."""
        if not self._serve_inline(conn):
            conn.pieces_since = None
            self.enqueue_req(conn)

    def _serve_inline(self, conn: Any) -> bool:
        """Run the application for ``conn``'s next request on this thread once all of it has
        arrived (True: answered, held for the sync, waiting for its rest or closed); False,
        with the bytes read pushed back, leaves it to the pool."""
        if not conn.initialized or conn.is_http2 or isinstance(conn.sock, ssl.SSLSocket):
            return False
        try:
            data = conn.sock.recv(inline.READ_BYTES)
        except BlockingIOError:
            return False
        except OSError:
            data = b""
        if not data:
            if conn.parser.unreader.buf.getvalue():
                return False  # it stopped mid-request: the pool answers that (400), as ever
            self.nr_conns -= 1  # it closed its connection between requests
            conn.close()
            return True
        data = conn.parser.unreader.take_buffered() + data  # with what came before, if any
        parsed = inline.whole_request(self.cfg, data, conn.client, conn.parser.req_count + 1)
        if parsed == inline.MORE_TO_COME and self._wait_for_pieces(conn, data):
            return True
        conn.pieces_since = None
        if not isinstance(parsed, tuple):
            conn.parser.unreader.unread(data)  # for the pool thread's parser to read first
            return False
        req, received = parsed
        try:
            answer, keepalive, staged = self._run_app(req, conn)
        except Exception:  # the application never raises; a bug here must not stop the loop
            self.log.exception("Error handling request")
            self.nr_conns -= 1
            conn.close()
            return True
        # The connection's own parser carries on after this request, with any bytes the
        # client sent behind it.
        conn.parser.mesg = req
        conn.parser.req_count += 1
        leftover = received.take_buffered()
        if leftover:
            conn.parser.unreader.unread(leftover)
        if staged:
            self._held.append((conn, answer, keepalive))
        else:
            self._send(conn, answer, keepalive)
        return True

    def _wait_for_pieces(self, conn: Any, data: bytes) -> bool:
        """Keep what arrived and wait in the poller for the rest of the request, unless it has
        been waiting for :data:`~ingest.inline.PIECES_WAIT_SECONDS` already."""
        now = time.monotonic()
        since = getattr(conn, "pieces_since", None) or now
        if now - since >= inline.PIECES_WAIT_SECONDS:
            return False
        conn.pieces_since = since
        conn.parser.unreader.unread(data)
        self._in_pieces.append(conn)
        self.poller.register(conn.sock, selectors.EVENT_READ, partial(self._more_pieces, conn))
        return True

    def _more_pieces(self, conn: Any, client: Any) -> None:
        """More of a request arriving in pieces: answer it here if it is whole now."""
        self.poller.unregister(client)
        self._in_pieces.remove(conn)
        self._serve(conn)

    def _give_up_on_pieces(self) -> None:
        """Requests whose wait is over are read once more, in case the rest has just come;
        those still in pieces go to a pool thread, which reads the rest within the read
        deadline (and answers 408 if it never comes)."""
        now = time.monotonic()
        for conn in list(self._in_pieces):
            if now - conn.pieces_since >= inline.PIECES_WAIT_SECONDS:
                self._in_pieces.remove(conn)
                self.poller.unregister(conn.sock)
                self._serve(conn)

    def _run_app(self, req: Any, conn: Any) -> tuple[bytes, bool, bool]:
        """The answer to ``req``, whether the connection stays open after it, and whether
        the application staged a record that must be durable before it is sent (gunicorn's
        ``handle_request``, writing to memory instead of the socket)."""
        staged_before = len(self._deferred)
        gathered = inline.Gathered()
        self.cfg.pre_request(self, req)
        started = datetime.now()
        resp, environ = wsgi.create(req, gathered, conn.client, conn.server, self.cfg)
        environ["wsgi.multithread"] = True
        environ[DEFERRED_SYNC] = self._deferred
        self.nr += 1
        if self.nr >= self.max_requests:
            if self.alive:  # gunicorn's own message and behaviour
                self.log.info("Autorestarting worker after current request.")
                self.alive = False
            resp.force_close()
        closing = not self.alive or not self.cfg.keepalive
        if closing or len(self.keepalived_conns) >= self.max_keepalived:
            resp.force_close()
        try:
            respiter = self.wsgi(environ, resp.start_response)
            try:
                for item in respiter:
                    resp.write(item)
                resp.close()
            finally:
                self.log.access(resp, req, environ, datetime.now() - started)
                if hasattr(respiter, "close"):
                    respiter.close()
            while req.body.read(inline.READ_BYTES):  # a body the application left unread
                pass
        finally:
            try:
                self.cfg.post_request(self, req, environ, resp)
            except Exception:
                self.log.exception("Exception in post_request hook")
        return gathered.data(), not resp.should_close(), len(self._deferred) > staged_before

    def _answer_held(self) -> None:
        """Make this turn's staged records durable with one sync, then send their answers
        (a 503 each instead, should the sync fail)."""
        held, self._held = self._held, []
        # On this thread, not a syncing one: handing each turn's sync to another thread and
        # back cost 3-4 points of throughput (BENCHMARKS.md). The price is that a disk that
        # never answers stalls this worker (gunicorn replaces it after its timeout) instead
        # of letting it answer 503; nothing is acknowledged either way.
        failure = self._deferred.commit()
        for conn, answer, keepalive in held:
            if failure is not None:
                answer = raw_error_answer(
                    503,
                    "Service Unavailable",
                    "spool_unavailable",  # as the application answers it
                    failure.message,
                    retry_after=failure.retry_after,
                )
                keepalive = False
            self._send(conn, answer, keepalive)

    def _send(self, conn: Any, answer: bytes, keepalive: bool) -> None:
        """Send ``answer`` and put the connection back to wait (or close it); a client that
        does not take it all at once gets the rest from a pool thread."""
        try:
            sent = conn.sock.send(answer)
        except BlockingIOError:
            sent = 0
        except OSError:
            sent, keepalive = len(answer), False  # the client is gone: close
        if sent < len(answer):
            future = self.tpool.submit(self._send_rest, conn, answer[sent:], keepalive)
            future.add_done_callback(
                lambda done: self.method_queue.defer(self.finish_request, conn, done)
            )
            return
        finished: Future[bool] = Future()
        finished.set_result(keepalive)
        self.finish_request(conn, finished)

    def _send_rest(self, conn: Any, rest: bytes, keepalive: bool) -> bool:
        """In a pool thread: send the rest of an answer, within the read deadline."""
        try:
            conn.sock.setblocking(True)  # a deadline socket: blocking for at most its deadline
            conn.sock.sendall(rest)
        except OSError:
            return False
        return keepalive
