"""A light destination for the actions benchmark: HTTP/1.1 on asyncio, in a thread of its own.

The destination stands for a CRM on another machine; here it shares the two cores with the
receiver it is measured against, so it should cost as little CPU as it can. One event loop
serves every connection (no thread per connection, no ``http.server`` parsing); each request
is answered 200 after ``delay`` seconds, and the first arrival of each event id is recorded.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import orjson

_ANSWER = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok"


async def _serve(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    delay: float,
    arrivals: dict[str, float],
) -> None:
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            body = await reader.readexactly(length)
            arrivals.setdefault(orjson.loads(body)["data"]["event_id"], time.time())
            await asyncio.sleep(delay)
            writer.write(_ANSWER)
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


@contextmanager
def destination(delay: float) -> Iterator[tuple[str, dict[str, float]]]:
    """Serve on a free loopback port: the URL, and each event id's first arrival time."""
    arrivals: dict[str, float] = {}
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    port: list[int] = []

    async def start() -> asyncio.Server:
        server = await asyncio.start_server(
            lambda r, w: _serve(r, w, delay, arrivals), "127.0.0.1", 0
        )
        port.append(server.sockets[0].getsockname()[1])
        return server

    def run() -> None:
        asyncio.set_event_loop(loop)
        server = loop.run_until_complete(start())
        ready.set()
        loop.run_forever()
        server.close()
        loop.run_until_complete(server.wait_closed())

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    ready.wait(10)
    try:
        yield f"http://127.0.0.1:{port[0]}/crm", arrivals
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
