"""Slow clients against the stock server, without a proxy in front.

Fifty connections trickle a request a byte a second (headers, then a body) for the whole
run; meanwhile a 380 KB SendGrid batch (the real receiver checks its ECDSA signature and
spools it), a chunked body and a request over TLS are each sent once a second. The table says
how long each took to be answered, or that it timed out. Run it for gunicorn ``gthread`` and
for Granian's WSGI interface with the same settings; see BENCHMARKS.md ("Which server").

    .venv/bin/python bench/slow_clients.py [--server granian] [--part body] [--tls] [--seconds 20]
"""

from __future__ import annotations

import argparse
import os
import socket
import ssl
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.apps import DATA_DIR_ENV, SOURCE  # noqa: E402
from bench.receive import start_server, stop_server  # noqa: E402
from bench.receive_batches import PUBLIC_KEY_ENV, signed_batch  # noqa: E402

PROBE_TIMEOUT = 15.0


def trickle(port: int, stop: threading.Event, context: ssl.SSLContext | None, part: str) -> None:
    """Send one request a byte a second until ``stop`` (the headers too, or only the body);
    reconnect when the server hangs up."""
    head = (
        f"POST /webhooks/{SOURCE} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        "Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n"
    ).encode()
    slow = head + b"[" * 100000 if part == "headers" else b"[" * 100000
    while not stop.is_set():
        try:
            sock = _connect(port, context, timeout=5)
            if part == "body":
                sock.sendall(head)
            for byte in slow:
                if stop.wait(1.0):
                    break
                sock.sendall(bytes([byte]))
            sock.close()
        except OSError:
            stop.wait(0.5)


def _connect(port: int, context: ssl.SSLContext | None, timeout: float) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    if context is not None:
        sock = context.wrap_socket(sock, server_hostname="localhost")
    return sock


def probe(port: int, raw: bytes, context: ssl.SSLContext | None) -> float | None:
    """Seconds until the status line of the answer to ``raw`` arrived; None on a timeout."""
    started = time.monotonic()
    try:
        with _connect(port, context, PROBE_TIMEOUT) as sock:
            sock.sendall(raw)
            data = b""
            while b"\r\n" not in data:
                chunk = sock.recv(4096)
                if not chunk:
                    return None
                data += chunk
        if not data.startswith(b"HTTP/1.1 2"):
            return None
    except OSError:
        return None
    return time.monotonic() - started


def requests_to_probe(body: bytes, headers: dict[str, str]) -> dict[str, bytes]:
    """The raw requests: the signed batch whole, and the same chunked."""
    head = f"POST /webhooks/{SOURCE} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    whole = f"{head}Content-Length: {len(body)}\r\n\r\n".encode() + body
    chunked = f"{head}Transfer-Encoding: chunked\r\n\r\n".encode()
    for offset in range(0, len(body), 16384):
        part = body[offset : offset + 16384]
        chunked += f"{len(part):x}\r\n".encode() + part + b"\r\n"
    return {"batch 380 KB": whole, "chunked": chunked + b"0\r\n\r\n"}


def main(argv: list[str] | None = None) -> int:
    """Run the probe and print one line per kind of request."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--server", choices=("gunicorn", "granian"), default="gunicorn")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--trickle", type=int, default=50, help="slow connections")
    parser.add_argument("--seconds", type=float, default=20.0, help="probing time")
    parser.add_argument("--tls", action="store_true", help="serve (and probe) over TLS")
    parser.add_argument(
        "--part",
        choices=("headers", "body"),
        default="headers",
        help="what the slow clients trickle: the whole request, or the body after whole headers",
    )
    args = parser.parse_args(argv)
    request, public_key, _ = signed_batch()
    results: dict[str, list[float | None]] = {}
    with tempfile.TemporaryDirectory(prefix="mailpulse-bench-slow-") as tmp:
        workdir = Path(tmp)
        env = dict(os.environ, PROMETHEUS_MULTIPROC_DIR=str(workdir / "metrics"))
        (workdir / "metrics").mkdir()
        env |= {DATA_DIR_ENV: str(workdir / "data"), PUBLIC_KEY_ENV: public_key}
        context = _tls(args, workdir, env)
        process, base = start_server("bench.receive_batches:full", workdir, args, env)
        port = int(base.rsplit(":", 1)[1])
        stop = threading.Event()
        tricklers = [
            threading.Thread(target=trickle, args=(port, stop, context, args.part), daemon=True)
            for _ in range(args.trickle)
        ]
        try:
            for thread in tricklers:
                thread.start()
            time.sleep(3.0)  # every slow connection has sent its first bytes
            probes = requests_to_probe(request.body, dict(request.headers))
            until = time.monotonic() + args.seconds
            while time.monotonic() < until:
                for name, raw in probes.items():
                    results.setdefault(name, []).append(probe(port, raw, context))
                time.sleep(1.0)
        finally:
            stop.set()
            stop_server(process)
    tls = " over TLS" if args.tls else ""
    print(f"{args.server}: {args.workers} workers x {args.threads} threads, {args.trickle} clients")
    print(
        f"trickling the {args.part} a byte a second{tls}, no proxy;"
        f" probe timeout {PROBE_TIMEOUT:g} s\n"
    )
    print(f"{'request':14}{'sent':>6}{'answered':>10}{'median s':>10}{'max s':>8}")
    for name, times in results.items():
        answered = [t for t in times if t is not None]
        median = f"{statistics.median(answered):10.2f}" if answered else f"{'-':>10}"
        worst = f"{max(answered):8.2f}" if answered else f"{'-':>8}"
        print(f"{name:14}{len(times):6d}{len(answered):10d}{median}{worst}")
    return 0


def _tls(args: argparse.Namespace, workdir: Path, env: dict[str, str]) -> Any:
    """With ``--tls``, a self-signed certificate for the server and a context trusting it."""
    if not args.tls:
        return None
    from tests.tls import self_signed

    cert, key = self_signed(workdir)
    args.certfile, args.keyfile = str(cert), str(key)
    return ssl.create_default_context(cafile=str(cert))


if __name__ == "__main__":
    sys.exit(main())
