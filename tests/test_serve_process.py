"""``mailpulse serve`` as a process: it refuses to start where it cannot serve, gunicorn dies
with it, and a full data disk never costs a request its answer."""

from __future__ import annotations

import concurrent.futures
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import pytest
import requests

from tests.helpers import Server, event, new_secret, running_server, signed_headers, write_config

pytestmark = pytest.mark.slow


def _serve(config: Path, port: int) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "mailpulse", "serve", "--config", str(config)]
    return subprocess.run(
        [*command, "--port", str(port), "--workers", "1", "--threads", "2"],
        capture_output=True,
        text=True,
        timeout=60,
    )


def _children(pid: int) -> list[int]:
    """The direct children of ``pid``, from /proc."""
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(child) for child in text.split()]


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _gunicorn(server: Server) -> tuple[int, list[int]]:
    """The gunicorn master ``serve`` started, and its workers."""
    (master,) = _children(server.process.pid)
    deadline = time.monotonic() + 30
    while len(_children(master)) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    return master, _children(master)


@contextmanager
def _tmpfs(path: Path, options: str) -> Iterator[Path]:
    """A tmpfs mounted at ``path`` for the test (root only)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small filesystem needs root")
    path.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def test_serve_on_a_taken_port_says_so_in_one_line(tmp_path: Path) -> None:
    config = write_config(tmp_path, new_secret())
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = _serve(config, port)
    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        f"mailpulse: cannot listen on 127.0.0.1:{port}: the address is in use"
    ]


def test_serve_on_a_read_only_data_dir_names_it_before_receiving(tmp_path: Path) -> None:
    config = write_config(tmp_path, new_secret())
    with _tmpfs(tmp_path / "data", "ro,size=1m") as data_dir:
        done = _serve(config, 0)
    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        f"mailpulse: cannot write to {data_dir}: Read-only file system"
    ]


def test_killing_only_serve_stops_gunicorn(tmp_path: Path) -> None:
    with running_server(tmp_path, workers=2, threads=2) as server:
        master, workers = _gunicorn(server)
        assert workers and _alive(master)
        server.process.send_signal(signal.SIGKILL)  # serve alone, not its process group
        server.process.wait(timeout=10)
        deadline = time.monotonic() + 40  # gunicorn's graceful stop, at most 30 s
        while any(_alive(pid) for pid in (master, *workers)) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not any(_alive(pid) for pid in (master, *workers))
        with pytest.raises(requests.ConnectionError):
            requests.get(f"{server.base_url}/healthz", timeout=5)


def test_metrics_files_live_off_the_data_disk_and_go_with_the_server(tmp_path: Path) -> None:
    with running_server(tmp_path, workers=1, threads=2) as server:
        master, _ = _gunicorn(server)
        environ = Path(f"/proc/{master}/environ").read_bytes().split(b"\0")
        (setting,) = [v for v in environ if v.startswith(b"PROMETHEUS_MULTIPROC_DIR=")]
        metrics_dir = Path(setting.split(b"=", 1)[1].decode())
        assert metrics_dir.is_dir()
        assert not metrics_dir.resolve().is_relative_to(server.data_dir.resolve())
        assert server.post(event("counted")).status_code == 200
        assert any(metrics_dir.glob("*.db"))
        server.process.send_signal(signal.SIGTERM)
        assert server.process.wait(timeout=60) == 0
    assert not metrics_dir.exists()


def _post(server: Server, n: int) -> tuple[int, str | None]:
    body = json.dumps(event(f"full-disk-{n}")).encode()
    response = requests.post(
        f"{server.base_url}/webhooks/in_house",
        data=body,
        headers=signed_headers(server.secret, body),
        timeout=30,
    )
    return response.status_code, response.headers.get("Retry-After")


def _fill(directory: Path) -> None:
    """Write zeros under ``directory`` until its filesystem has no room left."""
    with open(directory / "filler", "wb") as filler, suppress(OSError):
        while True:
            filler.write(bytes(64 * 1024))
            filler.flush()


def test_a_full_data_disk_answers_every_request_and_kills_no_worker(tmp_path: Path) -> None:
    with (
        _tmpfs(tmp_path / "data", "size=16m"),
        running_server(tmp_path, workers=2, threads=4) as server,
    ):
        master, workers = _gunicorn(server)
        assert server.post(event("before-full")).status_code == 200
        _fill(server.data_dir)
        with concurrent.futures.ThreadPoolExecutor(16) as pool:
            answers = list(pool.map(lambda n: _post(server, n), range(300)))
        assert {status for status, _ in answers} <= {200, 503}, answers
        assert all(retry for status, retry in answers if status == 503)
        assert any(status == 503 for status, _ in answers)
        assert _children(master) == workers, server.log()[-2000:]
        assert "SIGBUS" not in server.log()
