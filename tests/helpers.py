"""Builders shared by the tests: configs, signed requests, a real server, lake reads."""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import requests

from ingest.providers import PROVIDERS
from ingest.providers.generic import sign
from ingest.spool import Spool, SpoolRecord, new_request_id
from ingest.spool.sqlite import SqliteSpool
from mailpulse import config as configuration
from mailpulse.demo import free_port
from tests import leaks

REPO = Path(__file__).resolve().parent.parent


def parse_config(document: Any, **options: Any) -> configuration.Config:
    """A config document validated with the provider registry, as ingest and the CLI do."""
    return configuration.parse_config(document, providers=PROVIDERS, **options)


def load_config(path: Any = None, **options: Any) -> configuration.Config:
    """A config file loaded with the provider registry, as ingest and the CLI do."""
    return configuration.load_config(path, providers=PROVIDERS, **options)


def new_secret() -> str:
    """A fresh secret per test: no test key is ever committed."""
    return secrets.token_hex(24)


def write_config(directory: Path, secret: str, extra: str = "", **receiver: Any) -> Path:
    """A mailpulse.toml with one generic source ``in_house``, receiver keys and ``extra`` TOML."""
    lines = [f'data_dir = "{directory / "data"}"', "", "[receiver]"]
    lines += [f"{key} = {json.dumps(value)}" for key, value in receiver.items()]
    lines += ["", "[sources.in_house]", 'provider = "generic"', f'secret = "{secret}"', "", extra]
    path = directory / "mailpulse.toml"
    path.write_text("\n".join(lines))
    return path


def signed_headers(secret: str, body: bytes, timestamp: int | None = None) -> dict[str, str]:
    """Headers of a correctly signed generic request."""
    timestamp = int(time.time()) if timestamp is None else timestamp
    return {
        "Content-Type": "application/json",
        "X-Webhook-Timestamp": str(timestamp),
        "X-Webhook-Signature": sign(secret, timestamp, body),
    }


