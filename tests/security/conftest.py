"""Fixtures of the hostile-input suite: one real server with one source per provider.

``hub`` (module-scoped) starts ``mailpulse serve --workers 2`` with a source named after each
registered provider, configured from ``Provider.demo_credentials`` (generated per run, never
written anywhere but the test's temporary directory). ``hub.valid(name)`` builds an authentic
request exactly as that ESP would send it (``Provider.encode``); ``hub.send`` speaks raw HTTP
over a socket, so tests can send what ordinary clients refuse to (doubled headers, CR/LF in a
value, any method, any path) and records every answer in the session ``recorder``.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import signal
import socket
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from ingest.providers import PROVIDERS
from mailpulse.simulate.esp import ESPS, Esp, SimulatedEvent
from tests.helpers import Server, parse_config, start_server
from tests.leaks import secret_forms

#: Mandrill signs the URL; sender and receiver must agree on it, whatever port the server gets.
SIGNED_URL = "https://hooks.mailpulse.test/webhooks/{name}"
SEED = 7


@dataclass(frozen=True)
class RawResponse:
    """One answer as read off the socket."""

    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Exchange:
    """One request of the suite and its answer, for the lake and leak checks."""

    source: str
    status: int
    body: bytes
    request_id: str | None


@dataclass
class Recorder:
    """Everything the hostile suite saw: answers, server logs and the secrets configured."""

    exchanges: list[Exchange] = field(default_factory=list)
    logs: list[str] = field(default_factory=list)
    secrets: set[str] = field(default_factory=set)
    #: Authentic requests sent whose answer we did not wait for: (source, body).
    unanswered: list[tuple[str, bytes]] = field(default_factory=list)


@pytest.fixture(scope="session")
def recorder() -> Recorder:
    """Session-wide: the hostile module writes, the leak module reads."""
    return Recorder()


class NoAnswer(AssertionError):
    """The server sent nothing back before the deadline (or closed without a word)."""


def parse_response(data: bytes, *, head_only: bool = False) -> RawResponse:
    """Parse one HTTP/1.1 response (the server closes the connection after it)."""
    if not data:
        raise NoAnswer("the server sent no answer before the deadline")
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    if head_only:
        return RawResponse(status, headers, b"")
    if "content-length" in headers:
        rest = rest[: int(headers["content-length"])]
    elif headers.get("transfer-encoding", "").lower() == "chunked":
        rest = _dechunk(rest)
    return RawResponse(status, headers, rest)


def _dechunk(data: bytes) -> bytes:
    out = bytearray()
    while data:
        size_line, _, data = data.partition(b"\r\n")
        size = int(size_line.split(b";")[0] or b"0", 16)
        if size == 0:
            break
        out += data[:size]
        data = data[size + 2 :]
    return bytes(out)


def read_all(sock: socket.socket, deadline: float) -> bytes:
    """Read until the peer closes (or the deadline passes)."""
    chunks = []
    while True:
        sock.settimeout(max(0.05, deadline - time.monotonic()))
        try:
            chunk = sock.recv(65536)
        except (TimeoutError, ConnectionResetError):
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


def raw_request(
    port: int,
    method: str,
    path: str,
    headers: Sequence[tuple[str, str]],
    body: bytes = b"",
    *,
    timeout: float = 30,
    content_length: bool = True,
) -> RawResponse:
    """Send bytes exactly as given (no client-side checks) and read the answer."""
    lines = [f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{port}", "Connection: close"]
    lines += [f"{name}: {value}" for name, value in headers]
    if content_length and method not in ("GET", "HEAD") or body:
        lines.append(f"Content-Length: {len(body)}")
    data = "\r\n".join(lines).encode("utf-8", "surrogateescape") + b"\r\n\r\n" + body
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        # The server may answer (and close) before reading everything.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(data)
        answer = read_all(sock, time.monotonic() + timeout)
    return parse_response(answer, head_only=method == "HEAD")


@dataclass(frozen=True)
class Outbound:
    """An authentic request for one source, as a mutable-by-copy triple."""

    source: str
    headers: tuple[tuple[str, str], ...]
    body: bytes

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key.lower() == name.lower():
                return value
        return None

    def without(self, name: str) -> tuple[tuple[str, str], ...]:
        return tuple((k, v) for k, v in self.headers if k.lower() != name.lower())


@dataclass
class Hub:
    """The running server, its sources and their sender-side keys."""

    server: Server
    port: int
    providers: dict[str, Esp]  # the ESPs' sending side
    senders: dict[str, dict[str, str]]
    recorder: Recorder
    sequence: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    def valid(self, name: str, *, sent_at: float | None = None) -> Outbound:
        """A fresh authentic request for source ``name`` (one event, new ids and tokens).

        ``sent_at`` signs it as of another time (a stale timestamp).
        """
        now = time.time() if sent_at is None else sent_at
        provider = self.providers[name]
        number = next(self.sequence)
        kind = "delivered" if "delivered" in provider.emits else sorted(provider.emits)[0]
        simulated = SimulatedEvent(
            sequence=number,
            event_type=kind,
            recipient=f"hostile{number}@example.com",
            occurred_at=now - 1,
            message_id=provider.message_id(number, SEED),
            campaign="hostile",
            tags=("hostile",),
        )
        request = provider.encode(
            [simulated],
            url=SIGNED_URL.format(name=name),
            now=now,
            sender=self.senders[name],
        )
        return Outbound(name, tuple(request.headers.items()), request.body)

    def send(
        self,
        source: str,
        headers: Sequence[tuple[str, str]],
        body: bytes,
        *,
        method: str = "POST",
        path: str | None = None,
        timeout: float = 30,
    ) -> RawResponse:
        """Send one request over a raw socket and record the answer."""
        path = path if path is not None else f"/webhooks/{source}"
        response = raw_request(self.port, method, path, headers, body, timeout=timeout)
        request_id = None
        if response.status == 200 and response.body:
            try:
                request_id = response.json().get("request_id")
            except ValueError:
                request_id = None
        self.recorder.exchanges.append(Exchange(source, response.status, response.body, request_id))
        return response

    def healthy(self) -> bool:
        """The server still answers ``/healthz`` with 200."""
        response = raw_request(self.port, "GET", "/healthz", (), timeout=10)
        return response.status == 200 and response.json() == {"status": "ok"}


def _toml(value: Any) -> str:
    return json.dumps(value)  # strings, numbers and arrays of them are valid TOML too


def _collect_secrets(
    receiver: dict[str, Any], sender: dict[str, str], keys: frozenset[str]
) -> set[str]:
    found: set[str] = set()
    values: list[Any] = [receiver[key] for key in keys if key in receiver]
    values += [value for key, value in sender.items() if key in keys or key == "private_key"]
    for value in values:
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, str):
                found |= secret_forms(item)
    return found


def worker_pids(server: Server) -> list[int]:
    """The gunicorn workers: grandchildren of the ``mailpulse serve`` process."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        parents[int(entry.name)] = int(stat.rpartition(")")[2].split()[1])
    masters = [pid for pid, parent in parents.items() if parent == server.process.pid]
    return sorted(pid for pid, parent in parents.items() if parent in masters)


