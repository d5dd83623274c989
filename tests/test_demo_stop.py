"""``mailpulse demo`` stops everything it started when it is stopped, and says why it cannot
start a dashboard on a port that is taken."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import requests

from mailpulse.demo import free_port, port_taken
from tests.helpers import mailpulse


def _start_demo(workdir: Path, *args: str) -> subprocess.Popen[str]:
    with (workdir / "demo.log").open("w") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "mailpulse", "demo", "--messages", "20", *args],
            cwd=workdir,
            stdout=subprocess.DEVNULL,
            stderr=log,
            text=True,
        )


def _wait_for(condition: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if callable(condition) and condition():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def _dashboard_answers(port: int) -> bool:
    try:
        return requests.get(f"http://127.0.0.1:{port}/_stcore/health", timeout=1).ok
    except requests.RequestException:
        return False


def _kill_tree(demo: subprocess.Popen[str]) -> None:
    """After a failure: leave nothing running."""
    if demo.poll() is None:
        for process in psutil.Process(demo.pid).children(recursive=True):
            process.kill()
        demo.kill()
    demo.wait()


def _stop_and_check(demo: subprocess.Popen[str], ports: list[int]) -> int:
    """SIGTERM the demo process alone; every process it started must be gone with it."""
    children = psutil.Process(demo.pid).children(recursive=True)
    assert children, "the demo should have started something"
    demo.send_signal(signal.SIGTERM)
    status = demo.wait(timeout=90)
    _gone, alive = psutil.wait_procs(children, timeout=10)
    assert not alive, [process.cmdline() for process in alive]
    for port in ports:
        assert not port_taken("127.0.0.1", port), port
    return status


def test_sigterm_stops_the_dashboard_and_streamlit(tmp_path: Path) -> None:
    port = free_port()
    demo = _start_demo(tmp_path, "--dashboard-port", str(port))
    try:
        _wait_for(lambda: _dashboard_answers(port), 240, "the dashboard")
        names = " ".join(
            " ".join(process.cmdline()) for process in psutil.Process(demo.pid).children(True)
        )
        assert "mailpulse dashboard" in names and "dashboards.serve" in names, names
        assert _stop_and_check(demo, [port]) == 0
    finally:
        _kill_tree(demo)


def test_sigterm_while_sending_stops_the_receiver(tmp_path: Path) -> None:
    receiver = free_port()
    demo = _start_demo(tmp_path, "--no-dashboard", "--port", str(receiver))
    try:
        _wait_for(lambda: port_taken("127.0.0.1", receiver), 120, "the receiver")
        assert _stop_and_check(demo, [receiver]) != 0  # cut short: not a success
        assert "Traceback" not in (tmp_path / "demo.log").read_text()
    finally:
        _kill_tree(demo)


@pytest.mark.parametrize("command", [["dashboard"], ["demo", "--messages", "1"]])
def test_a_taken_dashboard_port_is_one_line_and_exit_1(command: list[str], tmp_path: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        flag = "--port" if command[0] == "dashboard" else "--dashboard-port"
        result = mailpulse(*command, flag, str(port), timeout=60, cwd=tmp_path)
    assert result.returncode == 1
    lines = [line for line in result.stderr.splitlines() if "demo setup" not in line]
    assert lines == [
        f"mailpulse: port {port} on 127.0.0.1 is in use (another dashboard still running?); "
        f"stop it or choose another with {flag}"
    ]
    assert not (tmp_path / "data" / "lake").exists()  # refused before any work