def read_http_answer(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """Read one HTTP response (Content-Length framed) off ``sock``: status, headers, body."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        assert chunk, f"connection closed without an answer: {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    while len(body) < int(headers["Content-Length"]):
        body += sock.recv(4096)
    return int(lines[0].split()[1]), headers, body


def event(event_id: str, kind: str = "delivered", **extra: Any) -> dict[str, Any]:
    """One generic-format event."""
    return {
        "id": event_id,
        "type": kind,
        "timestamp": extra.pop("timestamp", int(time.time())),
        "email": extra.pop("email", f"{event_id}@example.com"),
        **extra,
    }


def lake_rows(data_dir: Path, table: str = "events") -> list[dict[str, Any]]:
    """Every row of a lake table, read with DuckDB directly (not through mailpulse)."""
    files = list((data_dir / "lake" / table).glob("date=*/*.parquet"))
    if not files:
        return []
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    relation = con.sql(
        f"SELECT * FROM read_parquet('{data_dir}/lake/{table}/*/*.parquet', hive_partitioning=true)"
    )
    columns = relation.columns
    return [dict(zip(columns, row, strict=True)) for row in relation.fetchall()]


@dataclass
class Server:
    """A running ``mailpulse serve`` on loopback."""

    process: subprocess.Popen[bytes]
    base_url: str
    config_path: Path
    data_dir: Path
    secret: str = field(repr=False)
    log_path: Path

    def post(
        self, body: bytes | Any, *, source: str = "in_house", **kwargs: Any
    ) -> requests.Response:
        """POST a signed body (dicts and lists are JSON-encoded)."""
        if not isinstance(body, bytes):
            body = json.dumps(body).encode()
        headers = kwargs.pop("headers", None) or signed_headers(self.secret, body)
        return requests.post(
            f"{self.base_url}/webhooks/{source}", data=body, headers=headers, timeout=30, **kwargs
        )

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60) -> int:
        """Signal the whole process group and wait."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, sig)
        return self.process.wait(timeout=timeout)

    def log(self) -> str:
        """What the server printed."""
        return self.log_path.read_text(errors="replace")


def mailpulse(
    *args: str, config: Path | None = None, check: bool = False, timeout: float = 120, **kwargs: Any
) -> subprocess.CompletedProcess[str]:
    """Run the installed ``mailpulse`` command line."""
    command = [sys.executable, "-m", "mailpulse", *args]
    if config is not None:
        command += ["--config", str(config)]
    result = subprocess.run(
        command, capture_output=True, text=True, check=check, timeout=timeout, **kwargs
    )
    leaks.RECORD.outputs.append((f"mailpulse {' '.join(args)[:60]}", result.stdout + result.stderr))
    return result


@contextmanager
def running_server(
    directory: Path,
    *,
    workers: int = 2,
    threads: int = 8,
    secret: str | None = None,
    extra: str = "",
    **receiver: Any,
) -> Iterator[Server]:
    """Start ``mailpulse serve`` with a fresh config and data dir; stop it afterwards."""
    secret = secret or new_secret()
    receiver.setdefault("flush_interval_seconds", 3600)  # tests flush explicitly
    config_path = write_config(directory, secret, extra, **receiver)
    server = start_server(config_path, directory, secret, workers=workers, threads=threads)
    try:
        yield server
    finally:
        if server.process.poll() is None:
            server.stop(signal.SIGKILL)


def start_server(
    config_path: Path,
    directory: Path,
    secret: str,
    *,
    workers: int = 2,
    threads: int = 8,
    args: Sequence[str] = (),
    ca_file: Path | None = None,
    port: int | None = None,
) -> Server:
    """Start a server on a free port for an existing config and wait until it is ready.

    ``args`` are added to ``mailpulse serve``; with ``ca_file`` (the certificate a
    ``--certfile`` server presents) the server is reached over https and checked against it.
    ``port``: listen there (a host started again where its load balancer expects it).
    """
    port = port or free_port()
    log_path = directory / f"server-{port}.log"
    leaks.record_server(config_path, log_path)
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "mailpulse",
                "serve",
                "--config",
                str(config_path),
                "--port",
                str(port),
                "--workers",
                str(workers),
                "--threads",
                str(threads),
                *args,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=directory,
        )
    scheme = "https" if ca_file else "http"
    server = Server(
        process, f"{scheme}://127.0.0.1:{port}", config_path, directory / "data", secret, log_path
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited early:\n{server.log()}")
        try:
            # Once gunicorn listens, a connection waits in its queue until a worker has loaded
            # the app: wait for that answer rather than time out, and let the server close the
            # connection (requests leaves a dropped one open until garbage collection, and a
            # worker would count it as one of its connections all along).
            ready = requests.get(
                f"{server.base_url}/readyz",
                headers={"Connection": "close"},
                timeout=(1, max(1.0, deadline - time.monotonic())),
                verify=str(ca_file) if ca_file else True,
            )
            if ready.status_code == 200:
                return server
        except requests.RequestException:
            pass
        time.sleep(0.05)
    server.stop(signal.SIGKILL)
    raise RuntimeError(f"server not ready:\n{server.log()}")


def in_house_request(body: bytes) -> SpoolRecord:
    """A request to the ``in_house`` source as the receiver spools it (signature removed)."""
    return SpoolRecord(
        request_id=new_request_id(),
        source="in_house",
        received_at=int(time.time() * 1e6),
        remote_addr="127.0.0.1",
        method="POST",
        url="/webhooks/in_house",
        content_type="application/json",
        headers={},
        body=body,
    )


def spooled_records(data_dir: Path) -> list[SpoolRecord]:
    """Every record the spool of ``data_dir`` holds, oldest first (claimed, not acknowledged)."""
    spool = SqliteSpool(data_dir / "spool" / "spool.sqlite", max_bytes=1 << 62)
    try:
        return spool.claim(1 << 62, 1 << 30).records
    finally:
        spool.close()


def append_all(spool: Spool, records: Iterable[SpoolRecord], threads: int = 64) -> None:
    """Append ``records`` as concurrent requests do: from many threads, sharing commits."""
    with ThreadPoolExecutor(max_workers=threads) as pool:
        for done in [pool.submit(spool.append, record) for record in records]:
            done.result()