def rss_bytes(pids: Sequence[int]) -> int:
    """Summed VmRSS of ``pids`` (processes that vanished count 0)."""
    total = 0
    for pid in pids:
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1]) * 1024
    return total


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory, recorder: Recorder) -> Iterator[Hub]:
    """One real server, one source per registered provider, named after it."""
    directory = tmp_path_factory.mktemp("hostile")
    lines = [f'data_dir = "{directory / "data"}"', "", "[receiver]"]
    lines += ["flush_interval_seconds = 3600", ""]
    document: dict[str, Any] = {"data_dir": str(directory / "data"), "sources": {}}
    senders: dict[str, dict[str, str]] = {}
    for name, cls in sorted(PROVIDERS.items()):
        receiver, sender = ESPS[name].demo_credentials(SIGNED_URL.format(name=name))
        lines += [f"[sources.{name}]", f'provider = "{name}"']
        lines += [f"{key} = {_toml(value)}" for key, value in receiver.items()]
        lines.append("")
        document["sources"][name] = {"provider": name, **receiver}
        senders[name] = sender
        keys = cls.credential_keys - {"public_key"}
        recorder.secrets |= _collect_secrets(receiver, sender, frozenset(keys))
    config_path = directory / "mailpulse.toml"
    config_path.write_text("\n".join(lines))
    config_path.chmod(0o600)
    parse_config(document, env={})  # the generated settings are a valid config
    providers = {name: ESPS[name] for name in PROVIDERS}
    server = start_server(config_path, directory, "", workers=2, threads=8)
    port = int(server.base_url.rpartition(":")[2])
    try:
        yield Hub(server, port, providers, senders, recorder)
    finally:
        with contextlib.suppress(Exception):  # /metrics must not carry a secret either
            metrics = raw_request(port, "GET", "/metrics", (), timeout=10)
            recorder.logs.append(metrics.body.decode("utf-8", "replace"))
        if server.process.poll() is None:
            try:
                server.stop(signal.SIGTERM, timeout=60)
            except Exception:
                server.stop(signal.SIGKILL)
        recorder.logs.append(server.log())
        for log in directory.glob("*.log"):
            if log != server.log_path:
                recorder.logs.append(log.read_text(errors="replace"))
