"""Running a receiver for ``mailpulse demo`` (and the tests): start, wait until ready, stop.

The demo itself (``mailpulse.cli.traffic``) starts ``mailpulse serve`` with these, sends every
source's traffic with :mod:`mailpulse.simulate`, flushes and reports.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import requests

from mailpulse.errors import MailpulseError
from mailpulse.ports import bind_error


def free_port() -> int:
    """A TCP port on loopback nobody listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def port_taken(host: str, port: int) -> bool:
    """Whether another process listens on ``host:port`` now."""
    return bind_error(host, port) is not None


def start_server(
    config_args: list[str], port: int, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """Start ``mailpulse serve`` on loopback in its own process group."""
    return subprocess.Popen(
        [sys.executable, "-m", "mailpulse", "serve", "--port", str(port), *config_args],
        env=env,
        start_new_session=True,
    )


def wait_ready(base_url: str, process: subprocess.Popen[bytes], timeout: float = 60) -> None:
    """Block until ``/readyz`` answers 200, or raise MailpulseError."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise MailpulseError(f"the server exited with status {process.returncode}")
        try:
            if requests.get(f"{base_url}/readyz", timeout=1).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.1)
    raise MailpulseError("the server did not become ready in time")


def stop_server(process: subprocess.Popen[bytes], timeout: float = 60) -> int:
    """SIGTERM the server (it drains and flushes), then wait for it."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
    try:
        return process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        return process.wait()
