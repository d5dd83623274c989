"""Answering a request on the worker's own polling thread, many per sync.

Gunicorn's threaded worker hands every request to a pool thread. For a webhook that is a round
of wake-ups between threads, and more around the spool's sync: each request's thread sleeps
until its batch is durable, then wakes to answer. When a connection turns readable and a whole
request has arrived (headers and a ``Content-Length`` body, the usual webhook), the worker's
polling thread can instead answer it itself: it runs the application with the records staged in
a :class:`~ingest.deferred_sync.DeferredSync`, does the same for every other connection that
turned readable, then syncs all their records at once and sends the answers. Nothing is sent
before its record is durable; when the sync fails every staged request is answered 503 instead.

A request that arrives in pieces (many clients write the headers and the body separately) waits
in the poller for the rest, up to :data:`PIECES_WAIT_SECONDS`. Anything else (a chunked or
large body, ``Expect: 100-continue``, TLS, HTTP/2, a request still incomplete after that wait)
goes to the pool as before, with the bytes already read pushed back. Gunicorn's own parser
reads the request in both cases.
"""

from __future__ import annotations

from typing import Any

from gunicorn.http.body import LengthReader
from gunicorn.http.errors import NoMoreData
from gunicorn.http.message import Request
from gunicorn.http.unreader import Unreader

#: The most one read takes from a connection for an inline request. Webhooks are mostly a
#: few kilobytes; a larger one is read by a pool thread.
READ_BYTES = 64 * 1024
#: How long a request arriving in pieces may wait in the poller for its rest before a pool
#: thread reads it (with the full read deadline): long enough for a body sent right after
#: its headers, short enough that a client trickling bytes soon meets that deadline.
PIECES_WAIT_SECONDS = 1.0


class Received(Unreader):  # type: ignore[misc]
    """What one read brought, as a gunicorn unreader that ends there (no socket behind it)."""

    def __init__(self, data: bytes) -> None:
        super().__init__()
        self.buf.write(data)

    def chunk(self, size_hint: int | None = None) -> bytes:
        return b""  # the end of what arrived: the parser raises NoMoreData if it wants more

    def remaining(self) -> int:
        """Bytes not parsed yet."""
        return len(self.buf.getbuffer())


class Gathered:
    """Stands in for the client socket while the application runs: gunicorn's response
    writes land here, to be sent once the turn's records are durable."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []

    def sendall(self, data: bytes) -> None:
        self.parts.append(bytes(data))

    def send(self, data: bytes) -> int:
        self.parts.append(bytes(data))
        return len(data)

    def settimeout(self, _timeout: float | None) -> None:
        """Nothing is read from or written to a socket during the request: no timeout."""

    def data(self) -> bytes:
        """Everything written so far."""
        return b"".join(self.parts)


#: What :func:`whole_request` says of a request that may still arrive whole: part of it is
#: here, and the rest would still fit in one inline read.
MORE_TO_COME = "more to come"


def whole_request(
    cfg: Any, data: bytes, client: Any, number: int
) -> tuple[Request, Received] | str | None:
    """The request ``data`` holds whole, parsed by gunicorn; :data:`MORE_TO_COME` when only
    part of a request small enough for an inline read has arrived; else None.

    None means "let a pool thread read it": the body is chunked or larger than one inline
    read, the client waits for ``100 Continue``, or gunicorn's parser refused the request (the
    pool thread parses it again and answers the error as it always does).
    """
    if len(data) >= READ_BYTES:
        return None
    received = Received(data)
    try:
        request = Request(cfg, received, client, number)
    except NoMoreData:
        return MORE_TO_COME  # the headers are not all here yet
    except Exception:  # a malformed request: its error answer is the pool's job
        return None
    reader = request.body.reader
    if not isinstance(reader, LengthReader) or reader.length >= READ_BYTES:
        return None
    if request._expected_100_continue:  # noqa: SLF001  # the client holds its body back
        return None
    if reader.length > received.remaining():
        return MORE_TO_COME  # many clients send the headers and the body in two writes
    return request, received
