"""Rotating a secret without a dropped request: edit the config, send SIGHUP to ``serve``."""

from __future__ import annotations

import json
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest
import requests

from tests.helpers import Server, event, new_secret, signed_headers, start_server, write_config

pytestmark = pytest.mark.slow


def _status(server: Server, secret: str, event_id: str) -> int:
    body = json.dumps(event(event_id)).encode()
    return requests.post(
        f"{server.base_url}/webhooks/in_house",
        data=body,
        headers=signed_headers(secret, body),
        timeout=10,
    ).status_code


def _until(condition: Callable[[], bool], what: str, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.2)


def _workers(server: Server) -> set[int]:
    """The pids of gunicorn's workers (the grandchildren of ``mailpulse serve``)."""
    children = psutil.Process(server.process.pid).children(recursive=True)
    masters = {child.pid for child in children if child.ppid() == server.process.pid}
    return {child.pid for child in children if child.ppid() in masters}


def _hup(server: Server) -> None:
    server.process.send_signal(signal.SIGHUP)  # the supervisor, not the whole group


def test_a_secret_is_rotated_without_a_dropped_request(tmp_path: Path) -> None:
    old, new = new_secret(), new_secret()
    config = write_config(tmp_path, old, flush_interval_seconds=3600)
    server = start_server(config, tmp_path, old, workers=2)
    statuses: list[int] = []
    stop = threading.Event()

    def keep_sending() -> None:  # the ESP, still signing with the old secret
        n = 0
        while not stop.is_set():
            statuses.append(_status(server, old, f"steady-{n}"))
            n += 1

    sender = threading.Thread(target=keep_sending)
    sender.start()
    try:
        assert _status(server, new, "new-early") == 401
        # Step 1: both secrets verify.
        both = f'secret = ["{old}", "{new}"]'
        config.write_text(config.read_text().replace(f'secret = "{old}"', both))
        _hup(server)
        _until(lambda: _status(server, new, "new-during") == 200, "the new secret never applied")
        assert _status(server, old, "old-during") == 200
        # Step 2: the sender has switched; the old secret is removed.
        config.write_text(config.read_text().replace(f'"{old}", ', ""))
        before = _workers(server)
        assert len(before) >= 2, before  # every worker that may still hold the old secret
        _hup(server)
        _until(lambda: _status(server, old, "old-after") == 401, "the old secret still verifies")
        # gunicorn replaces workers gracefully: until the old ones have finished, a request
        # may still reach one of them. From then on only the new configuration answers.
        _until(lambda: not before & _workers(server), "the old workers never stopped")
        settled = len(statuses)
        _until(lambda: len(statuses) > settled + 5, "the sender stopped sending")
        stop.set()
        sender.join()
        assert _status(server, new, "new-after") == 200
        assert server.process.poll() is None
    finally:
        stop.set()
        sender.join()
        server.stop()
    # Until the old secret was removed, every request of the old sender was answered 200;
    # once the old workers were gone, 401 (never a dropped connection or a 5xx).
    assert statuses and statuses[0] == 200
    first_refusal = statuses.index(401) if 401 in statuses else len(statuses)
    assert set(statuses[:first_refusal]) == {200}, statuses
    assert set(statuses) <= {200, 401}, statuses
    assert set(statuses[settled:]) == {401}, statuses
    assert "configuration reloaded" in server.log()


def test_an_invalid_config_is_not_loaded_and_the_old_one_keeps_working(tmp_path: Path) -> None:
    secret = new_secret()
    config = write_config(tmp_path, secret, flush_interval_seconds=3600)
    server = start_server(config, tmp_path, secret, workers=1)
    try:
        config.write_text(config.read_text() + '\n[sources.broken]\nprovider = "sendgird"\n')
        _hup(server)
        _until(lambda: "configuration not reloaded" in server.log(), "no reload error logged")
        assert "unknown provider 'sendgird'" in server.log()
        assert _status(server, secret, "still-fine") == 200
        assert server.process.poll() is None
    finally:
        server.stop()
