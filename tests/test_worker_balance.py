"""New connections are spread over the workers (``ingest/worker.py``), on the real server.

All gunicorn workers accept from one socket and the first to wake takes the connection, so a
burst of new keep-alive connections could all land on one worker. A worker that already holds
a connection per thread leaves the next one for a sibling.
"""

from __future__ import annotations

import socket
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

import psutil

from tests.helpers import Server, running_server

WORKERS = 2
THREADS = 2


def _open_kept_alive(base_url: str, count: int) -> list[socket.socket]:
    """``count`` connections opened at once, each served one request and kept open."""
    address = urlsplit(base_url)
    clients = [socket.create_connection((address.hostname, address.port)) for _ in range(count)]
    request = b"GET /healthz HTTP/1.1\r\nHost: mailpulse\r\n\r\n"
    for client in clients:
        client.sendall(request)
    for client in clients:
        client.settimeout(10)
        answer = client.recv(4096)
        assert answer.startswith(b"HTTP/1.1 200"), answer[:80]
    return clients


def _connections_per_worker(server: Server, clients: list[socket.socket]) -> list[int]:
    """How many of ``clients`` each worker process holds (workers holding none included)."""
    held = _held_by_worker(server, clients)
    assert len(held) == WORKERS, held
    return sorted(held.values())


def _held_by_worker(server: Server, clients: list[socket.socket]) -> dict[int, int]:
    """Worker pid -> how many of ``clients`` it holds, for the workers started so far."""
    ports = {client.getsockname()[1] for client in clients}
    server_port = urlsplit(server.base_url).port
    held: Counter[int] = Counter()
    listening = {}
    for process in psutil.Process(server.process.pid).children(recursive=True):
        for connection in process.net_connections(kind="tcp"):
            if connection.laddr and connection.laddr.port == server_port:
                if connection.status == psutil.CONN_LISTEN:
                    listening[process.pid] = process.ppid()
                elif connection.raddr and connection.raddr.port in ports:
                    held[process.pid] += 1
    # The gunicorn master listens too; its workers are the listening processes it started.
    workers = [pid for pid, parent in listening.items() if parent in listening]
    return {pid: held[pid] for pid in workers}


@contextmanager
def _closed_afterwards(clients: list[socket.socket]) -> Iterator[list[socket.socket]]:
    """Use ``clients``, then close them and give the workers time to notice."""
    try:
        yield clients
    finally:
        for client in clients:
            client.close()
        time.sleep(0.2)


def _wait_until_every_worker_serves(server: Server) -> None:
    """Workers load the app one after the other, after /readyz already answers: open
    connections one at a time until each worker holds one."""
    deadline = time.monotonic() + 60
    with _closed_afterwards([]) as clients:
        while True:
            held = _held_by_worker(server, clients)
            if len(held) == WORKERS and 0 not in held.values():
                return
            assert time.monotonic() < deadline, "a worker never served a request"
            clients += _open_kept_alive(server.base_url, 1)


def test_a_burst_of_connections_is_shared_by_the_workers(tmp_path: Path) -> None:
    with running_server(tmp_path, workers=WORKERS, threads=THREADS) as server:
        _wait_until_every_worker_serves(server)
        # Three bursts: by chance alone, four connections split 2/2 only 3 times in 8.
        for _ in range(3):
            with _closed_afterwards(_open_kept_alive(server.base_url, WORKERS * THREADS)) as burst:
                assert _connections_per_worker(server, burst) == [THREADS] * WORKERS


def test_connections_beyond_every_workers_share_are_still_served(tmp_path: Path) -> None:
    with running_server(tmp_path, workers=WORKERS, threads=THREADS) as server:
        _wait_until_every_worker_serves(server)
        with _closed_afterwards(_open_kept_alive(server.base_url, 3 * WORKERS * THREADS)) as many:
            # Every worker deferred some of them, and took what no sibling took: all answered
            # (``_open_kept_alive`` checks each answer) and all still held open.
            assert sum(_connections_per_worker(server, many)) == len(many)
